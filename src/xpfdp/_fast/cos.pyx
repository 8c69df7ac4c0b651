# cython: language_level=3
"""Class-of-service fast path: MQFQ flow-fair queues, FIFO queues, token buckets, scheduler.

The design is in docs/cos.md: finish tags in bytes over seeded hash buckets, exact
rollback through a LIFO snapshot stack, lazy-refill token buckets, the service order
guarantee → surplus, and admission with ECN CE marking. Every per-packet path is a nogil C function over plain structs.

Rollback design: drains pop speculatively with snapshots and `settle(accepted)` pushes the
unsent tail back in LIFO order. A peek/commit design would have to replay MQFQ selection
without mutating heads and vtime for every peeked packet, i.e. do the work twice; the
snapshot stack keeps one code path, and the T7–T15 state traces pin its exactness. A
snapshot also records the bucket's activation sequence, so a drained bucket that is
restored regains its exact place in the tie-break order (pushing it to the front instead
could reorder equal-tag buckets): a full rollback is then indistinguishable from
never having popped, which the property tests check.
"""

import os
from collections import namedtuple

import numpy as np

cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, UINT64_MAX
from libc.string cimport memset

from xpfdp._fast.csum cimport ECN_ALREADY_CE, ECN_MARKED, ECN_NOT_ECT, ecn_mark_ce
from xpfdp._fast.lib.arrays cimport checked_array
from xpfdp._fast.lib.bytes cimport load_be16, load_be32, load_be64
from xpfdp._fast.meta cimport META_L4_VALID, pkt_meta_t
from xpfdp._check import integer, whole
from xpfdp._fast.meta import PKT_META, XDP_DESC

cnp.import_array()

cdef extern from *:
    """
    #define COS_GOLDEN 0x9e3779b97f4a7c15ULL
    typedef unsigned __int128 cos_u128;
    """
    uint64_t COS_GOLDEN
    ctypedef unsigned long long cos_u128

cdef enum:
    MIN_SHARE_BYTES = 24000          # 16 x 1500: enough in flight for fast retransmit
    MIN_BURST_BYTES = 96000          # 64 x 1500: floor of every bucket and buffer
    SURPLUS_QUANTUM_BYTES = 1500
    GUARANTEE_QUANTUM_MIN = 1500
    GUARANTEE_QUANTUM_MAX = 524288
    NS_PER_S = 1000000000

# Exact queues at or above this rate use the shared_exact admission formulas (docs/cos.md, Admission).
cdef uint64_t SHARED_EXACT_MIN_RATE = 312500000

# Errors of the structural operations.
cdef enum:
    COS_OK = 0
    COS_EMPTY = -1
    COS_FULL = -2
    COS_SNAPSHOT_MISMATCH = -3
    COS_STACK_FULL = -4

# Scheduler phases (index into the per-phase batch counters).
cdef enum:
    PHASE_EXACT = 0
    PHASE_NONEXACT = 1
    PHASE_SURPLUS = 2

ADMIT = COS_ADMIT
ADMIT_MARKED = COS_ADMIT_MARKED
DROP_FLOW_SHARE = COS_DROP_FLOW_SHARE
DROP_BUFFER = COS_DROP_BUFFER
DROP_CAPACITY = COS_DROP_CAPACITY
DROP_BAD_DESC = COS_DROP_BAD_DESC
VERDICT_NAMES = ("admit", "admit_marked", "drop_flow_share", "drop_buffer", "drop_capacity",
                 "drop_bad_desc")
PHASE_NAMES = ("exact_guarantee", "nonexact_guarantee", "surplus")
BATCH_MAX = COS_BATCH_MAX

QueuedPacket = namedtuple("QueuedPacket", ["addr", "len", "options", "bucket"])
QueuedPacket.__doc__ = "A packet reference held by a queue: frame address, length, bucket."


# ---------------------------------------------------------------- saturating arithmetic

