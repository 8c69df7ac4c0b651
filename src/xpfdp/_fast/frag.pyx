# cython: language_level=3
"""Fragment table: the session decision of each fragmented datagram, for its later fragments.

Entries live in one fixed array, found through a chained hash on the fragment key and kept
in an age list in creation order, so the timeout (30 s by default, as Linux's ipfrag_time,
never extended) expires from the oldest end in O(1) per entry. Held frames live in a second
fixed array, linked per entry; frames handed back (released or dropped) wait in two lists
until the pipeline pops them. An entry leaves early once every data byte of its datagram
has passed (known when the fragment without MF/M has been seen).

An entry's decision is either a session handle (the first fragment was resolved on this
worker) or, with several workers, a decision another worker sent in a note (frag_noted);
the latter sits in a parallel array, one sdecision_t per entry slot, so the entries the
hash chains walk stay small.
"""

import ipaddress

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memset

from xpfdp._fast.lib.arrays cimport checked_array
from xpfdp._fast.lib.bytes cimport load_be16
from xpfdp._fast.meta cimport (
    META_FRAGMENT,
    PARSE_NONFIRST_FRAG,
    PARSE_OK,
    pkt_meta_t,
)
from xpfdp._fast.parse cimport parse_one
from xpfdp._fast.session cimport sdecision_t

cimport numpy as cnp

import numpy as np

from xpfdp._fast.session import DECISION_DTYPE as _DECISION_DTYPE

cnp.import_array()

cdef enum:
    MAX_IPV6_EXT_WALK = 6    # the parser's own bound on extension headers


cdef inline uint32_t load_be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef int frag_table_init(frag_table_t* t, uint32_t max_entries, uint32_t max_held,
                         uint64_t timeout_ns) noexcept nogil:
    """Allocate an empty table; -1 when memory runs out (nothing is left allocated)."""
    cdef uint32_t i, nb = 1
    memset(t, 0, sizeof(frag_table_t))
    while nb < 2 * max_entries:
        nb <<= 1
    t.e = <frag_entry_t*>calloc(max_entries, sizeof(frag_entry_t))
    t.dec = <sdecision_t*>calloc(max_entries, sizeof(sdecision_t))   # touched only by notes
    t.buckets = <int32_t*>calloc(nb, sizeof(int32_t))
    t.frames = <frag_frame_t*>calloc(max_held if max_held else 1, sizeof(frag_frame_t))
    if t.e == NULL or t.dec == NULL or t.buckets == NULL or t.frames == NULL:
        frag_table_free(t)
        return -1
    t.bucket_mask = nb - 1
    t.max_entries = max_entries
    t.max_held = max_held
    t.timeout_ns = timeout_ns
    for i in range(nb):
        t.buckets[i] = -1
    for i in range(max_entries):
        t.e[i].hnext = <int32_t>i + 1 if i + 1 < max_entries else -1
    t.free_entry = 0 if max_entries else -1
    for i in range(max_held):
        t.frames[i].next = <int32_t>i + 1 if i + 1 < max_held else -1
    t.free_frame = 0 if max_held else -1
    t.oldest = t.newest = -1
    for i in range(2):
        t.out_head[i] = t.out_tail[i] = -1
    return 0


cdef void frag_table_free(frag_table_t* t) noexcept nogil:
    free(t.e)
    free(t.dec)
    free(t.buckets)
    free(t.frames)
    t.e = NULL
    t.dec = NULL
    t.buckets = NULL
    t.frames = NULL
    t.max_entries = t.max_held = 0


