# Inline checksum and rewrite kernels shared by every Cython module that touches packets.
#
# `cdef inline` bodies live here (not in csum.pyx) so a cimporting module compiles them into
# its own loops with no cross-module call. The one incremental-update primitive is RFC 1624
# eqn. 3: HC' = ~(~HC + ~m + m') (`csum_apply`); every field helper feeds it a delta made of
# `~old + new` word terms, so incremental results equal a from-scratch recompute bit for bit.
#
# Partial sums are exchanged as *folded 16-bit big-endian* values (`csum_partial`): the full
# sum accumulates native-endian 32-bit words into 64 bits and byte-swaps the folded result,
# which RFC 1071's byte-order independence makes identical to the big-endian word sum.
#
# Rewrite kernels take the frame, its length and the parser record (meta.pxd). They re-check
# every offset they use against the frame length, so a stale or corrupted record can make a
# rewrite a no-op but never an out-of-bounds access. They keep the record in step with the
# bytes (TTL, addresses, ports) so later stages see what is on the wire.

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from xpfdp._fast.includes.compat cimport (
    LITTLE_ENDIAN,
    load_ne16,
    load_ne32,
    load_ne64,
    store_ne16,
)
from xpfdp._fast.lib.bytes cimport bswap16, load_be16, store_be16
from xpfdp._fast.meta cimport (
    META_FRAGMENT,
    META_L4_VALID,
    PARSE_NONFIRST_FRAG,
    PARSE_OK,
    PARSE_TRUNC_EXTHDR,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    is_icmp_echo,
    pkt_meta_t,
)


# Results of the rewrite kernels (nat_rewrite, mss_clamp, ecn and the batch variants).
cdef enum:
    REWRITE_UNCHANGED = 0   # eligible, but nothing had to change (no-op, bytes identical)
    REWRITE_DONE = 1        # bytes and checksums rewritten
    REWRITE_SKIPPED = 2     # not applicable: parse status, family or protocol
    REWRITE_BAD_L4_CSUM = 3 # IPv6 UDP with a stored 0 checksum: left untouched (malformed)

# decrement_ttl results besides the new TTL (0..254).
cdef enum:
    TTL_EXPIRED = -1        # TTL/hop limit <= 1: frame unchanged, must not be forwarded
    TTL_SKIPPED = -2        # not an IP packet with a complete header


cdef inline uint16_t csum_fold(uint64_t s) noexcept nogil:
    """Reduce any 64-bit one's-complement sum to 16 bits: two 32-bit and two 16-bit folds."""
    s = (s & 0xFFFFFFFFU) + (s >> 32)
    s = (s & 0xFFFFFFFFU) + (s >> 32)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>s


cdef inline uint16_t csum_partial(const uint8_t* p, size_t n, uint32_t seed) noexcept nogil:
    """RFC 1071 sum of `n` bytes plus `seed`, folded to 16 bits (big-endian word value).

    An odd last byte is the high half of a word. 8 bytes per step: each 64-bit load is split
    into two 32-bit halves added into a 64-bit accumulator (no carry chain, so gcc -O3
    vectorizes the loop); 2^32 steps cannot overflow it.
    """
    cdef uint64_t acc = 0
    cdef uint64_t w
    cdef size_t i = 0
    cdef size_t n8 = n & ~(<size_t>7)
    while i < n8:
        w = load_ne64(p + i)
        acc += (w & 0xFFFFFFFFU) + (w >> 32)
        i += 8
    if n & 4:
        acc += load_ne32(p + i)
        i += 4
    if n & 2:
        acc += load_ne16(p + i)
        i += 2
    if n & 1:
        if LITTLE_ENDIAN:
            acc += p[i]
        else:
            acc += <uint32_t>p[i] << 8
    cdef uint16_t folded = csum_fold(acc)
    if LITTLE_ENDIAN:
        folded = bswap16(folded)
    return csum_fold(<uint64_t>folded + seed)


cdef inline uint16_t csum_finish(uint64_t s) noexcept nogil:
    """The checksum to store for a sum: ~fold(s)."""
    return <uint16_t>~csum_fold(s)


