# Included by session.pyx. The table over its parts (stable_t): slab records, the single
# insert and removal paths that keep all four indices, the NAT address cells and the wheel
# consistent, lookups, and early eviction when the table is full. See docs/sessions.md.


# ---------------------------------------------------------------------------- origins

cdef inline bint peer_synced(uint8_t o) noexcept nogil:
    """Imported from another table (state sync): never re-exported."""
    return o == ORIGIN_SYNC_IMPORT or o == ORIGIN_SHARED_MATERIALIZE or \
        o == ORIGIN_WORKER_LOCAL_IMPORT


cdef inline bint transient_seed(uint8_t o) noexcept nogil:
    return o == ORIGIN_MISSING_NEIGHBOR_SEED


# ---------------------------------------------------------------------------- slab

cdef bint slab_reserve(sslab_t* slab) noexcept nogil:
    """Room for one more record (growth by doubling)."""
    cdef uint32_t newcap
    cdef srec_t* nr
    if slab.free_head != NO_SLOT or slab.hwm < slab.cap:
        return True
    if slab.cap >= MAX_SLOTS:
        return False
    newcap = slab.cap * 2 if slab.cap else 16
    if newcap > MAX_SLOTS:
        newcap = MAX_SLOTS
    nr = <srec_t*>alloc_huge(<size_t>newcap * sizeof(srec_t))
    if nr == NULL:
        return False
    if slab.recs != NULL:
        memcpy(nr, slab.recs, <size_t>slab.cap * sizeof(srec_t))
        free(slab.recs)
    slab.recs = nr
    slab.cap = newcap
    return True


cdef inline uint32_t slab_alloc(sslab_t* slab) noexcept nogil:
    cdef uint32_t s
    if slab.free_head != NO_SLOT:
        s = slab.free_head
        slab.free_head = slab.recs[s].addr_ref
        return s
    s = slab.hwm
    slab.hwm += 1
    slab.recs[s].generation = 0
    return s


cdef inline void slab_free(sslab_t* slab, uint32_t slot) noexcept nogil:
    """Free a record whose address cell was released; its handles go stale."""
    cdef srec_t* r = &slab.recs[slot]
    r.meta.state = 0
    r.generation = (r.generation + 1) & 0x7FFFFFFF
    r.addr_ref = slab.free_head
    slab.free_head = slot


cdef inline srec_t* table_record(const stable_t* t, int64_t handle) noexcept nogil:
    """The live record a handle names, or NULL if the handle is stale or invalid."""
    if handle < 0:
        return NULL
    cdef uint32_t slot = <uint32_t>(<uint64_t>handle)
    cdef uint32_t gen = <uint32_t>(handle >> 32)
    if slot >= t.slab.hwm:
        return NULL
    cdef srec_t* r = &t.slab.recs[slot]
    if not (r.meta.state & ST_LIVE) or r.generation != gen:
        return NULL
    return r


cdef bint table_reserve(stable_t* t) noexcept nogil:
    """Ensure one more record and its index entries fit, before anything is mutated."""
    return (slab_reserve(&t.slab) and ix_reserve(&t.primary, 1) and ix_reserve(&t.natrev, 2)
            and ix_reserve(&t.fwire, 1) and ix_reserve(&t.alias, 1)
            and addrs_reserve(&t.addrs, t.seed))


# ---------------------------------------------------------------------------- index entries

