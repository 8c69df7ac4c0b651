# Included by session.pyx. Key hashing and equality, and the key transforms of a NAT
# session (docs/sessions.md, "Keys" and "Forward and reverse entries"): pure functions of a
# key and a decision. ICMP/ICMPv6 ports are never rewritten or swapped. Hash, equality and
# the key builder are the ones every module shares (lib/flowkey.pxd, cimported by session.pyx).

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
