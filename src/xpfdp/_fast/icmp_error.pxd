# ICMP / ICMPv6 error kernels, nogil and inline so the pipeline compiles them into its stages.
#
# Three jobs, each on one frame in place:
# * find the packet an error message quotes (`icmp_quote_parse`): its addresses, protocol and
#   ports or echo identifier, so the error can be matched to the session of that packet;
# * rewrite an error through NAT (`icmp_quote_translate`, RFC 5508 / RFC 7857): outer
#   addresses, quoted addresses and ports, the quoted IPv4 header checksum, the quoted L4
#   checksum when the quote holds it (incrementally, as Linux does) and the ICMP checksum
#   (recomputed over the message, pseudo-header included for ICMPv6);
# * turn a received packet into the error it causes (`icmp_error_build`): Time Exceeded,
#   Fragmentation Needed, Packet Too Big, quoting as much of it as RFC 1812 / RFC 4443 allow.
# Every offset is checked against the frame; bad input is a status code, never a bad access.

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from xpfdp._fast.csum cimport (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    csum_apply,
    csum_delta_words,
    csum_finish,
    csum_partial,
    ipv4_header_checksum,
    load_be16,
    pseudo_header_sum,
    store_be16,
)
from xpfdp._fast.lib.flowkey cimport skey_t
from xpfdp._fast.meta cimport META_L4_VALID, PARSE_OK, pkt_meta_t

# icmp_quote_parse results.
cdef enum:
    QUOTE_OK = 0
    QUOTE_NOT_ERROR = 1     # not an ICMP error message (echo, other informational types)
    QUOTE_TRUNCATED = 2     # the quoted IP header or the first 8 bytes of its L4 are missing
    QUOTE_BAD_HEADER = 3    # quoted version differs from the outer one, or a bad IHL
    QUOTE_FRAGMENT = 4      # quotes a non-first fragment: no ports to match a session by
    QUOTE_UNSUPPORTED = 5   # quotes a protocol without a session key (or an ICMP non-echo)
    QUOTE_BAD_CSUM = 6      # the error's own ICMP checksum does not verify

# Error types and codes the builder emits.
cdef enum:
    ICMP4_DEST_UNREACH = 3
    ICMP4_FRAG_NEEDED = 4          # code of ICMP4_DEST_UNREACH
    ICMP4_TIME_EXCEEDED = 11
    ICMP6_PACKET_TOO_BIG = 2
    ICMP6_TIME_EXCEEDED = 3
    ICMP4_ERROR_MAX_BYTES = 576    # RFC 1812 4.3.2.3: the whole error datagram
    ICMP6_ERROR_MAX_BYTES = 1280   # RFC 4443 2.4(c): the IPv6 minimum MTU

ctypedef struct icmp_quote_t:
    uint16_t q_l3           # frame offset of the quoted IP header
    uint16_t q_l4           # frame offset of the quoted L4 header (8 bytes present at least)
    uint16_t end            # end of the error message (outer l3_off + l3_len)
    uint8_t proto           # quoted L4 protocol
    uint8_t echo            # the quote is an ICMP / ICMPv6 echo request or reply
    uint16_t sport          # quoted source port, or the echo identifier
    uint16_t dport          # quoted destination port, or the echo identifier
    uint8_t src[16]         # quoted addresses (IPv4: bytes 0..3, rest zero)
    uint8_t dst[16]


cdef inline bint icmp_type_is_error(uint8_t ip_version, uint8_t icmp_type) noexcept nogil:
    """Destination Unreachable, Source Quench, Time Exceeded, Parameter Problem (v4);
    Destination Unreachable, Packet Too Big, Time Exceeded, Parameter Problem (v6)."""
    if ip_version == 4:
        return icmp_type == 3 or icmp_type == 4 or icmp_type == 11 or icmp_type == 12
    return 1 <= icmp_type <= 4