cdef bint frag_info_from(const uint8_t* frame, uint32_t frame_len, const pkt_meta_t* m,
                         frag_info_t* out) noexcept nogil:
    """The fragment key, offset, length and more-flag of a parsed fragment; False when the
    record is not a fragment the parser accepted (first or later) or the header is gone.

    The key's protocol is the one the fragment header announces (IPv4 protocol field, the
    IPv6 Fragment header's next header), the same for every fragment of a datagram.
    """
    cdef const uint8_t* h
    cdef uint32_t l3 = m.l3_off, l3_end, pos, ihl, frag
    cdef uint8_t nh, next_nh
    cdef int hops = 0
    if not (m.flags & META_FRAGMENT) or (m.status != PARSE_OK
                                         and m.status != PARSE_NONFIRST_FRAG):
        return False
    l3_end = l3 + m.l3_len
    if l3_end > frame_len:
        return False
    h = frame + l3
    memset(&out.key, 0, sizeof(frag_key_t))
    if m.ip_version == 4:
        ihl = (h[0] & 0x0F) * 4
        if m.l3_len < 20 or ihl > m.l3_len:
            return False
        frag = load_be16(h + 6)
        out.key.family = 4
        out.key.proto = h[9]
        out.key.id = load_be16(h + 4)
        memcpy(out.key.src, h + 12, 4)
        memcpy(out.key.dst, h + 16, 4)
        out.offset_bytes = (frag & 0x1FFF) * 8
        out.more = (frag & 0x2000) != 0
        out.data_bytes = m.l3_len - ihl
        return True
    if m.ip_version != 6 or m.l3_len < 40:
        return False
    nh = h[6]
    pos = l3 + 40
    while hops < MAX_IPV6_EXT_WALK and (nh == 0 or nh == 43 or nh == 60 or nh == 51):
        if pos + 2 > l3_end:
            return False
        next_nh = frame[pos]
        if nh == 51:
            pos += (<uint32_t>frame[pos + 1] + 2) * 4
        else:
            pos += (<uint32_t>frame[pos + 1] + 1) * 8
        nh = next_nh
        hops += 1
    if nh != 44 or pos + 8 > l3_end:
        return False
    frag = load_be16(frame + pos + 2)
    out.key.family = 6
    out.key.proto = frame[pos]
    out.key.id = load_be32(frame + pos + 4)
    memcpy(out.key.src, h + 8, 16)
    memcpy(out.key.dst, h + 24, 16)
    out.offset_bytes = frag & 0xFFF8
    out.more = (frag & 1) != 0
    out.data_bytes = l3_end - (pos + 8)
    return True


# ---- table internals -------------------------------------------------------------------

cdef enum:
    ENTRY_WAITING = -1       # frag_entry_t.handle before any first fragment (or note)


cdef int32_t find(const frag_table_t* t, const frag_key_t* k) noexcept nogil:
    cdef int32_t i = t.buckets[frag_key_hash(k) & t.bucket_mask]
    while i >= 0:
        if memcmp(&t.e[i].key, k, sizeof(frag_key_t)) == 0:
            return i
        i = t.e[i].hnext
    return -1


cdef int32_t new_entry(frag_table_t* t, const frag_key_t* k, uint64_t now_ns) noexcept nogil:
    """A fresh unresolved entry (newest in the age list), or -1 at the entry limit."""
    cdef int32_t i = t.free_entry
    cdef uint64_t b
    if i < 0:
        return -1
    cdef frag_entry_t* e = &t.e[i]
    t.free_entry = e.hnext
    memset(e, 0, sizeof(frag_entry_t))
    e.key = k[0]
    e.handle = ENTRY_WAITING
    e.created_ns = now_ns
    e.held_head = e.held_tail = -1
    b = frag_key_hash(k) & t.bucket_mask
    e.hnext = t.buckets[b]
    t.buckets[b] = i
    e.newer = -1
    e.older = t.newest
    if t.newest >= 0:
        t.e[t.newest].newer = i
    else:
        t.oldest = i
    t.newest = i
    t.n_entries += 1
    return i


cdef void remove_entry(frag_table_t* t, int32_t i) noexcept nogil:
    """Unlink entry i from its hash chain and the age list; its held frames must be gone."""
    cdef frag_entry_t* e = &t.e[i]
    cdef int32_t* link = &t.buckets[frag_key_hash(&e.key) & t.bucket_mask]
    while link[0] != i:
        link = &t.e[link[0]].hnext
    link[0] = e.hnext
    if e.older >= 0:
        t.e[e.older].newer = e.newer
    else:
        t.oldest = e.newer
    if e.newer >= 0:
        t.e[e.newer].older = e.older
    else:
        t.newest = e.older
    e.hnext = t.free_entry
    t.free_entry = i
    t.n_entries -= 1