cdef inline uint64_t sat_add(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t c = a + b
    return UINT64_MAX if c < a else c


cdef inline uint64_t sat_sub(uint64_t a, uint64_t b) noexcept nogil:
    return a - b if a > b else 0


cdef inline uint64_t u64max(uint64_t a, uint64_t b) noexcept nogil:
    return a if a > b else b


cdef inline uint64_t u64min(uint64_t a, uint64_t b) noexcept nogil:
    return a if a < b else b


cdef inline uint64_t mul_div(uint64_t a, uint64_t b, uint64_t d) noexcept nogil:
    """floor(a * b / d) with a 128-bit intermediate, saturated to u64."""
    cdef cos_u128 r = (<cos_u128>a * b) // d
    return UINT64_MAX if r > UINT64_MAX else <uint64_t>r


# ---------------------------------------------------------------- flow hash (docs/cos.md)

cdef inline uint64_t hash_mix(uint64_t s, uint64_t v) noexcept nogil:
    return s ^ (v + COS_GOLDEN + (s << 6) + (s >> 2))


cdef inline uint32_t flow_bucket_raw(uint64_t seed, uint32_t mask, uint8_t ip_version,
                                     uint8_t protocol, const uint8_t* src, const uint8_t* dst,
                                     uint16_t sport, uint16_t dport) noexcept nogil:
    cdef uint64_t family = 2 if ip_version == 4 else 10
    cdef uint64_t s = seed ^ protocol ^ (family << 8)
    if ip_version == 4:
        s = hash_mix(s, load_be32(src))
        s = hash_mix(s, load_be32(dst))
    else:
        s = hash_mix(s, load_be64(src))
        s = hash_mix(s, load_be64(src + 8))
        s = hash_mix(s, load_be64(dst))
        s = hash_mix(s, load_be64(dst + 8))
    s = hash_mix(s, sport)
    s = hash_mix(s, dport)
    return <uint32_t>(s & 0xFFFF) & mask


cdef uint32_t cos_meta_bucket(uint64_t seed, uint32_t mask, const pkt_meta_t* m) noexcept nogil:
    """Bucket of a parsed packet; packets without a 5-tuple share bucket 0."""
    if (m.ip_version != 4 and m.ip_version != 6) or not (m.flags & META_L4_VALID):
        return 0
    return flow_bucket_raw(seed, mask, m.ip_version, m.protocol, m.src, m.dst, m.sport, m.dport)


def flow_bucket(uint64_t seed, key, uint32_t nbuckets=4096):
    """Bucket of `key` = (protocol, src, dst, sport, dport) or None, as the docs/cos.md flow hash.

    Addresses are `ipaddress` objects, strings or packed bytes; both must be the same family.
    """
    _check_nbuckets(nbuckets)
    if key is None:
        return 0
    import ipaddress

    protocol, src, dst, sport, dport = key
    src_b = src if isinstance(src, bytes) else ipaddress.ip_address(src).packed
    dst_b = dst if isinstance(dst, bytes) else ipaddress.ip_address(dst).packed
    if len(src_b) != len(dst_b) or len(src_b) not in (4, 16):
        raise ValueError("flow key addresses must both be IPv4 (4 B) or both IPv6 (16 B)")
    if not (0 <= protocol <= 255 and 0 <= sport <= 65535 and 0 <= dport <= 65535):
        raise ValueError("flow key protocol must fit 8 bits and ports 16 bits")
    cdef const uint8_t[::1] s_view = src_b
    cdef const uint8_t[::1] d_view = dst_b
    return flow_bucket_raw(seed, nbuckets - 1, 4 if len(src_b) == 4 else 6, protocol,
                           &s_view[0], &d_view[0], sport, dport)


def _check_nbuckets(uint32_t nbuckets):
    if nbuckets == 0 or nbuckets > 65536 or (nbuckets & (nbuckets - 1)):
        raise ValueError(f"bucket count must be a power of two in 1..65536, got {nbuckets}")


def new_flow_seed():
    """A random, non-zero per-queue hash seed (a zero seed would be the same everywhere)."""
    seed = int.from_bytes(os.urandom(8), "little")
    return seed or 1


# ---------------------------------------------------------------- active-bucket heap

cdef inline bint heap_less(const cos_heap_t* a, const cos_heap_t* b) noexcept nogil:
    return a.head < b.head or (a.head == b.head and a.tie < b.tie)


cdef inline uint32_t heap_bucket(const cos_heap_t* e) noexcept nogil:
    return <uint32_t>(e.tie & 0xFFFF)


cdef inline int64_t heap_seq(const cos_heap_t* e) noexcept nogil:
    return (e.tie - <int64_t>heap_bucket(e)) // 65536


# A 4-ary min-heap: half the depth of a binary heap, and a node's children share a cache
# line, which matters once thousands of buckets are active.
cdef void heap_sift_up(cosq_t* q, uint32_t i) noexcept nogil:
    cdef cos_heap_t e = q.heap[i]
    cdef uint32_t p
    while i > 0:
        p = (i - 1) >> 2
        if not heap_less(&e, &q.heap[p]):
            break
        q.heap[i] = q.heap[p]
        q.bk[heap_bucket(&q.heap[i])].heap_pos = i
        i = p
    q.heap[i] = e
    q.bk[heap_bucket(&e)].heap_pos = i


cdef void heap_sift_down(cosq_t* q, uint32_t i) noexcept nogil:
    cdef cos_heap_t e = q.heap[i]
    cdef uint32_t c, best, last
    cdef uint32_t n = q.heap_len
    while True:
        c = 4 * i + 1
        if c >= n:
            break
        best = c
        last = c + 4 if c + 4 < n else n
        c += 1
        while c < last:
            if heap_less(&q.heap[c], &q.heap[best]):
                best = c
            c += 1
        if not heap_less(&q.heap[best], &e):
            break
        q.heap[i] = q.heap[best]
        q.bk[heap_bucket(&q.heap[i])].heap_pos = i
        i = best
    q.heap[i] = e
    q.bk[heap_bucket(&e)].heap_pos = i


cdef inline void heap_insert(cosq_t* q, uint32_t b, int64_t seq) noexcept nogil:
    cdef uint32_t i = q.heap_len
    q.heap_len += 1
    q.heap[i].head = q.bk[b].head_finish
    q.heap[i].tie = seq * 65536 + b
    heap_sift_up(q, i)


cdef inline void heap_remove(cosq_t* q, uint32_t b) noexcept nogil:
    cdef uint32_t i = <uint32_t>q.bk[b].heap_pos
    q.bk[b].heap_pos = -1
    q.heap_len -= 1
    if i == q.heap_len:
        return
    q.heap[i] = q.heap[q.heap_len]
    cdef uint32_t moved = heap_bucket(&q.heap[i])
    q.bk[moved].heap_pos = i
    heap_sift_up(q, i)
    heap_sift_down(q, <uint32_t>q.bk[moved].heap_pos)


cdef inline void heap_rekey(cosq_t* q, uint32_t b) noexcept nogil:
    """Move bucket b after its head finish tag changed."""
    cdef uint32_t i = <uint32_t>q.bk[b].heap_pos
    cdef uint64_t old = q.heap[i].head
    q.heap[i].head = q.bk[b].head_finish
    if q.bk[b].head_finish < old:
        heap_sift_up(q, i)
    else:
        heap_sift_down(q, i)


# ---------------------------------------------------------------- queue core (docs/cos.md, MQFQ)

cdef int cosq_init(cosq_t* q, uint32_t nbuckets, uint32_t capacity) except -1:
    memset(q, 0, sizeof(cosq_t))
    q.nbuckets = nbuckets
    q.mask = nbuckets - 1
    q.capacity = capacity
    q.items = <cos_item_t*>PyMem_Malloc(capacity * sizeof(cos_item_t))
    q.bk = <cos_bucket_t*>PyMem_Malloc(nbuckets * sizeof(cos_bucket_t))
    q.heap = <cos_heap_t*>PyMem_Malloc(nbuckets * sizeof(cos_heap_t))
    if q.items == NULL or q.bk == NULL or q.heap == NULL:
        raise MemoryError()
    cdef uint32_t i
    for i in range(capacity):
        q.items[i].next = <int32_t>(i + 1) if i + 1 < capacity else -1
    q.free_head = 0
    for i in range(nbuckets):
        q.bk[i].bytes = 0
        q.bk[i].head_finish = 0
        q.bk[i].tail_finish = 0
        q.bk[i].first = -1
        q.bk[i].last = -1
        q.bk[i].heap_pos = -1
        q.bk[i].pad = 0
    q.front_seq = -1
    return 0


cdef void cosq_free(cosq_t* q) noexcept:
    PyMem_Free(q.items)
    PyMem_Free(q.bk)
    PyMem_Free(q.heap)
    q.items = NULL


cdef inline int32_t pool_take(cosq_t* q, const cos_item_t* item) noexcept nogil:
    cdef int32_t idx = q.free_head
    q.free_head = q.items[idx].next
    q.items[idx] = item[0]
    q.n_items += 1
    return idx


cdef inline void pool_give(cosq_t* q, int32_t idx) noexcept nogil:
    q.items[idx].next = q.free_head
    q.free_head = idx
    q.n_items -= 1


cdef inline void activate(cosq_t* q) noexcept nogil:
    q.active += 1
    if q.active > q.peak:
        q.peak = q.active


cdef int cosq_push_back(cosq_t* q, const cos_item_t* item) noexcept nogil:
    """Enqueue without admission (docs/cos.md, MQFQ). item.len > 0 and item.bucket < nbuckets."""
    if q.free_head < 0:
        return COS_FULL
    q.n_snapshots = 0                # any enqueue invalidates every rollback snapshot
    cdef uint32_t b = item.bucket
    cdef uint64_t n = item.len
    cdef bint was_idle = q.bk[b].bytes == 0
    if was_idle:
        activate(q)
    q.bk[b].bytes = sat_add(q.bk[b].bytes, n)
    q.bk[b].tail_finish = sat_add(u64max(q.bk[b].tail_finish, q.vtime), n)
    if was_idle:
        q.bk[b].head_finish = q.bk[b].tail_finish
    cdef int32_t idx = pool_take(q, item)
    q.items[idx].next = -1
    if q.bk[b].first < 0:
        q.bk[b].first = idx
        q.bk[b].last = idx
        heap_insert(q, b, q.back_seq)
        q.back_seq += 1
    else:
        q.items[q.bk[b].last].next = idx
        q.bk[b].last = idx
    q.queued_bytes = sat_add(q.queued_bytes, n)
    return COS_OK


cdef inline const cos_item_t* cosq_front(const cosq_t* q) noexcept nogil:
    """The packet the next pop returns, or NULL when empty (selection never mutates)."""
    if q.heap_len == 0:
        return NULL
    return &q.items[q.bk[heap_bucket(&q.heap[0])].first]


cdef int cosq_pop(cosq_t* q, bint snapshot, cos_item_t* out) noexcept nogil:
    """Pop the minimum (head finish, activation) packet (docs/cos.md, MQFQ)."""
    if q.heap_len == 0:
        return COS_EMPTY
    if snapshot and q.n_snapshots >= COS_BATCH_MAX:
        return COS_STACK_FULL
    cdef uint32_t b = heap_bucket(&q.heap[0])
    cdef cos_snap_t* s
    if snapshot:
        s = &q.stack[q.n_snapshots]
        q.n_snapshots += 1
        s.bucket = b
        s.pre_head = q.bk[b].head_finish
        s.pre_tail = q.bk[b].tail_finish
        s.pre_vtime = q.vtime
        s.pre_seq = heap_seq(&q.heap[0])
    cdef uint64_t served = q.bk[b].head_finish
    cdef int32_t idx = q.bk[b].first
    out[0] = q.items[idx]
    q.bk[b].first = q.items[idx].next
    pool_give(q, idx)
    cdef uint64_t n = out.len
    if snapshot:
        q.vtime = u64max(q.vtime, served)
    else:
        q.vtime = sat_add(q.vtime, n)
    if q.bk[b].first >= 0:
        q.bk[b].head_finish = sat_add(q.bk[b].head_finish, q.items[q.bk[b].first].len)
        heap_rekey(q, b)
    else:
        q.bk[b].last = -1
        heap_remove(q, b)
    cdef uint64_t rem = sat_sub(q.bk[b].bytes, n)
    if q.bk[b].bytes > 0 and rem == 0:
        q.active -= 1
        q.bk[b].head_finish = 0
        q.bk[b].tail_finish = 0
    q.bk[b].bytes = rem
    q.queued_bytes = sat_sub(q.queued_bytes, n)
    return COS_OK


cdef int cosq_push_front(cosq_t* q, const cos_item_t* item) noexcept nogil:
    """Undo the most recent pop of this same packet exactly (docs/cos.md, Rollback)."""
    cdef uint32_t b = item.bucket
    cdef uint64_t n = item.len
    cdef cos_snap_t snap
    cdef bint have_snap = False
    if q.n_snapshots > 0:
        if q.stack[q.n_snapshots - 1].bucket != b:
            return COS_SNAPSHOT_MISMATCH
        q.n_snapshots -= 1
        snap = q.stack[q.n_snapshots]
        have_snap = True
    if q.free_head < 0:
        return COS_FULL
    q.vtime = snap.pre_vtime if have_snap else sat_sub(q.vtime, n)
    cdef int32_t idx = pool_take(q, item)
    cdef bint was_idle
    if q.bk[b].first < 0:
        if have_snap:
            q.bk[b].bytes = sat_add(q.bk[b].bytes, n)
            q.bk[b].head_finish = snap.pre_head
            q.bk[b].tail_finish = snap.pre_tail
            activate(q)
        else:
            was_idle = q.bk[b].bytes == 0
            if was_idle:
                activate(q)
            q.bk[b].bytes = sat_add(q.bk[b].bytes, n)
            q.bk[b].tail_finish = sat_add(u64max(q.bk[b].tail_finish, q.vtime), n)
            if was_idle:
                q.bk[b].head_finish = q.bk[b].tail_finish
        q.items[idx].next = -1
        q.bk[b].first = idx
        q.bk[b].last = idx
        if have_snap:
            heap_insert(q, b, snap.pre_seq)  # back to its place in the ring
        else:
            heap_insert(q, b, q.front_seq)   # front of the ring: wins ties
            q.front_seq -= 1
    else:
        q.bk[b].head_finish = sat_sub(q.bk[b].head_finish, q.items[q.bk[b].first].len)
        q.bk[b].bytes = sat_add(q.bk[b].bytes, n)
        q.items[idx].next = q.bk[b].first
        q.bk[b].first = idx
        heap_rekey(q, b)
    q.queued_bytes = sat_add(q.queued_bytes, n)
    return COS_OK


cdef int cosq_drop_orphan(cosq_t* q) noexcept nogil:
    """Forget the top snapshot of a popped packet that was discarded (docs/cos.md, Rollback)."""
    if q.n_snapshots == 0:
        return COS_EMPTY
    q.n_snapshots -= 1
    cdef cos_snap_t orphan = q.stack[q.n_snapshots]
    cdef uint64_t z = q.vtime
    cdef uint64_t f = orphan.pre_head
    cdef uint32_t i
    for i in range(q.n_snapshots):
        q.stack[i].pre_vtime = u64max(q.stack[i].pre_vtime, z)
        if q.stack[i].bucket == orphan.bucket:
            q.stack[i].pre_head = u64max(q.stack[i].pre_head, f)
            q.stack[i].pre_tail = u64max(q.stack[i].pre_tail, f)
    return COS_OK


cdef uint32_t cosq_dequeue_batch(cosq_t* q, xdp_desc* out, uint32_t max_items) noexcept nogil:
    """Pop up to max_items (≤ 64) with snapshots; the batch is kept for settle."""
    cdef uint32_t n = 0
    cdef cos_item_t* it
    q.n_snapshots = 0
    if max_items > COS_BATCH_MAX:
        max_items = COS_BATCH_MAX
    while n < max_items:
        it = &q.popped[n]
        if cosq_pop(q, True, it) != COS_OK:
            break
        out[n].addr = it.addr
        out[n].len = it.len
        out[n].options = it.options
        n += 1
    q.n_popped = n
    return n


cdef void cosq_settle(cosq_t* q, uint32_t accepted) noexcept nogil:
    """Push back the packets of the last batch from index `accepted` on, LIFO."""
    cdef uint32_t i = q.n_popped
    while i > accepted:
        i -= 1
        cosq_push_front(q, &q.popped[i])
    q.n_popped = 0


# ---------------------------------------------------------------- admission (docs/cos.md)

cdef void admission_limits(bint flow_fair, bint shared_exact, uint64_t buffer_bytes,
                           uint64_t rate, uint64_t prospective,
                           uint64_t* buffer_limit, uint64_t* share_limit) noexcept nogil:
    cdef uint64_t base = u64max(buffer_bytes, MIN_BURST_BYTES)
    cdef uint64_t delay_cap, share, bdp
    if not flow_fair:
        buffer_limit[0] = base
        share_limit[0] = base
        return
    delay_cap = rate // 200                               # rate x 5 ms
    buffer_limit[0] = u64min(u64max(base, sat_add(0, prospective * MIN_SHARE_BYTES)),
                             u64max(delay_cap, base))
    share = (buffer_limit[0] + prospective - 1) // prospective
    if shared_exact:
        bdp = (rate // prospective) // 100                # per-flow rate x 10 ms
        share = u64max(2 * share, bdp)
    share_limit[0] = u64min(u64max(share, MIN_SHARE_BYTES), buffer_limit[0])


def admission_limits_for(bint flow_fair, bint shared_exact, uint64_t buffer_bytes,
                         uint64_t transmit_rate_bytes_per_s, uint64_t prospective_flows):
    """(buffer_limit, share_limit) in bytes for the given queue shape and flow count (docs/cos.md, Admission)."""
    cdef uint64_t bl, sl
    admission_limits(flow_fair, shared_exact, buffer_bytes, transmit_rate_bytes_per_s,
                     prospective_flows if prospective_flows > 0 else 1, &bl, &sl)
    return bl, sl


cdef int frame_mark_ce(uint8_t* frame, uint32_t frame_len) noexcept nogil:
    """Mark CE on an Ethernet frame; L3 is found by parsing L2 (one VLAN tag at most)."""
    cdef uint32_t off = 14
    cdef uint16_t ethertype
    cdef uint8_t version
    if frame_len < 14:
        return ECN_NOT_ECT
    ethertype = load_be16(frame + 12)
    if ethertype == 0x8100 or ethertype == 0x88A8:
        if frame_len < 18:
            return ECN_NOT_ECT
        ethertype = load_be16(frame + 16)
        off = 18
    if ethertype == 0x0800:
        version = 4
    elif ethertype == 0x86DD:
        version = 6
    else:
        return ECN_NOT_ECT                    # ARP, QinQ inner tag, anything unknown
    if frame_len <= off or (frame[off] >> 4) != version:
        return ECN_NOT_ECT
    return ecn_mark_ce(frame + off, frame_len - off, version)


cdef int cosq_admit(cosq_t* q, cos_item_t* item, uint8_t* frame) noexcept nogil:
    """Admission then enqueue; returns a COS_ADMIT*/COS_DROP_* verdict (drop before enqueue).

    `frame` points at the packet bytes for ECN marking, or NULL to never mark.
    """
    cdef uint32_t b = item.bucket
    cdef uint64_t n = item.len
    cdef uint64_t prospective = 1
    cdef uint64_t buffer_limit, share_limit, occupancy, threshold
    cdef bint share_exceeded, buffer_exceeded
    cdef int r
    if n == 0 or b >= q.nbuckets:
        q.counters.drops_bad_desc += 1
        return COS_DROP_BAD_DESC
    if q.flow_fair:
        prospective = q.active + (1 if q.bk[b].bytes == 0 else 0)
        if prospective == 0:
            prospective = 1
    if prospective != q.lim_prospective:
        admission_limits(q.flow_fair, q.shared_exact, q.buffer_bytes, q.rate_bytes_per_s,
                         prospective, &q.lim_buffer, &q.lim_share)
        q.lim_prospective = prospective
    buffer_limit = q.lim_buffer
    share_limit = q.lim_share
    share_exceeded = q.flow_fair and q.bk[b].bytes + n > share_limit
    buffer_exceeded = q.queued_bytes + n > buffer_limit
    if share_exceeded:
        q.counters.drops_flow_share += 1
        return COS_DROP_FLOW_SHARE
    if buffer_exceeded:
        q.counters.drops_buffer += 1
        return COS_DROP_BUFFER
    if q.free_head < 0:
        q.counters.drops_capacity += 1
        return COS_DROP_CAPACITY
    if q.flow_fair and not q.shared_exact:
        occupancy = q.bk[b].bytes                 # per-flow arm only (regression 19 in docs/cos.md)
        threshold = share_limit // 3
    else:
        occupancy = q.queued_bytes                    # aggregate arm
        threshold = buffer_limit // 3
    r = ECN_NOT_ECT
    if occupancy > threshold and frame != NULL:
        r = frame_mark_ce(frame, item.len)
        if r == ECN_MARKED:
            q.counters.ecn_marked += 1
        elif r == ECN_ALREADY_CE:
            q.counters.ecn_already_ce += 1
        else:
            q.counters.ecn_not_ect += 1
    cosq_push_back(q, item)
    return COS_ADMIT_MARKED if r == ECN_MARKED else COS_ADMIT


# ---------------------------------------------------------------- Python queue classes

cdef void* array_pointer(object arr, object dtype, str name, str dtype_name, Py_ssize_t* n,
                         bint writable=False) except NULL:
    """Data pointer of a 1-D C-contiguous numpy array of `dtype` (its length in n[0])."""
    cdef cnp.ndarray a = checked_array(arr, dtype, name, writable, dtype_name)
    n[0] = a.shape[0]
    return cnp.PyArray_DATA(a)


cdef class CosQueue:
    """Common API of FlowFairQueue and FifoQueue (a FIFO is a one-bucket queue).

    A queue has a single writer: the batch methods release the GIL, so one queue must not
    be used from two threads at once (each worker owns its queues).
    """

    def __cinit__(self):
        self.q.free_head = -1                 # unusable until a subclass allocates it

    def __init__(self, *args, **kwargs):
        raise TypeError("CosQueue is abstract: use FlowFairQueue or FifoQueue")

    def __dealloc__(self):
        if self.q.items != NULL:
            cosq_free(&self.q)

    cdef int _setup(self, uint32_t nbuckets, uint64_t seed, bint flow_fair,
                    uint64_t buffer_bytes, uint64_t rate, uint32_t capacity_items) except -1:
        if self.q.items != NULL:
            raise RuntimeError("queue is already initialised")
        _check_nbuckets(nbuckets)
        if capacity_items == 0 or capacity_items > 0x7FFFFFFF:
            raise ValueError("capacity_items must be in 1..2**31-1")
        cosq_init(&self.q, nbuckets, capacity_items)
        self.q.seed = seed
        self.q.flow_fair = flow_fair
        self.q.buffer_bytes = buffer_bytes
        self.q.rate_bytes_per_s = rate
        self.q.shared_exact = flow_fair and rate >= SHARED_EXACT_MIN_RATE
        return 0

    # -- configuration and state -----------------------------------------------------
    @property
    def nbuckets(self):
        """Number of flow buckets (1 for a FIFO)."""
        return self.q.nbuckets

    @property
    def seed(self):
        """Per-queue flow hash seed."""
        return self.q.seed

    @property
    def flow_fair(self):
        """True for MQFQ queues."""
        return bool(self.q.flow_fair)

    @property
    def shared_exact(self):
        """True when the rate-aware (≥ 2.5 Gbps) admission formulas apply."""
        return bool(self.q.shared_exact)

    @property
    def capacity_items(self):
        """Maximum number of queued packets (preallocated)."""
        return self.q.capacity

    @property
    def vtime(self):
        """Queue virtual time in bytes. Settable to reproduce traces; not for normal use."""
        return self.q.vtime

    @vtime.setter
    def vtime(self, uint64_t value):
        self.q.vtime = value

    @property
    def active_buckets(self):
        """Buckets holding queued bytes."""
        return self.q.active

    @property
    def peak_active_buckets(self):
        """Lifetime high-water mark of active_buckets."""
        return self.q.peak

    @property
    def queued_bytes(self):
        """Bytes queued."""
        return self.q.queued_bytes

    @property
    def n_items(self):
        """Packets queued."""
        return self.q.n_items

    @property
    def n_snapshots(self):
        """Rollback snapshots held (≤ 64)."""
        return self.q.n_snapshots

    def __len__(self):
        return self.q.n_items

    def _bucket_index(self, uint32_t bucket):
        if bucket >= self.q.nbuckets:
            raise ValueError(f"bucket {bucket} out of range 0..{self.q.nbuckets - 1}")
        return bucket

    def head_finish(self, uint32_t bucket):
        """Finish tag of the bucket's front packet (0 when idle)."""
        return self.q.bk[self._bucket_index(bucket)].head_finish

    def tail_finish(self, uint32_t bucket):
        """Finish tag of the bucket's last packet (0 when idle)."""
        return self.q.bk[self._bucket_index(bucket)].tail_finish

    def bucket_bytes(self, uint32_t bucket):
        """Bytes queued in the bucket."""
        return self.q.bk[self._bucket_index(bucket)].bytes

    def bucket_packets(self, uint32_t bucket):
        """Packets of one bucket in FIFO order."""
        cdef int32_t idx = self.q.bk[self._bucket_index(bucket)].first
        out = []
        while idx >= 0:
            out.append(self._packet(&self.q.items[idx]))
            idx = self.q.items[idx].next
        return out

    def active_order(self):
        """Active buckets in tie-break order (docs/cos.md, MQFQ)."""
        ties = sorted(self.q.heap[i].tie for i in range(self.q.heap_len))
        return [t & 0xFFFF for t in ties]

    @property
    def counters(self):
        """Drops and ECN marks by reason."""
        c = self.q.counters
        return {
            "drops_flow_share": c.drops_flow_share,
            "drops_buffer": c.drops_buffer,
            "drops_capacity": c.drops_capacity,
            "drops_bad_desc": c.drops_bad_desc,
            "ecn_marked": c.ecn_marked,
            "ecn_not_ect": c.ecn_not_ect,
            "ecn_already_ce": c.ecn_already_ce,
        }

    def limits(self, uint32_t bucket=0):
        """(buffer_limit, share_limit) that admission would apply to a packet of `bucket`."""
        self._bucket_index(bucket)
        cdef uint64_t p = 1
        if self.q.flow_fair:
            p = self.q.active + (1 if self.q.bk[bucket].bytes == 0 else 0)
        return admission_limits_for(self.q.flow_fair, self.q.shared_exact, self.q.buffer_bytes,
                                    self.q.rate_bytes_per_s, p)

    # -- scalar operations (tests, control path) --------------------------------------
    def _check_unscheduled(self):
        if self.q.scheduled:
            raise RuntimeError("this queue belongs to a Scheduler: dequeue through drain()")

    def bucket_of(self, key):
        """Bucket of a flow key (protocol, src, dst, sport, dport) or None; 0 for a FIFO."""
        if not self.q.flow_fair:
            return 0
        return flow_bucket(self.q.seed, key, self.q.nbuckets)

    cdef object _packet(self, const cos_item_t* it):
        return QueuedPacket(it.addr, it.len, it.options, it.bucket)

    cdef cos_item_t _item(self, uint64_t length, key, uint64_t addr, uint32_t options) except *:
        cdef cos_item_t it
        if length == 0 or length > 0xFFFFFFFF:
            raise ValueError(f"packet length must be in 1..2**32-1, got {length}")
        it.addr = addr
        it.len = <uint32_t>length
        it.options = options
        it.bucket = self.bucket_of(key)
        return it

    def push(self, length, key=None, uint64_t addr=0, uint32_t options=0):
        """Enqueue without admission (docs/cos.md, MQFQ); returns the bucket. For traces and tests."""
        cdef cos_item_t it = self._item(integer(length, "packet length", 1, 0xFFFFFFFF), key,
                                        addr, options)
        if cosq_push_back(&self.q, &it) == COS_FULL:
            raise OverflowError(f"queue holds capacity_items={self.q.capacity} packets")
        return it.bucket

    def enqueue(self, length_arg, key=None, uint64_t addr=0, uint32_t options=0,
                frame=None):
        """Admit-or-drop one packet (docs/cos.md, Admission); returns a verdict (ADMIT, DROP_*, ...).

        `frame` (a writable buffer holding the Ethernet frame) enables ECN CE marking.
        """
        cdef uint64_t length = integer(length_arg, "packet length", 1, 0xFFFFFFFF)
        cdef cos_item_t it = self._item(length, key, addr, options)
        cdef uint8_t[::1] view
        cdef uint8_t* p = NULL
        if frame is not None:
            view = frame
            if <uint64_t>view.shape[0] < length:
                raise ValueError("frame is shorter than the packet length")
            p = &view[0]
        return cosq_admit(&self.q, &it, p)

    def pop(self, bint snapshot=True):
        """Dequeue the next packet (None when empty); `snapshot` allows exact rollback."""
        self._check_unscheduled()
        cdef cos_item_t it
        cdef int r = cosq_pop(&self.q, snapshot, &it)
        if r == COS_EMPTY:
            return None
        if r == COS_STACK_FULL:
            raise RuntimeError("snapshot stack holds 64 pops: clear_snapshots() between batches")
        return self._packet(&it)

    def push_front(self, pkt):
        """Undo the most recent un-restored pop of `pkt` (a QueuedPacket), exactly."""
        self._check_unscheduled()
        cdef cos_item_t it
        it.addr, it.len, it.options, it.bucket = pkt
        if it.len == 0 or it.bucket >= self.q.nbuckets:
            raise ValueError("not a packet of this queue")
        r = cosq_push_front(&self.q, &it)
        if r == COS_SNAPSHOT_MISMATCH:
            raise RuntimeError(
                f"push_front of bucket {it.bucket} does not match the top snapshot (bucket "
                f"{self.q.stack[self.q.n_snapshots - 1].bucket}): not the last popped packet")
        if r == COS_FULL:
            raise OverflowError(f"queue holds capacity_items={self.q.capacity} packets")

    def drop_orphan(self):
        """Account a popped packet that was discarded instead of sent or restored (docs/cos.md, Rollback)."""
        self._check_unscheduled()
        if cosq_drop_orphan(&self.q) == COS_EMPTY:
            raise RuntimeError("no snapshot to drop: nothing popped since the last batch start")

    def clear_snapshots(self):
        """Start a new batch: popped packets can no longer be restored with snapshots."""
        self._check_unscheduled()
        self.q.n_snapshots = 0

    def drain_all(self):
        """Pop everything without snapshots (teardown); vtime advances by each length."""
        self._check_unscheduled()
        self.q.n_snapshots = 0
        out = []
        cdef cos_item_t it
        while cosq_pop(&self.q, False, &it) == COS_OK:
            out.append(self._packet(&it))
        return out

    def restore_front(self, packets):
        """Inverse of drain_all: push `packets` back to the front in reverse order."""
        if self.q.n_snapshots:
            raise RuntimeError("restore_front needs an empty snapshot stack")
        for pkt in reversed(list(packets)):
            self.push_front(pkt)

    # -- batch operations ---------------------------------------------------------------
    def enqueue_batch(self, desc, meta, uint8_t[::1] frames, uint8_t[::1] verdicts=None,
                      n=None):
        """Admit a burst: `desc` (XDP_DESC), `meta` (PKT_META) and the UMEM bytes `frames`.

        Returns the number admitted; per-packet verdicts go to `verdicts` (uint8) when
        given, so the caller can recycle dropped frames. Releases the GIL.
        """
        cdef Py_ssize_t n_desc, n_meta
        cdef const xdp_desc* d = <const xdp_desc*>array_pointer(desc, XDP_DESC, "desc", "XDP_DESC", &n_desc)
        cdef const pkt_meta_t* m = <const pkt_meta_t*>array_pointer(
            meta, PKT_META, "meta", "PKT_META", &n_meta)
        cdef Py_ssize_t count = n_desc if n is None else n
        if count < 0 or count > n_desc or count > n_meta:
            raise ValueError(f"n={count} exceeds the burst arrays ({n_desc} desc, {n_meta} meta)")
        if verdicts is not None and verdicts.shape[0] < count:
            raise ValueError("verdicts array is shorter than the burst")
        cdef uint8_t* vout = &verdicts[0] if verdicts is not None and count > 0 else NULL
        cdef uint8_t* base = &frames[0] if frames.shape[0] > 0 else NULL
        cdef uint64_t umem_len = frames.shape[0]
        cdef Py_ssize_t i
        cdef cos_item_t it
        cdef int v
        cdef uint32_t admitted = 0
        with nogil:
            for i in range(count):
                it.addr = d[i].addr
                it.len = d[i].len
                it.options = d[i].options
                if it.len == 0 or it.addr > umem_len or umem_len - it.addr < it.len:
                    self.q.counters.drops_bad_desc += 1
                    v = COS_DROP_BAD_DESC
                else:
                    it.bucket = cos_meta_bucket(self.q.seed, self.q.mask, &m[i]) \
                        if self.q.flow_fair else 0
                    v = cosq_admit(&self.q, &it, base + it.addr)
                if v <= COS_ADMIT_MARKED:
                    admitted += 1
                if vout != NULL:
                    vout[i] = <uint8_t>v
        return admitted

    def dequeue_batch(self, out_desc, uint32_t max_items=COS_BATCH_MAX):
        """Pop up to min(max_items, 64, len(out_desc)) packets into an XDP_DESC array.

        Starts a batch (clears snapshots). Call settle(accepted) if TX took only a prefix.
        """
        self._check_unscheduled()
        cdef Py_ssize_t n_out
        cdef xdp_desc* out = <xdp_desc*>array_pointer(out_desc, XDP_DESC, "out_desc", "XDP_DESC", &n_out,
                                             True)
        cdef uint32_t cap = min(max_items, COS_BATCH_MAX, n_out)
        cdef uint32_t n
        with nogil:
            n = cosq_dequeue_batch(&self.q, out, cap)
        return n

    def settle(self, uint32_t accepted):
        """TX accepted the first `accepted` packets of the last batch; restore the rest."""
        self._check_unscheduled()
        if accepted > self.q.n_popped:
            raise ValueError(f"accepted={accepted} exceeds the batch of {self.q.n_popped}")
        with nogil:
            cosq_settle(&self.q, accepted)

    def check_invariants(self):
        """Raise AssertionError if a structural invariant (docs/cos.md, Invariants) is broken."""
        q = &self.q
        active = 0
        total_bytes = 0
        total_items = 0
        seen = set()
        for b in range(q.nbuckets):
            idx = q.bk[b].first
            lens = []
            while idx >= 0:
                lens.append(q.items[idx].len)
                assert q.items[idx].bucket == b, "item stored in the wrong bucket"
                idx = q.items[idx].next
            assert sum(lens) == q.bk[b].bytes, f"bucket {b}: bytes != sum of lengths"
            total_bytes += sum(lens)
            total_items += len(lens)
            if lens:
                active += 1
                pos = q.bk[b].heap_pos
                assert 0 <= pos < q.heap_len and heap_bucket(&q.heap[pos]) == b, \
                    f"bucket {b} not in set"
                assert q.heap[pos].head == q.bk[b].head_finish, f"bucket {b}: stale heap key"
                assert q.bk[b].head_finish <= q.bk[b].tail_finish, f"bucket {b}: head > tail"
                seen.add(b)
            else:
                assert q.bk[b].heap_pos == -1, f"idle bucket {b} in the active set"
                assert q.bk[b].head_finish == 0 and q.bk[b].tail_finish == 0, f"idle bucket {b} tags"
                assert q.bk[b].last == -1
        assert len(seen) == q.heap_len, "active set size"
        for i in range(1, q.heap_len):
            assert not heap_less(&q.heap[i], &q.heap[(i - 1) // 4]), "heap order"
        assert active == q.active, "active_buckets count"
        assert q.peak >= q.active
        assert total_bytes == q.queued_bytes, "queued_bytes"
        assert total_items == q.n_items, "n_items"
        free = 0
        idx = q.free_head
        while idx >= 0:
            free += 1
            idx = q.items[idx].next
        assert free + q.n_items == q.capacity, "item pool leak"
        assert q.n_snapshots <= COS_BATCH_MAX


cdef class FlowFairQueue(CosQueue):
    """FlowFairQueue(nbuckets=4096, seed=None, buffer_bytes=0, transmit_rate_bytes_per_s=0, capacity_items=16384)\n--\n
    MQFQ over hashed flow buckets: byte-fair service in finish-tag order (docs/cos.md).

    `buffer_bytes` and `transmit_rate_bytes_per_s` drive admission (docs/cos.md); `seed=None` draws
    a random non-zero seed so the bucket mapping is not probeable.
    """

    def __init__(self, uint32_t nbuckets=4096, seed=None, uint64_t buffer_bytes=0,
                 uint64_t transmit_rate_bytes_per_s=0, uint32_t capacity_items=16384):
        self._setup(nbuckets, new_flow_seed() if seed is None else seed, True, buffer_bytes,
                    transmit_rate_bytes_per_s, capacity_items)


cdef class FifoQueue(CosQueue):
    """FifoQueue(buffer_bytes=0, capacity_items=16384)\n--\n
    First-in first-out queue for non-exact classes (one bucket, same rollback contract)."""

    def __init__(self, uint64_t buffer_bytes=0, uint32_t capacity_items=16384):
        self._setup(1, 0, False, buffer_bytes, 0, capacity_items)


# ---------------------------------------------------------------- token bucket (docs/cos.md)

cdef void tb_refill(cos_tb_t* tb, uint64_t now_ns) noexcept nogil:
    cdef uint64_t added
    if tb.burst_bytes == 0:
        return
    if not tb.primed:
        tb.tokens = tb.burst_bytes              # first use starts full
        tb.last_ns = now_ns
        tb.primed = True
        return
    if now_ns <= tb.last_ns or tb.rate_bytes_per_s == 0:
        return
    added = mul_div(now_ns - tb.last_ns, tb.rate_bytes_per_s, NS_PER_S)
    if added == 0:
        return                                  # keep the stamp: no fractional loss yet
    if tb.debt_bytes >= added:
        tb.debt_bytes -= added
    else:
        tb.tokens = u64min(sat_add(tb.tokens, added - tb.debt_bytes), tb.burst_bytes)
        tb.debt_bytes = 0
    tb.last_ns = now_ns


# A packet costs more than a bucket can ever hold (cost > burst_bytes): it is served once the
# bucket is full and the excess becomes debt that refills repay before tokens count again
# (HTB's negative tokens), so the long-run rate holds and nothing waits forever.

cdef inline uint64_t tb_need(const cos_tb_t* tb, uint64_t cost) noexcept nogil:
    """Tokens that must be present to send `cost`: the cost, at most a full bucket."""
    return u64min(cost, tb.burst_bytes)


cdef uint64_t tb_ns_until(const cos_tb_t* tb, uint64_t need) noexcept nogil:
    """Nanoseconds until a packet costing `need` may be sent (debt repaid and
    min(need, burst) tokens present); 0 for an uncapped (rate 0) bucket."""
    cdef cos_u128 ns
    cdef uint64_t want = tb_need(tb, need)
    if tb.rate_bytes_per_s == 0 or (tb.debt_bytes == 0 and tb.tokens >= want):
        return 0
    ns = ((<cos_u128>want + tb.debt_bytes - tb.tokens) * NS_PER_S + tb.rate_bytes_per_s - 1) \
        // tb.rate_bytes_per_s
    return UINT64_MAX if ns > UINT64_MAX else <uint64_t>ns


cdef inline bint tb_covers(const cos_tb_t* tb, uint64_t cost) noexcept nogil:
    return tb.rate_bytes_per_s == 0 or (
        tb.debt_bytes == 0 and tb.burst_bytes != 0 and tb.tokens >= tb_need(tb, cost))


cdef inline void tb_take(cos_tb_t* tb, uint64_t cost) noexcept nogil:
    if tb.rate_bytes_per_s == 0:
        return
    if cost <= tb.tokens:
        tb.tokens -= cost
    else:
        tb.debt_bytes = sat_add(tb.debt_bytes, cost - tb.tokens)
        tb.tokens = 0


cdef inline void tb_give(cos_tb_t* tb, uint64_t cost) noexcept nogil:
    """Refund `cost` taken earlier (settle): debt first, then tokens (exact undo)."""
    if tb.rate_bytes_per_s == 0:
        return
    if tb.debt_bytes >= cost:
        tb.debt_bytes -= cost
    else:
        tb.tokens += cost - tb.debt_bytes
        tb.debt_bytes = 0


cdef void tb_init(cos_tb_t* tb, uint64_t rate, uint64_t burst, uint32_t overhead) noexcept nogil:
    memset(tb, 0, sizeof(cos_tb_t))
    tb.rate_bytes_per_s = rate
    tb.burst_bytes = burst
    tb.overhead_bytes = overhead


cdef inline uint64_t _count(object value, str name, uint64_t hi) except? 0xFFFFFFFFFFFFFFFF:
    """`integer(value, name, 0, hi)` with its common case, a Python int in range, inline: the
    per-call clock and length arguments of the token bucket and the drain cost no Python
    call then."""
    if type(value) is int and 0 <= value <= hi:
        return value
    return integer(value, name, 0, hi)


cdef class TokenBucket:
    """TokenBucket(rate_bytes_per_s, burst_bytes, overhead_bytes=0)\n--\n
    Byte token bucket with lazy refill from the caller's clock (docs/cos.md, Token buckets).

    `rate_bytes_per_s=0` means uncapped. `overhead_bytes` is added to every packet's cost
    (e.g. 24 for preamble + IFG + FCS when shaping at line level).
    """

    def __init__(self, rate_bytes_per_s, burst_bytes, uint32_t overhead_bytes=0):
        tb_init(&self.tb, whole(rate_bytes_per_s, "rate_bytes_per_s", 0, 0xFFFFFFFFFFFFFFFF),
                whole(burst_bytes, "burst_bytes", 0, 0xFFFFFFFFFFFFFFFF), overhead_bytes)

    @property
    def rate_bytes_per_s(self):
        """Refill rate; 0 = uncapped."""
        return self.tb.rate_bytes_per_s

    @property
    def burst_bytes(self):
        """Bucket depth."""
        return self.tb.burst_bytes

    @property
    def tokens(self):
        """Tokens after the last refill."""
        return self.tb.tokens

    @property
    def debt_bytes(self):
        """Bytes owed after sending a packet larger than the bucket (repaid first)."""
        return self.tb.debt_bytes

    @property
    def last_refill_ns(self):
        """Clock value of the last refill that added tokens."""
        return self.tb.last_ns

    def refill(self, now_ns):
        """Add tokens for the time elapsed since the last refill (first call fills)."""
        tb_refill(&self.tb, _count(now_ns, "now_ns", 0xFFFFFFFFFFFFFFFF))

    def cost(self, packet_len):
        """Tokens a packet of `packet_len` bytes consumes (length + overhead)."""
        return _count(packet_len, "packet_len", 0xFFFFFFFF) + self.tb.overhead_bytes

    def try_consume(self, packet_len, now_ns):
        """Refill, then take the packet's cost if available; True when it may be sent.
        A packet larger than the bucket is sent once the bucket is full, leaving debt."""
        cdef uint64_t c = _count(packet_len, "packet_len", 0xFFFFFFFF)
        tb_refill(&self.tb, _count(now_ns, "now_ns", 0xFFFFFFFFFFFFFFFF))
        c += self.tb.overhead_bytes
        if not tb_covers(&self.tb, c):
            return False
        tb_take(&self.tb, c)
        return True

    def ns_until(self, need_bytes):
        """Nanoseconds until a packet of `need_bytes` may be consumed (0 if now or uncapped;
        finite even when it exceeds the bucket)."""
        return tb_ns_until(&self.tb, _count(need_bytes, "need_bytes", 0xFFFFFFFFFFFFFFFF))


def guarantee_quantum_bytes(uint64_t rate_bytes_per_s):
    """Bytes a guarantee visit may send: rate × 200 µs clamped to [1500, 512 KiB]."""
    return _guarantee_quantum(rate_bytes_per_s)


cdef inline uint64_t _guarantee_quantum(uint64_t rate) noexcept nogil:
    return u64min(u64max(rate // 5000, GUARANTEE_QUANTUM_MIN), GUARANTEE_QUANTUM_MAX)


def surplus_weight(uint64_t transmit_rate_bytes_per_s, uint64_t root_rate_bytes_per_s):
    """Default surplus weight clamp(ceil(16 × rate / root), 1, 16); 1 if either rate is 0."""
    if transmit_rate_bytes_per_s == 0 or root_rate_bytes_per_s == 0:
        return 1
    cdef uint64_t w = (transmit_rate_bytes_per_s * 16 + root_rate_bytes_per_s - 1) \
        // root_rate_bytes_per_s
    return max(1, min(16, w))


def default_burst_bytes(uint64_t rate_bytes_per_s):
    """10 ms of rate, at least 64 full-size packets (96 000 B)."""
    return max(rate_bytes_per_s // 100, MIN_BURST_BYTES)


def wake_tick(uint64_t now_ns, uint64_t wake_ns, uint64_t tick_ns=50000):
    """Timer-wheel tick of a wake time: never earlier than the tick after `now_ns`."""
    return max(wake_ns // tick_ns, now_ns // tick_ns + 1)


# ---------------------------------------------------------------- scheduler (docs/cos.md, Service order)

cdef inline bint has_guarantee(const cos_class_t* c) noexcept nogil:
    """A queue with a transmit rate is guaranteed that rate (its own token bucket)."""
    return c.tb.rate_bytes_per_s != 0


cdef class Scheduler:
    """Scheduler(shaping_rate_bytes_per_s=0, burst_bytes=None, overhead_bytes=0)\n--\n
    Shaper of one egress interface: a root token bucket over prioritised queues.

    Each drain() serves at most one batch (≤ 64 packets) of one queue, in the order exact
    guarantees → non-exact guarantees → surplus by priority (weighted deficit round-robin).
    Exact queues are MQFQ flow-fair and capped at their rate; other queues are FIFO.
    A queue short of tokens is parked until `next_wakeup_ns()`.
    """

    def __cinit__(self):
        self.classes = NULL
        self.n_classes = 0
        self.pend_class = -1

    def __dealloc__(self):
        PyMem_Free(self.classes)

    def __init__(self, shaping_rate_bytes_per_s=0, burst_bytes=None,
                 uint32_t overhead_bytes=0):
        shaping_rate_bytes_per_s = whole(shaping_rate_bytes_per_s, "shaping_rate_bytes_per_s",
                                         0, 0xFFFFFFFFFFFFFFFF)
        self._queues = []
        burst = default_burst_bytes(shaping_rate_bytes_per_s) if burst_bytes is None \
            else max(int(burst_bytes), MIN_BURST_BYTES)
        tb_init(&self.root, shaping_rate_bytes_per_s, burst, overhead_bytes)
        tb_init(&self.residual, 0, 0, overhead_bytes)

    def add_queue(self, queue_id, *, priority=5,
                  transmit_rate_bytes_per_s=0, bint exact=False, weight=None,
                  buffer_bytes=None, bint surplus_sharing=False, uint32_t flow_buckets=4096,
                  seed=None, uint32_t capacity_items=16384):
        """Add a queue and return it (FlowFairQueue if exact, else FifoQueue).

        `transmit_rate_bytes_per_s` > 0 enables a guarantee at that rate (a hard cap for
        exact queues); 0 makes the queue surplus-only. `weight` (1..16) scales its surplus
        quantum; by default it follows the rate relative to the root.
        """
        queue_id = integer(queue_id, "queue_id", 0, 0xFFFFFFFF)
        priority = integer(priority, "priority", 0, 0xFFFFFFFF)
        transmit_rate_bytes_per_s = whole(transmit_rate_bytes_per_s, "transmit_rate_bytes_per_s",
                                          0, 0xFFFFFFFFFFFFFFFF)
        if queue_id > 255 or any(q[0] == queue_id for q in self._queues):
            raise ValueError(f"queue_id {queue_id} must be unique and in 0..255")
        if priority >= COS_PRIORITY_LEVELS:
            raise ValueError(f"priority must be 0 (strict-high) .. 5 (low), got {priority}")
        if exact and transmit_rate_bytes_per_s == 0:
            raise ValueError("an exact queue needs a transmit rate > 0")
        if surplus_sharing and not exact:
            raise ValueError("surplus_sharing only applies to exact queues")
        w = surplus_weight(transmit_rate_bytes_per_s or self.root.rate_bytes_per_s,
                           self.root.rate_bytes_per_s) if weight is None else int(weight)
        if not 1 <= w <= 16:
            raise ValueError(f"weight must be in 1..16, got {w}")
        rate = transmit_rate_bytes_per_s or self.root.rate_bytes_per_s
        buf = default_burst_bytes(rate) if buffer_bytes is None else int(buffer_bytes)
        if exact:
            queue = FlowFairQueue(flow_buckets, seed, buf, rate, capacity_items)
        else:
            queue = FifoQueue(buf, capacity_items)
        grown = <cos_class_t*>PyMem_Malloc((self.n_classes + 1) * sizeof(cos_class_t))
        if grown == NULL:
            raise MemoryError()
        for i in range(self.n_classes):
            grown[i] = self.classes[i]
        PyMem_Free(self.classes)
        self.classes = grown
        cdef cos_class_t* c = &self.classes[self.n_classes]
        memset(c, 0, sizeof(cos_class_t))
        c.q = &(<CosQueue>queue).q
        c.q.scheduled = True
        c.queue_id = queue_id
        c.priority = priority
        c.exact = exact
        c.surplus_sharing = surplus_sharing
        c.quantum_bytes = _guarantee_quantum(transmit_rate_bytes_per_s)
        c.weight = w
        tb_init(&c.tb, transmit_rate_bytes_per_s, max(buf, MIN_BURST_BYTES),
                self.root.overhead_bytes)
        self.n_classes += 1
        self._queues.append((queue_id, queue))
        return queue

    def queue(self, uint32_t queue_id):
        """The queue object of `queue_id`."""
        for qid, q in self._queues:
            if qid == queue_id:
                return q
        raise KeyError(queue_id)

    cdef int _class_index(self, uint32_t queue_id) except -1:
        for i in range(self.n_classes):
            if self.classes[i].queue_id == queue_id:
                return i
        raise KeyError(queue_id)

    @property
    def queue_ids(self):
        """Queue ids in insertion order."""
        return [qid for qid, _ in self._queues]

    @property
    def root_tokens(self):
        """Root bucket tokens after the last refill."""
        return self.root.tokens

    def queue_tokens(self, uint32_t queue_id):
        """Guarantee tokens of a queue."""
        return self.classes[self._class_index(queue_id)].tb.tokens

    def deficit_bytes(self, uint32_t queue_id):
        """Surplus deficit of a queue."""
        return self.classes[self._class_index(queue_id)].deficit_bytes

    def is_parked(self, uint32_t queue_id):
        """True while the queue waits for tokens."""
        return bool(self.classes[self._class_index(queue_id)].parked)

    @property
    def counters(self):
        """Starvation parks and batches served per phase."""
        return {
            "root_token_starvation_parks": self.root_parks,
            "queue_token_starvation_parks": self.queue_parks,
            "batches_exact_guarantee": self.batches[PHASE_EXACT],
            "batches_nonexact_guarantee": self.batches[PHASE_NONEXACT],
            "batches_surplus": self.batches[PHASE_SURPLUS],
        }

    @property
    def last_batch(self):
        """(queue_id, phase name) of the batch the last drain() returned, or None."""
        if self.pend_class < 0:
            return None
        return self.classes[self.pend_class].queue_id, PHASE_NAMES[self.pend_phase]

    def next_wakeup_ns(self):
        """Earliest time a parked, non-empty queue becomes eligible again (None if none)."""
        best = None
        for i in range(self.n_classes):
            c = &self.classes[i]
            if c.parked and c.q.n_items and (best is None or c.wake_ns < best):
                best = c.wake_ns
        return best

    def drain(self, out_desc, now_ns, max_items=COS_BATCH_MAX):
        """Serve one batch into `out_desc` (XDP_DESC); returns the packet count.

        Tokens are charged for the whole batch; if TX accepts only a prefix call
        settle(accepted) before the next drain, which restores the rest exactly.
        """
        cdef uint64_t now = _count(now_ns, "now_ns", 0xFFFFFFFFFFFFFFFF)
        cdef uint32_t most = _count(max_items, "max_items", 0xFFFFFFFF)
        cdef Py_ssize_t n_out
        cdef xdp_desc* out = <xdp_desc*>array_pointer(out_desc, XDP_DESC, "out_desc", "XDP_DESC", &n_out,
                                             True)
        cdef uint32_t cap = min(most, COS_BATCH_MAX, n_out)
        cdef uint32_t n
        with nogil:
            n = self.drain_batch(out, cap, now)
        return n

    def settle(self, uint32_t accepted):
        """TX accepted the first `accepted` packets of the last drain; restore the rest."""
        if accepted > self.pend_n:
            raise ValueError(f"accepted={accepted} exceeds the batch of {self.pend_n}")
        with nogil:
            self.settle_batch(accepted)

    cdef void settle_batch(self, uint32_t accepted) noexcept nogil:
        if self.pend_class < 0:
            return
        cdef cos_class_t* c = &self.classes[self.pend_class]
        cdef uint32_t i
        cdef uint64_t refund = 0  # what _serve charged for the packets the ring refused
        for i in range(accepted, self.pend_n):
            refund += <uint64_t>c.q.popped[i].len + self.root.overhead_bytes
        tb_give(&self.root, refund)
        if self.pend_phase == PHASE_SURPLUS:
            c.deficit_bytes += <int64_t>refund
        else:
            tb_give(&c.tb, refund)
        if self.pend_residual:
            tb_give(&self.residual, refund)
        cosq_settle(c.q, accepted)
        if c.q.n_items == 0:
            c.deficit_bytes = 0
        self.pend_n = 0

    cdef void _park(self, cos_class_t* c, uint64_t now_ns, uint64_t wait_ns) noexcept nogil:
        c.parked = True
        c.wake_ns = sat_add(now_ns, wait_ns if wait_ns > 0 else 1)

    cdef bint _root_covers(self, cos_class_t* c, uint64_t now_ns, uint64_t cost) noexcept nogil:
        """Whether the root bucket covers `cost` now; if not, park the queue until it will."""
        if tb_covers(&self.root, cost):
            return True
        self._park(c, now_ns, tb_ns_until(&self.root, cost))
        self.root_parks += 1
        return False

    cdef bint _guarantee_budget(self, cos_class_t* c, uint64_t now_ns, bint park_short,
                                uint64_t* budget) noexcept nogil:
        """Whether a guaranteed queue may send now, and its byte budget: its tokens up to
        one quantum, at least its head packet. One short of its own tokens is skipped, and
        parked until they refill if `park_short`."""
        tb_refill(&c.tb, now_ns)
        cdef uint64_t cost = <uint64_t>cosq_front(c.q).len + self.root.overhead_bytes
        if not self._root_covers(c, now_ns, cost):
            return False
        if not tb_covers(&c.tb, cost):
            if park_short:
                self._park(c, now_ns, tb_ns_until(&c.tb, cost))
                self.queue_parks += 1
            return False
        budget[0] = u64max(u64min(c.tb.tokens, c.quantum_bytes), cost)
        return True

    cdef uint32_t _serve(self, uint32_t idx, int phase, uint64_t budget, bint limited,
                         xdp_desc* out, uint32_t max_items) noexcept nogil:
        cdef cos_class_t* c = &self.classes[idx]
        cdef cosq_t* q = c.q
        cdef const cos_item_t* front
        cdef uint64_t cost
        cdef uint32_t n = 0
        q.n_snapshots = 0                            # batch start bounds the stack
        while n < max_items:
            front = cosq_front(q)
            if front == NULL:
                break
            cost = <uint64_t>front.len + self.root.overhead_bytes
            if not tb_covers(&self.root, cost) or budget < cost:
                break
            cosq_pop(q, True, &q.popped[n])
            out[n].addr = q.popped[n].addr
            out[n].len = q.popped[n].len
            out[n].options = q.popped[n].options
            tb_take(&self.root, cost)
            budget -= cost
            if phase == PHASE_SURPLUS:
                c.deficit_bytes -= <int64_t>cost
            else:
                tb_take(&c.tb, cost)
            if limited:
                tb_take(&self.residual, cost)
            n += 1
        q.n_popped = n
        self.pend_class = idx
        self.pend_phase = phase
        self.pend_residual = limited
        self.pend_n = n
        self.batches[phase] += 1
        return n

    cdef int admit(self, uint32_t class_index, uint64_t addr, uint32_t length,
                   const pkt_meta_t* m, uint8_t* frame) noexcept nogil:
        """Admit one frame to class `class_index` (< n_classes; a flow-fair queue buckets
        it by the parsed `m`); a COS_ADMIT* / COS_DROP_* verdict (a drop keeps nothing)."""
        cdef cosq_t* q = self.classes[class_index].q
        cdef cos_item_t it
        it.addr = addr
        it.len = length
        it.options = 0
        it.bucket = cos_meta_bucket(q.seed, q.mask, m) if q.flow_fair else 0
        return cosq_admit(q, &it, frame)

    cdef uint32_t take_queued(self, xdp_desc* out, uint32_t max_items) noexcept nogil:
        """Remove up to `max_items` queued frames (any class) into `out` without charging
        tokens, for returning them to their pool at shutdown; 0 when every queue is empty."""
        cdef uint32_t k, n = 0
        cdef cos_item_t it
        self.settle_batch(self.pend_n)               # an unsettled batch was fully sent
        self.pend_class = -1
        for k in range(self.n_classes):
            while n < max_items and cosq_pop(self.classes[k].q, False, &it) == COS_OK:
                out[n].addr = it.addr
                out[n].len = it.len
                out[n].options = 0
                n += 1
        return n

    cdef uint32_t drain_batch(self, xdp_desc* out, uint32_t max_items,
                              uint64_t now_ns) noexcept nogil:
        cdef uint32_t nc = self.n_classes
        cdef uint32_t k, idx, p, n
        cdef cos_class_t* c
        cdef const cos_item_t* front
        cdef uint64_t cost, budget, demand_rate = 0, residual_rate = 0
        cdef bint exact_demand = False, limited, budget_limited, credited
        self.settle_batch(self.pend_n)               # an unsettled batch was fully sent
        self.pend_class = -1
        if nc == 0 or max_items == 0:
            return 0
        if max_items > COS_BATCH_MAX:
            max_items = COS_BATCH_MAX
        tb_refill(&self.root, now_ns)
        for k in range(nc):
            c = &self.classes[k]
            if c.parked and (c.q.n_items == 0 or now_ns >= c.wake_ns):
                c.parked = False
            if c.exact and has_guarantee(c) and c.q.n_items:
                exact_demand = True
                demand_rate = sat_add(demand_rate, c.tb.rate_bytes_per_s)

        # 1. exact guarantees: strict, capped at each queue's rate
        for k in range(nc):
            idx = (self.exact_rr + k) % nc
            c = &self.classes[idx]
            if not (c.exact and has_guarantee(c)) or c.parked or c.q.n_items == 0:
                continue
            if not self._guarantee_budget(c, now_ns, not c.surplus_sharing, &budget):
                continue
            self.exact_rr = (idx + 1) % nc
            return self._serve(idx, PHASE_EXACT, budget, False, out, max_items)

        # 2. non-exact guarantees: own cursor; short of queue tokens just skips
        for k in range(nc):
            idx = (self.nonexact_rr + k) % nc
            c = &self.classes[idx]
            if c.exact or not has_guarantee(c) or c.parked or c.q.n_items == 0:
                continue
            if not self._guarantee_budget(c, now_ns, False, &budget):
                continue
            self.nonexact_rr = (idx + 1) % nc
            return self._serve(idx, PHASE_NONEXACT, budget, False, out, max_items)

        # 3. surplus: what exact demand leaves of the root rate, by priority then weight
        limited = exact_demand and self.root.rate_bytes_per_s != 0
        if limited:
            residual_rate = sat_sub(self.root.rate_bytes_per_s, demand_rate)
            if residual_rate != self.residual.rate_bytes_per_s:
                self.residual.rate_bytes_per_s = residual_rate
                self.residual.burst_bytes = u64min(
                    u64max(residual_rate // 100, MIN_BURST_BYTES),
                    u64max(self.root.burst_bytes, MIN_BURST_BYTES))
                self.residual.tokens = u64min(self.residual.tokens, self.residual.burst_bytes)
            tb_refill(&self.residual, now_ns)
        for p in range(COS_PRIORITY_LEVELS):
            # DRR rounds: repeat while a queue was credited but is still short, so a
            # packet larger than one quantum is sent now instead of on a later call
            credited = True
            while credited:
                credited = False
                for k in range(nc):
                    idx = (self.surplus_rr[p] + k) % nc
                    c = &self.classes[idx]
                    if c.priority != p or c.parked or c.q.n_items == 0:
                        continue
                    if c.exact and not c.surplus_sharing:
                        continue
                    cost = <uint64_t>cosq_front(c.q).len + self.root.overhead_bytes
                    if not self._root_covers(c, now_ns, cost):
                        continue
                    budget_limited = limited and not c.exact
                    if budget_limited and (residual_rate == 0
                                           or not tb_covers(&self.residual, cost)):
                        continue
                    if c.deficit_bytes < <int64_t>cost:
                        c.deficit_bytes += SURPLUS_QUANTUM_BYTES * c.weight
                        if c.deficit_bytes < <int64_t>cost:
                            credited = True
                            continue
                    budget = <uint64_t>c.deficit_bytes
                    if budget_limited:
                        budget = u64max(u64min(budget, self.residual.tokens), cost)
                    n = self._serve(idx, PHASE_SURPLUS, budget, budget_limited, out, max_items)
                    # DRR: the queue keeps its turn while its deficit covers its next packet
                    front = cosq_front(c.q)
                    if front == NULL or c.deficit_bytes < <int64_t>(
                            <uint64_t>front.len + self.root.overhead_bytes):
                        self.surplus_rr[p] = (idx + 1) % nc
                    else:
                        self.surplus_rr[p] = idx
                    return n
        return 0
