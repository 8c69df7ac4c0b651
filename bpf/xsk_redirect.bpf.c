// SPDX-License-Identifier: GPL-2.0
/* Redirect every frame to the AF_XDP socket bound to its RX queue, except what the
 * kernel must keep: ARP, IPv6 neighbour discovery, optionally all non-IP traffic, and
 * frames on a queue that has no socket. No CO-RE: only UAPI headers are used.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xsk_abi.h"

#define VLAN_HLEN 4

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XPFDP_XSK_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xpfdp_xsk_ctrl);
} xsk_ctrl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XPFDP_CNT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} xsk_counters SEC(".maps");

/* Read by the loader from .rodata before load and compared with the extension's. */
const volatile __u32 xpfdp_abi_version = XPFDP_XSK_ABI_VERSION;

static __always_inline int count(__u32 idx, int action)
{
	__u64 *slot = bpf_map_lookup_elem(&xsk_counters, &idx);

	if (slot)
		*slot += 1;
	return action;
}

/* 1 when the frame is ICMPv6 neighbour discovery (router/neighbour solicit/advert, redirect). */
static __always_inline int is_ndp(void *l3, void *end)
{
	struct ipv6hdr *ip6 = l3;
	struct icmp6hdr *icmp;

	if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_ICMPV6)
		return 0;
	icmp = (void *)(ip6 + 1);
	if ((void *)(icmp + 1) > end)
		return 0;
	return icmp->icmp6_type >= 133 && icmp->icmp6_type <= 137;
}

SEC("xdp")
int xpfdp_xsk_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;
	struct xpfdp_xsk_ctrl *ctrl = bpf_map_lookup_elem(&xsk_ctrl, &zero);
	void *l3;
	__u16 proto;
	long action;

	if (!ctrl || !ctrl->redirect || ctrl->abi_version != xpfdp_abi_version)
		return count(XPFDP_CNT_PASS_OFF, XDP_PASS);
	if ((void *)(eth + 1) > end)
		return count(XPFDP_CNT_PASS_NON_IP, XDP_PASS);
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		if (l3 + VLAN_HLEN > end)
			return count(XPFDP_CNT_PASS_NON_IP, XDP_PASS);
		proto = *(__u16 *)(l3 + 2);
		l3 += VLAN_HLEN;
	}
	if (proto == bpf_htons(ETH_P_ARP))
		return count(XPFDP_CNT_PASS_ARP, XDP_PASS);
	if (proto == bpf_htons(ETH_P_IPV6)) {
		if (is_ndp(l3, end))
			return count(XPFDP_CNT_PASS_ND, XDP_PASS);
	} else if (proto != bpf_htons(ETH_P_IP) && ctrl->pass_non_ip) {
		return count(XPFDP_CNT_PASS_NON_IP, XDP_PASS);
	}
	action = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	if (action == XDP_REDIRECT)
		return count(XPFDP_CNT_REDIRECTED, XDP_REDIRECT);
	return count(XPFDP_CNT_NO_SOCKET, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
