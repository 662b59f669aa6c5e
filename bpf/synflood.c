// SPDX-License-Identifier: MIT OR Apache-2.0
//
// SYN flood generator for xdp-tcp's test harness, run with BPF_PROG_TEST_RUN in live-frames
// mode (BPF_F_TEST_XDP_LIVE_FRAMES): the kernel runs this program `repeat` times on a template
// frame (Ethernet, IPv4, TCP SYN with a 40-byte header) and transmits each result out of the
// device named as the run's ingress device (XDP_TX). No socket, no skb: on a veth the frame goes
// straight into the other end's XDP receive path as an XDP frame, as a NIC's receive would,
// instead of costing the sending core the raw-socket route, neighbour and skb work.
//
// Each run writes a random source address inside the configured subnet (never its network or
// broadcast address, never `avoid`), a random source port from 1024 up and a random ISN, and
// computes both checksums from scratch (the kernel recycles the frame's page between runs, so
// nothing of a previous run may be assumed).
//
// The layout of synflood_config is mirrored in src/io/synflood_bpf.rs; change both together.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The template's TCP header length: 20 bytes and MSS, SACK-permitted, timestamps, window scale. */
#define TCP_LEN 40

struct synflood_config {
	__u32 net;   /* the subnet's network address, host order */
	__u32 span;  /* host addresses in it: 2^host_bits - 2, at least 1 */
	__u32 avoid; /* never a source (the target), host order */
	__u32 ifindex; /* the device the flood leaves by: the test runs' ingress device */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct synflood_config);
} synflood_cfg SEC(".maps");

/* Frames written and handed to XDP_TX, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} synflood_sent SEC(".maps");

struct pseudo_header {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 protocol;
	__be16 len;
};

static __always_inline __u16 fold(__s64 sum)
{
	__u64 s = (__u64)sum & 0xffffffffULL;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

SEC("xdp")
int xdp_synflood(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u32 key = 0;

	struct synflood_config *cfg = bpf_map_lookup_elem(&synflood_cfg, &key);
	/* Attached to a device (only so that test runs find the program already in the kernel's
	 * XDP dispatcher, see src/io/synflood_bpf.rs), it leaves that device's frames alone: the
	 * first test, before any length check, or that device's short frames (a pure ACK) would
	 * be aborted, that is dropped. */
	if (!cfg || ctx->ingress_ifindex != cfg->ifindex)
		return XDP_PASS;
	if ((void *)tcp + TCP_LEN > end || cfg->span == 0)
		return XDP_ABORTED;

	__u32 host = 1 + bpf_get_prandom_u32() % cfg->span;
	__u32 src = cfg->net + host;
	if (src == cfg->avoid) /* the next host address, wrapping inside the subnet */
		src = cfg->net + 1 + host % cfg->span;
	ip->saddr = bpf_htonl(src);
	ip->check = 0;
	ip->check = fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));

	tcp->source = bpf_htons(1024 + bpf_get_prandom_u32() % 64000);
	tcp->seq = bpf_get_prandom_u32();
	tcp->check = 0;
	struct pseudo_header ph = {
		.saddr = ip->saddr,
		.daddr = ip->daddr,
		.zero = 0,
		.protocol = IPPROTO_TCP,
		.len = bpf_htons(TCP_LEN),
	};
	__s64 sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)tcp, TCP_LEN, (__u32)sum);
	tcp->check = fold(sum);

	__u64 *sent = bpf_map_lookup_elem(&synflood_sent, &key);
	if (sent)
		*sent += 1;
	return XDP_TX;
}

char _license[] SEC("license") = "Dual MIT/GPL";