cdef bint rec_matches(const stable_t* t, int kind, uint32_t slot, const skey_t* k) noexcept nogil:
    """Does an index entry of `kind` -> slot really stand for probe k? The derived key is
    recomputed from the record (a stale or corrupted entry is a miss)."""
    cdef skey_t d_key
    cdef sdecision_t d
    cdef srec_t* r
    if slot >= t.slab.hwm:
        return False
    r = &t.slab.recs[slot]
    if not (r.meta.state & ST_LIVE):
        return False
    if kind == IX_PRIMARY:
        return xs_key_eq(&r.key, k)
    if kind == IX_ALIAS:
        if not (r.meta.flags & SM_REVERSE):
            return False
        addrs_decision(&t.addrs, r, &d)
        k_translated(&r.key, &d, &d_key)
        return xs_key_eq(&d_key, k)
    if r.meta.flags & SM_REVERSE:
        return False
    addrs_decision(&t.addrs, r, &d)
    if kind == IX_FWIRE:
        k_forward_wire(&r.key, &d, &d_key)
        return xs_key_eq(&d_key, k)
    k_reverse_wire(&r.key, &d, &d_key)
    if xs_key_eq(&d_key, k):
        return True
    k_reverse_canonical(&r.key, &d_key)
    return xs_key_eq(&d_key, k)


cdef void index_secondary(stable_t* t, uint32_t slot) noexcept nogil:
    """Insert the derived keys of one record, each only where it differs from the key:
    a forward record under its two reply keys (NAT reverse) and its post-NAT key (forward
    wire), a reverse record under its un-NATed key (alias; none for NAT64)."""
    cdef skey_t t1, t2, t3
    cdef sdecision_t d
    cdef srec_t* r = &t.slab.recs[slot]
    cdef uint64_t h1, h2, h3
    addrs_decision(&t.addrs, r, &d)
    if not (r.meta.flags & SM_REVERSE):
        # derive and hash all three keys first, so their index lines load in parallel
        k_reverse_wire(&r.key, &d, &t1)
        k_reverse_canonical(&r.key, &t2)
        k_forward_wire(&r.key, &d, &t3)
        h1 = xs_hash_key(&t1, t.seed)
        h2 = xs_hash_key(&t2, t.seed)
        h3 = xs_hash_key(&t3, t.seed)
        ix_prefetch_home(&t.natrev, h1)
        ix_prefetch_home(&t.natrev, h2)
        ix_prefetch_home(&t.fwire, h3)
        ix_upsert(&t.natrev, t, IX_NATREV, &t1, h1, slot)
        if not xs_key_eq(&t2, &r.key):
            ix_upsert(&t.natrev, t, IX_NATREV, &t2, h2, slot)
        if not xs_key_eq(&t3, &r.key):
            ix_upsert(&t.fwire, t, IX_FWIRE, &t3, h3, slot)
    elif not (d.nat_flags & NAT_64):
        # NAT64 aliases keep the forward af/proto and could never match: skipped.
        k_translated(&r.key, &d, &t1)
        if not xs_key_eq(&t1, &r.key):
            ix_upsert(&t.alias, t, IX_ALIAS, &t1, xs_hash_key(&t1, t.seed), slot)


cdef void unindex_secondary(stable_t* t, uint32_t slot) noexcept nogil:
    cdef skey_t k
    cdef sdecision_t d
    cdef srec_t* r = &t.slab.recs[slot]
    cdef uint64_t h1, h2, h3
    addrs_decision(&t.addrs, r, &d)
    if not (r.meta.flags & SM_REVERSE):
        # all three hashes first, so their index lines load in parallel
        k_reverse_wire(&r.key, &d, &k)
        h1 = xs_hash_key(&k, t.seed)
        k_reverse_canonical(&r.key, &k)
        h2 = xs_hash_key(&k, t.seed)
        k_forward_wire(&r.key, &d, &k)
        h3 = xs_hash_key(&k, t.seed)
        ix_prefetch_home(&t.natrev, h1)
        ix_prefetch_home(&t.natrev, h2)
        ix_prefetch_home(&t.fwire, h3)
        ix_remove_value(&t.natrev, h1, slot)
        ix_remove_value(&t.natrev, h2, slot)
        ix_remove_value(&t.fwire, h3, slot)
    else:
        k_translated(&r.key, &d, &k)
        ix_remove_value(&t.alias, xs_hash_key(&k, t.seed), slot)


