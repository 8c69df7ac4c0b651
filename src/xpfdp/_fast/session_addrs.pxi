# Included by session.pyx. NAT addresses of the records (saddrs_t): a record stores its
# decision's 8-byte head inline and its NAT addresses in a side pool, because most sessions
# rewrite to one of a handful of pool addresses. A single address is interned (one shared,
# reference-counted 16-byte cell per distinct address); a record rewriting both source and
# destination gets its own 32-byte cell. See docs/sessions.md, "Records and handles".


cdef inline bint pool_reserve(saddr_pool_t* p, size_t cell_bytes) noexcept nogil:
    """Room for one more address cell (growth by doubling)."""
    if p.free_head != NO_SLOT or p.hwm < p.cap:
        return True
    if p.cap >= MAX_SLOTS:
        return False
    cdef uint32_t newcap = p.cap * 2 if p.cap else 16
    cdef uint8_t* nc = <uint8_t*>realloc(p.cells, <size_t>newcap * cell_bytes)
    if nc == NULL:
        return False
    p.cells = nc
    p.cap = newcap
    return True


cdef inline uint32_t pool_alloc(saddr_pool_t* p, size_t cell_bytes) noexcept nogil:
    """A cell; the caller has reserved one with pool_reserve."""
    cdef uint32_t c
    if p.free_head != NO_SLOT:
        c = p.free_head
        memcpy(&p.free_head, p.cells + <size_t>c * cell_bytes, sizeof(uint32_t))
    else:
        c = p.hwm
        p.hwm += 1
    p.used += 1
    return c


cdef inline void pool_free(saddr_pool_t* p, size_t cell_bytes, uint32_t c) noexcept nogil:
    memcpy(p.cells + <size_t>c * cell_bytes, &p.free_head, sizeof(uint32_t))
    p.free_head = c
    p.used -= 1


cdef inline uint32_t intern_home(const saddrs_t* a, uint32_t cell, uint64_t seed,
                                 uint32_t mask) noexcept nogil:
    return <uint32_t>xs_hash_addr(a.one.cells + <size_t>cell * 16, seed) & mask


cdef bint addrs_reserve(saddrs_t* a, uint64_t seed) noexcept nogil:
    """Room for the NAT addresses of one more record (both pools and the intern set)."""
    if not (pool_reserve(&a.one, 16) and pool_reserve(&a.two, 32)):
        return False
    cdef sintern_t* t = &a.intern
    cdef uint32_t* nr
    cdef uint32_t* ns
    cdef uint32_t newcap, i, j, c
    if t.refs_cap < a.one.cap:
        nr = <uint32_t*>realloc(t.refs, <size_t>a.one.cap * sizeof(uint32_t))
        if nr == NULL:
            return False
        t.refs = nr
        t.refs_cap = a.one.cap
    if (<uint64_t>t.count + 1) * 4 <= <uint64_t>t.cap * 3:
        return True
    newcap = t.cap * 2 if t.cap else 16
    ns = <uint32_t*>malloc(<size_t>newcap * sizeof(uint32_t))
    if ns == NULL:
        return False
    memset(ns, 0xFF, <size_t>newcap * sizeof(uint32_t))
    for i in range(t.cap):
        c = t.slots[i]
        if c == NO_SLOT:
            continue
        j = intern_home(a, c, seed, newcap - 1)
        while ns[j] != NO_SLOT:
            j = (j + 1) & (newcap - 1)
        ns[j] = c
    free(t.slots)
    t.slots = ns
    t.cap = newcap
    return True


