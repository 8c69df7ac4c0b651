# Per-packet metadata record shared by the parser, bursts, sessions and pipeline stages.
#
# The layout is a contract: `xpfdp.parse.PKT_META` is the numpy dtype of this struct, with
# the same field names and offsets (checked at import). 56 bytes, 2-byte aligned.
# Addresses are 16 bytes; IPv4 uses bytes 0..3 and leaves the rest zero (the session key
# layout does the same). Ports are host order; ICMP/ICMPv6 echo carry the identifier in
# both sport and dport.

from libc.stdint cimport uint8_t, uint16_t

ctypedef struct pkt_meta_t:
    uint8_t status        # PARSE_* below
    uint8_t ip_version    # 0 (not IP), 4 or 6
    uint8_t protocol      # L4 protocol after the IPv6 extension-header walk
    uint8_t tcp_flags     # TCP byte 13 (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10, ...)
    uint16_t ethertype    # inner ethertype (after the VLAN tag, if any)
    uint16_t vlan_tci     # full TCI when META_VLAN is set, else 0
    uint16_t l3_off       # offset of the IP header from the frame start
    uint16_t l4_off       # offset of the L4 header (valid when META_L4_VALID)
    uint16_t payload_off  # offset of the L4 payload (valid when META_L4_VALID)
    uint16_t l3_len       # IP datagram length from the header (tot_len, or 40 + payload_len)
    uint16_t sport
    uint16_t dport
    uint8_t flags         # META_* bits below
    uint8_t ttl           # TTL or hop limit
    uint8_t tos           # IPv4 TOS / IPv6 traffic class (DSCP << 2 | ECN)
    uint8_t icmp_type     # ICMP/ICMPv6 type, 0 otherwise
    uint8_t src[16]
    uint8_t dst[16]

# Parse status codes: one per packet, OK or why the packet was not fully parsed.
cdef enum:
    PARSE_OK = 0
    PARSE_TRUNC_L2 = 1
    PARSE_NON_IP = 2
    PARSE_TRUNC_L3 = 3
    PARSE_BAD_VERSION = 4
    PARSE_BAD_IHL = 5
    PARSE_BAD_TOTLEN = 6
    PARSE_TRUNC_EXTHDR = 7
    PARSE_TOO_MANY_EXTHDR = 8
    PARSE_TRUNC_L4 = 9
    PARSE_BAD_DOFF = 10
    PARSE_NONFIRST_FRAG = 11
    PARSE_STATUS_COUNT = 12

# Bits of pkt_meta_t.tcp_flags the stages and the session table test.
cdef enum:
    TCP_FIN = 0x01
    TCP_SYN = 0x02
    TCP_RST = 0x04

# IP protocol numbers the parser and the rewrite kernels know (pkt_meta_t.protocol).
cdef enum:
    PROTO_ICMP = 1
    PROTO_TCP = 6
    PROTO_UDP = 17
    PROTO_ICMPV6 = 58


cdef inline bint is_icmp_echo(uint8_t protocol, uint8_t icmp_type) noexcept nogil:
    """Echo request or reply: the packets whose identifier acts as a port."""
    if protocol == PROTO_ICMP:
        return icmp_type == 8 or icmp_type == 0
    if protocol == PROTO_ICMPV6:
        return icmp_type == 128 or icmp_type == 129
    return False


# Bits of pkt_meta_t.flags.
cdef enum:
    META_VLAN = 0x01           # one 802.1Q / 802.1ad tag was present
    META_FRAGMENT = 0x02       # MF set or fragment offset != 0
    META_FIRST_FRAGMENT = 0x04 # MF set and offset == 0
    META_L4_VALID = 0x08       # l4_off, payload_off, ports and tcp_flags are meaningful
    META_IPV4_OPTIONS = 0x10   # IHL > 5
