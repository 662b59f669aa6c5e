#!/usr/bin/env bash
# Prepare a NIC (or a veth) for xdp-tcp with one engine per queue and core.
#
#   nic-setup.sh IF --queues N --cores LIST [--driver NAME] [--busy-poll] [--dry-run]
#
# LIST is the engines' cores, one per queue (`0,1` or `2-5`); engine i runs on LIST[i] and binds
# queue i. What it does, in order (each step printed as the command it runs):
#   1. channels: N receive queues (`ethtool -L`: combined channels on NICs, rx/tx on veth);
#   2. RSS (NICs with it): Toeplitz over addresses and ports for TCP/IPv4 and an indirection
#      table spread evenly over the N queues. The key is left as the driver set it: the stack
#      reads key and table (ETHTOOL_GRSSH) and picks source ports whose replies land on the
#      connecting engine, so no frame needs forwarding;
#   3. GRO and LRO off (the stack wants wire frames), ntuple filters on where the driver has them;
#   4. IRQ affinity of the device's queues away from the engine cores (the engines busy-poll
#      their rings; interrupts on their cores only steal cycles);
#   5. with --busy-poll: napi_defer_hard_irqs and gro_flush_timeout (the kernel's side of
#      SO_PREFER_BUSY_POLL; the engines do not set that socket option yet).
# Zero-copy is not set here: the stack attempts it when binding its sockets (XdpSocketConfig's
# bind mode) and reports the mode it got.
#
# --dry-run prints the commands without running them (and without needing the device when
# --driver names the driver); the driver otherwise comes from `ethtool -i IF`.
# Driver notes: deploy/README.md, "NIC set-up by driver family".
set -euo pipefail

usage() {
    echo "usage: $0 IF --queues N --cores LIST [--driver NAME] [--busy-poll] [--dry-run]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
ifname=$1
shift
queues= cores= driver= dry=0 busy=0
while [ $# -gt 0 ]; do
    case "$1" in
        --queues) [ $# -ge 2 ] || usage; queues=$2; shift 2 ;;
        --cores) [ $# -ge 2 ] || usage; cores=$2; shift 2 ;;
        --driver) [ $# -ge 2 ] || usage; driver=$2; shift 2 ;;
        --dry-run) dry=1; shift ;;
        --busy-poll) busy=1; shift ;;
        *) usage ;;
    esac
done
[[ "$ifname" =~ ^[a-zA-Z0-9_.:-]{1,15}$ ]] || { echo "nic-setup: bad interface name $ifname" >&2; exit 2; }
[[ "$queues" =~ ^[0-9]+$ ]] && [ "$queues" -ge 1 ] || { echo "nic-setup: --queues N (N >= 1) is required" >&2; exit 2; }
[ -n "$cores" ] || { echo "nic-setup: --cores LIST is required" >&2; exit 2; }

# The core list, expanded: "0,2-4" -> 0 2 3 4.
expand() {
    local part a b out=()
    IFS=',' read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
            [ "$a" -le "$b" ] || { echo "nic-setup: empty range $part" >&2; exit 2; }
            for ((i = a; i <= b; i++)); do out+=("$i"); done
        elif [[ "$part" =~ ^[0-9]+$ ]]; then
            out+=("$part")
        else
            echo "nic-setup: bad core list $1" >&2; exit 2
        fi
    done
    echo "${out[@]}"
}
read -ra core_list <<<"$(expand "$cores")"
if [ "${#core_list[@]}" -lt "$queues" ]; then
    echo "nic-setup: $queues queues need $queues engine cores, --cores gives ${#core_list[@]}" >&2
    exit 2
fi

if [ -z "$driver" ]; then
    command -v ethtool >/dev/null || { echo "nic-setup: ethtool missing; run deploy/install-deps.sh" >&2; exit 1; }
    driver=$(ethtool -i "$ifname" 2>/dev/null | awk '/^driver:/ {print $2}') ||
        { echo "nic-setup: no device $ifname" >&2; exit 1; }
    [ -n "$driver" ] || { echo "nic-setup: no device $ifname" >&2; exit 1; }
