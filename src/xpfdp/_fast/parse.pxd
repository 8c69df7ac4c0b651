# The L2-L4 parser as one inline function, so every stage that needs a record (the batch
# parser, the scalar checksum API, pipeline stages) compiles it into its own loop.
#
# Never reads at or past `frame_len`; every packet gets a PARSE_* status (meta.pxd). Lengths
# come from the IP header (Ethernet padding is ignored) and must fit inside the frame.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from xpfdp._fast.lib.bytes cimport load_be16
from xpfdp._fast.meta cimport (
    META_FIRST_FRAGMENT,
    META_FRAGMENT,
    META_IPV4_OPTIONS,
    META_L4_VALID,
    META_VLAN,
    PARSE_BAD_DOFF,
    PARSE_BAD_IHL,
    PARSE_BAD_TOTLEN,
    PARSE_BAD_VERSION,
    PARSE_NON_IP,
    PARSE_NONFIRST_FRAG,
    PARSE_OK,
    PARSE_TOO_MANY_EXTHDR,
    PARSE_TRUNC_EXTHDR,
    PARSE_TRUNC_L2,
    PARSE_TRUNC_L3,
    PARSE_TRUNC_L4,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    is_icmp_echo,
    pkt_meta_t,
)

cdef enum:
    ETH_P_IPV4 = 0x0800
    ETH_P_IPV6 = 0x86DD
    ETH_P_8021Q = 0x8100
    ETH_P_8021AD = 0x88A8
    MAX_IPV6_EXT_HDRS = 6


cdef inline uint8_t parse_l4(
    const uint8_t* f, uint32_t l4, uint32_t l3_end, pkt_meta_t* m
) noexcept nogil:
    """Fill ports, flags and the payload offset for the L4 header at `l4` (ends at l3_end)."""
    cdef uint32_t seg_len = l3_end - l4
    cdef uint32_t doff
    m.l4_off = <uint16_t>l4
    if m.protocol == PROTO_TCP:
        if seg_len < 20:
            return PARSE_TRUNC_L4
        doff = (f[l4 + 12] >> 4) * 4
        if doff < 20 or doff > seg_len:
            return PARSE_BAD_DOFF
        m.sport = load_be16(f + l4)
        m.dport = load_be16(f + l4 + 2)
        m.tcp_flags = f[l4 + 13]
        m.payload_off = <uint16_t>(l4 + doff)
    elif m.protocol == PROTO_UDP:
        if seg_len < 8:
            return PARSE_TRUNC_L4
        m.sport = load_be16(f + l4)
        m.dport = load_be16(f + l4 + 2)
        m.payload_off = <uint16_t>(l4 + 8)
    elif (m.protocol == PROTO_ICMP and m.ip_version == 4) or (
        m.protocol == PROTO_ICMPV6 and m.ip_version == 6
    ):
        if seg_len < 8:
            return PARSE_TRUNC_L4
        m.icmp_type = f[l4]
        if is_icmp_echo(m.protocol, m.icmp_type):
            m.sport = load_be16(f + l4 + 4)
            m.dport = m.sport
        m.payload_off = <uint16_t>(l4 + 8)
    else:
        m.payload_off = <uint16_t>l4
    m.flags |= META_L4_VALID
    return PARSE_OK


cdef inline uint8_t parse_ipv4(
    const uint8_t* f, uint32_t frame_len, uint32_t l3, pkt_meta_t* m
) noexcept nogil:
    cdef const uint8_t* h = f + l3
    cdef uint32_t ihl, tot_len, frag
    if frame_len - l3 < 20:
        return PARSE_TRUNC_L3
    if h[0] >> 4 != 4:
        return PARSE_BAD_VERSION
    m.ip_version = 4
    ihl = (h[0] & 0x0F) * 4
    if ihl < 20:
        return PARSE_BAD_IHL
    if ihl > frame_len - l3:
        return PARSE_TRUNC_L3
    tot_len = load_be16(h + 2)
    if tot_len < ihl:
        return PARSE_BAD_TOTLEN
    if tot_len > frame_len - l3:
        return PARSE_TRUNC_L3
    if l3 + tot_len > 0xFFFF:
        return PARSE_BAD_TOTLEN
    m.l3_len = <uint16_t>tot_len
    m.tos = h[1]
    m.ttl = h[8]
    m.protocol = h[9]
    memcpy(m.src, h + 12, 4)
    memcpy(m.dst, h + 16, 4)
    if ihl > 20:
        m.flags |= META_IPV4_OPTIONS
    frag = load_be16(h + 6)
    if frag & 0x3FFF:
        m.flags |= META_FRAGMENT
        if frag & 0x1FFF:
            m.l4_off = <uint16_t>(l3 + ihl)
            return PARSE_NONFIRST_FRAG
        m.flags |= META_FIRST_FRAGMENT
    return parse_l4(f, l3 + ihl, l3 + tot_len, m)


