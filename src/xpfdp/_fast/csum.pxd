# Inline checksum kernels shared by every Cython module that rewrites packets.
#
# `cdef inline` bodies live here (not in csum.pyx) so a cimporting module compiles them into
# its own loops with no cross-module call. The one incremental-update primitive is RFC 1624
# eqn. 3: HC' = ~(~HC + ~m + m'); every field helper is built on it.

from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef inline uint16_t load_be16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline void store_be16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>(v & 0xFF)


cdef inline uint16_t csum_replace16(uint16_t hc, uint16_t old, uint16_t new) noexcept nogil:
    """RFC 1624 eqn. 3 for one 16-bit word: the checksum after `old` became `new`."""
    cdef uint32_t s = <uint32_t>(<uint16_t>~hc) + <uint16_t>~old + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>~s


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
