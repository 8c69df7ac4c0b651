// SPDX-License-Identifier: GPL-2.0
/* Benchmark helper for the firewall closed loop: answer every IPv4/UDP frame by sending it
 * back out of the interface it came in on as the reply -- MACs, IP addresses and UDP ports
 * swapped, TTL reset to 64 (IP checksum updated incrementally, RFC 1624). Swapping
 * addresses and ports leaves both checksums valid: one's-complement sums commute.
 * On the client and server ends of the firewall it keeps frames circulating through NAT in
 * both directions: client -> server (SNAT) -> reply -> client (un-NAT) -> request again.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TTL_RESET 64

SEC("xdp")
int xpfdp_answer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	unsigned char mac[ETH_ALEN];
	__u32 addr, sum;
	__u16 port, old_word, new_word;

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	/* TTL shares a 16-bit word with the protocol: HC' = ~(~HC + ~m + m') */
	old_word = bpf_htons((__u16)ip->ttl << 8 | ip->protocol);
	ip->ttl = TTL_RESET;
	new_word = bpf_htons((__u16)ip->ttl << 8 | ip->protocol);
	sum = (__u16)~ip->check + (__u16)~old_word + new_word;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
