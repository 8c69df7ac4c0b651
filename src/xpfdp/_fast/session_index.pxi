# Included by session.pyx. The open-addressing index (sindex_t) behind the primary key and
# the three secondary keys of a session (docs/sessions.md, "Indices").
#
# A slot holds (32-bit hash tag << 32) | record slot, EMPTY when free. Probing is linear
# from the home bucket, which a multiply-shift range reduction takes from the tag (any
# capacity works). Deletion shifts later entries back (no tombstones). An index stores no
# key: a tag match is confirmed by rec_matches (session_core.pxi), which recomputes the
# derived key from the record, so a stale or corrupted entry is a miss, never a wrong hit.


cdef inline uint32_t ix_home(uint32_t tag, uint32_t cap) noexcept nogil:
    return <uint32_t>((<uint64_t>tag * cap) >> 32)


cdef inline void ix_prefetch_home(const sindex_t* ix, uint64_t h) noexcept nogil:
    """Start loading the index line a probe for hash h begins at."""
    if ix.cap:
        xs_prefetch(&ix.slots[ix_home(<uint32_t>(h >> 32), ix.cap)])


cdef bint ix_prefetch_record(const sindex_t* ix, const sslab_t* slab, uint64_t h) noexcept nogil:
    """Start loading the record of the first tag match near h's home (a hint only)."""
    if ix.cap == 0:
        return False
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint32_t i = ix_home(tag, ix.cap), step
    cdef uint64_t e
    for step in range(4):
        e = ix.slots[i]
        if <uint32_t>e == NO_SLOT:
            return False
        if <uint32_t>(e >> 32) == tag:
            if <uint32_t>e < slab.hwm:  # a record spans two cache lines
                xs_prefetch(&slab.recs[<uint32_t>e])
                xs_prefetch(<const char*>&slab.recs[<uint32_t>e] + sizeof(srec_t) - 1)
            return True
        i += 1
        if i == ix.cap:
            i = 0
    return False


cdef int64_t ix_probe(const sindex_t* ix, const stable_t* t, int kind, const skey_t* k,
                      uint64_t h, uint32_t* empty_at) noexcept nogil:
    """Position of k's validated entry, or -1 with the empty slot that ended the probe
    (where k would be inserted) in `empty_at`."""
    empty_at[0] = NO_SLOT
    if ix.cap == 0:
        return -1
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint32_t i = ix_home(tag, ix.cap)
    cdef uint64_t e
    while True:
        e = ix.slots[i]
        if <uint32_t>e == NO_SLOT:
            empty_at[0] = i
            return -1
        if <uint32_t>(e >> 32) == tag and rec_matches(t, kind, <uint32_t>e, k):
            return i
        i += 1
        if i == ix.cap:
            i = 0


cdef inline int64_t ix_pos(const sindex_t* ix, const stable_t* t, int kind, const skey_t* k,
                           uint64_t h) noexcept nogil:
    cdef uint32_t empty_at
    return ix_probe(ix, t, kind, k, h, &empty_at)


cdef bint ix_reserve(sindex_t* ix, uint32_t extra) noexcept nogil:
    """Make room for `extra` more entries at load <= 3/4. A rehash sizes the index to load
    5/8 (growth x1.2), which keeps the load in (5/8, 3/4] instead of the (3/8, 3/4] of
    doubling and saves about a third of the index bytes on average."""
    cdef uint64_t need = <uint64_t>ix.count + extra
    if need * 4 <= <uint64_t>ix.cap * 3:
        return True
    cdef uint64_t newcap = (need * 8 + 4) // 5
    if newcap < 16:
        newcap = 16
    if newcap > MAX_INDEX_CAP:
        return False
    cdef uint64_t* ns = <uint64_t*>alloc_huge(newcap * sizeof(uint64_t))
    if ns == NULL:
        return False
    memset(ns, 0xFF, newcap * sizeof(uint64_t))
    cdef uint32_t i, j
    cdef uint64_t e
    for i in range(ix.cap):
        e = ix.slots[i]
        if <uint32_t>e == NO_SLOT:
            continue
        j = ix_home(<uint32_t>(e >> 32), <uint32_t>newcap)
        while <uint32_t>ns[j] != NO_SLOT:
            j += 1
            if j == newcap:
                j = 0
        ns[j] = e
    free(ix.slots)
    ix.slots = ns
    ix.cap = <uint32_t>newcap
    return True


cdef void ix_raw_put(sindex_t* ix, uint64_t h, uint32_t slot) noexcept nogil:
    """Add (tag(h), slot) without looking for an existing entry; the caller reserved."""
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint32_t i = ix_home(tag, ix.cap)
    while <uint32_t>ix.slots[i] != NO_SLOT:
        i += 1
        if i == ix.cap:
            i = 0
    ix.slots[i] = (<uint64_t>tag << 32) | slot
    ix.count += 1


cdef void ix_upsert(sindex_t* ix, const stable_t* t, int kind, const skey_t* k, uint64_t h,
                    uint32_t slot) noexcept nogil:
    """Map k (hash h) -> slot; an existing entry for k is overwritten (last writer wins)."""
    cdef uint32_t empty_at
    cdef int64_t pos = ix_probe(ix, t, kind, k, h, &empty_at)
    if pos >= 0:
        ix.slots[pos] = (h >> 32 << 32) | slot
    else:
        ix.slots[empty_at] = (h >> 32 << 32) | slot
        ix.count += 1


cdef void ix_remove_value(sindex_t* ix, uint64_t h, uint32_t slot) noexcept nogil:
    """Value-guarded removal: delete the entry (tag(h), slot) if present, i.e. only if the
    key still maps to `slot`. It is found by value, with no record access. Only the two
    reverse keys of one record can share that value (equal 32-bit tags); they are always
    removed together, so which one goes first does not matter."""
    if ix.cap == 0:
        return
    cdef uint64_t want = (h >> 32 << 32) | slot
    cdef uint32_t i = ix_home(<uint32_t>(h >> 32), ix.cap)
    cdef uint64_t e
    while True:
        e = ix.slots[i]
        if <uint32_t>e == NO_SLOT:
            return
        if e == want:
            ix_delete_at(ix, i)
            return
        i += 1
        if i == ix.cap:
            i = 0


cdef void ix_delete_at(sindex_t* ix, uint32_t pos) noexcept nogil:
    """Backward-shift deletion: keeps every probe chain intact without tombstones."""
    cdef uint32_t i = pos, j, kh
    cdef uint64_t e
    cdef bint stay
    while True:
        j = i
        while True:
            j += 1
            if j == ix.cap:
                j = 0
            e = ix.slots[j]
            if <uint32_t>e == NO_SLOT:
                ix.slots[i] = EMPTY
                ix.count -= 1
                return
            kh = ix_home(<uint32_t>(e >> 32), ix.cap)
            if i <= j:
                stay = i < kh and kh <= j
            else:
                stay = i < kh or kh <= j
            if not stay:
                break
        ix.slots[i] = ix.slots[j]
        i = j


cdef double ix_mean_displacement(const sindex_t* ix) noexcept nogil:
    """Mean distance of the entries from their home bucket (a hash-quality check)."""
    cdef uint32_t i, home
    cdef uint64_t e, disp = 0
    if ix.count == 0:
        return 0.0
    for i in range(ix.cap):
        e = ix.slots[i]
        if <uint32_t>e == NO_SLOT:
            continue
        home = ix_home(<uint32_t>(e >> 32), ix.cap)
        disp += i - home if i >= home else i + ix.cap - home
    return (<double>disp) / ix.count
