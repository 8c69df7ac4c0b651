// SPDX-License-Identifier: GPL-2.0
/* Benchmark helper: bounce every IPv4 frame back out of the interface it came in on with
 * the MAC addresses swapped (XDP_TX), counting them. On the far end of a veth it keeps a
 * fixed number of frames circulating through the forwarder under test (a closed loop).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} reflected SEC(".maps");

SEC("xdp")
int xpfdp_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];
	__u32 zero = 0;
	__u64 *count;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	count = bpf_map_lookup_elem(&reflected, &zero);
	if (count)
		*count += 1;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
