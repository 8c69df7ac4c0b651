# Pipeline worker: compiled stages over bursts, a flow cache of forwarding decisions, TX
# queues with backpressure, counters flushed once per poll. Everything on the per-packet
# path is a cdef nogil method; Python is entered once per burst only for a user stage.

from cpython.ref cimport PyObject
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from xpfdp._fast.cos cimport Scheduler
from xpfdp._fast.route cimport RouteTable
from xpfdp._fast.session cimport SessionTable, sdecision_t, skey_t, srec_t, ssession_t
from xpfdp._fast.xsk cimport Burst, Port, Umem, xdp_desc

cdef enum:
    MAX_PORTS = 16
    MAX_STAGES = 32
    LAT_BUCKETS = 16
    LAT_FIFO = 1024          # submitted TX batches awaiting completion, per port
    VERDICT_PENDING = -3     # no stage has chosen an egress port yet
    VERDICT_QUEUED = -4      # taken by a CoS queue (frame held there until transmitted)
    MAX_COS_RULES = 32

# Drop reasons: one counter each (names in pipeline.pyx DROP_REASONS, same order).
cdef enum:
    DROP_PARSE = 0           # + PARSE_* status (12 codes): parse_error:<status>
    DROP_NO_ROUTE = 12
    DROP_TTL_EXPIRED = 13
    DROP_POLICY_DENIED = 14
    DROP_SESSION_TABLE_FULL = 15
    DROP_NAT_PORTS_EXHAUSTED = 16
    DROP_NO_EGRESS = 17
    DROP_BAD_EGRESS = 18
    DROP_PASS = 19
    DROP_TX_RING_FULL = 20
    DROP_COPY_NO_FRAME = 21
    DROP_USER = 22
    DROP_USER_ERROR = 23
    DROP_COS_FLOW_SHARE = 24
    DROP_COS_BUFFER = 25
    DROP_COS_CAPACITY = 26
    DROP_COS_BAD_DESC = 27
    DROP_NAT_FAILED = 28
    DROP_SHUTDOWN = 29
    DROP_ICMP_ERROR_NO_SESSION = 30
    DROP_ICMP_ERROR_MALFORMED = 31
    DROP_ICMP_UNSUPPORTED = 32
    DROP_NAT_UNTRANSLATABLE = 33
    DROP_MTU_EXCEEDED = 34
    DROP_FRAGMENT_NO_TX_FRAME = 35
    DROP_REASON_COUNT = 36

# pkt_ctx_t.flags
cdef enum:
    CTX_HAS_DEC = 0x01       # `dec` holds the packet's session decision
    CTX_ROUTED = 0x02        # next hop already resolved (flow cache hit, or new-flow routing)
    CTX_FC_INSERT = 0x04     # a miss the route stage should store in the flow cache
    CTX_HAS_KEY = 0x08       # `key` holds the packet's pre-NAT session key
    CTX_FRAGMENT = 0x10      # longer than the egress MTU, no DF: FragmentStage splits it

# Per packet scratch of one burst, beside the Burst's meta and verdict.
ctypedef struct pkt_ctx_t:
    skey_t key
    sdecision_t dec
    int64_t handle
    uint64_t fch             # flow cache set hash of (ingress, key)
    int32_t nh               # next-hop index, -1 until routed
    uint8_t flags
    uint8_t why              # drop reason when verdict is DROP

ctypedef struct nexthop_t:
    int32_t port
    uint8_t src_mac[6]
    uint8_t dst_mac[6]
    uint8_t has_macs

ctypedef struct fc_entry_t:
    skey_t key
    uint64_t route_gen
    uint64_t config_gen
    int64_t handle
    uint32_t lru
    int32_t nh
    uint16_t ingress
    uint8_t valid
    uint8_t pad

ctypedef struct fc_stats_t:
    uint64_t hits
    uint64_t misses
    uint64_t stale            # entries found but invalid (route/config change, session gone)
    uint64_t insertions
    uint64_t evictions

ctypedef struct lat_fifo_t:
    uint64_t stamp_ns[LAT_FIFO]
    uint32_t count[LAT_FIFO]
    uint32_t head
    uint32_t len
    uint64_t seen_completions