cdef inline bint meta_is_icmp_error(const pkt_meta_t* m) noexcept nogil:
    """The parsed packet is an ICMP error of its own family (ICMP in v4, ICMPv6 in v6)."""
    if m.status != PARSE_OK or not (m.flags & META_L4_VALID):
        return False
    if m.ip_version == 4:
        return m.protocol == PROTO_ICMP and icmp_type_is_error(4, m.icmp_type)
    return (m.ip_version == 6 and m.protocol == PROTO_ICMPV6
            and icmp_type_is_error(6, m.icmp_type))


cdef inline uint32_t icmp_message_sum_seed(const uint8_t* f, const pkt_meta_t* m,
                                           uint32_t msg_len) noexcept nogil:
    """The checksum seed of an ICMP message: 0 for ICMPv4, the pseudo-header for ICMPv6."""
    if m.ip_version == 4:
        return 0
    return pseudo_header_sum(f + m.l3_off, 6, PROTO_ICMPV6, msg_len)


cdef inline bint icmp_checksum_ok(const uint8_t* f, uint32_t frame_len,
                                  const pkt_meta_t* m) noexcept nogil:
    """The ICMP/ICMPv6 message at m.l4_off verifies (message sums to 0xFFFF)."""
    cdef uint32_t end = <uint32_t>m.l3_off + m.l3_len
    if end > frame_len or m.l4_off + 8 > end:
        return False
    cdef uint32_t n = end - m.l4_off
    return csum_partial(f + m.l4_off, n, icmp_message_sum_seed(f, m, n)) == 0xFFFF


cdef inline void icmp_checksum_set(uint8_t* f, const pkt_meta_t* m, uint32_t end) noexcept nogil:
    """Recompute the ICMP/ICMPv6 checksum of the message [m.l4_off, end)."""
    cdef uint32_t n = end - m.l4_off
    store_be16(f + m.l4_off + 2, 0)
    store_be16(f + m.l4_off + 2,
               csum_finish(csum_partial(f + m.l4_off, n, icmp_message_sum_seed(f, m, n))))


cdef inline int icmp_quote_parse(const uint8_t* f, uint32_t frame_len, const pkt_meta_t* m,
                                 icmp_quote_t* q) noexcept nogil:
    """Locate and read the packet quoted by the ICMP error `m` describes; QUOTE_* status."""
    cdef uint32_t end, ql3, ql4, ihl, pos
    cdef const uint8_t* h
    cdef uint8_t nh, t
    cdef int hops = 0
    if not meta_is_icmp_error(m):
        return QUOTE_NOT_ERROR
    end = <uint32_t>m.l3_off + m.l3_len
    if end > frame_len:
        return QUOTE_TRUNCATED
    ql3 = <uint32_t>m.l4_off + 8
    memset(q, 0, sizeof(icmp_quote_t))
    if m.ip_version == 4:
        if ql3 + 20 > end:
            return QUOTE_TRUNCATED
        h = f + ql3
        if h[0] >> 4 != 4:
            return QUOTE_BAD_HEADER
        ihl = (h[0] & 0x0F) * 4
        if ihl < 20:
            return QUOTE_BAD_HEADER
        if ql3 + ihl > end:
            return QUOTE_TRUNCATED
        if load_be16(h + 6) & 0x1FFF:
            return QUOTE_FRAGMENT
        nh = h[9]
        memcpy(q.src, h + 12, 4)
        memcpy(q.dst, h + 16, 4)
        ql4 = ql3 + ihl
    else:
        if ql3 + 40 > end:
            return QUOTE_TRUNCATED
        h = f + ql3
        if h[0] >> 4 != 6:
            return QUOTE_BAD_HEADER
        memcpy(q.src, h + 8, 16)
        memcpy(q.dst, h + 24, 16)
        nh = h[6]
        pos = ql3 + 40
        while nh == 0 or nh == 43 or nh == 60 or nh == 51 or nh == 44:
            hops += 1
            if hops > 6:
                return QUOTE_UNSUPPORTED
            if pos + 8 > end:
                return QUOTE_TRUNCATED
            if nh == 44:
                if load_be16(f + pos + 2) & 0xFFF8:
                    return QUOTE_FRAGMENT
                nh = f[pos]
                pos += 8
            elif nh == 51:
                nh = f[pos]
                pos += (<uint32_t>f[pos + 1] + 2) * 4
            else:
                nh = f[pos]
                pos += (<uint32_t>f[pos + 1] + 1) * 8
        ql4 = pos
    if ql4 + 8 > end:
        return QUOTE_TRUNCATED
    q.q_l3 = <uint16_t>ql3
    q.q_l4 = <uint16_t>ql4
    q.end = <uint16_t>end
    q.proto = nh
    if nh == PROTO_TCP or nh == PROTO_UDP:
        q.sport = load_be16(f + ql4)
        q.dport = load_be16(f + ql4 + 2)
        return QUOTE_OK
    if (nh == PROTO_ICMP and m.ip_version == 4) or (nh == PROTO_ICMPV6 and m.ip_version == 6):
        t = f[ql4]
        if (t == 8 or t == 0) if m.ip_version == 4 else (t == 128 or t == 129):
            q.echo = 1
            q.sport = load_be16(f + ql4 + 4)
            q.dport = q.sport
            return QUOTE_OK
    return QUOTE_UNSUPPORTED