# ---- RFC 1624 incremental update: deltas of ~old + new, applied by eqn. 3 ------------------

cdef inline uint32_t csum_delta16(uint32_t delta, uint16_t old, uint16_t new) noexcept nogil:
    """Add the eqn. 3 terms for a 16-bit word `old` -> `new` to `delta`."""
    return delta + <uint16_t>~old + new


cdef inline uint32_t csum_delta_words(
    uint32_t delta, const uint8_t* old, const uint8_t* new, int n_words
) noexcept nogil:
    """Add the eqn. 3 terms for `n_words` big-endian words (32-bit: 2, 128-bit: 8)."""
    cdef int k
    for k in range(n_words):
        delta += <uint16_t>~load_be16(old + 2 * k) + load_be16(new + 2 * k)
    return delta


cdef inline uint16_t csum_apply(uint16_t hc, uint32_t delta) noexcept nogil:
    """RFC 1624 eqn. 3: HC' = ~(~HC + delta), delta being a sum of ~old + new terms.

    Deltas are sums of at most a few dozen 16-bit terms, so the 32-bit sum cannot wrap and
    two 16-bit folds finish it.
    """
    cdef uint32_t s = <uint32_t>(<uint16_t>~hc) + delta
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>~s


cdef inline uint16_t csum_replace16(uint16_t hc, uint16_t old, uint16_t new) noexcept nogil:
    """RFC 1624 eqn. 3 for one 16-bit word: the checksum after `old` became `new`."""
    return csum_apply(hc, csum_delta16(0, old, new))


cdef inline uint16_t csum_replace32(uint16_t hc, uint32_t old, uint32_t new) noexcept nogil:
    """Eqn. 3 for a 32-bit field (an IPv4 address): its two big-endian halves."""
    cdef uint32_t d = csum_delta16(0, <uint16_t>(old >> 16), <uint16_t>(new >> 16))
    return csum_apply(hc, csum_delta16(d, <uint16_t>old, <uint16_t>new))


# ---- From-scratch checksums and the verification oracle -----------------------------------

cdef inline uint32_t pseudo_header_sum(
    const uint8_t* l3, uint8_t ip_version, uint8_t protocol, uint32_t l4_len
) noexcept nogil:
    """Folded sum of the IPv4 or IPv6 pseudo-header (addresses are adjacent in both)."""
    if ip_version == 4:
        return csum_partial(l3 + 12, 8, <uint32_t>protocol + l4_len)
    return csum_partial(l3 + 8, 32, <uint32_t>protocol + (l4_len >> 16) + (l4_len & 0xFFFF))


cdef inline uint16_t ipv4_header_checksum(const uint8_t* l3, uint32_t ihl_bytes) noexcept nogil:
    """The IPv4 header checksum to store: the header summed with its checksum field as 0."""
    cdef uint32_t stored = load_be16(l3 + 10)
    cdef uint64_t s = csum_partial(l3, ihl_bytes, 0)
    # Subtracting the stored field in one's complement = adding its complement.
    return csum_finish(s + <uint16_t>~stored)


cdef inline int l4_checksum_offset(uint8_t protocol) noexcept nogil:
    """Offset of the checksum field inside the L4 header, or -1 for protocols without one."""
    if protocol == PROTO_TCP:
        return 16
    if protocol == PROTO_UDP:
        return 6
    if protocol == PROTO_ICMP or protocol == PROTO_ICMPV6:
        return 2
    return -1


cdef inline uint16_t l4_checksum(
    const uint8_t* l3, const uint8_t* l4, uint32_t l4_len, uint8_t ip_version, uint8_t protocol
) noexcept nogil:
    """The L4 checksum to store for `l4_len` bytes at `l4` (field counted as 0).

    ICMPv4 has no pseudo-header. A computed 0 for UDP is stored as 0xFFFF (0 means "none").
    """
    cdef int csum_off = l4_checksum_offset(protocol)
    cdef uint32_t seed = 0
    if protocol != PROTO_ICMP:
        seed = pseudo_header_sum(l3, ip_version, protocol, l4_len)
    cdef uint64_t s = csum_partial(l4, l4_len, seed)
    s += <uint16_t>~load_be16(l4 + csum_off)
    cdef uint16_t c = csum_finish(s)
    if protocol == PROTO_UDP and c == 0:
        c = 0xFFFF
    elif c == 0 and protocol == PROTO_ICMP and zero_but_field(l4, l4_len, csum_off):
        # Taking the stored field out again leaves one's-complement -0 for an all-zero
        # message (no pseudo-header adds anything for ICMPv4): its checksum is ~0.
        c = 0xFFFF
    return c


