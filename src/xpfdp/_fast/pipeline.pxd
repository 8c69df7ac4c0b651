# Pipeline worker: compiled stages over bursts, a flow cache of forwarding decisions, TX
# queues with backpressure, counters flushed once per poll. Everything on the per-packet
# path is a cdef nogil method; Python is entered once per burst only for a user stage.

from cpython.ref cimport PyObject
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from xpfdp._fast.cos cimport Scheduler
from xpfdp._fast.frag cimport FragTable, frag_info_t
from xpfdp._fast.meta cimport pkt_meta_t
from xpfdp._fast.route cimport RouteTable
from xpfdp._fast.session cimport SessionTable, sdecision_t, skey_t, srec_t, ssession_t
from xpfdp._fast.verdict cimport VERDICT_DROP
from xpfdp._fast.xsk cimport Burst, Port, Umem, xdp_desc

cdef enum:
    MAX_PORTS = 16
    MAX_STAGES = 32
    LAT_BUCKETS = 16
    LAT_FIFO = 1024          # submitted TX batches awaiting completion, per port
    MAX_COS_RULES = 32
    DROP_COUNTERS = 256      # one per drop-reason code (verdict.pxd: codes < DROP_REASON_MAX)

# pkt_ctx_t.flags: which per-packet facts an earlier stage left for later ones.
cdef enum:
    CTX_HAS_DEC = 0x01       # `dec` holds the packet's session decision ("has_decision")
    CTX_ROUTED = 0x02        # `nh` already resolved (flow cache hit, or new-flow routing)
    CTX_FC_INSERT = 0x04     # a miss the route stage should store in the flow cache
    CTX_HAS_KEY = 0x08       # `key` holds the packet's pre-NAT session key ("has_key")
    CTX_LATER_FRAG = 0x10    # a later fragment: resolved after the burst's first fragments
    CTX_FRAGMENT = 0x20      # longer than the egress MTU, no DF: FragmentStage splits it

# Per packet scratch of one burst, beside the Burst's meta and verdict.
ctypedef struct pkt_ctx_t:
    skey_t key
    sdecision_t dec
    int64_t handle
    uint64_t fch             # flow cache set hash of (ingress, key)
    int32_t nh               # next-hop index, -1 until routed
    uint8_t flags

# nexthop_t.kind: where the destination MAC comes from.
cdef enum:
    NH_STATIC = 0            # dst_mac, fixed (or no L2 rewrite at all when has_macs == 0)
    NH_GATEWAY = 1           # the neighbour entry `neigh` (the hop's gateway)
    NH_CONNECTED = 2         # the neighbour entry of the packet's own destination
    NEIGH_REQ_RING = 64      # unresolved-neighbour requests a worker queues between drains

ctypedef struct nexthop_t:
    int32_t port
    uint8_t src_mac[6]
    uint8_t dst_mac[6]
    uint8_t has_macs
    uint8_t kind
    int64_t neigh            # NH_GATEWAY: slot in the NeighbourTable

# One neighbour (IP address on a port -> MAC). Slots are never moved or freed: the control
# thread publishes a key once (`used`, release store) and then only rewrites `lladdr`, one
# aligned 64-bit store, so workers read it without locks and never see a torn MAC.
ctypedef struct neigh_entry_t:
    uint64_t lladdr          # bytes 0..5 the MAC, byte 6 1 when resolved; 0 while not
    uint8_t addr[16]         # IPv4 in bytes 0..3
    uint8_t af               # 4 or 6
    uint8_t port
    uint8_t used
    uint8_t pad[5]

# A frame waiting for its neighbour to resolve (held by the pipeline, bounded in number and
# time: sent when the MAC arrives, dropped as neighbour_unresolved when it does not).
ctypedef struct held_t:
    xdp_desc d
    uint64_t since_ns
    int64_t slot             # NH_GATEWAY: the gateway's slot; -1: look `addr` up
    int32_t nh
    uint8_t ingress
    uint8_t af
    uint8_t addr[16]

# A worker's request to resolve a neighbour it had to drop a packet for.
ctypedef struct neigh_req_t:
    uint8_t addr[16]
    uint8_t af
    uint8_t port
    uint8_t pad[2]


cdef class NeighbourTable:
    cdef neigh_entry_t* e
    cdef readonly uint32_t capacity
    cdef readonly uint32_t n_entries

    cdef int64_t find(self, uint8_t port, uint8_t af, const uint8_t* addr) noexcept nogil
    cdef int64_t slot(self, uint8_t port, uint8_t af, const uint8_t* addr) except -2

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


