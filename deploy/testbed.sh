#!/usr/bin/env bash
# veth + netns testbed for the AF_XDP datapath.
#
#   testbed.sh up NAME [--root-ns | --router MTU] [--queues N]
#                                                  create (or complete) the testbed, print key=value lines
#   testbed.sh down NAME [--root-ns]               remove everything `up NAME` made; no error if absent
#
# Layout ("stk" is the stack's end, "peer" the kernel peer that plays the remote host):
#
#   netns NAME-stk (or the root ns with --root-ns)      netns NAME-peer
#     NAMEs  10.203.X.1/24  02:cb:X:00:00:01  <== veth ==>  NAMEp  10.203.X.2/24  02:cb:X:00:00:02
#
# With --router MTU a router namespace sits between them, and the peer is one hop away on a link
# of MTU bytes (the stack's link stays at 1500):
#
#   NAME-stk                    NAME-rtr (forwarding)                               NAME-peer
#     NAMEs 10.203.X.1/24 <==> NAMEr 10.203.X.254/24 | NAMEq 10.204.X.254/24 <==> NAMEp 10.204.X.2/24
#     MTU 1500                 MTU 1500                 MTU MTU                     MTU MTU
#
# The stack's namespace routes 10.204.X.0/24 via 10.203.X.254, the peer's everything via
# 10.204.X.254. The router's kernel answers a DF packet too big for the peer's link with ICMP
# Fragmentation Needed (next-hop MTU = MTU), as a real router does. The peer advertises the MSS of
# a 1500-byte link (route advmss 1460), like a host whose own link is wider than the path: without
# it the peer's SYN would carry MSS MTU-40 and the stack would never send a packet that needs
# path MTU discovery. --router needs the stack's end in a namespace of its own (no --root-ns).
#
# The stack's end keeps a kernel address: the stack shares it with the kernel and owns only the
# ports the XDP program steers, so ping and other ports keep reaching the kernel (XDP_PASS).
#
# --queues N (1..64, direct layout only) gives both ends N receive and N transmit queues. A veth
# frame arrives on the receive queue numbered as the transmit queue the sender picked; the peer
# has no XPS map, so the kernel picks by the socket's flow hash (which a tc-BPF program on the
# peer, bpf/fault.c's scatter switch, randomises per frame to spread one flow over every queue).
# A testbed created with another queue count is re-created.
# X is derived from NAME (override with TESTBED_SUBNET=X, 1..254) so parallel testbeds differ
# even when their stack ends share the root namespace.
#
# Offloads: the kernel peer must put full checksums in what it sends (`tx off`; otherwise veth
# hands us CHECKSUM_PARTIAL frames with an incomplete TCP checksum) and must not send TSO/GSO
# super-frames (in generic XDP mode they arrive whole); GRO is off on every end so every frame
# the XDP program (and the router) sees is one wire frame. Kernel TCP builds GSO packets even
# with gso off and they are split only after the tc egress hook, so gso_max_segs 1 makes the
# kernel build one segment per packet: a tc-BPF fault program (bpf/fault.c) then acts on wire
# frames at egress too. No bpffs is needed: nothing is pinned.
set -euo pipefail

usage() { echo "usage: $0 up|down NAME [--root-ns | --router MTU]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 name=$2 root_ns=0 router_mtu= queues=1
shift 2
while [ $# -gt 0 ]; do
    case "$1" in
        --root-ns) root_ns=1; shift ;;
        --router)
            [ $# -ge 2 ] || usage
            router_mtu=$2; shift 2
            [[ "$router_mtu" =~ ^[0-9]+$ ]] && [ "$router_mtu" -ge 576 ] && [ "$router_mtu" -le 1500 ] ||
                { echo "testbed: --router MTU must be 576..1500" >&2; exit 2; } ;;
        --queues)
            [ $# -ge 2 ] || usage
            queues=$2; shift 2
            [[ "$queues" =~ ^[0-9]+$ ]] && [ "$queues" -ge 1 ] && [ "$queues" -le 64 ] ||
                { echo "testbed: --queues N must be 1..64" >&2; exit 2; } ;;
        *) usage ;;
    esac