cdef class FlowCache:
    cdef fc_entry_t* e
    cdef readonly uint32_t sets
    cdef readonly uint32_t ways
    cdef uint32_t tick
    cdef fc_stats_t st
    cdef uint64_t seed

    cdef uint64_t hash_key(self, const skey_t* k, uint16_t ingress) noexcept nogil
    cdef fc_entry_t* find(self, const skey_t* k, uint16_t ingress, uint64_t h,
                          uint64_t route_gen, uint64_t config_gen, SessionTable table,
                          srec_t** rec) noexcept nogil
    cdef void insert(self, const skey_t* k, uint16_t ingress, uint64_t h, uint64_t route_gen,
                     uint64_t config_gen, int64_t handle, int32_t nh) noexcept nogil


ctypedef struct cos_rule_t:
    uint8_t proto            # 0: any
    uint8_t family           # 0: any, 4 or 6
    int16_t dscp             # -1: any
    uint16_t port            # 0: any; else matches source or destination port
    uint16_t queue_index     # class index in the egress port's scheduler


cdef class Stage:
    cdef readonly str name
    cdef uint64_t c_packets
    cdef uint64_t c_drops

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil


cdef class Pipeline:
    cdef list _ports
    cdef list _stages
    cdef list _rx_bursts
    cdef list _tx_bursts
    cdef list _drop_bursts
    cdef readonly list port_names
    cdef PyObject* ports[MAX_PORTS]
    cdef PyObject* stages[MAX_STAGES]
    cdef PyObject* rxb[MAX_PORTS]
    cdef PyObject* txq[MAX_PORTS]       # pending TX per egress port (frames held by us)
    cdef PyObject* dropb[MAX_PORTS]     # drops of a burst received on port i
    cdef list _cos_bursts
    cdef list _copy_bursts
    cdef PyObject* sched[MAX_PORTS]     # CoS Scheduler of egress port j, or NULL
    cdef PyObject* cosb[MAX_PORTS]      # TX batch drained from sched[j]
    cdef PyObject* cpb[MAX_PORTS]       # one-frame scratch: copy into port j's UMEM
    cdef uint8_t cross[MAX_PORTS][MAX_PORTS]   # ports i and j use different UMEMs
    cdef uint32_t n_ports
    cdef uint32_t n_stages
    cdef uint32_t start_port
    cdef readonly uint32_t burst_size
    cdef pkt_ctx_t* ctx
    cdef xdp_desc* saved                # descriptors before a user stage ran
    cdef nexthop_t* nh
    cdef uint32_t n_nh
    cdef public RouteTable routes
    cdef public SessionTable sessions
    cdef FlowCache fc
    cdef readonly uint64_t config_generation
    cdef uint64_t now_ns
    cdef uint64_t last_expire_ns
    cdef ssession_t* exp_buf
    cdef size_t exp_cap
    cdef uint8_t py_stage[MAX_STAGES]
    cdef volatile bint stop_flag
    cdef readonly bint closed
    cdef object _error
    # counters (worker-local, folded in once per poll)
    cdef uint64_t drops[DROP_REASON_COUNT]
    cdef uint64_t burst_drops[DROP_REASON_COUNT]
    cdef uint64_t rx_packets
    cdef uint64_t tx_packets
    cdef uint64_t polls
    cdef uint64_t idle_polls
    cdef uint64_t sessions_created
    cdef uint64_t sessions_expired
    cdef uint64_t lat_hist[LAT_BUCKETS]
    cdef lat_fifo_t* lat

    cdef int process(self, uint32_t ingress, Burst b) noexcept nogil
    cdef void settle(self, uint32_t ingress, Burst b, Burst db) noexcept nogil
    cdef void flush_tx(self, uint32_t j) noexcept nogil
    cdef void flush_queue(self, uint32_t j, Port port, Burst q) noexcept nogil
    cdef void reap_latency(self, uint32_t j) noexcept nogil
    cdef int tx_stamped(self, uint32_t j, Port port, Burst q, uint32_t n) noexcept nogil
    cdef void drain_cos(self, uint32_t j, Port port, Scheduler sch, Burst q) noexcept nogil
    cdef uint8_t copy_out(self, Port port, Burst cp, Burst q, const xdp_desc* d,
                          Umem src) noexcept nogil
    cdef uint32_t poll_c(self, uint64_t now_ns) noexcept nogil
    cdef int run_py_stage(self, uint32_t k, Burst b) noexcept with gil