# Handoff between workers (handoff.pxi): one SPSC ring of slots per ordered worker pair.
cdef extern from "spsc.h" nogil:
    ctypedef struct xpfdp_spsc_t:
        pass
    xpfdp_spsc_t* xpfdp_spsc_new(uint32_t slots, uint32_t slot_bytes)
    void xpfdp_spsc_free(xpfdp_spsc_t* r)
    uint8_t* xpfdp_spsc_prod_slot(xpfdp_spsc_t* r, uint32_t k)
    uint32_t xpfdp_spsc_room(xpfdp_spsc_t* r, uint32_t want)
    void xpfdp_spsc_publish(xpfdp_spsc_t* r, uint32_t n)
    uint32_t xpfdp_spsc_ready(xpfdp_spsc_t* r)
    const uint8_t* xpfdp_spsc_cons_slot(xpfdp_spsc_t* r, uint32_t k)
    void xpfdp_spsc_consume(xpfdp_spsc_t* r, uint32_t n)
    ctypedef struct xpfdp_waker_t:
        int fd
    void xpfdp_waker_announce(xpfdp_waker_t* w)
    void xpfdp_waker_awake(xpfdp_waker_t* w)
    void xpfdp_waker_kick(xpfdp_waker_t* w)

# One handed-off packet: where it arrived, its length and parse, then its bytes.
ctypedef struct handoff_hdr_t:
    uint16_t ingress
    uint16_t kind            # HANDOFF_PACKET; a HANDOFF_FRAG_NOTE slot is a frag_note_t
    uint32_t len
    pkt_meta_t meta

# A fragment note: the worker that resolved a datagram's first fragment tells the
# datagram's fragment owner the decision its later fragments take. No frame, no packet.
ctypedef struct frag_note_t:
    uint16_t ingress         # unused (0): the layout of handoff_hdr_t up to `kind`
    uint16_t kind            # HANDOFF_FRAG_NOTE
    uint32_t pad
    frag_info_t info         # the first fragment's key, data bytes and more-flag
    sdecision_t dec          # the session decision it took

cdef enum:
    HANDOFF_HDR_BYTES = 64   # sizeof(handoff_hdr_t) rounded to a cache line
    HANDOFF_PACKET = 0       # handoff_hdr_t.kind
    HANDOFF_FRAG_NOTE = 1


cdef class Handoff:
    cdef xpfdp_spsc_t** rings            # [src * workers + dst]; NULL when src == dst
    cdef xpfdp_waker_t* wakers           # per worker: wakes it from poll() (eventfd)
    cdef readonly uint32_t workers
    cdef readonly uint32_t slots
    cdef readonly uint32_t frame_bytes
    cdef readonly int n_ports            # port count every attached pipeline must have
    cdef list _attached

    cdef inline xpfdp_spsc_t* ring(self, uint32_t src, uint32_t dst) noexcept nogil:
        return self.rings[src * self.workers + dst]


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
    cdef readonly tuple needs        # facts/resources that must exist before it runs
    cdef readonly tuple provides     # facts it leaves for the stages after it
    cdef uint64_t c_packets
    cdef uint64_t c_drops

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil


cdef inline void drop_packet(Burst b, uint32_t i, uint8_t reason) noexcept nogil:
    """Drop packet i of `b`, counted under drop-reason code `reason`."""
    b.v[i] = VERDICT_DROP
    b.why[i] = reason


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
    cdef list _schedulers               # keeps sched[] alive
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
    cdef uint32_t fragment_marks        # CTX_FRAGMENT marks MtuStage set in this burst
    cdef xdp_desc* saved                # descriptors before a GIL stage ran
    cdef int16_t* saved_v               # verdicts before a GIL stage ran
    cdef uint8_t* saved_why             # drop reasons before a GIL stage ran
    cdef nexthop_t* nh
    cdef uint32_t n_nh
    cdef public NeighbourTable neighbours
    cdef neigh_req_t* nreq              # SPSC ring: this worker writes, the control thread reads
    cdef uint32_t nreq_head             # next write (worker, release store)
    cdef uint32_t nreq_tail             # next read (control thread, release store)
    cdef uint64_t nreq_lost             # requests dropped because the ring was full
    cdef held_t* held                   # frames waiting for a neighbour (n_held of hold_cap)
    cdef uint32_t n_held
    cdef readonly uint32_t hold_cap
    cdef readonly uint64_t hold_ns
    cdef public RouteTable routes
    cdef public SessionTable sessions
    cdef readonly FragTable fragments
    cdef uint8_t why_frag_timeout       # drop reason code of "frag_timeout"
    cdef FlowCache fc
    cdef readonly uint64_t config_generation
    cdef uint64_t now_ns
    cdef uint64_t last_expire_ns
    cdef ssession_t* exp_buf
    cdef size_t exp_cap
    cdef uint8_t gil_stage[MAX_STAGES]  # stage k runs its Python process() with the GIL
    cdef volatile bint stop_flag
    cdef readonly bint closed
    cdef bint polling                   # inside poll()/run(): close() and re-entry refuse
    cdef object _error
    # counters (worker-local, folded in once per poll)
    cdef uint64_t drops[DROP_COUNTERS]
    cdef uint64_t burst_drops[DROP_COUNTERS]
    cdef uint32_t drop_codes_used       # burst_drops[k] is 0 for every k >= this
    cdef uint64_t rx_packets
    cdef uint64_t tx_packets
    cdef uint64_t polls
    cdef uint64_t idle_polls
    cdef uint64_t sessions_created
    cdef uint64_t sessions_expired
    # handoff (multi-worker): None when this pipeline is the only worker
    cdef readonly Handoff handoff
    cdef readonly uint32_t worker
    cdef uint32_t n_workers               # 1 without a handoff
    cdef uint32_t steer_stage             # index of the SessionStage (where handed-in bursts start)
    cdef bint handing_in                  # processing packets another worker handed over
    cdef list _hand_in_bursts
    cdef PyObject* hib[MAX_PORTS]         # per ingress port: burst of handed-in packets
    cdef uint64_t handoff_out
    cdef uint64_t handoff_in
    cdef uint64_t notes_out               # fragment notes sent to other workers
    cdef uint64_t notes_in                # fragment notes received
    cdef uint64_t handed_to                # bit w: packets went to worker w this burst
    cdef uint64_t lat_hist[LAT_BUCKETS]
    cdef uint64_t lat_sum_ns       # sum of every sample in lat_hist (Prometheus _sum)
    cdef lat_fifo_t* lat

    cdef void want_neighbour(self, uint8_t port, uint8_t af, const uint8_t* addr) noexcept nogil
    cdef bint hold(self, Burst b, uint32_t i, uint32_t ingress, int32_t nh, int64_t slot,
                   uint8_t af, const uint8_t* addr) noexcept nogil
    cdef void release_held(self) noexcept nogil
    cdef int process(self, uint32_t ingress, Burst b, uint32_t first_stage) noexcept nogil
    cdef uint8_t hand_out(self, uint32_t ingress, const xdp_desc* d, const pkt_meta_t* m,
                          uint32_t owner, Umem u) noexcept nogil
    cdef uint32_t hand_in(self) noexcept nogil
    cdef uint32_t hand_in_burst(self, xpfdp_spsc_t* r, uint16_t ingress, Burst b) noexcept nogil
    cdef bint send_frag_note(self, uint32_t owner, const frag_info_t* fi,
                             const sdecision_t* dec) noexcept nogil
    cdef uint32_t take_frag_notes(self, xpfdp_spsc_t* r) noexcept nogil
    cdef void idle_wait(self) noexcept nogil
    cdef void pin_umems(self, int delta)
    cdef void run_c(self, uint64_t deadline, bint timed, uint64_t max_packets,
                    bint until_idle, uint64_t* total_out) noexcept
    cdef void settle(self, uint32_t ingress, Burst b, Burst db) noexcept nogil
    cdef void flush_tx(self, uint32_t j) noexcept nogil
    cdef void flush_queue(self, uint32_t j, Port port, Burst q) noexcept nogil
    cdef void reap_latency(self, uint32_t j) noexcept nogil
    cdef int tx_stamped(self, uint32_t j, Port port, Burst q, uint32_t n) noexcept nogil
    cdef void drain_cos(self, uint32_t j, Port port, Scheduler sch, Burst q) noexcept nogil
    cdef uint8_t copy_out(self, Port port, Burst cp, Burst q, const xdp_desc* d,
                          Umem src) noexcept nogil
    cdef uint32_t poll_c(self, uint64_t now_ns) noexcept nogil
    cdef void release_fragments(self) noexcept nogil
    cdef uint32_t recycle_fragments(self, int which, uint8_t why) noexcept nogil
    cdef int run_gil_stage(self, uint32_t k, Burst b) noexcept with gil