cdef uint32_t hand_back(frag_table_t* t, frag_entry_t* e, int which) noexcept nogil:
    """Move every frame held for `e` to the end of out list `which`; returns how many."""
    cdef uint32_t n = e.n_held
    if n == 0:
        return 0
    if t.out_tail[which] >= 0:
        t.frames[t.out_tail[which]].next = e.held_head
    else:
        t.out_head[which] = e.held_head
    t.out_tail[which] = e.held_tail
    t.n_out[which] += n
    t.n_held -= n
    e.held_head = e.held_tail = -1
    e.n_held = 0
    return n


cdef inline void note_bytes(frag_entry_t* e, const frag_info_t* f) noexcept nogil:
    e.seen_bytes += f.data_bytes
    if not f.more:
        e.total_bytes = f.offset_bytes + f.data_bytes


cdef inline bint complete(const frag_entry_t* e) noexcept nogil:
    return e.total_bytes != 0 and e.seen_bytes >= e.total_bytes


# ---- the operations --------------------------------------------------------------------

cdef int32_t resolve_entry(frag_table_t* t, const frag_info_t* f, int64_t handle,
                           uint64_t now_ns) noexcept nogil:
    """Give the datagram of first fragment `f` its decision (a session handle, or
    FRAG_NOTED: the caller stores the decision in dec[] of the returned slot); frames held
    for it move to the released list. Returns the entry index, -1 when the datagram is
    already complete (entry removed), -2 when no entry is free."""
    cdef int32_t i = find(t, &f.key)
    cdef frag_entry_t* e
    if i < 0:
        i = new_entry(t, &f.key, now_ns)
        if i < 0:
            t.st.dropped_limit += 1
            return -2
    e = &t.e[i]
    if e.handle != ENTRY_WAITING:   # a repeated first fragment (or a reused ID): recount
        e.seen_bytes = e.total_bytes = 0
    e.handle = handle
    t.st.released += hand_back(t, e, FRAG_LIST_RELEASED)
    note_bytes(e, f)
    if complete(e):
        remove_entry(t, i)
        t.st.completed += 1
        return -1
    return i


cdef int frag_first(frag_table_t* t, const frag_info_t* f, int64_t handle,
                    uint64_t now_ns) noexcept nogil:
    """Record the session handle (>= 0) of a first fragment; frames held for its datagram
    move to the released list. 0, or FRAG_LIMIT when no entry is free (then later fragments
    will find none and be held or refused, so the caller drops this fragment too)."""
    if resolve_entry(t, f, handle, now_ns) == -2:
        return FRAG_LIMIT
    t.st.recorded += 1
    return 0


cdef int frag_noted(frag_table_t* t, const frag_info_t* f, const sdecision_t* dec,
                    uint64_t now_ns) noexcept nogil:
    """Record first fragment `f`, resolved by another worker to decision `dec` (its note):
    later fragments take `dec` itself. 0, or FRAG_LIMIT when no entry is free."""
    cdef int32_t i = resolve_entry(t, f, FRAG_NOTED, now_ns)
    if i == -2:
        return FRAG_LIMIT
    if i >= 0:
        t.dec[i] = dec[0]
    t.st.noted += 1
    return 0