cdef inline bint zero_but_field(const uint8_t* p, uint32_t n, int field_off) noexcept nogil:
    """Every byte of p[0:n] is zero except, maybe, the 16-bit field at `field_off`."""
    cdef uint32_t i
    for i in range(n):
        if p[i] and not (<uint32_t>field_off <= i < <uint32_t>field_off + 2):
            return False
    return True


cdef inline bint l4_checksum_valid(
    const uint8_t* l3, const uint8_t* l4, uint32_t l4_len, uint8_t ip_version, uint8_t protocol
) noexcept nogil:
    """Oracle: pseudo-header + segment (stored checksum included) folds to 0xFFFF.

    An IPv4 UDP stored 0 means "no checksum" and is valid; an IPv6 UDP 0 is not.
    """
    cdef uint32_t seed = 0
    if protocol == PROTO_UDP and ip_version == 4 and load_be16(l4 + 6) == 0:
        return True
    if protocol != PROTO_ICMP:
        seed = pseudo_header_sum(l3, ip_version, protocol, l4_len)
    return csum_partial(l4, l4_len, seed) == 0xFFFF


# ---- whole-frame checksums on a parsed frame -------------------------------------------

cdef inline bint l4_checksummable(const pkt_meta_t* m, uint32_t frame_len) noexcept nogil:
    """A whole, unfragmented TCP/UDP/ICMP/ICMPv6 segment lies inside the frame."""
    if m.status != PARSE_OK or not (m.flags & META_L4_VALID) or (m.flags & META_FRAGMENT):
        return False
    if l4_checksum_offset(m.protocol) < 0:
        return False
    if m.protocol == PROTO_ICMP and m.ip_version != 4:
        return False
    # The datagram ends inside the frame and the L4 checksum field ends inside the datagram
    # (so the segment length l3 end - l4_off cannot wrap and the store stays in the frame).
    cdef uint32_t l3_end = <uint32_t>m.l3_off + m.l3_len
    return l3_end <= frame_len and (
        <uint32_t>m.l4_off + <uint32_t>l4_checksum_offset(m.protocol) + 2 <= l3_end)


cdef inline uint32_t ipv4_header_bytes(
    const uint8_t* l3, uint32_t l3_off, uint32_t frame_len
) noexcept nogil:
    """The IHL of an IPv4 header in bytes, or 0 when it is below 20 or runs past the frame
    (the record only promises the first 20 bytes)."""
    cdef uint32_t ihl_bytes = (l3[0] & 0x0F) * 4
    if ihl_bytes < 20 or l3_off + ihl_bytes > frame_len:
        return 0
    return ihl_bytes


cdef inline void checksums_fix(
    uint8_t* f, uint32_t frame_len, const pkt_meta_t* m
) noexcept nogil:
    """Recompute the IPv4 header and L4 checksums of a parsed frame from scratch."""
    cdef uint8_t* l3 = f + m.l3_off
    cdef uint8_t* l4 = f + m.l4_off
    cdef uint32_t ihl_bytes
    if not meta_l3_ok(m, frame_len):
        return
    if m.ip_version == 4:
        ihl_bytes = ipv4_header_bytes(l3, m.l3_off, frame_len)
        if ihl_bytes == 0:
            return
        store_be16(l3 + 10, ipv4_header_checksum(l3, ihl_bytes))
    if l4_checksummable(m, frame_len):
        store_be16(
            l4 + l4_checksum_offset(m.protocol),
            l4_checksum(l3, l4, m.l3_off + m.l3_len - m.l4_off, m.ip_version, m.protocol),
        )


