# Included by session.pyx. Session-sync deltas (sdeltaq_t): an Open delta when a local
# forward session is created, a Close delta when it expires or is evicted. They exist only
# while a consumer is attached (DeltaFeed); with none, nothing is queued or counted. The
# queue is a bounded FIFO (drop-newest, counted) because a consumer that stops draining
# must not grow the worker's memory. See docs/sessions.md, "State sync".


cdef inline bint emits_deltas(const srec_t* r) noexcept nogil:
    """Deltas are only for local forward sessions that are not seeds."""
    return not (r.meta.flags & SM_REVERSE) and not peer_synced(r.meta.origin) and \
        not transient_seed(r.meta.origin)


cdef inline void rec_meta_out(const srec_t* r, smeta_t* out) noexcept nogil:
    """The public meta of a record (origin and state are not part of it)."""
    memset(out, 0, sizeof(smeta_t))
    out.owner_rg = r.meta.owner_rg
    out.ingress_zone = r.meta.ingress_zone
    out.egress_zone = r.meta.egress_zone
    out.flags = r.meta.flags


cdef void delta_fill(const stable_t* t, sdelta_t* d, uint8_t kind, const srec_t* r,
                     uint16_t reverse_egress_port) noexcept nogil:
    memset(d, 0, sizeof(sdelta_t))
    d.kind = kind
    d.origin = r.meta.origin
    d.reverse_egress_port = reverse_egress_port
    d.key = r.key
    addrs_decision(&t.addrs, r, &d.dec)
    rec_meta_out(r, &d.meta)


cdef void deltas_push(stable_t* t, uint8_t kind, const srec_t* r,
                      uint16_t reverse_egress_port) noexcept nogil:
    """Queue a delta for record `r` if a consumer is attached and `r` emits deltas."""
    cdef sdeltaq_t* q = &t.deltas
    if not q.enabled or not emits_deltas(r):
        return
    if q.len >= C_MAX_DELTAS or (q.len == q.cap and not ring_grow(
            <void**>&q.buf, &q.head, q.len, &q.cap, sizeof(sdelta_t), 64)):
        t.c.delta_drops += 1
        return
    delta_fill(t, &q.buf[(q.head + q.len) & (q.cap - 1)], kind, r, reverse_egress_port)
    q.len += 1
    t.c.deltas_pushed += 1


cdef uint32_t deltas_pop(stable_t* t, sdelta_t* out, uint32_t want) noexcept nogil:
    """Move up to `want` queued deltas, oldest first, to `out`; returns how many."""
    cdef sdeltaq_t* q = &t.deltas
    cdef uint32_t i, n = want if want < q.len else q.len
    for i in range(n):
        out[i] = q.buf[(q.head + i) & (q.cap - 1)]
    if n:
        q.head = (q.head + n) & (q.cap - 1)
        q.len -= n
    t.c.delta_drained += n
    return n


cdef void deltas_stop(sdeltaq_t* q) noexcept nogil:
    """Detach the consumer: drop what is queued and queue nothing more."""
    q.enabled = False
    q.head = 0
    q.len = 0


cdef class DeltaFeed:
    """The state-sync consumer of one SessionTable (one per table, so one per worker).

    While a feed is attached the table queues an Open delta for every new local forward
    session and a Close delta when one expires or is evicted; with no feed nothing is
    queued. Iterating yields DELTA_DTYPE arrays until the queue is empty; a standby table
    imports them with `SessionTable.apply_deltas`. `close()` (or dropping the feed)
    detaches it. Call it from the thread that owns the table, between polls.
    """

    cdef readonly SessionTable table
    cdef public uint32_t batch

    def __cinit__(self, SessionTable table not None, uint32_t batch=256):
        table._idle()
        if table.t.deltas.enabled:
            raise RuntimeError("this SessionTable already has a DeltaFeed attached")
        if batch == 0:
            raise ValueError("batch must be >= 1")
        self.table = table
        self.batch = batch
        table.t.deltas.enabled = True

    def __dealloc__(self):
        if self.table is not None:
            deltas_stop(&self.table.t.deltas)

    @property
    def attached(self):
        """Whether this feed still receives deltas."""
        return self.table is not None

    def drain(self, max_deltas=None):
        """Pop up to `max_deltas` (default `batch`) queued deltas, oldest first."""
        if self.table is None:
            raise RuntimeError("this DeltaFeed is closed")
        self.table._idle()
        want = self.batch if max_deltas is None else int(max_deltas)
        if want < 1:
            raise ValueError(f"max_deltas must be >= 1, got {want}")
        cdef uint32_t n = min(want, self.table.t.deltas.len)
        out = np.empty(n, dtype=DELTA_DTYPE)
        deltas_pop(&self.table.t, <sdelta_t*>_ptr(out), n)
        return out

    def __iter__(self):
        return self

    def __next__(self):
        if self.table is None or self.table.t.deltas.len == 0:
            raise StopIteration
        return self.drain()

    @property
    def pending(self):
        """Deltas waiting to be drained."""
        return self.table.t.deltas.len if self.table is not None else 0

    def close(self):
        """Detach: the table stops queueing deltas and drops the ones not drained."""
        if self.table is not None:
            self.table._idle()
            deltas_stop(&self.table.t.deltas)
            self.table = None