cdef int64_t frag_later(frag_table_t* t, const frag_info_t* f, uint64_t addr, uint32_t length,
                        uint16_t port, uint64_t now_ns, sdecision_t* dec) noexcept nogil:
    """The session handle for a later fragment, or: FRAG_NOTED (its decision, from a note,
    copied to `dec`), FRAG_HELD (the frame (addr, length, port) now belongs to the table
    until frag_pop hands it back) or FRAG_LIMIT (refused, the frame stays the caller's)."""
    cdef int32_t i = find(t, &f.key)
    cdef int32_t s
    cdef int64_t h
    cdef frag_entry_t* e
    if i >= 0 and t.e[i].handle != ENTRY_WAITING:
        e = &t.e[i]
        h = e.handle
        if h == FRAG_NOTED:
            dec[0] = t.dec[i]
        t.st.translated += 1
        note_bytes(e, f)
        if complete(e):
            remove_entry(t, i)
            t.st.completed += 1
        return h
    if i < 0:
        if t.free_frame < 0:
            t.st.dropped_limit += 1
            return FRAG_LIMIT
        i = new_entry(t, &f.key, now_ns)
        if i < 0:
            t.st.dropped_limit += 1
            return FRAG_LIMIT
    s = t.free_frame
    if s < 0:   # only an existing entry gets here, so none is left empty
        t.st.dropped_limit += 1
        return FRAG_LIMIT
    e = &t.e[i]
    t.free_frame = t.frames[s].next
    t.frames[s].addr = addr
    t.frames[s].len = length
    t.frames[s].port = port
    t.frames[s].next = -1
    if e.held_tail >= 0:
        t.frames[e.held_tail].next = s
    else:
        e.held_head = s
    e.held_tail = s
    e.n_held += 1
    t.n_held += 1
    t.st.held += 1
    return FRAG_HELD


cdef uint32_t frag_expire(frag_table_t* t, uint64_t now_ns) noexcept nogil:
    """Remove every entry older than the timeout; their held frames move to the dropped
    list. Returns how many frames that dropped."""
    cdef uint32_t n = 0, k
    cdef frag_entry_t* e
    while t.oldest >= 0:
        e = &t.e[t.oldest]
        if now_ns < e.created_ns or now_ns - e.created_ns < t.timeout_ns:
            break
        k = hand_back(t, e, FRAG_LIST_DROPPED)
        t.st.timed_out += k
        n += k
        remove_entry(t, t.oldest)
        t.st.expired += 1
    return n


cdef void frag_drain(frag_table_t* t) noexcept nogil:
    """Remove every entry (shutdown); all held frames move to the dropped list."""
    while t.oldest >= 0:
        hand_back(t, &t.e[t.oldest], FRAG_LIST_DROPPED)
        remove_entry(t, t.oldest)


cdef bint frag_pop(frag_table_t* t, int which, uint64_t* addr, uint32_t* length,
                   uint16_t* port) noexcept nogil:
    """Take the first frame of out list `which` (FRAG_LIST_*); False when it is empty."""
    cdef int32_t s = t.out_head[which]
    if s < 0:
        return False
    addr[0] = t.frames[s].addr
    length[0] = t.frames[s].len
    port[0] = t.frames[s].port
    t.out_head[which] = t.frames[s].next
    if t.out_head[which] < 0:
        t.out_tail[which] = -1
    t.n_out[which] -= 1
    t.frames[s].next = t.free_frame
    t.free_frame = s
    return True


# ---- Python wrapper --------------------------------------------------------------------

STAT_NAMES = ("recorded", "translated", "held", "released", "timed_out", "dropped_limit",
              "completed", "expired", "noted")
HELD = FRAG_HELD
LIMIT = FRAG_LIMIT
NOTED = FRAG_NOTED


cdef void key_from_py(frag_key_t* k, src, dst, int proto, frag_id) except *:
    a = ipaddress.ip_address(src)
    b = ipaddress.ip_address(dst)
    if a.version != b.version:
        raise ValueError("src and dst must be the same family")
    if not 0 <= proto <= 255:
        raise ValueError(f"proto must be in [0, 255], got {proto}")
    limit = 0x10000 if a.version == 4 else 0x100000000
    if not 0 <= int(frag_id) < limit:
        raise ValueError(f"frag_id must be in [0, {limit}) for IPv{a.version}, got {frag_id}")
    memset(k, 0, sizeof(frag_key_t))
    memcpy(k.src, <const char*>a.packed, len(a.packed))
    memcpy(k.dst, <const char*>b.packed, len(b.packed))
    k.family = a.version
    k.proto = proto
    k.id = <uint32_t>int(frag_id)