done
if [ -n "$router_mtu" ] && [ "$queues" -ne 1 ]; then
    echo "testbed: --queues needs the direct layout (drop --router)" >&2; exit 2
fi
if [ -n "$router_mtu" ] && [ $root_ns -eq 1 ]; then
    echo "testbed: --router needs the stack's end in its own namespace (drop --root-ns)" >&2; exit 2
fi
# Interface names are limited to 15 bytes: NAME + one letter.
[[ "$name" =~ ^[a-zA-Z][a-zA-Z0-9_-]{0,12}$ ]] || { echo "testbed: NAME must be 1-13 of [a-zA-Z0-9_-], starting with a letter" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "testbed: must run as root (needs CAP_NET_ADMIN)" >&2; exit 1; }
for tool in ip ethtool; do
    command -v "$tool" >/dev/null || { echo "testbed: $tool missing; run deploy/install-deps.sh" >&2; exit 1; }
done

ns_stk="$name-stk" ns_peer="$name-peer" ns_rtr="$name-rtr"
if_stk="${name}s" if_peer="${name}p" if_rtr_stk="${name}r" if_rtr_peer="${name}q"
if [ -n "${TESTBED_SUBNET:-}" ]; then
    x=$TESTBED_SUBNET
else
    x=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 254 + 1 ))
fi
hx=$(printf '%02x' "$x")
ip_stk="10.203.$x.1" ip_peer="10.203.$x.2"
mac_stk="02:cb:$hx:00:00:01" mac_peer="02:cb:$hx:00:00:02"
if [ -n "$router_mtu" ]; then
    ip_peer="10.204.$x.2" ip_rtr_stk="10.203.$x.254" ip_rtr_peer="10.204.$x.254"
    mac_rtr_stk="02:cb:$hx:00:00:fe" mac_rtr_peer="02:cb:$hx:00:01:fe"
fi

in_stk() { if [ $root_ns -eq 1 ]; then "$@"; else ip netns exec "$ns_stk" "$@"; fi; }
in_peer() { ip netns exec "$ns_peer" "$@"; }
in_rtr() { ip netns exec "$ns_rtr" "$@"; }
has_ns() { [ -e "/run/netns/$1" ]; }

# Offloads off and one segment per GSO packet (see the top of this file).
offloads() {
    local ns=$1 dev=$2
    ip netns exec "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null
    ip -n "$ns" link set "$dev" gso_max_segs 1
}

# The router namespace and its two links, to the stack's end and to the peer's. A NAME is either
# direct or routed: bring it `down` before switching.
router_up() {
    has_ns "$ns_rtr" || ip netns add "$ns_rtr"
    ip -n "$ns_rtr" link set lo up
    in_rtr sysctl -qw net.ipv4.ip_forward=1
    if ! in_stk ip link show "$if_stk" >/dev/null 2>&1; then
        ip link del "$if_stk" 2>/dev/null || true
        ip -n "$ns_rtr" link del "$if_rtr_stk" 2>/dev/null || true
        ip link add "$if_stk" type veth peer name "$if_rtr_stk"
        ip link set "$if_rtr_stk" netns "$ns_rtr"
        ip link set "$if_stk" netns "$ns_stk"
    fi
    if ! in_rtr ip link show "$if_rtr_peer" >/dev/null 2>&1; then
        ip link del "$if_rtr_peer" 2>/dev/null || true
        ip -n "$ns_peer" link del "$if_peer" 2>/dev/null || true
        ip link add "$if_rtr_peer" type veth peer name "$if_peer"
        ip link set "$if_rtr_peer" netns "$ns_rtr"
        ip link set "$if_peer" netns "$ns_peer"
    fi
    in_rtr ip link set "$if_rtr_stk" address "$mac_rtr_stk" mtu 1500
    in_rtr ip link set "$if_rtr_peer" address "$mac_rtr_peer" mtu "$router_mtu"
    in_peer ip link set "$if_peer" mtu "$router_mtu"
    in_rtr ip addr replace "$ip_rtr_stk/24" dev "$if_rtr_stk"
    in_rtr ip addr replace "$ip_rtr_peer/24" dev "$if_rtr_peer"
    offloads "$ns_rtr" "$if_rtr_stk"
    offloads "$ns_rtr" "$if_rtr_peer"
    in_rtr ip link set "$if_rtr_stk" up
    in_rtr ip link set "$if_rtr_peer" up
}

