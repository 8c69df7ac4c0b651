# The session key of a packet: one builder from the parser record, one equality and one
# hash, shared by the session table, the pipeline's session stage and its flow cache.
#
# A packet has a key when it is IPv4/IPv6, parsed OK and its L4 header was read (every
# protocol: TCP/UDP carry ports, ICMP/ICMPv6 echo the identifier in sport, other protocols
# ports 0). A non-first fragment has no key: its ports travel in the first fragment, and
# the addresses alone would name a different (port-less) flow.

from libc.stdint cimport uint8_t, uint16_t, uint64_t
from libc.string cimport memset

from xpfdp._fast.includes.compat cimport LITTLE_ENDIAN, load_ne32, load_ne64, mum, store_ne64
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
    af 0, which every table call treats as invalid) if it has none. The key is written as
    five 8-byte words, so the hash and the equality that read it back by words get each
    word forwarded from one store (narrow overlapping stores would stall those loads)."""
    cdef uint8_t* w = <uint8_t*>k
    if (m.status != PARSE_OK or not (m.flags & META_L4_VALID)
            or (m.ip_version != 4 and m.ip_version != 6)):
        memset(k, 0, sizeof(skey_t))
        return False
    cdef uint64_t af = 2 if m.ip_version == 4 else 10
    cdef uint64_t dport = 0
    if m.protocol != PROTO_ICMP and m.protocol != PROTO_ICMPV6:
        dport = m.dport              # the parser leaves sport 0 for ICMP other than echo
    if LITTLE_ENDIAN:
        store_ne64(w, af | (<uint64_t>m.protocol << 8) | (<uint64_t>m.sport << 16)
                   | (dport << 32))
    else:
        store_ne64(w, (af << 56) | (<uint64_t>m.protocol << 48) | (<uint64_t>m.sport << 32)
                   | (dport << 16))
    if m.ip_version == 4:            # an IPv4 key is zero past its 4 address bytes
        store_ne64(w + 8, <uint64_t>load_ne32(m.src) << (0 if LITTLE_ENDIAN else 32))
        store_ne64(w + 16, 0)
        store_ne64(w + 24, <uint64_t>load_ne32(m.dst) << (0 if LITTLE_ENDIAN else 32))
        store_ne64(w + 32, 0)
    else:
        store_ne64(w + 8, load_ne64(m.src))
        store_ne64(w + 16, load_ne64(m.src + 8))
        store_ne64(w + 24, load_ne64(m.dst))
        store_ne64(w + 32, load_ne64(m.dst + 8))
    return True


cdef inline uint64_t flowkey_word(const skey_t* k, int i) noexcept nogil:
    """Native 64-bit word i (0..4) of a key, the pad bytes of word 0 masked out."""
    cdef uint64_t w = load_ne64(<const uint8_t*>k + 8 * i)
    if i == 0:
        w &= 0x0000FFFFFFFFFFFFULL if LITTLE_ENDIAN else 0xFFFFFFFFFFFF0000ULL
    return w


cdef inline bint flowkey_eq(const skey_t* a, const skey_t* b) noexcept nogil:
    """Key equality ignoring the pad bytes."""
    return ((flowkey_word(a, 0) ^ flowkey_word(b, 0)) | (flowkey_word(a, 1) ^ flowkey_word(b, 1))
            | (flowkey_word(a, 2) ^ flowkey_word(b, 2)) | (flowkey_word(a, 3) ^ flowkey_word(b, 3))
            | (flowkey_word(a, 4) ^ flowkey_word(b, 4))) == 0


cdef inline uint64_t flowkey_hash(const skey_t* k, uint64_t seed) noexcept nogil:
    """64-bit hash of a key (pad ignored) under `seed`. Each word is multiplied by a
    constant, never by another data word, so no input can zero a product and erase the
    rest of the key; the five independent products are folded by one data multiply."""
    cdef uint64_t a = mum(flowkey_word(k, 0) ^ seed ^ 0xa0761d6478bd642fULL, 0xe7037ed1a0b428dbULL)
    cdef uint64_t b = mum(flowkey_word(k, 1) ^ seed ^ 0x8ebc6af09c88c6e3ULL, 0x589965cc75374cc3ULL)
    cdef uint64_t c = mum(flowkey_word(k, 2) ^ seed ^ 0x1d8e4e27c47d124fULL, 0x9E3779B97F4A7C15ULL)
    cdef uint64_t d = mum(flowkey_word(k, 3) ^ seed ^ 0xc2b2ae3d27d4eb4fULL, 0x165667b19e3779f9ULL)
    cdef uint64_t e = mum(flowkey_word(k, 4) ^ seed ^ 0x27d4eb2f165667c5ULL, 0x85ebca77c2b2ae63ULL)
    return mum(a ^ c ^ e ^ 0xff51afd7ed558ccdULL, b ^ d ^ 0xc4ceb9fe1a85ec53ULL)