cdef void info_from_py(frag_info_t* f, src, dst, int proto, frag_id, offset, length,
                       bint more) except *:
    key_from_py(&f.key, src, dst, proto, frag_id)
    if not 0 <= int(offset) <= 0xFFFF or not 0 <= int(length) <= 0xFFFF:
        raise ValueError("offset and length must be in [0, 65535] bytes")
    f.offset_bytes = <uint32_t>int(offset)
    f.data_bytes = <uint32_t>int(length)
    f.more = more


def fragment_info(frame):
    """Parse one Ethernet frame; the fragment fields as a dict, or None if not a fragment."""
    cdef const uint8_t[::1] view = bytes(frame)
    cdef pkt_meta_t m
    cdef frag_info_t f
    if view.shape[0] == 0:
        return None
    parse_one(&view[0], <uint32_t>view.shape[0], &m)
    if not frag_info_from(&view[0], <uint32_t>view.shape[0], &m, &f):
        return None
    n = 4 if f.key.family == 4 else 16
    return {
        "family": f.key.family, "proto": f.key.proto, "frag_id": f.key.id,
        "src": str(ipaddress.ip_address(bytes(f.key.src[:n]))),
        "dst": str(ipaddress.ip_address(bytes(f.key.dst[:n]))),
        "offset": f.offset_bytes, "length": f.data_bytes, "more": bool(f.more),
        "first": m.status == PARSE_OK,
    }


