// SPDX-License-Identifier: MIT OR Apache-2.0
//
// tc-BPF fault injector for xdp-tcp tests: there is no netem on the test machines, so loss (and
// duplication) on a real link comes from this program, attached to the kernel peer's veth at
// tcx ingress and egress.
//
// Only IPv4 TCP is touched; ARP, ICMP and everything else pass and are counted as `other`.
// Per direction (index 0 = ingress, 1 = egress) a TCP frame is dropped with probability
// drop_thresh / 2^32, else duplicated with probability dup_thresh / 2^32 by cloning it back into
// the same hook direction (bpf_clone_redirect). The clone carries DUP_MARK in skb->mark so that
// when it comes through this program again it passes untouched (counted as `clones_seen`)
// instead of being dropped or cloned again; the original's mark is restored.
//
// A drop must look like loss on the wire: the sender must not learn of it. At ingress TC_ACT_SHOT
// does that (the sender is on the other end of the link). At egress it does not: the kernel
// reports TC_ACT_SHOT to the sending socket as NET_XMIT_DROP, and TCP then treats the segment as
// never sent and sends it again at its next chance, without a retransmission, so the receiver
// never sees a gap. TC_ACT_STOLEN, which classic tc reports as success, is no verdict for tcx
// programs: tcx_action_code() turns it into TCX_NEXT and the frame goes out. So an egress drop
// returns TC_ACT_REDIRECT towards ifindex 0, which never names a device: skb_do_redirect() frees
// the frame and sch_handle_egress() reports NET_XMIT_SUCCESS whatever the redirect did. The
// sender believes the frame left; it must find the loss and retransmit (TcpRetransSegs rises).
//
// `dropped_seq` counts the dropped frames that occupy sequence space (payload, SYN or FIN): each
// one is a segment the sender has to retransmit, which tests compare with its TcpRetransSegs.
//
// The layouts of fault_config and fault_stats are mirrored in src/io/fault_bpf.rs; change both
// together. Kernel TCP builds GSO packets even with gso off on the device, and they are split
// after the egress hook: set `gso_max_segs 1` on the device (deploy/testbed.sh does) or one
// "frame" at egress is a burst of segments (counted in super_frames).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DIR_INGRESS 0
#define DIR_EGRESS  1
/* "xdpF"; any value the test machines do not otherwise use for skb->mark. */
#define DUP_MARK 0x78647046u

struct fault_config {
	__u64 drop_thresh; /* probability * 2^32, in [0, 2^32] */
	__u64 dup_thresh;
};

struct fault_stats {
	__u64 passed;       /* TCP frames let through (duplicated ones included) */
	__u64 dropped;
	__u64 duplicated;   /* clones made */
	__u64 clone_failed; /* bpf_clone_redirect errors */
	__u64 clones_seen;  /* our clones coming through the hook: passed untouched */
	__u64 other;        /* not IPv4 TCP: passed untouched */
	__u64 super_frames; /* TCP frames that were GSO packets of several segments (also counted
			     * above): non-zero means faults hit bursts, not wire frames */
	__u64 dropped_seq;  /* dropped frames with payload, SYN or FIN (also in `dropped`) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct fault_config);
} fault_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct fault_stats);
} fault_stats SEC(".maps");

/* Egress only: non-zero gives every TCP frame a random skb->hash. The egress hook runs before
 * the kernel picks the transmit queue; with no XPS map that pick is skb_tx_hash() of this hash
 * whenever the socket may change queue (nothing of it in flight below the stack, ooo_okay), so a
 * multi-queue veth scatters one flow's frames over its queues, and the receiving end sees them
 * on its matching receive queues. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} scatter_cfg SEC(".maps");

static __always_inline int is_ipv4_tcp(struct __sk_buff *skb)
{
	__u8 proto;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	/* bpf_skb_load_bytes also works when the header is not in the linear part. */
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, protocol), &proto, 1))
		return 0;
	return proto == IPPROTO_TCP;
}

/* Whether an IPv4 TCP frame occupies sequence space: payload, SYN or FIN. */
static __always_inline int carries_sequence(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct tcphdr tcp;
	__u32 ihl, doff, len;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return 0;
	ihl = ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + ihl, &tcp, sizeof(tcp)))
		return 0;
	if (tcp.syn || tcp.fin)
		return 1;
	doff = tcp.doff * 4;
	len = bpf_ntohs(ip.tot_len);
	return len > ihl + doff;
}

/* The egress drop the sender cannot see (see the top of this file). */
static __always_inline int drop_silently(int egress)
{
	if (!egress)
		return TC_ACT_SHOT;
	return bpf_redirect(0, 0);
}

static __always_inline int fault(struct __sk_buff *skb, __u32 dir, __u64 redirect_flags)
{
	struct fault_config *cfg = bpf_map_lookup_elem(&fault_cfg, &dir);
	struct fault_stats *st = bpf_map_lookup_elem(&fault_stats, &dir);
	__u32 mark;

	if (!cfg || !st)
		return TC_ACT_OK; /* cannot happen for array maps; keeps the verifier happy */
	if (skb->mark == DUP_MARK) {
		skb->mark = 0;
		st->clones_seen++;
		return TC_ACT_OK;
	}
	if (!is_ipv4_tcp(skb)) {
		st->other++;
		return TC_ACT_OK;
	}
	if (skb->gso_segs > 1)
		st->super_frames++;
	if (dir == DIR_EGRESS) {
		__u32 zero = 0;
		__u32 *scatter = bpf_map_lookup_elem(&scatter_cfg, &zero);

		if (scatter && *scatter)
			bpf_set_hash(skb, bpf_get_prandom_u32());
	}
	if ((__u64)bpf_get_prandom_u32() < cfg->drop_thresh) {
		st->dropped++;
		if (carries_sequence(skb))
			st->dropped_seq++;
		return drop_silently(dir == DIR_EGRESS);
	}
	if ((__u64)bpf_get_prandom_u32() < cfg->dup_thresh) {
		mark = skb->mark;
		skb->mark = DUP_MARK;
		if (bpf_clone_redirect(skb, skb->ifindex, redirect_flags))
			st->clone_failed++;
		else
			st->duplicated++;
		skb->mark = mark;
	}
	st->passed++;
	return TC_ACT_OK;
}

SEC("tcx/ingress")
int fault_ingress(struct __sk_buff *skb)
{
	return fault(skb, DIR_INGRESS, BPF_F_INGRESS);
}

SEC("tcx/egress")
int fault_egress(struct __sk_buff *skb)
{
	return fault(skb, DIR_EGRESS, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
