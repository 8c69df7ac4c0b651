# Included by session.pyx. Idle timeouts (stimeouts_t) and the GC timer wheel (swheel_t):
# 256 buckets of one 1 s tick; a session sits in the bucket of the tick it expires at
# (at most 255 ticks ahead, re-bucketed when popped early). Deletion is lazy: an entry is
# current only while its record is live and still scheduled at the entry's tick. Whatever
# the clock does, expiry keeps working: a backward step moves the cursor back and makes
# sessions "seen in the future" count as seen now. See docs/sessions.md, "Timeouts and the
# timer wheel".


cdef int timeouts_class(stimeouts_t* to, uint32_t secs) noexcept nogil:
    """Index of `secs` in the timeout palette (added if new), or -1 if it is full."""
    cdef uint32_t i
    for i in range(to.palette_len):
        if to.palette_s[i] == secs:
            return i
    if to.palette_len == 256:
        return -1
    to.palette_s[to.palette_len] = secs
    to.palette_len += 1
    return to.palette_len - 1


cdef void timeouts_compact(stimeouts_t* to, sslab_t* slab) noexcept nogil:
    """Keep only the timeouts live records use (O(N); only when the palette is full)."""
    cdef uint8_t remap[256]
    cdef uint32_t newpal[256]
    cdef uint32_t s, n = 0
    cdef bint used[256]
    memset(used, 0, sizeof(used))
    for s in range(slab.hwm):
        if slab.recs[s].meta.state & ST_LIVE:
            used[slab.recs[s].meta.tclass] = True
    for s in range(to.palette_len):
        if used[s]:
            remap[s] = n
            newpal[n] = to.palette_s[s]
            n += 1
    for s in range(slab.hwm):
        if slab.recs[s].meta.state & ST_LIVE:
            slab.recs[s].meta.tclass = remap[slab.recs[s].meta.tclass]
    memcpy(to.palette_s, newpal, n * sizeof(uint32_t))
    to.palette_len = n


cdef inline uint8_t timeout_class(const stimeouts_t* to, uint8_t proto,
                                  uint8_t tcp_flags) noexcept nogil:
    """The palette class of the idle timeout a packet sets."""
    if proto == PROTO_TCP:
        if tcp_flags & (TCP_FIN | TCP_RST):
            return to.cls_closing
        return to.cls_tcp
    if proto == PROTO_UDP:
        return to.cls_udp
    if is_icmp(proto):
        return to.cls_icmp
    return to.cls_other


cdef inline void rec_see(const stimeouts_t* to, srec_t* r, uint8_t proto,
                         uint8_t tcp_flags) noexcept nogil:
    """A packet of the session was seen: FIN/RST sets the sticky closing flag, and the
    idle timeout follows (closing TCP keeps the short one)."""
    if proto == PROTO_TCP and tcp_flags & (TCP_FIN | TCP_RST):
        r.meta.state |= ST_CLOSING
    if proto == PROTO_TCP and r.meta.state & ST_CLOSING:
        r.meta.tclass = to.cls_closing
    else:
        r.meta.tclass = timeout_class(to, proto, tcp_flags)


cdef inline uint64_t rec_timeout_ns(const stimeouts_t* to, const srec_t* r) noexcept nogil:
    return <uint64_t>to.palette_s[r.meta.tclass] * C_TICK_NS


cdef bint ring_grow(void** buf, uint32_t* head, uint32_t length, uint32_t* cap,
                    size_t item_bytes, uint32_t first_cap) noexcept nogil:
    """Double a full power-of-two ring (or allocate `first_cap` items), unwrapping its
    `length` items to the front. False when memory runs out (the ring is unchanged)."""
    cdef uint32_t new_cap = cap[0] * 2 if cap[0] else first_cap
    cdef char* grown = <char*>malloc(<size_t>new_cap * item_bytes)
    if grown == NULL:
        return False
    cdef uint32_t first = cap[0] - head[0] if length > cap[0] - head[0] else length
    if length:
        memcpy(grown, <char*>buf[0] + <size_t>head[0] * item_bytes, <size_t>first * item_bytes)
        memcpy(grown + <size_t>first * item_bytes, buf[0], <size_t>(length - first) * item_bytes)
    free(buf[0])
    buf[0] = grown
    cap[0] = new_cap
    head[0] = 0
    return True


cdef inline void wheel_observe(swheel_t* w, uint64_t now_ns) noexcept nogil:
    """The cursor starts at the first timestamp the table sees (no walk from tick 0)."""
    if not w.started:
        w.cursor_tick = now_ns // C_TICK_NS
        w.started = True


cdef bint wheel_append(swheel_t* w, uint32_t slot, uint64_t tick) noexcept nogil:
    """Add an entry at `tick`; False when its bucket cannot grow."""
    cdef sbucket_t* b = &w.buckets[tick & (C_BUCKETS - 1)]
    if b.len == b.cap and not ring_grow(<void**>&b.buf, &b.head, b.len, &b.cap,
                                        sizeof(swheel_entry_t), 8):
        return False
    b.buf[(b.head + b.len) & (b.cap - 1)].slot = slot
    b.buf[(b.head + b.len) & (b.cap - 1)].tick = <uint32_t>tick
    b.len += 1
    w.entries += 1
    return True


