# Class-of-service state shared with the pipeline: MQFQ/FIFO queues, token buckets, scheduler.
#
# All per-packet state lives in C structs so the pipeline can drive queues and the scheduler
# without the GIL (`cosq_*` / `sched_*` functions in cos.pyx, declared here for cimport).

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from xpfdp._fast.includes.linux cimport xdp_desc
from xpfdp._fast.meta cimport pkt_meta_t

cdef enum:
    COS_BATCH_MAX = 64            # TX batch size: bound of a drain and of the snapshot stack
    COS_PRIORITY_LEVELS = 6

# Admission verdicts, one per enqueued packet.
cdef enum:
    COS_ADMIT = 0
    COS_ADMIT_MARKED = 1          # admitted, and ECN CE was set on the frame
    COS_DROP_FLOW_SHARE = 2
    COS_DROP_BUFFER = 3
    COS_DROP_CAPACITY = 4
    COS_DROP_BAD_DESC = 5

# One queued packet: where its frame is and which flow bucket it was charged to.
ctypedef struct cos_item_t:
    uint64_t addr
    uint32_t len
    uint32_t options
    uint32_t bucket
    int32_t next           # pool link: next packet of the bucket, or next free slot

# Rollback snapshot captured before a snapshotting pop (docs/cos.md, Rollback).
ctypedef struct cos_snap_t:
    uint32_t bucket
    uint64_t pre_head
    uint64_t pre_tail
    uint64_t pre_vtime
    int64_t pre_seq        # activation sequence: a restored bucket regains its ring place

# Heap entry of an active bucket: selection key (head finish, activation sequence). The
# sequence and the bucket share one word (seq × 65536 + bucket): 16-byte entries, and the
# tie-break compares one integer.
ctypedef struct cos_heap_t:
    uint64_t head
    int64_t tie

# MQFQ state of one flow bucket, kept together so an operation touches one cache line.
ctypedef struct cos_bucket_t:
    uint64_t bytes         # queued bytes
    uint64_t head_finish   # finish tag of the front packet (0 when idle)
    uint64_t tail_finish   # finish tag of the last packet (0 when idle)
    int32_t first          # item pool index of the front packet, -1 when empty
    int32_t last           # item pool index of the last packet, -1 when empty
    int32_t heap_pos       # index in the active heap, -1 when idle
    uint32_t pad

ctypedef struct cos_counters_t:
    uint64_t drops_flow_share
    uint64_t drops_buffer
    uint64_t drops_capacity
    uint64_t drops_bad_desc
    uint64_t ecn_marked
    uint64_t ecn_not_ect
    uint64_t ecn_already_ce

ctypedef struct cosq_t:
    # configuration
    uint64_t seed
    uint32_t nbuckets
    uint32_t mask
    bint flow_fair
    bint shared_exact
    bint scheduled         # attached to a Scheduler: only it may dequeue
    uint64_t buffer_bytes
    uint64_t rate_bytes_per_s
    # item pool: singly linked per-bucket FIFOs threaded through cos_item_t.next
    cos_item_t* items
    int32_t free_head
    uint32_t capacity
    uint32_t n_items
    # per-bucket MQFQ state (dense; idle buckets are never touched by an operation)
    cos_bucket_t* bk
    # active set ordered by (head finish, activation sequence)
    cos_heap_t* heap
    uint32_t heap_len
    int64_t back_seq
    int64_t front_seq
    # queue-wide MQFQ state
    uint64_t vtime
    uint32_t active
    uint32_t peak
    uint64_t queued_bytes
    cos_snap_t stack[64]
    uint32_t n_snapshots
    # last drained batch, kept so an unsent tail can be pushed back (settle)
    cos_item_t popped[64]
    uint32_t n_popped
    cos_counters_t counters
    # admission limits for the last prospective flow count (they change only with it)
    uint64_t lim_prospective
    uint64_t lim_buffer
    uint64_t lim_share