cdef class FragTable:
    """FragTable(max_entries=4096, max_held_frames=256, timeout_s=30.0)\n--\n
    One worker's fragment table (see the module docstring); the pipeline uses it
    through its C functions, this class exposes the same operations for tests and tools.

    Frames are opaque (addr, len, port) triples: the table only stores and returns them.
    """

    def __cinit__(self, uint32_t max_entries=4096, uint32_t max_held_frames=256,
                  double timeout_s=30.0):
        if not 1 <= max_entries <= (1 << 24):
            raise ValueError(f"max_entries must be in [1, 2^24], got {max_entries}")
        if max_held_frames > (1 << 24):
            raise ValueError(f"max_held_frames must be at most 2^24, got {max_held_frames}")
        if not 0 < timeout_s <= 3600:
            raise ValueError(f"timeout_s must be in (0, 3600], got {timeout_s}")
        if frag_table_init(&self.t, max_entries, max_held_frames,
                           <uint64_t>(timeout_s * 1e9)) != 0:
            raise MemoryError("fragment table")

    def __dealloc__(self):
        frag_table_free(&self.t)

    @property
    def max_entries(self):
        """Datagrams tracked at most at once."""
        return self.t.max_entries

    @property
    def max_held_frames(self):
        """Frames held at most at once (including those waiting to be handed back)."""
        return self.t.max_held

    @property
    def timeout_ns(self):
        """How long an entry lives after its first fragment of any kind was seen."""
        return self.t.timeout_ns

    @property
    def held_frames(self):
        """Frames held for datagrams whose first fragment has not arrived."""
        return self.t.n_held

    def __len__(self):
        return self.t.n_entries

    def first_fragment(self, src, dst, int proto, frag_id, int handle, now_ns, *,
                       length=0, bint more=True):
        """Record a first fragment's session `handle` (>= 0); False at the entry limit.
        `length`: its data bytes (the fragmentable part it carries)."""
        cdef frag_info_t f
        if handle < 0:
            raise ValueError("handle must be >= 0")
        info_from_py(&f, src, dst, proto, frag_id, 0, length, more)
        return frag_first(&self.t, &f, handle, <uint64_t>now_ns) == 0

    def note_fragment(self, src, dst, int proto, frag_id, decision, now_ns, *, length=0,
                      bint more=True):
        """Record a first fragment another worker resolved to `decision` (a
        `xpfdp.session.DECISION_DTYPE` record, e.g. from `make_decision`); False at the entry
        limit. Its later fragments then get NOTED and that decision."""
        cdef frag_info_t f
        cdef sdecision_t d
        arr = np.asarray(decision)
        if arr.dtype != _DECISION_DTYPE or arr.size != 1:
            raise TypeError("decision must be one xpfdp.session.DECISION_DTYPE record")
        raw = arr.tobytes()
        memcpy(&d, <const char*>raw, sizeof(sdecision_t))
        info_from_py(&f, src, dst, proto, frag_id, 0, length, more)
        return frag_noted(&self.t, &f, &d, <uint64_t>now_ns) == 0

    def later_fragment(self, src, dst, int proto, frag_id, offset, length, bint more, frame,
                       now_ns, *, decision_out=None):
        """A later fragment: its session handle (>= 0), NOTED (its datagram was recorded
        from a note: the decision goes to `decision_out[0]`, a writable DECISION_DTYPE array,
        when given), HELD (the table keeps `frame`, an (addr, len, port) triple) or LIMIT
        (refused)."""
        cdef frag_info_t f
        cdef sdecision_t d
        cdef cnp.ndarray out = None
        if decision_out is not None:
            out = checked_array(decision_out, _DECISION_DTYPE, "decision_out", writable=True)
            if out.shape[0] < 1:
                raise ValueError("decision_out must hold at least one record")
        info_from_py(&f, src, dst, proto, frag_id, offset, length, more)
        addr, flen, port = frame
        h = frag_later(&self.t, &f, <uint64_t>addr, <uint32_t>flen, <uint16_t>port,
                       <uint64_t>now_ns, &d)
        if h == FRAG_NOTED and out is not None:
            memcpy(cnp.PyArray_DATA(out), &d, sizeof(sdecision_t))
        return h

    def _pop_all(self, int which):
        cdef uint64_t addr
        cdef uint32_t length
        cdef uint16_t port
        out = []
        while frag_pop(&self.t, which, &addr, &length, &port):
            out.append((addr, length, port))
        return out

    def pop_released(self):
        """Frames whose first fragment has arrived, in arrival order per datagram."""
        return self._pop_all(FRAG_LIST_RELEASED)

    def expire(self, now_ns):
        """Remove entries past the timeout; returns the held frames that dropped."""
        frag_expire(&self.t, <uint64_t>now_ns)
        return self._pop_all(FRAG_LIST_DROPPED)

    def drain(self):
        """Remove every entry; returns every frame still held or waiting to be released."""
        frag_drain(&self.t)
        return self._pop_all(FRAG_LIST_RELEASED) + self._pop_all(FRAG_LIST_DROPPED)

    def stats(self):
        """Counters (STAT_NAMES) plus the current entries and held frames."""
        cdef const uint64_t* c = <const uint64_t*>&self.t.st
        out = {name: int(c[k]) for k, name in enumerate(STAT_NAMES)}
        out["entries"] = self.t.n_entries
        out["held_frames"] = self.t.n_held
        return out

    def check_invariants(self):
        """Walk every list and count: raise AssertionError if any structure disagrees."""
        cdef int32_t i, s, prev = -1
        cdef uint32_t n = 0, held = 0, free_frames = 0, free_entries = 0, k
        cdef frag_entry_t* e
        i = self.t.oldest
        while i >= 0:
            e = &self.t.e[i]
            assert e.older == prev, "age list back link"
            assert find(&self.t, &e.key) == i, "entry not reachable through its hash chain"
            assert e.handle == ENTRY_WAITING or e.n_held == 0, "a resolved entry holds frames"
            k = 0
            s = e.held_head
            while s >= 0:
                k += 1
                if self.t.frames[s].next < 0:
                    assert s == e.held_tail, "held tail"
                s = self.t.frames[s].next
            assert k == e.n_held, "held count"
            held += k
            n += 1
            prev = i
            i = e.newer
        assert prev == self.t.newest and n == self.t.n_entries, "entry count"
        assert held == self.t.n_held, "held frame count"
        i = self.t.free_entry
        while i >= 0:
            free_entries += 1
            i = self.t.e[i].hnext
        assert free_entries + n == self.t.max_entries, "entry slots lost"
        s = self.t.free_frame
        while s >= 0:
            free_frames += 1
            s = self.t.frames[s].next
        for k in range(2):
            n = 0
            s = self.t.out_head[k]
            while s >= 0:
                n += 1
                s = self.t.frames[s].next
            assert n == self.t.n_out[k], "out list count"
            held += n
        assert held + free_frames == self.t.max_held, "frame slots lost"
