/* Contract between bpf/xsk_redirect.bpf.c and the xpfdp extension (xsk.pyx, xpfdp.bpf).
 *
 * Both sides include this header; the loader refuses an object whose embedded
 * version differs from the extension's, and the program redirects only while the
 * ctrl map carries the same version, so a stale object or a stale extension falls
 * back to the kernel instead of misbehaving.
 */
#ifndef XPFDP_XSK_ABI_H
#define XPFDP_XSK_ABI_H

#ifndef XPFDP_XSK_ABI_VERSION
#define XPFDP_XSK_ABI_VERSION 3
#endif

/* Keys of the XSKMAP are RX queue indexes below this bound. */
#define XPFDP_XSK_MAX_QUEUES 64

/* ctrl map (ARRAY, one entry) value. */
struct xpfdp_xsk_ctrl {
	unsigned int abi_version;  /* must equal XPFDP_XSK_ABI_VERSION to redirect */
	unsigned int redirect;     /* 0: everything goes to the kernel */
	unsigned int pass_non_ip;  /* 1: frames that are neither IPv4 nor IPv6 go to the kernel */
	unsigned int local_delivery; /* 1: packets for the host itself go to the kernel */
};

/* Capacity of the local address map (every address of the host, both families). */
#define XPFDP_LOCAL_MAX 1024

/* local_addrs map key: one of the host's own addresses (IPv4 in the first 4 bytes). */
struct xpfdp_local_key {
	unsigned char family;      /* 4 or 6 */
	unsigned char pad[3];
	unsigned char addr[16];
};

/* local_addrs map value. An address the forwarder also uses for SNAT keeps replies to
 * its translated flows: TCP/UDP to a destination port in [nat_port_lo, nat_port_hi],
 * ICMP other than echo requests (errors whose quoted source port is outside the range
 * excepted), non-first fragments and IPv6 packets with extension headers go to the
 * AF_XDP socket; everything else addressed to it goes to the kernel. nat_port_hi == 0:
 * not a NAT address, everything goes to the kernel. */
struct xpfdp_local_value {
	unsigned short nat_port_lo;
	unsigned short nat_port_hi;
	unsigned int reserved;
};

/* Capacity of the forwarded port map (local address, protocol and port triples). */
#define XPFDP_FWD_MAX 4096

/* fwd_ports map key: a TCP/UDP port of one of the host's own addresses that a port forward
 * (DNAT) owns. With local delivery on, a packet to that address and destination port (and
 * an ICMP error quoting a packet from it) goes to the AF_XDP socket even when the address
 * is not a NAT address or the port is outside its SNAT range. 20 bytes, no implicit
 * padding. */
struct xpfdp_fwd_key {
	unsigned char family;      /* 4 or 6 */
	unsigned char proto;       /* IPPROTO_TCP or IPPROTO_UDP */
	unsigned short port;       /* destination port, host byte order */
	unsigned char addr[16];    /* IPv4 in the first 4 bytes, the rest zero */
};

/* Indexes of the per-CPU counter array. */
enum xpfdp_xsk_counter {
	XPFDP_CNT_REDIRECTED = 0,   /* handed to an AF_XDP socket */
	XPFDP_CNT_NO_SOCKET = 1,    /* no socket on the packet's queue: passed to the kernel */
	XPFDP_CNT_PASS_ARP = 2,     /* ARP: always the kernel's */
	XPFDP_CNT_PASS_ND = 3,      /* ICMPv6 neighbour discovery (types 133-137) */
	XPFDP_CNT_PASS_NON_IP = 4,  /* other non-IP frames while pass_non_ip is set */
	XPFDP_CNT_PASS_OFF = 5,     /* redirect switched off or ABI version mismatch */
	XPFDP_CNT_PASS_LOCAL = 6,   /* addressed to one of the host's own addresses */
	XPFDP_CNT_PASS_MCAST = 7,   /* IP multicast/broadcast, IPv6 link-local destination */
	XPFDP_CNT_PORT_FORWARD = 8, /* for a host address, kept by a port forward (fwd_ports); also
	                             * counted as redirected or no_socket */
	XPFDP_CNT_COUNT = 9,
};

#endif