ctypedef struct cos_tb_t:
    uint64_t rate_bytes_per_s
    uint64_t burst_bytes
    uint64_t tokens
    uint64_t debt_bytes    # owed by a packet larger than the bucket: paid before tokens
    uint64_t last_ns
    uint32_t overhead_bytes
    bint primed


cdef int cosq_pop(cosq_t* q, bint snapshot, cos_item_t* out) noexcept nogil
cdef int cosq_push_front(cosq_t* q, const cos_item_t* item) noexcept nogil
cdef int cosq_push_back(cosq_t* q, const cos_item_t* item) noexcept nogil
cdef int cosq_admit(cosq_t* q, cos_item_t* item, uint8_t* frame) noexcept nogil
cdef uint32_t cosq_dequeue_batch(cosq_t* q, xdp_desc* out, uint32_t max_items) noexcept nogil
cdef void cosq_settle(cosq_t* q, uint32_t accepted) noexcept nogil
cdef uint32_t cos_meta_bucket(uint64_t seed, uint32_t mask, const pkt_meta_t* m) noexcept nogil
cdef void tb_refill(cos_tb_t* tb, uint64_t now_ns) noexcept nogil
cdef uint64_t tb_ns_until(const cos_tb_t* tb, uint64_t need) noexcept nogil


cdef class CosQueue:
    cdef cosq_t q
    cdef int _setup(self, uint32_t nbuckets, uint64_t seed, bint flow_fair,
                    uint64_t buffer_bytes, uint64_t rate, uint32_t capacity_items) except -1
    cdef object _packet(self, const cos_item_t* it)
    cdef cos_item_t _item(self, uint64_t length, key, uint64_t addr, uint32_t options) except *


cdef class FlowFairQueue(CosQueue):
    pass


cdef class FifoQueue(CosQueue):
    pass


cdef class TokenBucket:
    cdef cos_tb_t tb


# Scheduler view of one queue: class parameters, its token bucket and its surplus deficit.
ctypedef struct cos_class_t:
    cosq_t* q
    uint32_t queue_id
    uint32_t priority
    bint exact
    bint surplus_sharing
    uint64_t quantum_bytes
    uint32_t weight
    int64_t deficit_bytes
    bint parked
    uint64_t wake_ns
    cos_tb_t tb


cdef class Scheduler:
    cdef cos_class_t* classes
    cdef uint32_t n_classes
    cdef list _queues
    cdef cos_tb_t root
    cdef cos_tb_t residual
    cdef uint32_t exact_rr
    cdef uint32_t nonexact_rr
    cdef uint32_t surplus_rr[6]
    # pending batch (for settle): which class, which phase, per-item token cost
    cdef int32_t pend_class
    cdef int pend_phase
    cdef bint pend_residual
    cdef uint32_t pend_n
    cdef uint64_t root_parks
    cdef uint64_t queue_parks
    cdef uint64_t batches[3]
    cdef uint32_t drain_batch(self, xdp_desc* out, uint32_t max_items,
                              uint64_t now_ns) noexcept nogil
    cdef void settle_batch(self, uint32_t accepted) noexcept nogil
    cdef int admit(self, uint32_t class_index, uint64_t addr, uint32_t length,
                   const pkt_meta_t* m, uint8_t* frame) noexcept nogil
    cdef uint32_t take_queued(self, xdp_desc* out, uint32_t max_items) noexcept nogil
    cdef int _class_index(self, uint32_t queue_id) except -1
    cdef void _park(self, cos_class_t* c, uint64_t now_ns, uint64_t wait_ns) noexcept nogil
    cdef bint _root_covers(self, cos_class_t* c, uint64_t now_ns, uint64_t cost) noexcept nogil
    cdef bint _guarantee_budget(self, cos_class_t* c, uint64_t now_ns, bint park_short,
                                uint64_t* budget) noexcept nogil
    cdef uint32_t _serve(self, uint32_t idx, int phase, uint64_t budget, bint limited,
                         xdp_desc* out, uint32_t max_items) noexcept nogil