cdef inline uint64_t wheel_target(const stimeouts_t* to, const srec_t* r,
                                  uint64_t now_tick) noexcept nogil:
    """The tick a session expires at, clamped to C_FAR ticks ahead of `now_tick`."""
    cdef uint64_t exp_tick = (r.last_seen_ns + rec_timeout_ns(to, r)) // C_TICK_NS
    cdef uint64_t delta = exp_tick - now_tick if exp_tick > now_tick else 0
    return now_tick + (delta if delta < C_FAR else C_FAR)


cdef void wheel_push(stable_t* t, uint32_t slot, uint64_t now_ns) noexcept nogil:
    """Schedule a session at its expiry tick (clamped to 255 ticks ahead); a push to the
    tick it already holds is skipped, which bounds duplicates per session."""
    wheel_observe(&t.wheel, now_ns)
    cdef srec_t* r = &t.slab.recs[slot]
    cdef uint64_t target = wheel_target(&t.timeouts, r, now_ns // C_TICK_NS)
    if <uint32_t>target != r.wheel_tick:
        r.wheel_tick = <uint32_t>target
        if not wheel_append(&t.wheel, slot, target):
            t.c.alloc_failures += 1


cdef inline swheel_entry_t* bucket_at(sbucket_t* b, uint32_t i) noexcept nogil:
    """The i-th entry (from the head) of a bucket."""
    return &b.buf[(b.head + i) & (b.cap - 1)]


cdef bint wheel_pop_bucket(stable_t* t, sbucket_t* b, uint64_t now_ns, ssession_t** buf,
                           size_t* cap, Py_ssize_t* n) noexcept nogil:
    """Pop every entry a bucket holds now: sessions idle longer than their timeout
    (strictly) are removed and appended to buf (grown as needed), live ones re-bucketed,
    stale entries dropped. False if buf could not grow."""
    cdef swheel_t* w = &t.wheel
    cdef uint64_t now_tick = now_ns // C_TICK_NS
    cdef uint32_t todo = b.len, slot
    cdef swheel_entry_t e
    cdef srec_t* r
    cdef ssession_t* nb
    cdef uint64_t target
    while todo:
        todo -= 1
        e = b.buf[b.head]
        b.head = (b.head + 1) & (b.cap - 1)
        b.len -= 1
        w.entries -= 1
        w.pop_stats[POP_SCANNED] += 1
        slot = e.slot
        if slot >= t.slab.hwm or not (t.slab.recs[slot].meta.state & ST_LIVE):
            w.pop_stats[POP_GONE] += 1
            continue
        r = &t.slab.recs[slot]
        if r.wheel_tick != e.tick:
            w.pop_stats[POP_STALE] += 1
            continue
        if r.last_seen_ns > now_ns:  # the clock went back: seen "in the future" is now
            r.last_seen_ns = now_ns
        if now_ns - r.last_seen_ns > rec_timeout_ns(&t.timeouts, r):
            if <size_t>n[0] == cap[0]:
                nb = <ssession_t*>realloc(buf[0], (cap[0] * 2 + 64) * sizeof(ssession_t))
                if nb == NULL:
                    return False
                buf[0] = nb
                cap[0] = cap[0] * 2 + 64
            table_fill_session(t, slot, &buf[0][n[0]])
            buf[0][n[0]].handle = -1
            n[0] += 1
            table_remove_slot(t, slot, xs_hash_key(&r.key, t.seed), True)
            w.pop_stats[POP_EXPIRED] += 1
        else:
            target = wheel_target(&t.timeouts, r, now_tick)
            r.wheel_tick = <uint32_t>target
            if not wheel_append(w, slot, target):
                t.c.alloc_failures += 1
            w.pop_stats[POP_REBUCKETED] += 1
    if b.len == 0 and b.cap > 1024:
        free(b.buf)
        b.buf = NULL
        b.cap = 0
        b.head = 0
    return True


cdef Py_ssize_t wheel_expire(stable_t* t, uint64_t now_ns, ssession_t** buf,
                             size_t* cap) noexcept nogil:
    """Pop every bucket the cursor passes up to `now_ns` (all of them, once, when the clock
    went back); returns how many sessions expired into buf, -1 if buf could not grow."""
    cdef swheel_t* w = &t.wheel
    cdef uint64_t now_tick
    cdef Py_ssize_t n = 0
    cdef uint32_t i
    if now_ns > MAX_NOW_NS:
        now_ns = MAX_NOW_NS
    now_tick = now_ns // C_TICK_NS
    memset(w.pop_stats, 0, sizeof(w.pop_stats))
    wheel_observe(w, now_ns)
    if now_tick < w.cursor_tick:
        # The clock went back: every session is looked at once against the new clock
        # (re-bucketed from it, or expired), then the cursor follows the clock.
        for i in range(C_BUCKETS):
            if not wheel_pop_bucket(t, &w.buckets[i], now_ns, buf, cap, &n):
                return -1
        w.cursor_tick = now_tick
    if now_tick > w.cursor_tick + C_BUCKETS:
        # every bucket is visited in the last 256 ticks anyway; skip whole rotations
        w.cursor_tick = now_tick - C_BUCKETS
    while w.cursor_tick < now_tick:
        if not wheel_pop_bucket(t, &w.buckets[w.cursor_tick & (C_BUCKETS - 1)], now_ns,
                                buf, cap, &n):
            return -1
        w.cursor_tick += 1
    t.c.expired += w.pop_stats[POP_EXPIRED]
    return n


cdef void wheel_free(swheel_t* w) noexcept nogil:
    cdef int i
    for i in range(C_BUCKETS):
        free(w.buckets[i].buf)