cdef inline int64_t table_primary_slot(const stable_t* t, const skey_t* k) noexcept nogil:
    cdef int64_t pos = ix_pos(&t.primary, t, IX_PRIMARY, k, xs_hash_key(k, t.seed))
    if pos < 0:
        return -1
    return <uint32_t>t.primary.slots[pos]


# ---------------------------------------------------------------------------- removal

cdef void table_remove_slot(stable_t* t, uint32_t slot, uint64_t h, bint close_delta) noexcept nogil:
    """The single removal path: secondaries (value-guarded), primary, address cell, slab.
    `h` is the hash of the record's key; `close_delta` queues a Close delta for it."""
    cdef srec_t* r = &t.slab.recs[slot]
    if close_delta:
        deltas_push(t, DELTA_CLOSE, r, 0)
    unindex_secondary(t, slot)
    ix_remove_value(&t.primary, h, slot)
    addrs_release(&t.addrs, r, t.seed)
    slab_free(&t.slab, slot)


cdef bint table_remove_key(stable_t* t, const skey_t* k, uint64_t h) noexcept nogil:
    """Remove the record under primary key k (hash h); False if there is none."""
    cdef int64_t pos = ix_pos(&t.primary, t, IX_PRIMARY, k, h)
    if pos < 0:
        return False
    table_remove_slot(t, <uint32_t>t.primary.slots[pos], h, False)
    return True


# ---------------------------------------------------------------------------- eviction

cdef int64_t reverse_slot_of(const stable_t* t, const srec_t* f) noexcept nogil:
    """Slot of the reverse entry of forward record f (stored under reverse_wire(f)), or -1."""
    cdef skey_t rk
    cdef sdecision_t d
    addrs_decision(&t.addrs, f, &d)
    k_reverse_wire(&f.key, &d, &rk)
    cdef int64_t s = table_primary_slot(t, &rk)
    if s >= 0 and not (t.slab.recs[s].meta.flags & SM_REVERSE):
        return -1
    return s


cdef bint evictable(const stable_t* t, const srec_t* r, int64_t* rev) noexcept nogil:
    """A local forward flow whose reply direction has not been seen; `rev` gets the slot of
    its reverse entry (-1 if it has none)."""
    if r.meta.flags & SM_REVERSE or r.meta.origin != ORIGIN_FORWARD_FLOW:
        return False
    rev[0] = reverse_slot_of(t, r)
    return rev[0] < 0 or not (t.slab.recs[rev[0]].meta.state & ST_REPLIED)


cdef bint table_evict_one(stable_t* t) noexcept nogil:
    """Early drop, as Linux conntrack does when full: remove the unreplied local flow that
    is due to expire first (forward and reverse entry, Close delta queued). The wheel is
    walked from its cursor, so the first candidate is the one idle longest relative to its
    timeout; at most EVICT_SCAN current entries are inspected. Entries looked at move to
    the back of their bucket (order within a bucket is irrelevant) and stale ones are
    dropped, so repeated evictions do not rescan them. False if no candidate was found."""
    cdef swheel_t* w = &t.wheel
    cdef uint32_t step, todo, inspected = 0
    cdef sbucket_t* b
    cdef swheel_entry_t e
    cdef srec_t* r
    cdef int64_t rev
    for step in range(C_BUCKETS):
        b = &w.buckets[(w.cursor_tick + step) & (C_BUCKETS - 1)]
        todo = b.len
        while todo:
            todo -= 1
            e = b.buf[b.head]
            b.head = (b.head + 1) & (b.cap - 1)
            b.len -= 1
            if e.slot >= t.slab.hwm or not (t.slab.recs[e.slot].meta.state & ST_LIVE) or \
                    t.slab.recs[e.slot].wheel_tick != e.tick:
                w.entries -= 1   # stale: dropped here instead of by the next expire
                continue
            r = &t.slab.recs[e.slot]
            if evictable(t, r, &rev):
                w.entries -= 1
                if rev >= 0:
                    table_remove_slot(t, <uint32_t>rev,
                                      xs_hash_key(&t.slab.recs[rev].key, t.seed), False)
                    t.c.evictions += 1
                table_remove_slot(t, e.slot, xs_hash_key(&r.key, t.seed), True)
                t.c.evictions += 1
                return True
            b.buf[(b.head + b.len) & (b.cap - 1)] = e   # room: one was just popped
            b.len += 1
            inspected += 1
            if inspected >= EVICT_SCAN:
                return False
    return False