fi
if [ $dry -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "nic-setup: must run as root (or use --dry-run)" >&2; exit 1
fi

run() {
    echo "$*"
    if [ $dry -eq 0 ]; then "$@"; fi
}
# A value written to a file (sysfs, procfs), printed as the shell command it is.
put() {
    echo "echo $1 > $2"
    if [ $dry -eq 0 ]; then echo "$1" >"$2"; fi
}
note() { echo "# $*"; }

note "$ifname: driver $driver, $queues queues, engine cores ${core_list[*]:0:$queues}"
case "$driver" in
    veth)
        note "veth: no RSS; a frame arrives on the queue the sender picked, the stack forwards"
        note "veth: native XDP, copy mode only (zero-copy is refused)"
        run ethtool -L "$ifname" rx "$queues" tx "$queues"
        run ethtool -K "$ifname" gro off
        ;;
    ixgbe | i40e | ice | mlx5_core | ena | virtio_net)
        run ethtool -L "$ifname" combined "$queues"
        case "$driver" in
            virtio_net)
                note "virtio_net: RSS only where the device offers VIRTIO_NET_F_RSS; the commands"
                note "below fail harmlessly otherwise and the stack falls back to forwarding"
                ;;
            ena)
                note "ena: the indirection table is configurable; the key only on some instance types"
                ;;
        esac
        run ethtool -X "$ifname" hfunc toeplitz equal "$queues"
        run ethtool -N "$ifname" rx-flow-hash tcp4 sdfn
        run ethtool -K "$ifname" gro off lro off
        case "$driver" in
            ixgbe | i40e | ice | mlx5_core) run ethtool -K "$ifname" ntuple on ;;
        esac
        ;;
    *)
        note "driver $driver: not one of the families in deploy/README.md; generic steps"
        run ethtool -L "$ifname" combined "$queues"
        run ethtool -X "$ifname" equal "$queues"
        run ethtool -K "$ifname" gro off lro off
        ;;
esac

# IRQs of the device's queues go to the cores the engines do not use.
engines=" ${core_list[*]:0:$queues} "
online=${NIC_SETUP_ONLINE:-$(nproc --all 2>/dev/null || echo 1)}
others=()
for ((c = 0; c < online; c++)); do
    [[ "$engines" == *" $c "* ]] || others+=("$c")
done
if [ "$driver" != veth ]; then
    if [ ${#others[@]} -eq 0 ]; then
        note "every core runs an engine: IRQ affinity left as it is"
    else
        housekeeping=$(IFS=,; echo "${others[*]}")
        irqs=()
        if [ -d "/sys/class/net/$ifname/device/msi_irqs" ]; then
            for f in /sys/class/net/"$ifname"/device/msi_irqs/*; do irqs+=("$(basename "$f")"); done
        fi
        if [ ${#irqs[@]} -eq 0 ]; then
            note "IRQs of $ifname: read from /sys/class/net/$ifname/device/msi_irqs when run"
            put "$housekeeping" "/proc/irq/IRQ/smp_affinity_list"
        fi
        for irq in "${irqs[@]}"; do
            put "$housekeeping" "/proc/irq/$irq/smp_affinity_list"
        done
    fi
fi

if [ $busy -eq 1 ]; then
    put 2 "/sys/class/net/$ifname/napi_defer_hard_irqs"
    put 200000 "/sys/class/net/$ifname/gro_flush_timeout"
    note "SO_PREFER_BUSY_POLL is not an engine option yet: the engines spin on their rings"
fi
engines_csv=$(IFS=,; echo "${core_list[*]:0:$queues}")
note "then: Stack::builder().interface(\"$ifname\").cores(vec![$engines_csv]), or xdp-tcp serve --iface $ifname --queues $queues --cores $engines_csv"
