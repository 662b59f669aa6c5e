// SPDX-License-Identifier: MIT OR Apache-2.0
//
// XDP steering program for xdp-tcp.
//
// Redirects to the AF_XDP socket of the receiving queue (xsks_map[rx_queue_index]) only the
// frames the user-space stack owns; everything else is XDP_PASS, so the host keeps SSH, ping and
// every port the stack does not own. Owned means:
//   - IPv4 TCP to steer_cfg.addr whose destination port is in listen_ports or inside the
//     ephemeral range [eph_lo, eph_hi];
//   - ICMP destination-unreachable / time-exceeded to steer_cfg.addr quoting a TCP segment that
//     we sent (inner source = our address, inner source port owned as above);
//   - ARP requests and replies whose target IP is our address, only with STEER_F_ARP set.
// Fragments are never redirected: the stack does not reassemble.
//
// The layouts of steer_config and steer_stats are mirrored in src/io/xdp/program.rs; change both
// together.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define STEER_F_ARP (1u << 0)

/* <linux/icmp.h> drags in libc socket headers that do not build for the BPF target. */
#define ICMP_DEST_UNREACH  3
#define ICMP_TIME_EXCEEDED 11
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest; /* unused for the error types we look at */
};

struct steer_config {
	__u32 addr;   /* our IPv4 address, network byte order; 0 steers nothing */
	__u16 eph_lo; /* ephemeral port range, host byte order, inclusive; lo > hi = none */
	__u16 eph_hi;
	__u32 flags;  /* STEER_F_* */
	__u32 _pad;
};

/* One u64 per verdict reason, per receive queue (the engine that serves it) and per CPU,
 * summed by user space. Queues past STEER_QUEUES - 1 share the last entry. */
#define STEER_QUEUES 64
struct steer_stats {
	__u64 redirect_tcp;
	__u64 redirect_icmp;
	__u64 redirect_arp;
	__u64 redirect_failed; /* ours, but no socket in xsks_map for this queue: passed */
	__u64 pass_not_ours;   /* other ethertype, protocol, address */
	__u64 pass_port;       /* TCP (or quoted TCP) to our address on a port we do not own */
	__u64 pass_fragment;
	__u64 pass_malformed;  /* truncated or inconsistent headers */
	__u64 pass_unconfigured;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64); /* user space sets it to the device's queue count before load */
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} steer_cfg SEC(".maps");

/* Listening ports, host byte order; the value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} listen_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_QUEUES);
	__type(key, __u32);
	__type(value, struct steer_stats);
} steer_stats SEC(".maps");

#define ETH_P_ARP_BE  bpf_htons(ETH_P_ARP)
#define ETH_P_IP_BE   bpf_htons(ETH_P_IP)
#define IP_FRAG_MASK  bpf_htons(0x3fff) /* MF flag | fragment offset */

/* Ethernet/IPv4 ARP body, after the Ethernet header. */
struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

enum verdict {
	V_TCP,
	V_ICMP,
	V_ARP,
	V_NOT_OURS,
	V_PORT,
	V_FRAGMENT,
	V_MALFORMED,
	V_UNCONFIGURED,
};

static __always_inline int port_owned(const struct steer_config *cfg, __u16 port)
{
	if (port >= cfg->eph_lo && port <= cfg->eph_hi)
		return 1;
	return bpf_map_lookup_elem(&listen_ports, &port) != NULL;
}

static __always_inline enum verdict classify_arp(const struct steer_config *cfg, void *l3,
						 void *data_end)
{
	struct arp_eth_ipv4 *arp = l3;
	__u32 tpa;

	if (!(cfg->flags & STEER_F_ARP))
		return V_NOT_OURS;
	if ((void *)(arp + 1) > data_end)
		return V_MALFORMED;
	if (arp->htype != bpf_htons(1) || arp->ptype != ETH_P_IP_BE || arp->hlen != 6 ||
	    arp->plen != 4)
		return V_NOT_OURS;
	if (arp->op != bpf_htons(1) && arp->op != bpf_htons(2))
		return V_NOT_OURS;
	__builtin_memcpy(&tpa, arp->tpa, 4);
	return tpa == cfg->addr ? V_ARP : V_NOT_OURS;
}

