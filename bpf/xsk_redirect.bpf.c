// SPDX-License-Identifier: GPL-2.0
/* Redirect every frame to the AF_XDP socket bound to its RX queue, except what the
 * kernel must keep: ARP, IPv6 neighbour discovery, optionally packets for the host itself
 * (ctrl local_delivery: its addresses in local_addrs, IP multicast and broadcast, IPv6
 * link-local destinations; ports of those addresses in fwd_ports stay with the socket) and
 * all non-IP traffic, and frames on a queue that has no socket.
 * No CO-RE: only UAPI headers are used.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XPFDP_LOCAL_MAX);
	__type(key, struct xpfdp_local_key);
	__type(value, struct xpfdp_local_value);
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XPFDP_FWD_MAX);
	__type(key, struct xpfdp_fwd_key);
	__type(value, __u32);       /* unused: presence is what counts */
} fwd_ports SEC(".maps");

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

enum { TO_SOCKET = 0, TO_KERNEL_LOCAL = 1, TO_KERNEL_MCAST = 2, TO_SOCKET_FORWARD = 3 };

static __always_inline int in_range(__u16 port, const struct xpfdp_local_value *nat)
{
	return port >= nat->nat_port_lo && port <= nat->nat_port_hi;
}

/* 1 for the ICMP/ICMPv6 error types, which quote the packet they are about. */
static __always_inline int is_icmp_error(__u8 type, int v6)
{
	return v6 ? type >= 1 && type <= 4
		  : type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

/* The transport header of the TCP/UDP packet an ICMP error quotes at `q` (its ports
 * readable), NULL when the quote is something else or cut short; *proto gets its protocol. */
static __always_inline void *quoted_l4(void *q, void *end, int v6, __u8 *proto)
{
	void *l4;

	if (v6) {
		struct ipv6hdr *ip6 = q;

		if ((void *)(ip6 + 1) > end)
			return NULL;
		*proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		struct iphdr *ip = q;

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return NULL;
		*proto = ip->protocol;
		l4 = q + ip->ihl * 4;
	}
	if (*proto != IPPROTO_TCP && *proto != IPPROTO_UDP)
		return NULL;
	if (l4 + 4 > end)
		return NULL;
	return l4;
}

/* TO_KERNEL_LOCAL when an ICMP error quotes a TCP/UDP packet the host itself sent (its
 * source port outside the NAT range), TO_SOCKET otherwise (it may belong to a NAT flow). */
static __always_inline int quoted_owner(void *q, void *end, int v6,
					const struct xpfdp_local_value *nat)
{
	__u8 proto;
	void *l4 = quoted_l4(q, end, v6, &proto);

	if (!l4)
		return TO_SOCKET;
	return in_range(bpf_ntohs(*(__u16 *)l4), nat) ? TO_SOCKET : TO_KERNEL_LOCAL;
}

/* 1 when (local address, protocol, port in network order) is in fwd_ports. */
static __always_inline int forwarded(const struct xpfdp_local_key *local, __u8 proto,
				     __u16 port_be)
{
	struct xpfdp_fwd_key key = {};

	key.family = local->family;
	key.proto = proto;
	key.port = bpf_ntohs(port_be);
	__builtin_memcpy(key.addr, local->addr, 16);
	return bpf_map_lookup_elem(&fwd_ports, &key) != NULL;
}

/* 1 when a packet to a host address belongs to a port forward on it: TCP/UDP to a
 * forwarded destination port, or an ICMP error quoting a TCP/UDP packet sent from one. */
static __always_inline int port_forwarded(void *l4, void *end, __u8 proto, int v6,
					  const struct xpfdp_local_key *local)
{
	__u8 qproto;
	void *q;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if (l4 + 4 > end)
			return 0;
		return forwarded(local, proto, *(__u16 *)(l4 + 2));
	}
	if (proto != (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) || l4 + 8 > end)
		return 0;
	if (!is_icmp_error(*(__u8 *)l4, v6))
		return 0;
	q = quoted_l4(l4 + 8, end, v6, &qproto);
	return q && forwarded(local, qproto, *(__u16 *)q);
}