cdef inline bint checksums_valid(
    const uint8_t* f, uint32_t frame_len, const pkt_meta_t* m
) noexcept nogil:
    """Full-recompute oracle: IPv4 header sum and pseudo-header + segment sum fold to 0xFFFF."""
    cdef const uint8_t* l3 = f + m.l3_off
    cdef uint32_t ihl_bytes
    if not meta_l3_ok(m, frame_len):
        return False
    if m.ip_version == 4:
        ihl_bytes = ipv4_header_bytes(l3, m.l3_off, frame_len)
        if ihl_bytes == 0 or csum_partial(l3, ihl_bytes, 0) != 0xFFFF:
            return False
    if l4_checksummable(m, frame_len):
        return l4_checksum_valid(
            l3, f + m.l4_off, m.l3_off + m.l3_len - m.l4_off, m.ip_version, m.protocol
        )
    return True


# ---- Rewrite kernels on a parsed frame -----------------------------------------------------

cdef inline bint meta_l3_ok(const pkt_meta_t* m, uint32_t frame_len) noexcept nogil:
    """The record describes a whole IP packet inside the frame (fragments included)."""
    if m.status != PARSE_OK and m.status != PARSE_NONFIRST_FRAG:
        return False
    return <uint32_t>m.l3_off + (20 if m.ip_version == 4 else 40) <= frame_len and (
        m.ip_version == 4 or m.ip_version == 6
    )


cdef inline bint meta_ip_header_ok(const pkt_meta_t* m, uint32_t frame_len) noexcept nogil:
    """The IP header itself parsed and lies inside the frame, even if L4 or an IPv6
    extension header is malformed: enough for TTL and ECN, which touch only that header."""
    if m.status != PARSE_OK and not (PARSE_TRUNC_EXTHDR <= m.status <= PARSE_NONFIRST_FRAG):
        return False
    if m.ip_version == 4:
        return <uint32_t>m.l3_off + 20 <= frame_len
    if m.ip_version == 6:
        return <uint32_t>m.l3_off + 40 <= frame_len
    return False


cdef inline int ttl_decrement(uint8_t* frame, uint32_t frame_len, pkt_meta_t* m) noexcept nogil:
    """Decrement the IPv4 TTL (with eqn. 3 on the TTL/protocol word) or IPv6 hop limit.

    Returns the new value, TTL_EXPIRED (frame unchanged) when it is <= 1, or TTL_SKIPPED.
    """
    if not meta_ip_header_ok(m, frame_len):
        return TTL_SKIPPED
    cdef uint8_t* l3 = frame + m.l3_off
    cdef uint16_t old_word
    if m.ip_version == 4:
        if l3[8] <= 1:
            return TTL_EXPIRED
        old_word = load_be16(l3 + 8)
        l3[8] -= 1
        store_be16(l3 + 10, csum_replace16(load_be16(l3 + 10), old_word, load_be16(l3 + 8)))
        m.ttl = l3[8]
        return l3[8]
    if l3[7] <= 1:
        return TTL_EXPIRED
    l3[7] -= 1
    m.ttl = l3[7]
    return l3[7]


# ---- NAT: a per-call plan applied per packet -------------------------------------------
#
# The checksum arithmetic of NAT runs on native-order words (memcpy loads, no byte shuffles):
# one's-complement sums commute with byte swapping (RFC 1071 §2(B)), and a delta that is
# congruent mod 0xFFFF and zero exactly when the big-endian one is zero gives eqn. 3 the same
# result, so the stored checksums are bit-identical to big-endian word arithmetic.

ctypedef struct nat_plan_t:
    uint8_t ip_version      # family the addresses are for (0: no address given)
    bint has_src
    bint has_dst
    int n_words32           # 32-bit words per address: 1 (IPv4) or 4 (IPv6)
    uint32_t src_words[4]   # new addresses as native-order loads (copies: frames can't alias)
    uint32_t dst_words[4]
    uint32_t src_sum        # folded native-order sum of the new address's words
    uint32_t dst_sum
    int32_t sport           # new port in host order, -1: keep
    int32_t dport


