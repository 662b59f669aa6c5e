#!/usr/bin/env bash
# veth + netns testbed for the AF_XDP datapath.
#
#   testbed.sh up NAME [--root-ns]   create (or complete) the testbed, print key=value lines
#   testbed.sh down NAME [--root-ns] remove everything `up NAME` made; no error if absent
#
# Layout ("stk" is the stack's end, "peer" the kernel peer that plays the remote host):
#
#   netns NAME-stk (or the root ns with --root-ns)      netns NAME-peer
#     NAMEs  10.203.X.1/24  02:cb:X:00:00:01  <== veth ==>  NAMEp  10.203.X.2/24  02:cb:X:00:00:02
#
# The stack's end keeps a kernel address: the stack shares it with the kernel and owns only the
# ports the XDP program steers, so ping and other ports keep reaching the kernel (XDP_PASS).
# X is derived from NAME (override with TESTBED_SUBNET=X, 1..254) so parallel testbeds differ
# even when their stack ends share the root namespace.
#
# Offloads: the kernel peer must put full checksums in what it sends (`tx off`; otherwise veth
# hands us CHECKSUM_PARTIAL frames with an incomplete TCP checksum) and must not send TSO/GSO
# super-frames (in generic XDP mode they arrive whole); GRO is off on both ends so every frame
# the XDP program sees is one wire frame. Kernel TCP builds GSO packets even with gso off and
# they are split only after the tc egress hook, so gso_max_segs 1 makes the kernel build one
# segment per packet: a tc-BPF fault program (bpf/fault.c) then acts on wire frames at egress too.
# No bpffs is needed: nothing is pinned.
set -euo pipefail

usage() { echo "usage: $0 up|down NAME [--root-ns]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 name=$2 root_ns=0
[ "${3:-}" = "--root-ns" ] && root_ns=1
# Interface names are limited to 15 bytes: NAME + one letter.
[[ "$name" =~ ^[a-zA-Z][a-zA-Z0-9_-]{0,12}$ ]] || { echo "testbed: NAME must be 1-13 of [a-zA-Z0-9_-], starting with a letter" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "testbed: must run as root (needs CAP_NET_ADMIN)" >&2; exit 1; }
for tool in ip ethtool; do
    command -v "$tool" >/dev/null || { echo "testbed: $tool missing; run deploy/install-deps.sh" >&2; exit 1; }
done

ns_stk="$name-stk" ns_peer="$name-peer" if_stk="${name}s" if_peer="${name}p"
if [ -n "${TESTBED_SUBNET:-}" ]; then
    x=$TESTBED_SUBNET
else
    x=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 254 + 1 ))
fi
hx=$(printf '%02x' "$x")
ip_stk="10.203.$x.1" ip_peer="10.203.$x.2"
mac_stk="02:cb:$hx:00:00:01" mac_peer="02:cb:$hx:00:00:02"

in_stk() { if [ $root_ns -eq 1 ]; then "$@"; else ip netns exec "$ns_stk" "$@"; fi; }
in_peer() { ip netns exec "$ns_peer" "$@"; }
has_ns() { [ -e "/run/netns/$1" ]; }

up() {
    has_ns "$ns_peer" || ip netns add "$ns_peer"
    if [ $root_ns -eq 0 ]; then
        has_ns "$ns_stk" || ip netns add "$ns_stk"
        ip -n "$ns_stk" link set lo up
    fi
    ip -n "$ns_peer" link set lo up
    # Create the pair in the root ns then move each end, unless a previous `up` already did.
    if ! in_stk ip link show "$if_stk" >/dev/null 2>&1; then
        ip link del "$if_stk" 2>/dev/null || true
        ip -n "$ns_peer" link del "$if_peer" 2>/dev/null || true
        ip link add "$if_stk" type veth peer name "$if_peer"
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
KV
}

down() {
    # Deleting one end of a veth deletes the pair; deleting a netns deletes what is inside it.
    if [ $root_ns -eq 1 ]; then ip link del "$if_stk" 2>/dev/null || true; fi
    has_ns "$ns_stk" && ip netns del "$ns_stk"
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