/* The ICMP error quotes the IPv4 header and at least 8 bytes of what we sent. */
static __always_inline enum verdict classify_icmp(const struct steer_config *cfg, void *l4,
						  void *data_end)
{
	struct icmp_hdr *icmp = l4;
	struct iphdr *inner;
	struct tcphdr *tcp;
	__u32 ihl;

	if ((void *)(icmp + 1) > data_end)
		return V_MALFORMED;
	if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
		return V_NOT_OURS;
	inner = (void *)(icmp + 1);
	if ((void *)(inner + 1) > data_end)
		return V_MALFORMED;
	if (inner->version != 4 || inner->ihl < 5)
		return V_MALFORMED;
	if (inner->protocol != IPPROTO_TCP || inner->saddr != cfg->addr)
		return V_NOT_OURS;
	if (inner->frag_off & bpf_htons(0x1fff))
		return V_FRAGMENT; /* a non-first fragment quotes no ports */
	ihl = inner->ihl * 4;
	tcp = (void *)inner + ihl;
	/* Only the ports are guaranteed to be quoted (RFC 792: 64 bits of the datagram). */
	if ((void *)tcp + 4 > data_end)
		return V_MALFORMED;
	return port_owned(cfg, bpf_ntohs(tcp->source)) ? V_ICMP : V_PORT;
}

static __always_inline enum verdict classify_ipv4(const struct steer_config *cfg, void *l3,
						  void *data_end)
{
	struct iphdr *ip = l3;
	struct tcphdr *tcp;
	__u32 ihl;

	if ((void *)(ip + 1) > data_end)
		return V_MALFORMED;
	if (ip->daddr != cfg->addr)
		return V_NOT_OURS;
	if (ip->version != 4 || ip->ihl < 5)
		return V_MALFORMED;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_ICMP)
		return V_NOT_OURS;
	if (ip->frag_off & IP_FRAG_MASK)
		return V_FRAGMENT;
	ihl = ip->ihl * 4;
	if (l3 + ihl > data_end)
		return V_MALFORMED;
	if (ip->protocol == IPPROTO_ICMP)
		return classify_icmp(cfg, l3 + ihl, data_end);

	tcp = l3 + ihl;
	if ((void *)(tcp + 1) > data_end)
		return V_MALFORMED;
	return port_owned(cfg, bpf_ntohs(tcp->dest)) ? V_TCP : V_PORT;
}

static __always_inline enum verdict classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	const struct steer_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&steer_cfg, &zero);
	if (!cfg || cfg->addr == 0)
		return V_UNCONFIGURED;
	if ((void *)(eth + 1) > data_end)
		return V_MALFORMED;
	if (eth->h_proto == ETH_P_IP_BE)
		return classify_ipv4(cfg, eth + 1, data_end);
	if (eth->h_proto == ETH_P_ARP_BE)
		return classify_arp(cfg, eth + 1, data_end);
	return V_NOT_OURS;
}

SEC("xdp")
int xdp_steer(struct xdp_md *ctx)
{
	__u32 q = ctx->rx_queue_index < STEER_QUEUES ? ctx->rx_queue_index : STEER_QUEUES - 1;
	struct steer_stats *st = bpf_map_lookup_elem(&steer_stats, &q);
	enum verdict v = classify(ctx);
	long action;

	if (!st)
		return XDP_PASS; /* cannot happen for an array map; keeps the verifier happy */

	switch (v) {
	case V_TCP:
	case V_ICMP:
	case V_ARP:
		/* With XDP_PASS as the fallback, a queue without a socket hands the frame to
		 * the kernel instead of dropping it. */
		action = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
		if (action != XDP_REDIRECT) {
			st->redirect_failed++;
			return XDP_PASS;
		}
		if (v == V_TCP)
			st->redirect_tcp++;
		else if (v == V_ICMP)
			st->redirect_icmp++;
		else
			st->redirect_arp++;
		return XDP_REDIRECT;
	case V_PORT:
		st->pass_port++;
		break;
	case V_FRAGMENT:
		st->pass_fragment++;
		break;
	case V_MALFORMED:
		st->pass_malformed++;
		break;
	case V_UNCONFIGURED:
		st->pass_unconfigured++;
		break;
	default:
		st->pass_not_ours++;
		break;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