cdef inline uint32_t words32_sum(const uint32_t* words, int n_words32) noexcept nogil:
    """Folded one's-complement sum of native 32-bit words (0 only if every word is 0)."""
    cdef uint64_t s = 0
    cdef int k
    for k in range(n_words32):
        s += words[k]
    return csum_fold(s)


cdef inline void nat_plan_init(
    nat_plan_t* p,
    uint8_t ip_version,
    const uint8_t* new_src,
    const uint8_t* new_dst,
    int32_t new_sport,
    int32_t new_dport,
) noexcept nogil:
    """Decode one NAT decision (addresses NULL = keep, 4 or 16 bytes by `ip_version`; ports
    -1 = keep) into a plan, precomputing the new addresses' word sums once."""
    cdef int k
    p.ip_version = ip_version
    p.n_words32 = 1 if ip_version == 4 else (4 if ip_version == 6 else 0)
    p.has_src = new_src != NULL and p.n_words32 > 0
    p.has_dst = new_dst != NULL and p.n_words32 > 0
    p.src_sum = p.dst_sum = 0
    for k in range(4):
        p.src_words[k] = p.dst_words[k] = 0
    if p.has_src:
        memcpy(p.src_words, new_src, 4 * p.n_words32)
        p.src_sum = words32_sum(p.src_words, p.n_words32)
    if p.has_dst:
        memcpy(p.dst_words, new_dst, 4 * p.n_words32)
        p.dst_sum = words32_sum(p.dst_words, p.n_words32)
    p.sport = new_sport
    p.dport = new_dport


cdef inline uint32_t address_swap(
    uint8_t* field,
    uint8_t* meta_field,
    const uint32_t* new_words,
    uint32_t new_sum,
    int n_words32,
    bint* changed,
) noexcept nogil:
    """Write a new address over `field` (and the record) if it differs; return its eqn. 3
    delta (native order), 0 when it is already the new address."""
    cdef uint64_t old_complement_sum = 0
    cdef uint32_t differ = 0
    cdef uint32_t w
    cdef int k
    for k in range(n_words32):
        w = load_ne32(field + 4 * k)
        differ |= w ^ new_words[k]
        old_complement_sum += <uint32_t>~w
    if differ == 0:
        return 0
    memcpy(field, new_words, 4 * n_words32)
    memcpy(meta_field, new_words, 4 * n_words32)
    changed[0] = True
    # Two folds (not four) leave < 0x20004: congruent mod 0xFFFF, 0 only for a 0 sum, and
    # small enough for csum_apply, which is all eqn. 3 needs of a delta.
    old_complement_sum = (old_complement_sum & 0xFFFFFFFFU) + (old_complement_sum >> 32)
    return <uint32_t>((old_complement_sum & 0xFFFF) + (old_complement_sum >> 16)) + new_sum


cdef inline uint32_t addresses_swap(
    uint8_t* src_field,
    pkt_meta_t* m,
    const nat_plan_t* p,
    int n_words32,
    bint has_src,
    bint has_dst,
    bint* changed,
) noexcept nogil:
    """The plan's source and destination (adjacent at `src_field`) swapped in; their delta.
    `has_src`/`has_dst` are the plan's own flags (see nat_apply_shaped)."""
    cdef uint32_t delta = 0
    if has_src:
        delta = address_swap(src_field, m.src, p.src_words, p.src_sum, n_words32, changed)
    if has_dst:
        delta += address_swap(src_field + 4 * n_words32, m.dst, p.dst_words, p.dst_sum,
                              n_words32, changed)
    return delta


cdef inline uint32_t port_swap(
    uint8_t* field, uint16_t* meta_a, uint16_t* meta_b, int32_t new_port, bint* changed
) noexcept nogil:
    """Write a new port (host order, -1 = keep) if it differs, and into the record's
    `meta_a`/`meta_b` (the same field, or sport and dport for an echo identifier); return
    its native eqn. 3 delta."""
    if new_port < 0:
        return 0
    cdef uint16_t old_ne = load_ne16(field)
    cdef uint16_t new_ne = <uint16_t>new_port
    if LITTLE_ENDIAN:
        new_ne = bswap16(new_ne)
    if old_ne == new_ne:
        return 0
    store_ne16(field, new_ne)
    meta_a[0] = meta_b[0] = <uint16_t>new_port
    changed[0] = True
    return <uint32_t><uint16_t>~old_ne + new_ne