/* Where an IP packet addressed to one of the host's addresses that is also a NAT address
 * belongs: replies to translated flows stay with the forwarder, the rest is the host's. */
static __always_inline int nat_owner(void *l4, void *end, __u8 proto, int v6,
				     const struct xpfdp_local_value *nat)
{
	__u8 type;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if (l4 + 4 > end)
			return TO_SOCKET;
		return in_range(bpf_ntohs(*(__u16 *)(l4 + 2)), nat) ? TO_SOCKET : TO_KERNEL_LOCAL;
	}
	if (proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) {
		if (l4 + 8 > end)
			return TO_SOCKET;
		type = *(__u8 *)l4;
		if (type == (v6 ? 128 : 8))        /* echo request: the host answers */
			return TO_KERNEL_LOCAL;
		if (is_icmp_error(type, v6))
			return quoted_owner(l4 + 8, end, v6, nat);
		return TO_SOCKET;                  /* echo replies and the rest: NAT flows */
	}
	/* IPv6 extension headers hide the transport header: the forwarder decides. */
	if (v6 && (proto == 0 || proto == 43 || proto == 44 || proto == 60))
		return TO_SOCKET;
	return TO_KERNEL_LOCAL;
}

/* Whether an IPv4/IPv6 packet is for the host itself (TO_KERNEL_*) or to forward. */
static __always_inline int local_owner(void *l3, void *end, int v6)
{
	struct xpfdp_local_key key = {};
	struct xpfdp_local_value *nat;
	void *l4;
	__u8 proto;
	int ports_visible;

	if (v6) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return TO_SOCKET;
		if (ip6->daddr.s6_addr[0] == 0xff ||
		    (ip6->daddr.s6_addr[0] == 0xfe && (ip6->daddr.s6_addr[1] & 0xc0) == 0x80))
			return TO_KERNEL_MCAST;      /* multicast, link-local: never forwarded */
		key.family = 6;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return TO_SOCKET;
		if ((bpf_ntohl(ip->daddr) >> 28) == 0xe || ip->daddr == 0xffffffff)
			return TO_KERNEL_MCAST;      /* multicast, limited broadcast */
		key.family = 4;
		__builtin_memcpy(key.addr, &ip->daddr, 4);
		proto = ip->protocol;
		l4 = l3 + ip->ihl * 4;
	}
	nat = bpf_map_lookup_elem(&local_addrs, &key);
	if (!nat)
		return TO_SOCKET;
	/* an IPv4 non-first fragment carries no ports */
	ports_visible = v6 || !(((struct iphdr *)l3)->frag_off & bpf_htons(0x1fff));
	if (ports_visible && port_forwarded(l4, end, proto, v6, &key))
		return TO_SOCKET_FORWARD;
	if (!nat->nat_port_hi)
		return TO_KERNEL_LOCAL;
	if (!ports_visible)
		return TO_SOCKET;                  /* the forwarder matches it to its first */
	return nat_owner(l4, end, proto, v6, nat);
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
	int owner;

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
		owner = ctrl->local_delivery ? local_owner(l3, end, 1) : TO_SOCKET;
	} else if (proto == bpf_htons(ETH_P_IP)) {
		owner = ctrl->local_delivery ? local_owner(l3, end, 0) : TO_SOCKET;
	} else if (ctrl->pass_non_ip) {
		return count(XPFDP_CNT_PASS_NON_IP, XDP_PASS);
	} else {
		owner = TO_SOCKET;
	}
	if (owner == TO_KERNEL_LOCAL)
		return count(XPFDP_CNT_PASS_LOCAL, XDP_PASS);
	if (owner == TO_KERNEL_MCAST)
		return count(XPFDP_CNT_PASS_MCAST, XDP_PASS);
	if (owner == TO_SOCKET_FORWARD)
		count(XPFDP_CNT_PORT_FORWARD, 0);
	action = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	if (action == XDP_REDIRECT)
		return count(XPFDP_CNT_REDIRECTED, XDP_REDIRECT);
	return count(XPFDP_CNT_NO_SOCKET, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
