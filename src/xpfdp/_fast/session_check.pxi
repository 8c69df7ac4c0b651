# Included by session.pyx. The O(N) invariant checker behind SessionTable.check_invariants
# (cold code, for tests and debugging; docs/sessions.md, "Invariants").


cdef object check_primary(stable_t* t):
    """I1: primary entries <-> live records, one each, stored under the record's key."""
    cdef uint32_t s, i, live = 0
    cdef uint64_t e
    seen = np.zeros(t.slab.hwm, dtype=np.uint8)
    for i in range(t.primary.cap):
        e = t.primary.slots[i]
        if <uint32_t>e == NO_SLOT:
            continue
        s = <uint32_t>e
        if s >= t.slab.hwm or not (t.slab.recs[s].meta.state & ST_LIVE):
            raise AssertionError(f"I1/I2: primary entry at {i} points at free slot {s}")
        if <uint32_t>(e >> 32) != <uint32_t>(xs_hash_key(&t.slab.recs[s].key, t.seed) >> 32):
            raise AssertionError(f"I1: primary entry at {i} is not stored under its record's key")
        if seen[s]:
            raise AssertionError(f"I1: slot {s} has two primary entries")
        seen[s] = 1
    for s in range(t.slab.hwm):
        if t.slab.recs[s].meta.state & ST_LIVE:
            live += 1
            if not seen[s]:
                raise AssertionError(f"I1: live slot {s} has no primary entry")
            if table_primary_slot(t, &t.slab.recs[s].key) != s:
                raise AssertionError(f"I1: key of slot {s} does not resolve to it")
    if live != t.primary.count:
        raise AssertionError(f"I1: len {t.primary.count} != live records {live}")
    return live


cdef object check_secondary(stable_t* t, sindex_t* ix, str name, int kind):
    """I2/I3 for one secondary index: every entry names a live record of the right
    direction whose derived key carries the entry's tag."""
    cdef uint32_t i, s, tag
    cdef uint64_t e
    cdef srec_t* r
    cdef skey_t k
    cdef sdecision_t d
    cdef Py_ssize_t n = 0
    for i in range(ix.cap):
        e = ix.slots[i]
        if <uint32_t>e == NO_SLOT:
            continue
        n += 1
        s = <uint32_t>e
        tag = <uint32_t>(e >> 32)
        if s >= t.slab.hwm or not (t.slab.recs[s].meta.state & ST_LIVE):
            raise AssertionError(f"I2: {name} entry at {i} points at free slot {s}")
        r = &t.slab.recs[s]
        addrs_decision(&t.addrs, r, &d)
        ok = False
        if kind == IX_ALIAS:
            if r.meta.flags & SM_REVERSE:
                k_translated(&r.key, &d, &k)
                ok = <uint32_t>(xs_hash_key(&k, t.seed) >> 32) == tag
        elif not (r.meta.flags & SM_REVERSE):
            if kind == IX_FWIRE:
                k_forward_wire(&r.key, &d, &k)
                ok = <uint32_t>(xs_hash_key(&k, t.seed) >> 32) == tag
            else:
                k_reverse_wire(&r.key, &d, &k)
                ok = <uint32_t>(xs_hash_key(&k, t.seed) >> 32) == tag
                k_reverse_canonical(&r.key, &k)
                ok = ok or <uint32_t>(xs_hash_key(&k, t.seed) >> 32) == tag
        if not ok:
            raise AssertionError(f"I3: {name} entry at {i} does not match slot {s}")
    if n != ix.count:
        raise AssertionError(f"{name}: count {ix.count} != entries {n}")


cdef object check_wheel(stable_t* t):
    """I7: every live record has a wheel entry at its scheduled tick, in the right bucket."""
    cdef uint32_t s, i, b
    cdef swheel_entry_t we
    cdef uint64_t wcount = 0
    sched = np.zeros(t.slab.hwm, dtype=np.uint8)
    for b in range(C_BUCKETS):
        for i in range(t.wheel.buckets[b].len):
            we = bucket_at(&t.wheel.buckets[b], i)[0]
            wcount += 1
            if we.slot < t.slab.hwm and t.slab.recs[we.slot].meta.state & ST_LIVE and \
                    t.slab.recs[we.slot].wheel_tick == we.tick:
                if (t.slab.recs[we.slot].wheel_tick & (C_BUCKETS - 1)) != b:
                    raise AssertionError(f"I7: entry for slot {we.slot} in wrong bucket")
                sched[we.slot] = 1
    if wcount != t.wheel.entries:
        raise AssertionError(f"wheel entry count {t.wheel.entries} != {wcount}")
    for s in range(t.slab.hwm):
        if t.slab.recs[s].meta.state & ST_LIVE and not sched[s]:
            raise AssertionError(f"I7: live slot {s} is not scheduled in the wheel")
    return wcount


cdef object check_addrs(stable_t* t):
    """Each interned cell counts exactly the records that use it."""
    cdef uint32_t s, i
    cdef srec_t* r
    refs = {}
    for s in range(t.slab.hwm):
        r = &t.slab.recs[s]
        if r.meta.state & ST_LIVE and (r.dec.nat_flags & (NAT_RS | NAT_RD)) in (NAT_RS, NAT_RD):
            refs[r.addr_ref] = refs.get(r.addr_ref, 0) + 1
    if len(refs) != t.addrs.intern.count or len(refs) != t.addrs.one.used:
        raise AssertionError(f"intern: {len(refs)} cells in use, table holds "
                             f"{t.addrs.intern.count}, pool {t.addrs.one.used}")
    for i in range(t.addrs.intern.cap):
        if t.addrs.intern.slots[i] == NO_SLOT:
            continue
        s = t.addrs.intern.slots[i]
        if refs.get(s, 0) != t.addrs.intern.refs[s]:
            raise AssertionError(f"intern: cell {s} counts {t.addrs.intern.refs[s]} "
                                 f"references, records hold {refs.get(s, 0)}")


cdef object check_free_list(stable_t* t, uint32_t live):
    """The free list holds exactly the slots that are not live."""
    cdef uint32_t s = t.slab.free_head
    nfree = 0
    while s != NO_SLOT:
        if t.slab.recs[s].meta.state & ST_LIVE:
            raise AssertionError(f"free list holds live slot {s}")
        nfree += 1
        if nfree > t.slab.hwm:
            raise AssertionError("free list has a cycle")
        s = t.slab.recs[s].addr_ref
    if nfree + live != t.slab.hwm:
        raise AssertionError(f"slab: {live} live + {nfree} free != {t.slab.hwm} slots")


cdef object table_check(stable_t* t):
    """Every invariant; raises AssertionError naming the first violation."""
    live = check_primary(t)
    check_secondary(t, &t.natrev, "nat_reverse", IX_NATREV)
    check_secondary(t, &t.fwire, "forward_wire", IX_FWIRE)
    check_secondary(t, &t.alias, "alias", IX_ALIAS)
    wcount = check_wheel(t)
    check_addrs(t)
    check_free_list(t, live)
    return {"sessions": live, "nat_reverse": t.natrev.count, "forward_wire": t.fwire.count,
            "alias": t.alias.count, "wheel_entries": wcount}