cdef inline int nat_apply(
    uint8_t* frame, uint32_t frame_len, pkt_meta_t* m, const nat_plan_t* p
) noexcept nogil:
    """SNAT/DNAT one parsed frame in place by a plan; REWRITE_SKIPPED if the plan's addresses
    are for the other family.

    IPv4 header checksum and the TCP/UDP/ICMPv6 checksum (pseudo-header) follow by eqn. 3,
    each updated once. For ICMP/ICMPv6 echo the identifier is the port: the plan's sport, or
    its dport when only that is given. A stored IPv4 UDP checksum of 0 stays 0; a computed
    UDP 0 becomes 0xFFFF. Non-first fragments have no L4 header: only addresses change.
    """
    if m.ip_version == 4:
        return nat_apply_shaped(frame, frame_len, m, p, 4, p.has_src, p.has_dst)
    if m.ip_version == 6:
        return nat_apply_shaped(frame, frame_len, m, p, 6, p.has_src, p.has_dst)
    return REWRITE_SKIPPED


cdef inline int nat_apply_shaped(
    uint8_t* frame,
    uint32_t frame_len,
    pkt_meta_t* m,
    const nat_plan_t* p,
    uint8_t family,
    bint has_src,
    bint has_dst,
) noexcept nogil:
    """nat_apply for frames of one `family`, with the plan's has_src/has_dst passed in.

    Called with literal arguments (a batch whose one plan is known before its loop), the C
    compiler folds the family and address-shape tests out of the per-packet body. Frames of
    another family are REWRITE_SKIPPED.
    """
    if m.ip_version != family:
        return REWRITE_SKIPPED
    if (has_src or has_dst) and p.ip_version != family:
        return REWRITE_SKIPPED
    if m.status != PARSE_OK and m.status != PARSE_NONFIRST_FRAG:
        return REWRITE_SKIPPED
    if <uint32_t>m.l3_off + (20 if family == 4 else 40) > frame_len:
        return REWRITE_SKIPPED
    cdef uint8_t* l3 = frame + m.l3_off
    cdef uint8_t* l4 = frame + m.l4_off
    cdef uint32_t addr_delta = 0
    cdef uint32_t port_delta = 0
    cdef bint changed = False
    cdef int csum_off = -1     # L4 checksum field, -1: no L4 checksum to maintain
    cdef bint pseudo = True    # the L4 checksum covers the addresses (not ICMPv4)
    cdef bint udp = m.protocol == PROTO_UDP
    cdef bint echo
    cdef int32_t new_sport = p.sport
    cdef int32_t new_dport = p.dport
    cdef uint16_t stored

    if m.status == PARSE_OK and (m.flags & META_L4_VALID):
        if m.protocol == PROTO_TCP:
            csum_off = 16
        elif udp:
            csum_off = 6
        elif (m.protocol == PROTO_ICMP and family == 4) or (
            m.protocol == PROTO_ICMPV6 and family == 6
        ):
            csum_off = 2    # ICMPv6 sums the pseudo-header for every type, ICMPv4 never
            pseudo = m.protocol == PROTO_ICMPV6
            echo = is_icmp_echo(m.protocol, m.icmp_type)
            if not echo:
                new_sport = -1
            elif new_sport < 0:
                new_sport = new_dport
            new_dport = -1
        else:
            new_sport = new_dport = -1
        if csum_off >= 0 and <uint32_t>m.l4_off + (20 if csum_off == 16 else 8) > frame_len:
            return REWRITE_SKIPPED
    else:
        new_sport = new_dport = -1
    if udp and csum_off >= 0 and family == 6 and load_ne16(l4 + 6) == 0:
        return REWRITE_BAD_L4_CSUM

    # Constant address widths per family, so the word loops and copies unroll.
    if family == 4:
        addr_delta = addresses_swap(l3 + 12, m, p, 1, has_src, has_dst, &changed)
        if addr_delta != 0:
            store_ne16(l3 + 10, csum_apply(load_ne16(l3 + 10), addr_delta))
    else:
        addr_delta = addresses_swap(l3 + 8, m, p, 4, has_src, has_dst, &changed)

    if csum_off == 2:   # ICMP: an echo identifier is the port (new_sport is -1 otherwise)
        port_delta = port_swap(l4 + 4, &m.sport, &m.dport, new_sport, &changed)
    else:
        port_delta = port_swap(l4, &m.sport, &m.sport, new_sport, &changed)
        port_delta += port_swap(l4 + 2, &m.dport, &m.dport, new_dport, &changed)

    if not changed:
        return REWRITE_UNCHANGED
    if csum_off >= 0:
        stored = load_ne16(l4 + csum_off)
        if not (udp and stored == 0):
            if pseudo:
                port_delta += addr_delta
            stored = csum_apply(stored, port_delta)
            if udp and stored == 0:
                stored = 0xFFFF
            store_ne16(l4 + csum_off, stored)
    return REWRITE_DONE