cdef inline uint32_t intern_acquire(saddrs_t* a, const uint8_t* addr, uint64_t seed) noexcept nogil:
    """The shared 16-byte cell holding `addr` (created if new); the caller reserved."""
    cdef sintern_t* t = &a.intern
    cdef uint32_t mask = t.cap - 1, c
    cdef uint32_t i = <uint32_t>xs_hash_addr(addr, seed) & mask
    while t.slots[i] != NO_SLOT:
        c = t.slots[i]
        if memcmp(a.one.cells + <size_t>c * 16, addr, 16) == 0:
            t.refs[c] += 1
            return c
        i = (i + 1) & mask
    c = pool_alloc(&a.one, 16)
    memcpy(a.one.cells + <size_t>c * 16, addr, 16)
    t.refs[c] = 1
    t.slots[i] = c
    t.count += 1
    return c


cdef void intern_release(saddrs_t* a, uint32_t cell, uint64_t seed) noexcept nogil:
    """Drop one reference; the last one removes the address and frees its cell."""
    cdef sintern_t* t = &a.intern
    t.refs[cell] -= 1
    if t.refs[cell]:
        return
    cdef uint32_t mask = t.cap - 1, j, kh
    cdef uint32_t i = intern_home(a, cell, seed, mask)
    cdef bint stay
    while t.slots[i] != cell:
        i = (i + 1) & mask
    j = i
    while True:  # backward-shift deletion (see ix_delete_at)
        j = (j + 1) & mask
        if t.slots[j] == NO_SLOT:
            break
        kh = intern_home(a, t.slots[j], seed, mask)
        if i <= j:
            stay = i < kh and kh <= j
        else:
            stay = i < kh or kh <= j
        if stay:
            continue
        t.slots[i] = t.slots[j]
        i = j
    t.slots[i] = NO_SLOT
    t.count -= 1
    pool_free(&a.one, 16, cell)


cdef inline void addrs_store(saddrs_t* a, srec_t* r, const sdecision_t* d,
                             uint64_t seed) noexcept nogil:
    """Store the decision of `r` (head inline, set addresses in a cell); the caller has
    released the record's old cell and reserved room (addrs_reserve)."""
    memcpy(&r.dec, d, sizeof(sdec_head_t))
    cdef uint8_t f = d.nat_flags & (NAT_RS | NAT_RD)
    if f == (NAT_RS | NAT_RD):
        r.addr_ref = pool_alloc(&a.two, 32)
        memcpy(a.two.cells + <size_t>r.addr_ref * 32, d.rs, 32)
    elif f:
        r.addr_ref = intern_acquire(a, &d.rs[0] if f == NAT_RS else &d.rd[0], seed)
    else:
        r.addr_ref = NO_SLOT


cdef inline void addrs_release(saddrs_t* a, srec_t* r, uint64_t seed) noexcept nogil:
    """Give back the record's address cell (if any)."""
    if r.addr_ref == NO_SLOT:
        return
    if (r.dec.nat_flags & (NAT_RS | NAT_RD)) == (NAT_RS | NAT_RD):
        pool_free(&a.two, 32, r.addr_ref)
    else:
        intern_release(a, r.addr_ref, seed)
    r.addr_ref = NO_SLOT


cdef inline void addrs_decision(const saddrs_t* a, const srec_t* r, sdecision_t* out) noexcept nogil:
    """The full decision of a record (an address whose NAT flag is clear reads as zeros)."""
    memcpy(out, &r.dec, sizeof(sdec_head_t))
    cdef uint8_t f = r.dec.nat_flags & (NAT_RS | NAT_RD)
    if f == (NAT_RS | NAT_RD):
        memcpy(out.rs, a.two.cells + <size_t>r.addr_ref * 32, 32)
    elif f == NAT_RS:
        memcpy(out.rs, a.one.cells + <size_t>r.addr_ref * 16, 16)
        memset(out.rd, 0, 16)
    elif f == NAT_RD:
        memset(out.rs, 0, 16)
        memcpy(out.rd, a.one.cells + <size_t>r.addr_ref * 16, 16)
    else:
        memset(out.rs, 0, 32)


cdef void addrs_free(saddrs_t* a) noexcept nogil:
    free(a.one.cells)
    free(a.two.cells)
    free(a.intern.refs)
    free(a.intern.slots)
