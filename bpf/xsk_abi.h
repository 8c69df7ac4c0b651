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
#define XPFDP_XSK_ABI_VERSION 1
#endif

/* Keys of the XSKMAP are RX queue indexes below this bound. */
#define XPFDP_XSK_MAX_QUEUES 64

/* ctrl map (ARRAY, one entry) value. */
struct xpfdp_xsk_ctrl {
	unsigned int abi_version;  /* must equal XPFDP_XSK_ABI_VERSION to redirect */
	unsigned int redirect;     /* 0: everything goes to the kernel */
	unsigned int pass_non_ip;  /* 1: frames that are neither IPv4 nor IPv6 go to the kernel */
	unsigned int reserved;
};

/* Indexes of the per-CPU counter array. */
enum xpfdp_xsk_counter {
	XPFDP_CNT_REDIRECTED = 0,   /* handed to an AF_XDP socket */
	XPFDP_CNT_NO_SOCKET = 1,    /* no socket on the packet's queue: passed to the kernel */
	XPFDP_CNT_PASS_ARP = 2,     /* ARP: always the kernel's */
	XPFDP_CNT_PASS_ND = 3,      /* ICMPv6 neighbour discovery (types 133-137) */
	XPFDP_CNT_PASS_NON_IP = 4,  /* other non-IP frames while pass_non_ip is set */
	XPFDP_CNT_PASS_OFF = 5,     /* redirect switched off or ABI version mismatch */
	XPFDP_CNT_COUNT = 6,
};

#endif