cdef inline int nat_rewrite(
    uint8_t* frame,
    uint32_t frame_len,
    pkt_meta_t* m,
    const uint8_t* new_src,
    const uint8_t* new_dst,
    int32_t new_sport,
    int32_t new_dport,
) noexcept nogil:
    """SNAT/DNAT in place: addresses (NULL = keep, 4 or 16 bytes by the frame's family) and
    ports (-1 = keep); one plan for one frame (see nat_apply)."""
    cdef nat_plan_t plan
    nat_plan_init(&plan, m.ip_version, new_src, new_dst, new_sport, new_dport)
    return nat_apply(frame, frame_len, m, &plan)


# tcp_mss_offset results besides an offset.
cdef enum:
    MSS_NOT_SYN = -2        # not a SYN, or a data offset that does not fit the segment
    MSS_NO_OPTION = -1      # a SYN without a usable MSS option (EOL, malformed walk, none)


cdef inline int tcp_mss_offset(const uint8_t* tcp, uint32_t seg_len) noexcept nogil:
    """Offset of the first MSS option's value in a SYN segment (or MSS_NOT_SYN/NO_OPTION).

    `seg_len` is how many segment bytes exist (the lesser of frame and IP-declared length).
    The option walk stops at EOL, a length < 2, an option past the data offset, or the first
    MSS option (kind 2, length 4); other kind-2 lengths are skipped like unknown options.
    """
    if seg_len < 20 or not (tcp[13] & 0x02):
        return MSS_NOT_SYN
    cdef uint32_t doff = (tcp[12] >> 4) * 4
    if doff < 20 or doff > seg_len:
        return MSS_NOT_SYN
    cdef uint32_t pos = 20
    cdef uint32_t opt_len
    while pos + 4 <= doff:
        if tcp[pos] == 0:
            break
        if tcp[pos] == 1:
            pos += 1
            continue
        opt_len = tcp[pos + 1]
        if opt_len < 2 or pos + opt_len > doff:
            break
        if tcp[pos] == 2 and opt_len == 4:
            return <int>pos + 2
        pos += opt_len
    return MSS_NO_OPTION


cdef inline int mss_clamp_tcp(uint8_t* tcp, uint32_t seg_len, uint16_t max_mss) noexcept nogil:
    """Lower the first MSS option of a SYN segment to `max_mss`, fixing the checksum.

    Only a larger MSS is lowered. An MSS value at an odd offset straddles two checksum
    words, which adds its byte-swapped value to the sum, so the update uses swapped words.
    """
    if max_mss == 0:
        return REWRITE_SKIPPED
    cdef int at = tcp_mss_offset(tcp, seg_len)
    if at == MSS_NOT_SYN:
        return REWRITE_SKIPPED
    if at == MSS_NO_OPTION:
        return REWRITE_UNCHANGED
    cdef uint16_t old_mss = load_be16(tcp + at)
    if old_mss <= max_mss:
        return REWRITE_UNCHANGED
    store_be16(tcp + at, max_mss)
    if at & 1:
        store_be16(tcp + 16, csum_replace16(load_be16(tcp + 16), bswap16(old_mss),
                                            bswap16(max_mss)))
    else:
        store_be16(tcp + 16, csum_replace16(load_be16(tcp + 16), old_mss, max_mss))
    return REWRITE_DONE