up() {
    has_ns "$ns_peer" || ip netns add "$ns_peer"
    if [ $root_ns -eq 0 ]; then
        has_ns "$ns_stk" || ip netns add "$ns_stk"
        ip -n "$ns_stk" link set lo up
    fi
    ip -n "$ns_peer" link set lo up
    if [ -n "$router_mtu" ]; then
        router_up
    elif ! in_stk ip link show "$if_stk" >/dev/null 2>&1 ||
        [ "$(in_stk ls -d /sys/class/net/"$if_stk"/queues/rx-* 2>/dev/null | wc -l)" -ne "$queues" ]; then
        # Create the pair in the root ns then move each end, unless a previous `up` already did
        # (with the same queue count).
        in_stk ip link del "$if_stk" 2>/dev/null || true
        ip link del "$if_stk" 2>/dev/null || true
        ip -n "$ns_peer" link del "$if_peer" 2>/dev/null || true
        ip link add "$if_stk" numtxqueues "$queues" numrxqueues "$queues" type veth \
            peer name "$if_peer" numtxqueues "$queues" numrxqueues "$queues"
        ip link set "$if_peer" netns "$ns_peer"
        [ $root_ns -eq 1 ] || ip link set "$if_stk" netns "$ns_stk"
    fi
    in_stk ip link set "$if_stk" address "$mac_stk"
    in_peer ip link set "$if_peer" address "$mac_peer"
    in_stk ip addr replace "$ip_stk/24" dev "$if_stk"
    in_peer ip addr replace "$ip_peer/24" dev "$if_peer"
    in_peer ethtool -K "$if_peer" tx off tso off gso off gro off >/dev/null
    in_stk ethtool -K "$if_stk" tx off tso off gso off gro off >/dev/null
    in_peer ip link set "$if_peer" gso_max_segs 1
    in_stk ip link set "$if_stk" gso_max_segs 1
    in_stk ip link set "$if_stk" up
    in_peer ip link set "$if_peer" up
    if [ -n "$router_mtu" ]; then
        in_stk ip route replace "10.204.$x.0/24" via "$ip_rtr_stk" dev "$if_stk"
        in_peer ip route replace default via "$ip_rtr_peer" dev "$if_peer" advmss 1460
    fi
    local ifindex
    ifindex=$(in_stk cat "/sys/class/net/$if_stk/ifindex")
    if [ $root_ns -eq 1 ]; then echo "ns_stack="; else echo "ns_stack=$ns_stk"; fi
    cat <<KV
ns_peer=$ns_peer
if_stack=$if_stk
if_peer=$if_peer
ifindex_stack=$ifindex
ip_stack=$ip_stk
ip_peer=$ip_peer
prefix_len=24
mac_stack=$mac_stk
mac_peer=$mac_peer
queues=$queues
KV
    if [ -n "$router_mtu" ]; then
        cat <<KV
ns_router=$ns_rtr
if_router_stack=$if_rtr_stk
if_router_peer=$if_rtr_peer
ip_router=$ip_rtr_stk
ip_router_peer=$ip_rtr_peer
mac_router=$mac_rtr_stk
path_mtu=$router_mtu
KV
    fi
}

down() {
    # Deleting one end of a veth deletes the pair; deleting a netns deletes what is inside it.
    if [ $root_ns -eq 1 ]; then ip link del "$if_stk" 2>/dev/null || true; fi
    has_ns "$ns_stk" && ip netns del "$ns_stk"
    has_ns "$ns_rtr" && ip netns del "$ns_rtr"
    has_ns "$ns_peer" && ip netns del "$ns_peer"
    # A netns deletion frees its veth asynchronously; wait (bounded) until the name is gone so an
    # immediate `up NAME` does not collide with it.
    for _ in $(seq 50); do
        ip link show "$if_stk" >/dev/null 2>&1 || break
        sleep 0.02
    done
    return 0
}

case "$cmd" in
    up) up ;;
    down) down ;;
    *) usage ;;
esac
