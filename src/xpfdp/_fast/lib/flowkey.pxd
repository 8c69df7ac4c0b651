# The session key of a packet: one builder from the parser record, one equality and one
# hash, shared by the session table, the pipeline's session stage and its flow cache.
#
# A packet has a key when it is IPv4/IPv6, parsed OK and its L4 header was read (every
# protocol: TCP/UDP carry ports, ICMP/ICMPv6 echo the identifier in sport, other protocols
# ports 0). A non-first fragment has no key: its ports travel in the first fragment, and
# the addresses alone would name a different (port-less) flow.

from libc.stdint cimport uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy, memset

from xpfdp._fast.includes.compat cimport mum
from xpfdp._fast.meta cimport META_L4_VALID, PARSE_OK, PROTO_ICMP, PROTO_ICMPV6, pkt_meta_t

# 40-byte directional 5-tuple. IPv4 addresses use bytes 0..3; `pad` is ignored by hash and
# equality. ICMP/ICMPv6 echo: sport = identifier, dport = 0.
ctypedef struct skey_t:
    uint8_t af            # 2 = AF_INET, 10 = AF_INET6
    uint8_t proto
    uint16_t sport
    uint16_t dport
    uint16_t pad
    uint8_t src[16]
    uint8_t dst[16]


cdef inline bint flowkey_from_meta(const pkt_meta_t* m, skey_t* k) noexcept nogil:
    """Fill `k` with the session key of one parsed packet; False (and an all-zero key,
    af 0, which every table call treats as invalid) if it has none."""
    memset(k, 0, sizeof(skey_t))
    if (m.status != PARSE_OK or not (m.flags & META_L4_VALID)
            or (m.ip_version != 4 and m.ip_version != 6)):
        return False
    k.af = 2 if m.ip_version == 4 else 10
    k.proto = m.protocol
    memcpy(k.src, m.src, 4 if m.ip_version == 4 else 16)
    memcpy(k.dst, m.dst, 4 if m.ip_version == 4 else 16)
    k.sport = m.sport                # the parser leaves 0 for ICMP other than echo
    if m.protocol != PROTO_ICMP and m.protocol != PROTO_ICMPV6:
        k.dport = m.dport
    return True


cdef inline void flowkey_words(const skey_t* k, uint64_t* w) noexcept nogil:
    """The key as five native 64-bit words with the pad bytes zeroed."""
    cdef skey_t t = k[0]
    t.pad = 0
    memcpy(w, &t, 40)


cdef inline bint flowkey_eq(const skey_t* a, const skey_t* b) noexcept nogil:
    """Key equality ignoring the pad bytes."""
    cdef uint64_t x[5]
    cdef uint64_t y[5]
    flowkey_words(a, x)
    flowkey_words(b, y)
    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])
            | (x[4] ^ y[4])) == 0


cdef inline uint64_t flowkey_hash(const skey_t* k, uint64_t seed) noexcept nogil:
    """64-bit hash of a key (pad ignored) under `seed`. Each word is multiplied by a
    constant, never by another data word, so no input can zero a product and erase the
    rest of the key; the five independent products are folded by one data multiply."""
    cdef uint64_t w[5]
    flowkey_words(k, w)
    cdef uint64_t a = mum(w[0] ^ seed ^ 0xa0761d6478bd642fULL, 0xe7037ed1a0b428dbULL)
    cdef uint64_t b = mum(w[1] ^ seed ^ 0x8ebc6af09c88c6e3ULL, 0x589965cc75374cc3ULL)
    cdef uint64_t c = mum(w[2] ^ seed ^ 0x1d8e4e27c47d124fULL, 0x9E3779B97F4A7C15ULL)
    cdef uint64_t d = mum(w[3] ^ seed ^ 0xc2b2ae3d27d4eb4fULL, 0x165667b19e3779f9ULL)
    cdef uint64_t e = mum(w[4] ^ seed ^ 0x27d4eb2f165667c5ULL, 0x85ebca77c2b2ae63ULL)
    return mum(a ^ c ^ e ^ 0xff51afd7ed558ccdULL, b ^ d ^ 0xc4ceb9fe1a85ec53ULL)