cdef inline uint8_t* tcp_segment(
    uint8_t* frame, uint32_t frame_len, const pkt_meta_t* m, uint32_t* seg_len
) noexcept nogil:
    """The TCP header of a parsed, unfragmented-or-first-fragment segment, or NULL.

    `seg_len` gets the bytes present: up to the IP-declared end, within the frame.
    """
    if m.status != PARSE_OK or not (m.flags & META_L4_VALID) or m.protocol != PROTO_TCP:
        return NULL
    cdef uint32_t seg_end = <uint32_t>m.l3_off + m.l3_len
    if seg_end > frame_len:
        seg_end = frame_len
    if <uint32_t>m.l4_off + 20 > seg_end:
        return NULL
    seg_len[0] = seg_end - m.l4_off
    return frame + m.l4_off


cdef inline int mss_clamp(
    uint8_t* frame, uint32_t frame_len, const pkt_meta_t* m, uint16_t max_mss
) noexcept nogil:
    """MSS clamp on a parsed frame: TCP, not a non-first fragment, IPv4 or IPv6."""
    cdef uint32_t seg_len = 0
    cdef uint8_t* tcp = tcp_segment(frame, frame_len, m, &seg_len)
    if tcp == NULL:
        return REWRITE_SKIPPED
    return mss_clamp_tcp(tcp, seg_len, max_mss)


# Return values of ecn_mark_ce.
cdef enum:
    ECN_NOT_ECT = 0      # not ECN-capable: left unchanged, the caller must drop instead
    ECN_MARKED = 1       # ECT(0) or ECT(1) rewritten to CE
    ECN_ALREADY_CE = 2   # already CE: unchanged


cdef inline int ecn_mark_ce(uint8_t* l3, uint32_t l3_avail, uint8_t ip_version) noexcept nogil:
    """Set ECN to CE (RFC 3168) on an IPv4/IPv6 header at `l3`, fixing the IPv4 checksum.

    Only ECT(0)/ECT(1) packets are marked. Returns ECN_NOT_ECT for anything else, including a
    header shorter than the bytes it needs (`l3_avail`).
    """
    cdef uint16_t old_word, new_word, ecn
    if ip_version == 4:
        if l3_avail < 20:
            return ECN_NOT_ECT
        ecn = l3[1] & 0x03
        if ecn == 0:
            return ECN_NOT_ECT
        if ecn == 3:
            return ECN_ALREADY_CE
        old_word = load_be16(l3)
        l3[1] = l3[1] | 0x03
        new_word = load_be16(l3)
        store_be16(l3 + 10, csum_replace16(load_be16(l3 + 10), old_word, new_word))
        return ECN_MARKED
    if ip_version == 6:
        if l3_avail < 40:
            return ECN_NOT_ECT
        ecn = (l3[1] >> 4) & 0x03
        if ecn == 0:
            return ECN_NOT_ECT
        if ecn == 3:
            return ECN_ALREADY_CE
        l3[1] = l3[1] | 0x30
        return ECN_MARKED
    return ECN_NOT_ECT


cdef inline int ecn_mark_meta(uint8_t* frame, uint32_t frame_len, pkt_meta_t* m) noexcept nogil:
    """ecn_mark_ce on a parsed frame, keeping the record's tos in step (like ttl_decrement)."""
    if not meta_ip_header_ok(m, frame_len):
        return ECN_NOT_ECT
    cdef int r = ecn_mark_ce(frame + m.l3_off, frame_len - m.l3_off, m.ip_version)
    if r == ECN_MARKED:
        m.tos = m.tos | 0x03
    return r