cdef inline uint8_t parse_ipv6(
    const uint8_t* f, uint32_t frame_len, uint32_t l3, pkt_meta_t* m
) noexcept nogil:
    cdef const uint8_t* h = f + l3
    cdef uint32_t l3_end, pos, frag
    cdef uint8_t nh
    cdef int hops = 0
    if frame_len - l3 < 40:
        return PARSE_TRUNC_L3
    if h[0] >> 4 != 6:
        return PARSE_BAD_VERSION
    m.ip_version = 6
    l3_end = l3 + 40 + load_be16(h + 4)   # 32-bit: 40 + payload length cannot wrap
    if l3_end > frame_len:
        return PARSE_TRUNC_L3
    if l3_end > 0xFFFF:
        return PARSE_BAD_TOTLEN
    m.l3_len = <uint16_t>(l3_end - l3)
    m.tos = <uint8_t>(((h[0] & 0x0F) << 4) | (h[1] >> 4))
    m.ttl = h[7]
    memcpy(m.src, h + 8, 16)
    memcpy(m.dst, h + 24, 16)
    nh = h[6]
    pos = l3 + 40
    while True:
        if nh == 0 or nh == 43 or nh == 60 or nh == 51 or nh == 44:
            if hops == MAX_IPV6_EXT_HDRS:
                m.protocol = nh
                return PARSE_TOO_MANY_EXTHDR
            hops += 1
        else:
            break
        if nh == 44:
            if pos + 8 > l3_end:
                return PARSE_TRUNC_EXTHDR
            frag = load_be16(f + pos + 2)
            nh = f[pos]
            pos += 8
            if frag & 0xFFF8:
                m.flags |= META_FRAGMENT
                m.protocol = nh
                m.l4_off = <uint16_t>pos
                return PARSE_NONFIRST_FRAG
            if frag & 1:   # offset 0 without M is an atomic fragment: a whole packet
                m.flags |= META_FRAGMENT | META_FIRST_FRAGMENT
            continue
        if pos + 2 > l3_end:
            return PARSE_TRUNC_EXTHDR
        if nh == 51:
            nh = f[pos]
            pos += (<uint32_t>f[pos + 1] + 2) * 4
        else:
            nh = f[pos]
            pos += (<uint32_t>f[pos + 1] + 1) * 8
        if pos > l3_end:
            return PARSE_TRUNC_EXTHDR
    m.protocol = nh
    if nh == 59:   # no next header: nothing at L4
        m.l4_off = <uint16_t>pos
        return PARSE_OK
    return parse_l4(f, pos, l3_end, m)


cdef inline void parse_one(
    const uint8_t* frame, uint32_t frame_len, pkt_meta_t* out
) noexcept nogil:
    """Parse one Ethernet frame into `out` (every field reset first)."""
    cdef uint16_t ethertype
    cdef uint32_t l3 = 14
    memset(out, 0, sizeof(pkt_meta_t))
    if frame_len < 14:
        out.status = PARSE_TRUNC_L2
        return
    ethertype = load_be16(frame + 12)
    if ethertype == ETH_P_8021Q or ethertype == ETH_P_8021AD:
        if frame_len < 18:
            out.status = PARSE_TRUNC_L2
            return
        out.flags = META_VLAN
        out.vlan_tci = load_be16(frame + 14)
        ethertype = load_be16(frame + 16)
        l3 = 18
    out.ethertype = ethertype
    out.l3_off = <uint16_t>l3
    if ethertype == ETH_P_IPV4:
        out.status = parse_ipv4(frame, frame_len, l3, out)
    elif ethertype == ETH_P_IPV6:
        out.status = parse_ipv6(frame, frame_len, l3, out)
    else:
        out.status = PARSE_NON_IP   # includes a second VLAN tag (QinQ is not supported)


# Batch plumbing shared by every batch kernel (defined in parse.pyx). `open_batch` checks
# the arguments once per call with the numpy C API (cheaper than typed memoryviews) and
# raises a clear TypeError/ValueError; the loop then reads frame i at
# buf + addrs[i * addr_step], lens[i * len_step] long, its record at meta + i.
# A kernel that opens with check_bounds=False tests frame_past_end itself, before touching
# each frame, and raises frame_bounds_error for the first that fails (one pass, not two).
ctypedef struct frame_batch_t:
    uint8_t* buf
    uint64_t buf_len
    const uint64_t* addrs
    const uint32_t* lens
    Py_ssize_t addr_step
    Py_ssize_t len_step
    Py_ssize_t n
    pkt_meta_t* meta


cdef inline uint8_t* frame_at(const frame_batch_t* b, Py_ssize_t i) noexcept nogil:
    return b.buf + b.addrs[i * b.addr_step]


cdef inline uint32_t len_at(const frame_batch_t* b, Py_ssize_t i) noexcept nogil:
    return b.lens[i * b.len_step]


cdef object open_batch(frame_batch_t* b, object buf, object addrs, object lens, object meta,
                       bint writable, bint check_bounds=*)
cdef tuple batch_args(tuple args, Py_ssize_t n_after, str fname, bint with_meta)
cdef object lossless_integers(object value, str name, str dtype_name)
cdef Py_ssize_t first_frame_past_end(const frame_batch_t* b) noexcept nogil
cdef int frame_bounds_error(const frame_batch_t* b, Py_ssize_t bad) except -1


cdef inline bint frame_past_end(const frame_batch_t* b, uint64_t addr, uint32_t length) noexcept nogil:
    """Frame (addr, length) does not lie inside the buffer."""
    return addr > b.buf_len or length > b.buf_len - addr
