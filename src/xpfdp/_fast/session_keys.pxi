# Included by session.pyx. Key hashing and equality, and the key transforms of a NAT
# session (docs/sessions.md, "Keys" and "Forward and reverse entries"): pure functions of a
# key and a decision. ICMP/ICMPv6 ports are never rewritten or swapped.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static inline uint64_t xs_mum(uint64_t a, uint64_t b) {
        __uint128_t r = (__uint128_t)a * b;
        return (uint64_t)r ^ (uint64_t)(r >> 64);
    }
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define XS_W0_MASK 0xFFFFFFFFFFFF0000ull
    #else
    #define XS_W0_MASK 0x0000FFFFFFFFFFFFull
    #endif
    /* 64-bit hash of a 40-byte key, ignoring its 2 pad bytes (word 0, bytes 6..7). */
    static inline uint64_t xs_hash_key(const void *p, uint64_t seed) {
        uint64_t w[5];
        memcpy(w, p, 40);
        w[0] &= XS_W0_MASK;
        /* Each word is multiplied by a constant (never by another data word, so no input
           can zero a product and erase the rest of the key); the five products are
           independent, then folded by one data-by-data multiply. */
        uint64_t a = xs_mum(w[0] ^ seed ^ 0xa0761d6478bd642full, 0xe7037ed1a0b428dbull);
        uint64_t b = xs_mum(w[1] ^ seed ^ 0x8ebc6af09c88c6e3ull, 0x589965cc75374cc3ull);
        uint64_t c = xs_mum(w[2] ^ seed ^ 0x1d8e4e27c47d124full, 0x9E3779B97F4A7C15ull);
        uint64_t d = xs_mum(w[3] ^ seed ^ 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull);
        uint64_t e = xs_mum(w[4] ^ seed ^ 0x27d4eb2f165667c5ull, 0x85ebca77c2b2ae63ull);
        return xs_mum(a ^ c ^ e ^ 0xff51afd7ed558ccdull, b ^ d ^ 0xc4ceb9fe1a85ec53ull);
    }
    /* 64-bit hash of a 16-byte address (interning of NAT addresses). */
    static inline uint64_t xs_hash_addr(const void *p, uint64_t seed) {
        uint64_t w[2];
        memcpy(w, p, 16);
        return xs_mum(xs_mum(w[0] ^ seed ^ 0xa0761d6478bd642full, 0xe7037ed1a0b428dbull)
                      ^ 0xff51afd7ed558ccdull,
                      xs_mum(w[1] ^ seed ^ 0x8ebc6af09c88c6e3ull, 0x589965cc75374cc3ull)
                      ^ 0xc4ceb9fe1a85ec53ull);
    }
    #define xs_prefetch(p) __builtin_prefetch((p), 0, 3)
    static inline int xs_key_eq(const void *a, const void *b) {
        uint64_t x[5], y[5];
        memcpy(x, a, 40);
        memcpy(y, b, 40);
        return (((x[0] ^ y[0]) & XS_W0_MASK) | (x[1] ^ y[1]) | (x[2] ^ y[2])
                | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
    }
    """
    uint64_t xs_hash_key(const void* p, uint64_t seed) nogil
    int xs_key_eq(const void* a, const void* b) nogil
    uint64_t xs_hash_addr(const void* p, uint64_t seed) nogil
    void xs_prefetch(const void* p) nogil


cdef inline bint key_valid(const skey_t* k) noexcept nogil:
    return k.af == 2 or k.af == 10


cdef inline bint is_icmp(uint8_t proto) noexcept nogil:
    return proto == PROTO_ICMP or proto == PROTO_ICMPV6


cdef inline void nat64_family(skey_t* out) noexcept nogil:
    """NAT64 crosses families: flip af and map ICMPv6 <-> ICMP to fit the new family."""
    if out.af == 10:
        out.af = 2
        if out.proto == PROTO_ICMPV6:
            out.proto = PROTO_ICMP
    else:
        out.af = 10
        if out.proto == PROTO_ICMP:
            out.proto = PROTO_ICMPV6


cdef inline void k_translated(const skey_t* k, const sdecision_t* d, skey_t* out) noexcept nogil:
    out[0] = k[0]
    out.pad = 0
    if d.nat_flags & NAT_RS:
        memcpy(out.src, d.rs, 16)
    if d.nat_flags & NAT_RD:
        memcpy(out.dst, d.rd, 16)
    if not is_icmp(k.proto):
        if d.nat_flags & NAT_RSP:
            out.sport = d.rsp
        if d.nat_flags & NAT_RDP:
            out.dport = d.rdp


cdef inline void k_forward_wire(const skey_t* k, const sdecision_t* d, skey_t* out) noexcept nogil:
    k_translated(k, d, out)
    if d.nat_flags & NAT_64:
        nat64_family(out)


cdef inline void k_reverse_wire(const skey_t* k, const sdecision_t* d, skey_t* out) noexcept nogil:
    out.af = k.af
    out.proto = k.proto
    out.pad = 0
    if d.nat_flags & NAT_RD:
        memcpy(out.src, d.rd, 16)
    else:
        memcpy(out.src, k.dst, 16)
    if d.nat_flags & NAT_RS:
        memcpy(out.dst, d.rs, 16)
    else:
        memcpy(out.dst, k.src, 16)
    if is_icmp(k.proto):
        out.sport = k.sport
        out.dport = k.dport
    else:
        out.sport = d.rdp if d.nat_flags & NAT_RDP else k.dport
        out.dport = d.rsp if d.nat_flags & NAT_RSP else k.sport
    if d.nat_flags & NAT_64:
        nat64_family(out)


cdef inline void k_reverse_canonical(const skey_t* k, skey_t* out) noexcept nogil:
    out.af = k.af
    out.proto = k.proto
    out.pad = 0
    memcpy(out.src, k.dst, 16)
    memcpy(out.dst, k.src, 16)
    if is_icmp(k.proto):
        out.sport = k.sport
        out.dport = k.dport
    else:
        out.sport = k.dport
        out.dport = k.sport


cdef inline void d_reverse(const skey_t* k, const sdecision_t* d, sdecision_t* out) noexcept nogil:
    """The reply direction's NAT: undo each rewrite of the forward decision."""
    memset(out, 0, sizeof(sdecision_t))
    out.disposition = d.disposition
    out.egress_port = d.egress_port
    out.nat_flags = d.nat_flags & (NAT_64 | NAT_PTV6)
    if d.nat_flags & NAT_RD:
        out.nat_flags |= NAT_RS
        memcpy(out.rs, k.dst, 16)
    if d.nat_flags & NAT_RS:
        out.nat_flags |= NAT_RD
        memcpy(out.rd, k.src, 16)
    if d.nat_flags & NAT_RDP:
        out.nat_flags |= NAT_RSP
        out.rsp = k.dport
    if d.nat_flags & NAT_RSP:
        out.nat_flags |= NAT_RDP
        out.rdp = k.sport


cdef inline int64_t make_handle(uint32_t gen, uint32_t slot) noexcept nogil:
    return <int64_t>((<uint64_t>gen << 32) | slot)