cdef inline uint32_t swap_address(uint8_t* field, const uint8_t* new, uint32_t n_bytes,
                                  uint8_t* meta_copy) noexcept nogil:
    """Write `new` over `field` (NULL: keep); returns the eqn. 3 delta of the change."""
    cdef uint32_t delta
    if new == NULL:
        return 0
    delta = csum_delta_words(0, field, new, <int>(n_bytes // 2))
    memcpy(field, new, n_bytes)
    if meta_copy != NULL:
        memcpy(meta_copy, new, n_bytes)
    return delta


cdef inline uint32_t swap_port(uint8_t* field, int32_t new) noexcept nogil:
    """Write port / identifier `new` (-1: keep); returns the eqn. 3 delta."""
    cdef uint16_t old
    if new < 0:
        return 0
    old = load_be16(field)
    store_be16(field, <uint16_t>new)
    return <uint16_t>~old + <uint16_t>new


cdef inline void icmp_quote_reply_key(const icmp_quote_t* q, uint8_t ip_version,
                                     skey_t* k) noexcept nogil:
    """The session key of the quoted packet turned round: how a packet of its flow arrives
    travelling the way the error does (echo: identifier in sport, as in every echo key)."""
    memset(k, 0, sizeof(skey_t))
    k.af = 2 if ip_version == 4 else 10
    k.proto = q.proto
    memcpy(k.src, q.dst, 16)
    memcpy(k.dst, q.src, 16)
    if q.echo:
        k.sport = q.sport
    else:
        k.sport = q.dport
        k.dport = q.sport


cdef inline uint8_t echo_other_half(uint8_t icmp_type) noexcept nogil:
    """The echo type answering `icmp_type` (request <-> reply, ICMP and ICMPv6); else 0."""
    if icmp_type == 8:
        return 0
    if icmp_type == 0:
        return 8
    if icmp_type == 128:
        return 129
    if icmp_type == 129:
        return 128
    return 0


cdef inline int icmp_quote_translate(
    uint8_t* f,
    pkt_meta_t* m,
    const icmp_quote_t* q,
    const uint8_t* outer_src,
    const uint8_t* outer_dst,
    const uint8_t* quoted_src,
    const uint8_t* quoted_dst,
    int32_t quoted_sport,
    int32_t quoted_dport,
) noexcept nogil:
    """Rewrite an ICMP error parsed into `q` (QUOTE_OK) through NAT, in place.

    Addresses are 4 or 16 bytes by family, NULL to keep; ports -1 to keep (an echo quote
    takes `quoted_sport`, else `quoted_dport`, as its identifier). Checksums: the outer and
    quoted IPv4 headers and the quoted L4 checksum are updated by RFC 1624 eqn. 3 (the quoted
    L4 one only when the quote holds it: UDP always, TCP with its full 20-byte header, echo
    always; a UDP 0 stays 0), then the ICMP checksum is recomputed over the message. The
    record's outer addresses follow. Returns 0.
    """
    cdef bint v4 = m.ip_version == 4
    cdef uint32_t alen = 4 if v4 else 16
    cdef uint8_t* ql3 = f + q.q_l3
    cdef uint8_t* ql4 = f + q.q_l4
    cdef uint8_t* l3 = f + m.l3_off
    cdef uint32_t addr_delta, port_delta = 0, outer_delta
    cdef int csum_off = -1
    cdef bint pseudo = True
    cdef uint16_t stored
    addr_delta = swap_address(ql3 + (12 if v4 else 8), quoted_src, alen, NULL)
    addr_delta += swap_address(ql3 + (16 if v4 else 24), quoted_dst, alen, NULL)
    if v4 and addr_delta:
        store_be16(ql3 + 10, csum_apply(load_be16(ql3 + 10), addr_delta))
    if q.echo:
        port_delta = swap_port(ql4 + 4, quoted_sport if quoted_sport >= 0 else quoted_dport)
        csum_off = 2
        pseudo = not v4
    else:
        port_delta = swap_port(ql4, quoted_sport) + swap_port(ql4 + 2, quoted_dport)
        if q.proto == PROTO_UDP:
            csum_off = 6
        elif q.proto == PROTO_TCP and <uint32_t>q.q_l4 + 20 <= q.end:
            csum_off = 16
    if csum_off >= 0 and (addr_delta or port_delta):
        stored = load_be16(ql4 + csum_off)
        if not (q.proto == PROTO_UDP and stored == 0):
            stored = csum_apply(stored, port_delta + (addr_delta if pseudo else 0))
            if q.proto == PROTO_UDP and stored == 0:
                stored = 0xFFFF
            store_be16(ql4 + csum_off, stored)
    outer_delta = swap_address(l3 + (12 if v4 else 8), outer_src, alen, m.src)
    outer_delta += swap_address(l3 + (16 if v4 else 24), outer_dst, alen, m.dst)
    if v4 and outer_delta:
        store_be16(l3 + 10, csum_apply(load_be16(l3 + 10), outer_delta))
    icmp_checksum_set(f, m, q.end)
    return 0


# ---- building an error from the packet that caused it -------------------------------------

cdef inline bint icmp_error_allowed(const uint8_t* f, const pkt_meta_t* m) noexcept nogil:
    """RFC 1812 4.3.2.7 / RFC 4443 2.4(e): no error about an ICMP error, a non-first
    fragment, or a packet whose source is not a unicast host (unspecified, loopback,
    multicast, broadcast; IPv4 class E)."""
    if m.status != PARSE_OK:
        return False
    if meta_is_icmp_error(m):
        return False
    if m.ip_version == 4:
        if m.src[0] == 0 or m.src[0] == 127 or m.src[0] >= 224:
            return False
        return True
    if m.src[0] == 0xFF:
        return False
    if m.src[0] == 0 and load_be16(m.src + 2) == 0 and load_be16(m.src + 4) == 0:
        # ::/96 (unspecified, loopback, IPv4-compatible): not a source to answer
        return not (load_be16(m.src + 8) == 0 and load_be16(m.src + 10) == 0
                    and load_be16(m.src + 12) == 0)
    return True


cdef inline uint32_t icmp_error_build(
    uint8_t* f,
    uint32_t frame_len,
    uint32_t frame_room,
    const pkt_meta_t* m,
    uint8_t icmp_type,
    uint8_t code,
    uint32_t info,
    const uint8_t* src,
) noexcept nogil:
    """Turn the received packet `m` describes into the ICMP error it causes, in place.

    The Ethernet header (VLAN tag kept) is turned around (MACs swapped), the IP datagram is
    moved back to become the quote (truncated so the error is at most 576 bytes for IPv4,
    1280 for IPv6), and a new IP header from `src` to the packet's source plus the ICMP
    header (`icmp_type`, `code`, 32-bit `info`: the next-hop MTU for Fragmentation Needed /
    Packet Too Big) go in front of it. `frame_room` is how many bytes the frame may hold.
    Returns the new frame length, or 0 when the packet cannot be answered (frame unchanged).
    """
    cdef uint32_t l3 = m.l3_off
    cdef bint v4 = m.ip_version == 4
    cdef uint32_t hdr = 20 if v4 else 40
    cdef uint32_t quote = m.l3_len
    cdef uint32_t limit = (ICMP4_ERROR_MAX_BYTES if v4 else ICMP6_ERROR_MAX_BYTES) - hdr - 8
    cdef uint32_t new_len
    cdef uint8_t mac[6]
    cdef uint8_t* ip
    cdef uint8_t* icmp
    if (m.ip_version != 4 and m.ip_version != 6) or l3 + quote > frame_len or quote < hdr:
        return 0
    if quote > limit:
        quote = limit
    new_len = l3 + hdr + 8 + quote
    if new_len > frame_room:
        return 0
    memmove(f + l3 + hdr + 8, f + l3, quote)
    memcpy(mac, f, 6)
    memcpy(f, f + 6, 6)
    memcpy(f + 6, mac, 6)
    ip = f + l3
    icmp = ip + hdr
    if v4:
        ip[0] = 0x45
        ip[1] = 0xC0                     # precedence "internetwork control", as Linux sends
        store_be16(ip + 2, <uint16_t>(hdr + 8 + quote))
        store_be16(ip + 4, 0)
        store_be16(ip + 6, 0)
        ip[8] = 64
        ip[9] = PROTO_ICMP
        store_be16(ip + 10, 0)
        memcpy(ip + 16, icmp + 8 + 12, 4)   # to the quoted packet's source
        memcpy(ip + 12, src, 4)
        store_be16(ip + 10, ipv4_header_checksum(ip, 20))
    else:
        ip[0] = 0x60
        ip[1] = 0
        store_be16(ip + 2, 0)
        store_be16(ip + 4, <uint16_t>(8 + quote))
        ip[6] = PROTO_ICMPV6
        ip[7] = 64
        memcpy(ip + 24, icmp + 8 + 8, 16)
        memcpy(ip + 8, src, 16)
    icmp[0] = icmp_type
    icmp[1] = code
    store_be16(icmp + 4, <uint16_t>(info >> 16))
    store_be16(icmp + 6, <uint16_t>info)
    store_be16(icmp + 2, 0)
    store_be16(icmp + 2, csum_finish(csum_partial(
        icmp, 8 + quote,
        0 if v4 else pseudo_header_sum(ip, 6, PROTO_ICMPV6, 8 + quote))))
    return new_len


# ---- rate limiting: a token bucket per limiter, time passed in ----------------------------

ctypedef struct icmp_bucket_t:
    uint64_t cost_ns         # time one message's token takes to refill (1e9 / rate)
    uint64_t cap_ns          # burst * cost_ns
    uint64_t tokens_ns       # current budget in ns of refill time
    uint64_t last_ns


cdef inline void icmp_bucket_init(icmp_bucket_t* b, uint64_t interval_ns,
                                  uint32_t burst) noexcept nogil:
    """One message per `interval_ns` on average, up to `burst` at once; starts full."""
    b.cost_ns = interval_ns
    b.cap_ns = interval_ns * burst
    b.tokens_ns = b.cap_ns
    b.last_ns = 0


cdef inline bint icmp_bucket_take(icmp_bucket_t* b, uint64_t now_ns) noexcept nogil:
    """Spend one token if there is one (refilled lazily from `now_ns`)."""
    if now_ns > b.last_ns:
        b.tokens_ns += now_ns - b.last_ns
        if b.tokens_ns > b.cap_ns:
            b.tokens_ns = b.cap_ns
    b.last_ns = now_ns
    if b.tokens_ns < b.cost_ns:
        return False
    b.tokens_ns -= b.cost_ns
    return True