cdef bint table_make_room(stable_t* t, const skey_t* k, const skey_t* k2) noexcept nogil:
    """Evict until the new keys among k and k2 (k2 may be NULL) fit under max_sessions."""
    cdef uint32_t needed
    while True:
        needed = table_primary_slot(t, k) < 0
        if k2 != NULL:
            needed += table_primary_slot(t, k2) < 0
        if <uint64_t>t.primary.count + needed <= t.max_sessions:
            return True
        if not t.early_eviction or not table_evict_one(t):
            return False


# ---------------------------------------------------------------------------- insertion

cdef int64_t table_insert(stable_t* t, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                          uint8_t origin, uint64_t now_ns, uint8_t tcp_flags,
                          bint capped) noexcept nogil:
    """Insert or replace the record under k; -1 (counted) when refused. `capped`: a new key
    must fit under max_sessions (after early eviction)."""
    if not key_valid(k) or origin >= ORIGIN_COUNT:
        t.c.create_drops += 1
        return -1
    if capped and t.primary.count >= t.max_sessions and table_primary_slot(t, k) < 0 and \
            not table_make_room(t, k, NULL):
        t.c.create_drops += 1
        return -1
    cdef uint64_t h = xs_hash_key(k, t.seed)
    cdef int64_t pos
    cdef uint32_t empty_at
    if not table_reserve(t):  # first: a rehash would move index positions
        t.c.alloc_failures += 1
        t.c.create_drops += 1
        return -1
    pos = ix_probe(&t.primary, t, IX_PRIMARY, k, h, &empty_at)
    if pos >= 0:
        table_remove_slot(t, <uint32_t>t.primary.slots[pos], h, False)
        t.c.replacements += 1
    cdef uint32_t slot = slab_alloc(&t.slab)
    cdef srec_t* r = &t.slab.recs[slot]
    r.key = k[0]
    r.key.pad = 0
    addrs_store(&t.addrs, r, d, t.seed)
    r.meta.owner_rg = m.owner_rg
    r.meta.ingress_zone = m.ingress_zone
    r.meta.egress_zone = m.egress_zone
    r.meta.flags = m.flags & (SM_FABRIC_INGRESS | SM_REVERSE)
    r.meta.origin = origin
    r.meta.state = ST_LIVE
    rec_see(&t.timeouts, r, k.proto, tcp_flags)
    r.last_seen_ns = now_ns
    r.wheel_tick = <uint32_t>(now_ns // C_TICK_NS - 1)  # a tick no push can target
    if pos < 0:  # nothing moved since the probe: its empty slot is k's place
        t.primary.slots[empty_at] = (h >> 32 << 32) | slot
        t.primary.count += 1
    else:
        ix_raw_put(&t.primary, h, slot)
    index_secondary(t, slot)
    wheel_push(t, slot, now_ns)
    t.c.installs += 1
    return make_handle(r.generation, slot)


cdef void pair_reverse(const skey_t* k, const sdecision_t* d, const smeta_t* m,
                       uint16_t reverse_egress_port, skey_t* rk, sdecision_t* rd,
                       smeta_t* rm) noexcept nogil:
    """The reverse entry of forward (k, d, m): the reply as it arrives on the wire, the
    reversed NAT towards `reverse_egress_port`, zones swapped."""
    k_reverse_wire(k, d, rk)
    d_reverse(k, d, rd)
    rd.egress_port = reverse_egress_port
    rm[0] = m[0]
    rm.ingress_zone = m.egress_zone
    rm.egress_zone = m.ingress_zone
    rm.flags = (m.flags & SM_FABRIC_INGRESS) | SM_REVERSE


cdef int table_install_pair(stable_t* t, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                            uint64_t now_ns, uint8_t tcp_flags, uint16_t reverse_egress_port,
                            int64_t* out_fwd, int64_t* out_rev) noexcept nogil:
    """Forward entry k plus its reverse entry, admitted whole or not at all (early eviction
    makes room when the table is full). Returns how many entries were installed."""
    cdef skey_t rk
    cdef sdecision_t rd
    cdef smeta_t rm, fm
    cdef bint with_reverse
    out_fwd[0] = -1
    out_rev[0] = -1
    if not key_valid(k):
        t.c.create_drops += 1
        return 0
    if d.disposition == DISP_LOCAL_DELIVERY:
        return 0
    with_reverse = not (d.disposition == DISP_FABRIC_REDIRECT and
                        not (m.flags & SM_FABRIC_INGRESS))
    pair_reverse(k, d, m, reverse_egress_port, &rk, &rd, &rm)
    if not table_make_room(t, k, &rk if with_reverse else NULL):
        t.c.create_drops += (table_primary_slot(t, k) < 0) + \
            (with_reverse and table_primary_slot(t, &rk) < 0)
        return 0
    fm = m[0]
    fm.flags &= SM_FABRIC_INGRESS
    out_fwd[0] = table_insert(t, k, d, &fm, ORIGIN_FORWARD_FLOW, now_ns, tcp_flags, False)
    if out_fwd[0] < 0:
        return 0
    deltas_push(t, DELTA_OPEN, table_record(t, out_fwd[0]), reverse_egress_port)
    if with_reverse:
        out_rev[0] = table_insert(t, &rk, &rd, &rm, ORIGIN_REVERSE_FLOW, now_ns, tcp_flags,
                                  False)
    return 1 + (out_rev[0] >= 0)


cdef int64_t table_upsert_synced(stable_t* t, const skey_t* k, const sdecision_t* d,
                                 const smeta_t* m, uint8_t origin, uint64_t now_ns,
                                 uint8_t tcp_flags, bint allow_replace_local) noexcept nogil:
    """Import one entry from another table: refused (-1, counted) over a local entry unless
    `allow_replace_local`; never capped, never emits deltas."""
    cdef int64_t slot = table_primary_slot(t, k)
    if slot >= 0 and not peer_synced(t.slab.recs[slot].meta.origin) and not allow_replace_local:
        t.c.synced_rejects += 1
        return -1
    cdef int64_t h = table_insert(t, k, d, m, origin, now_ns, tcp_flags, False)
    if h >= 0:
        t.c.synced_upserts += 1
    return h


cdef int table_apply_delta(stable_t* t, const sdelta_t* dl, uint64_t now_ns,
                           bint allow_replace_local) noexcept nogil:
    """Import one delta: Open installs the forward/reverse pair as SYNC_IMPORT entries,
    Close removes the pair's peer-synced entries. Returns how many entries changed."""
    cdef skey_t rk
    cdef sdecision_t rd
    cdef smeta_t rm, fm
    cdef int64_t slot
    cdef int changed = 0
    pair_reverse(&dl.key, &dl.dec, &dl.meta, dl.reverse_egress_port, &rk, &rd, &rm)
    if dl.kind == DELTA_OPEN:
        fm = dl.meta
        fm.flags &= SM_FABRIC_INGRESS
        changed += table_upsert_synced(t, &dl.key, &dl.dec, &fm, ORIGIN_SYNC_IMPORT, now_ns,
                                       0, allow_replace_local) >= 0
        changed += table_upsert_synced(t, &rk, &rd, &rm, ORIGIN_SYNC_IMPORT, now_ns, 0,
                                       allow_replace_local) >= 0
    elif dl.kind == DELTA_CLOSE:
        changed += table_remove_synced(t, &dl.key)
        changed += table_remove_synced(t, &rk)
    return changed


cdef bint table_remove_synced(stable_t* t, const skey_t* k) noexcept nogil:
    """Remove the entry under k if it is peer-synced (a local session is never removed by
    another table's Close)."""
    cdef int64_t slot = table_primary_slot(t, k)
    if slot < 0 or not peer_synced(t.slab.recs[slot].meta.origin):
        return False
    table_remove_slot(t, <uint32_t>slot, xs_hash_key(k, t.seed), False)
    return True


# ---------------------------------------------------------------------------- lookups

cdef int64_t table_lookup(stable_t* t, const skey_t* k, uint64_t h, uint64_t now_ns,
                          uint8_t tcp_flags, bint refresh, bint* via_alias) noexcept nogil:
    """Primary key, else the reverse-translated alias; when `refresh`, the hit record is
    seen now (timeout, closing flag, replied mark, wheel) and counted."""
    cdef int64_t pos = ix_pos(&t.primary, t, IX_PRIMARY, k, h)
    cdef uint32_t slot
    cdef srec_t* r
    via_alias[0] = False
    t.c.lookups += refresh  # a probe (refresh False) is not a lookup in stats()
    if pos >= 0:
        slot = <uint32_t>t.primary.slots[pos]
    else:
        pos = ix_pos(&t.alias, t, IX_ALIAS, k, h)
        if pos < 0:
            return -1
        slot = <uint32_t>t.alias.slots[pos]
        via_alias[0] = True
        t.c.hits_via_alias += refresh
    t.c.hits += refresh
    r = &t.slab.recs[slot]
    if refresh:
        rec_see(&t.timeouts, r, k.proto, tcp_flags)
        if r.meta.flags & SM_REVERSE:
            r.meta.state |= ST_REPLIED
        r.last_seen_ns = now_ns
        wheel_push(t, slot, now_ns)  # canonical record, never the alias key
    return make_handle(r.generation, slot)


cdef inline int64_t table_find(const stable_t* t, const sindex_t* ix, int kind, const skey_t* k,
                               uint64_t h) noexcept nogil:
    """Handle of the forward record a secondary index maps k to, or -1 (read-only)."""
    cdef int64_t pos = ix_pos(ix, t, kind, k, h)
    if pos < 0:
        return -1
    cdef uint32_t slot = <uint32_t>ix.slots[pos]
    return make_handle(t.slab.recs[slot].generation, slot)


cdef bint table_touch(stable_t* t, int64_t handle, uint64_t now_ns) noexcept nogil:
    """Keepalive: last_seen = now (timeout unchanged), then reschedule."""
    cdef srec_t* r = table_record(t, handle)
    if r == NULL:
        return False
    r.last_seen_ns = now_ns
    wheel_push(t, <uint32_t>(<uint64_t>handle), now_ns)
    t.c.touches += 1
    return True


cdef void table_fill_session(const stable_t* t, uint32_t slot, ssession_t* out) noexcept nogil:
    """The public copy of a record."""
    cdef srec_t* r = &t.slab.recs[slot]
    out.handle = make_handle(r.generation, slot)
    out.last_seen_ns = r.last_seen_ns
    out.expires_after_ns = rec_timeout_ns(&t.timeouts, r)
    # the scheduled tick is within 2**31 ticks (68 years) of the wheel cursor
    out.wheel_tick = t.wheel.cursor_tick + <uint64_t><int64_t><int32_t>(
        r.wheel_tick - <uint32_t>t.wheel.cursor_tick)
    out.key = r.key
    addrs_decision(&t.addrs, r, &out.dec)
    rec_meta_out(r, &out.meta)
    out.origin = r.meta.origin
    out.closing = (r.meta.state & ST_CLOSING) != 0
    out.replied = (r.meta.state & ST_REPLIED) != 0
    out.valid = 1


cdef void table_free(stable_t* t) noexcept nogil:
    free(t.slab.recs)
    free(t.primary.slots)
    free(t.natrev.slots)
    free(t.fwire.slots)
    free(t.alias.slots)
    addrs_free(&t.addrs)
    wheel_free(&t.wheel)
    free(t.deltas.buf)
