# cython: language_level=3
"""The pipeline worker loop: bursts through compiled stages, then to egress TX rings.

One `Pipeline` is one worker. A poll receives a burst from each port in turn (the first
port rotates every poll so none starves), runs every stage over the whole burst, then
queues each packet on its egress port (verdict >= 0) or returns its frame (verdict DROP,
counted by reason). Packets for a port on the same UMEM are transmitted in place; for a
port on another UMEM they are copied into one of its TX frames. A TX ring that refuses
frames leaves them queued (still held, retried next poll) up to the queue's capacity;
beyond that they are dropped as tx_ring_full_dropped. No frame is ever leaked.

Stages are `Stage` subclasses whose `run` is a cdef nogil method; `PyStage` wraps a Python
callable and takes the GIL once per burst. Each stage declares what it `needs` before it and
what it `provides` after it; the constructor refuses an order that cannot work. The
contract a stage follows is in docs/stages.md.
"""

cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memmove, memset

from xpfdp._fast.cos cimport (
    COS_ADMIT_MARKED,
    COS_DROP_BAD_DESC,
    COS_DROP_BUFFER,
    COS_DROP_CAPACITY,
    COS_DROP_FLOW_SHARE,
    Scheduler,
)
from xpfdp._fast.csum cimport (
    REWRITE_BAD_L4_CSUM,
    TTL_EXPIRED,
    ipv4_header_checksum,
    meta_l3_ok,
    mss_clamp,
    nat_rewrite,
    ttl_decrement,
)
from xpfdp._fast.lib.bytes cimport load_be16, store_be16
from xpfdp._fast.includes.compat cimport GOLDEN64, monotonic_ns, prefetch
from xpfdp._fast.lib.flowkey cimport flowkey_eq, flowkey_from_meta, flowkey_hash
from xpfdp._fast.lib.hash cimport mix64
from xpfdp._fast.meta cimport (
    META_FIRST_FRAGMENT,
    META_L4_VALID,
    PARSE_NON_IP,
    PARSE_NONFIRST_FRAG,
    PARSE_OK,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    is_icmp_echo,
    pkt_meta_t,
)
from xpfdp._fast.frag cimport (
    FRAG_HELD,
    FRAG_LIST_DROPPED,
    FRAG_LIST_RELEASED,
    FRAG_NOTED,
    FragTable,
    frag_drain,
    frag_expire,
    frag_first,
    frag_info_from,
    frag_info_t,
    frag_key_hash,
    frag_key_t,
    frag_later,
    frag_noted,
    frag_pop,
    frag_table_t,
)
from xpfdp._fast.icmp_error cimport (
    ICMP4_DEST_UNREACH,
    ICMP4_FRAG_NEEDED,
    ICMP4_TIME_EXCEEDED,
    ICMP6_PACKET_TOO_BIG,
    ICMP6_TIME_EXCEEDED,
    QUOTE_OK,
    icmp_bucket_init,
    icmp_bucket_t,
    icmp_bucket_take,
    icmp_checksum_ok,
    icmp_error_allowed,
    icmp_error_build,
    echo_other_half,
    icmp_quote_parse,
    icmp_quote_reply_key,
    icmp_quote_t,
    icmp_quote_translate,
    meta_is_icmp_error,
)
from xpfdp._fast.meta cimport (
    META_FIRST_FRAGMENT,
    META_FRAGMENT,
    META_L4_VALID,
    PARSE_NON_IP,
    PARSE_NONFIRST_FRAG,
    PARSE_OK,
    pkt_meta_t,
)
from xpfdp._fast.parse cimport parse_one
from xpfdp._fast.route cimport RouteTable
from xpfdp._fast.session cimport (
    DISP_FORWARD_CANDIDATE,
    NAT_RD,
    NAT_RDP,
    NAT_RS,
    NAT_RSP,
    SessionTable,
    sdecision_t,
    skey_t,
    smeta_t,
    srec_t,
)
from xpfdp._fast.verdict cimport (
    DROP_BAD_EGRESS,
    DROP_COPY_NO_FRAME,
    DROP_COS_BAD_DESC,
    DROP_COS_BUFFER,
    DROP_COS_CAPACITY,
    DROP_COS_FLOW_SHARE,
    DROP_HANDOFF_OVERSIZE,
    DROP_HANDOFF_RING_FULL,
    DROP_NAT_FAILED,
    DROP_NAT_PORTS_EXHAUSTED,
    DROP_NO_EGRESS,
    DROP_NO_ROUTE,
    DROP_PARSE,
    DROP_PASS,
    DROP_POLICY_DENIED,
    DROP_SESSION_TABLE_FULL,
    DROP_SHUTDOWN,
    DROP_TTL_EXPIRED,
    DROP_TX_RING_FULL,
    DROP_UNSET,
    DROP_USER,
    DROP_USER_ERROR,
    VERDICT_DROP,
    VERDICT_HANDOFF,
    VERDICT_PASS,
    VERDICT_PENDING,
    VERDICT_QUEUED,
    drop_reason_count,
    verdict_public,
    verdict_settled,
)
from xpfdp._fast.xsk cimport Burst, Port, Umem, wait_any, xdp_desc

import ipaddress

from xpfdp._check import integer
from xpfdp._fast.meta import PARSE_STATUS_NAMES
from xpfdp._fast.verdict import DropReason, Verdict, drop_reason, drop_reason_name, drop_reasons

# The built-in drop reason names, in code order (`drop_reasons()` adds registered ones).
DROP_REASONS = drop_reasons()

# Upper bound (ns) of each TX latency bucket: bucket k holds [2^(k+9), 2^(k+10)) ns, the
# first everything below 1024 ns, the last everything above.
LATENCY_BUCKET_UPPER_NS = tuple(1 << (k + 10) for k in range(LAT_BUCKETS - 1)) + (None,)

cdef enum:
    EXPIRE_INTERVAL_NS = 1000000000
    MAX_DNAT = 32

cdef struct dnat_rule_t:
    uint8_t ingress
    uint8_t proto
    uint8_t af
    uint16_t dport
    uint16_t to_port
    uint8_t to_addr[16]

cdef enum:
    IDLE_POLLS_BEFORE_WAIT = 64


cdef inline bint enqueue(Burst q, const xdp_desc* d) noexcept nogil:
    if q.n >= q.capacity:
        return False
    q.d[q.n] = d[0]
    q.n += 1
    return True


# ---------------------------------------------------------------------------------------
# Flow cache, then the stages: each in its own file, compiled into this module.

include "flowcache.pxi"
include "handoff.pxi"
include "neighbours.pxi"
include "stages/base.pxi"
include "stages/parse.pxi"
include "stages/icmp.pxi"
include "stages/session.pxi"
include "stages/nat.pxi"
include "stages/route.pxi"
include "stages/l2.pxi"
include "stages/ttl.pxi"
include "stages/mtu.pxi"
include "stages/mss.pxi"
include "stages/count.pxi"
include "stages/cos.pxi"
include "stages/py.pxi"


# Every COS_DROP_* admission verdict has its own pipeline reason: checked by name, so the
# cos and verdict enums may change order independently.
from xpfdp._fast.cos import VERDICT_NAMES as _COS_VERDICT_NAMES

for _code, _name in enumerate(_COS_VERDICT_NAMES):
    if _name.startswith("drop_") and (
            drop_reason_name(cos_drop_reason(_code)) != "cos_drop:" + _name[len("drop_"):]):
        raise ImportError(f"CoS admission verdict {_name} has no matching drop reason")


# ---------------------------------------------------------------------------------------
# Stage order: what each stage needs before it and provides after it

# Per-packet facts of the built-in stages: name -> the stage that provides it.
FACT_PROVIDERS = {
    "parsed": "ParseStage",
    "has_key": "SessionStage",
    "has_decision": "SessionStage",
    "routed": "RouteStage",
    "queued": "CosStage",
}
# Resources a stage may need: name -> how the pipeline gets it.
RESOURCES = {
    "routes": "Pipeline(routes=RouteTable)",
    "sessions": "Pipeline(sessions=SessionTable)",
    "fragments": "Pipeline(fragments=FragTable) (a default one is made when omitted)",
    "gil": "the stage's Python process(burst) method, called with the GIL once per burst",
}


def _stage_label(stage):
    kind = type(stage).__name__
    return f"PyStage {stage.name!r}" if kind == "PyStage" else kind


def check_stage_order(stages, resources):
    """Raise ValueError unless every stage's needs are met by a stage before it or by a
    resource in `resources` (name -> object or None); TypeError for a stage whose "gil"
    need and `process` method disagree."""
    first_provider = {}
    for stage in stages:
        for fact in stage.provides or ():
            first_provider.setdefault(fact, stage)
    available = set()
    for stage in stages:
        needs = stage.needs or ()
        if ("gil" in needs) != callable(getattr(stage, "process", None)):
            raise TypeError(f"{_stage_label(stage)}: a stage runs process(burst) with the GIL "
                            "exactly when it needs 'gil'")
        for need in needs:
            if need in RESOURCES:
                if need in resources and resources[need] is None:
                    raise ValueError(f"{_stage_label(stage)} needs {need!r}: pass "
                                     f"{RESOURCES[need]}")
            elif need not in available:
                provider = first_provider.get(need)
                if provider is not None:
                    raise ValueError(f"{_stage_label(stage)} needs {need!r}, provided by "
                                     f"{_stage_label(provider)}, which must come before it")
                hint = FACT_PROVIDERS.get(need)
                raise ValueError(f"{_stage_label(stage)} needs {need!r}, which no stage "
                                 "provides" + (f" (add a {hint} before it)" if hint else ""))
        available.update(stage.provides or ())


# ---------------------------------------------------------------------------------------
# The pipeline

cdef class Pipeline:
    """Pipeline(ports, stages, *, routes=None, next_hops=(), sessions=None, flow_cache=None, fragments=None, burst_size=64, names=None, tx_queue=0, neighbours=None, neighbour_hold=64, neighbour_hold_ns=1000000000, handoff=None, worker=0)\n--\n
    One worker: ports, stages, routes/next hops, session table, flow cache, counters."""

    def __cinit__(self):
        self.ctx = NULL
        self.saved = NULL
        self.saved_v = NULL
        self.saved_why = NULL
        self.nh = NULL
        self.nreq = NULL
        self.held = NULL
        self.lat = NULL
        self.exp_buf = NULL

    def __init__(self, ports, stages, *, routes=None, next_hops=(), sessions=None,
                 flow_cache=None, fragments=None, burst_size=64, names=None,
                 tx_queue=0, neighbours=None, neighbour_hold=64,
                 neighbour_hold_ns=1_000_000_000,
                 Handoff handoff=None, worker=0):
        cdef Burst cb, cp, rb, tb, db
        burst_size = integer(burst_size, "burst_size", 0, 0xFFFFFFFF)
        tx_queue = integer(tx_queue, "tx_queue", 0, 0xFFFFFFFF)
        neighbour_hold = integer(neighbour_hold, "neighbour_hold", 0, 0xFFFFFFFF)
        neighbour_hold_ns = integer(neighbour_hold_ns, "neighbour_hold_ns", 0, 0xFFFFFFFFFFFFFFFF)
        worker = integer(worker, "worker", 0, 0xFFFFFFFF)
        ports = list(ports)
        stages = list(stages)
        if not 1 <= len(ports) <= MAX_PORTS:
            raise ValueError(f"a pipeline needs 1..{MAX_PORTS} ports, got {len(ports)}")
        if len(stages) > MAX_STAGES:
            raise ValueError(f"at most {MAX_STAGES} stages, got {len(stages)}")
        for x in ports:
            if not isinstance(x, Port):
                raise TypeError(f"ports must be XskPort/MemPort, got {type(x).__name__}")
            if (<Port>x).closed:
                raise ValueError(f"{x!r} is closed")
        if len(set(map(id, ports))) != len(ports):
            raise ValueError("a port appears twice")
        for s in stages:
            if not isinstance(s, Stage):
                raise TypeError(f"stages must be Stage instances (wrap callables in PyStage), "
                                f"got {type(s).__name__}")
        if not 1 <= burst_size <= 256:
            raise ValueError(f"burst_size must be in [1, 256], got {burst_size}")
        self.burst_size = burst_size
        if tx_queue == 0:
            tx_queue = 4 * burst_size
        if tx_queue < burst_size:
            raise ValueError("tx_queue must hold at least one burst")
        self._ports = ports
        self._stages = stages
        self.port_names = list(names) if names is not None else [
            getattr(x, "ifname", None) or f"port{i}" for i, x in enumerate(ports)]
        if len(self.port_names) != len(ports):
            raise ValueError("names must have one entry per port")
        if fragments is not None and not isinstance(fragments, FragTable):
            raise TypeError("fragments must be an xpfdp.frag.FragTable")
        if fragments is None and any("fragments" in (s.needs or ()) for s in stages):
            fragments = FragTable()   # defaults: later fragments must never pass untranslated
        check_stage_order(stages, {"routes": routes, "sessions": sessions,
                                   "fragments": fragments})
        self.routes = routes
        self.sessions = sessions
        self.fragments = fragments
        self.why_frag_timeout = drop_reason("frag_timeout")
        self.fc = flow_cache
        if flow_cache is not None and not isinstance(flow_cache, FlowCache):
            raise TypeError("flow_cache must be a FlowCache")
        if neighbours is not None and not isinstance(neighbours, NeighbourTable):
            raise TypeError("neighbours must be a NeighbourTable")
        self.neighbours = neighbours
        self.n_ports = len(ports)
        self.n_stages = len(stages)
        self._rx_bursts = []
        self._tx_bursts = []
        self._drop_bursts = []
        self._cos_bursts = []
        self._copy_bursts = []
        for i, x in enumerate(ports):
            for j, y in enumerate(ports):
                self.cross[i][j] = (<Port>x).umem is not (<Port>y).umem
            cb = Burst(64)
            cb.umem = (<Port>x).umem
            cp = Burst(1)
            cp.umem = (<Port>x).umem
            self._cos_bursts.append(cb)
            self._copy_bursts.append(cp)
            self.cosb[i] = <PyObject*>cb
            self.cpb[i] = <PyObject*>cp
            self.sched[i] = NULL
        for st in stages:
            for j, sch in (st.egress_schedulers() or {}).items():
                if not isinstance(sch, Scheduler):
                    raise TypeError(f"{type(st).__name__}: port {j} needs an xpfdp.cos Scheduler")
                if not 0 <= j < len(ports):
                    raise ValueError(f"CoS: port index {j} out of range "
                                     f"(pipeline has {len(ports)} ports)")
                if self.sched[j] != NULL and <object>self.sched[j] is not sch:
                    raise ValueError(f"CoS: two schedulers for port {j}")
                self.sched[j] = <PyObject*>sch
        self._schedulers = [<object>self.sched[j] for j in range(len(ports))
                            if self.sched[j] != NULL]
        for i, x in enumerate(ports):
            rb = Burst(burst_size)
            rb.umem = (<Port>x).umem
            tb = Burst(tx_queue)
            tb.umem = (<Port>x).umem
            db = Burst(burst_size)
            db.umem = (<Port>x).umem
            self._rx_bursts.append(rb)
            self._tx_bursts.append(tb)
            self._drop_bursts.append(db)
            self.ports[i] = <PyObject*>x
            self.rxb[i] = <PyObject*>rb
            self.txq[i] = <PyObject*>tb
            self.dropb[i] = <PyObject*>db
        for k, s in enumerate(stages):
            self.stages[k] = <PyObject*>s
            self.gil_stage[k] = "gil" in (s.needs or ())
        self.ctx = <pkt_ctx_t*>calloc(burst_size, sizeof(pkt_ctx_t))
        self.saved = <xdp_desc*>calloc(burst_size, sizeof(xdp_desc))
        self.saved_v = <int16_t*>calloc(burst_size, sizeof(int16_t))
        self.saved_why = <uint8_t*>calloc(burst_size, sizeof(uint8_t))
        self.lat = <lat_fifo_t*>calloc(self.n_ports, sizeof(lat_fifo_t))
        self.nreq = <neigh_req_t*>calloc(NEIGH_REQ_RING, sizeof(neigh_req_t))
        if neighbour_hold > 4096:
            raise ValueError(f"neighbour_hold must be <= 4096 frames, got {neighbour_hold}")
        self.hold_cap = neighbour_hold
        self.hold_ns = neighbour_hold_ns
        self.held = <held_t*>calloc(max(neighbour_hold, 1), sizeof(held_t))
        if (self.ctx == NULL or self.lat == NULL or self.saved == NULL or self.saved_v == NULL
                or self.saved_why == NULL or self.nreq == NULL or self.held == NULL):
            raise MemoryError("pipeline scratch")
        for i, x in enumerate(ports):
            self.lat[i].seen_completions = (<Port>x).st.completions
        self.set_next_hops(next_hops)
        self.n_workers = 1
        self._hand_in_bursts = []
        if handoff is not None:
            self._attach_handoff(handoff, worker, stages, ports)
        elif worker != 0:
            raise ValueError("worker is an index into a Handoff: give handoff= too")

    def _attach_handoff(self, Handoff handoff, uint32_t worker, list stages, list ports):
        """Join `handoff` as worker `worker`: flows other workers own are handed to them,
        and packets they hand over run here from the session stage on."""
        session = [k for k, st in enumerate(stages) if isinstance(st, SessionStage)]
        if len(session) != 1:
            raise ValueError("a pipeline with a handoff needs exactly one SessionStage "
                             "(flow ownership is decided there)")
        (<SessionStage>stages[session[0]]).check_workers(handoff.workers)
        for x in ports:
            u = (<Port>x).umem
            if u.tx_frames == 0:
                raise ValueError("a pipeline with a handoff needs TX frames in every UMEM "
                                 "(handed-over packets are copied into them)")
            if handoff.frame_bytes > u.frame_size:
                raise ValueError(f"handoff frame_bytes {handoff.frame_bytes} exceeds the "
                                 f"UMEM frame size {u.frame_size}")
        handoff._attach(self, worker, len(ports))
        self.handoff = handoff
        self.worker = worker
        self.n_workers = handoff.workers
        self.steer_stage = session[0]
        for i, x in enumerate(ports):
            hb = Burst(self.burst_size)
            hb.umem = (<Port>x).umem
            self._hand_in_bursts.append(hb)
            self.hib[i] = <PyObject*>hb

    def __dealloc__(self):
        free(self.ctx)
        free(self.saved)
        free(self.saved_v)
        free(self.saved_why)
        free(self.nh)
        free(self.nreq)
        free(self.held)
        free(self.lat)
        free(self.exp_buf)

    def set_next_hops(self, next_hops):
        """Replace the next-hop table: a sequence of (port index, src MAC, dst) where dst is
        a MAC ("aa:bb:..", bytes: static), an `ipaddress` address (a gateway whose MAC the
        pipeline's NeighbourTable holds), `CONNECTED` (the packet's own destination, looked
        up in the NeighbourTable) or None with src None (no L2 rewrite). Route values index
        it. Not while the pipeline polls in another thread: use Forwarder.update()."""
        hops = list(next_hops)
        cdef nexthop_t* new = <nexthop_t*>calloc(max(len(hops), 1), sizeof(nexthop_t))
        if new == NULL:
            raise MemoryError("next hops")
        try:
            for k, hop in enumerate(hops):
                port, src, dst = hop
                if not 0 <= int(port) < self.n_ports:
                    raise ValueError(f"next hop {k}: port {port} out of range "
                                     f"(pipeline has {self.n_ports} ports)")
                new[k].port = int(port)
                if (src is None) != (dst is None):
                    raise ValueError(f"next hop {k}: give both MACs or neither")
                if src is None:
                    continue
                s = _mac(src)
                memcpy(new[k].src_mac, <const char*>s, 6)
                new[k].has_macs = 1
                if isinstance(dst, (ipaddress.IPv4Address, ipaddress.IPv6Address)) or (
                        isinstance(dst, str) and dst == CONNECTED):
                    if self.neighbours is None:
                        raise ValueError(f"next hop {k}: {dst} is resolved through "
                                         "neighbours, and the pipeline has no NeighbourTable")
                    if dst == CONNECTED:
                        new[k].kind = NH_CONNECTED
                    else:
                        new[k].kind = NH_GATEWAY
                        new[k].neigh = self.neighbours.slot(<uint8_t>int(port), dst.version,
                                                            _addr16(dst))
                else:
                    d = _mac(dst)
                    memcpy(new[k].dst_mac, <const char*>d, 6)
        except BaseException:
            free(new)
            raise
        free(self.nh)
        self.nh = new
        self.n_nh = len(hops)
        self.config_generation += 1

    cdef void want_neighbour(self, uint8_t port, uint8_t af, const uint8_t* addr) noexcept nogil:
        """Ask the control thread to have the kernel resolve `addr` (ring full: counted)."""
        cdef uint32_t head = self.nreq_head
        cdef neigh_req_t* r
        if head - xpfdp_load_u32(&self.nreq_tail) >= NEIGH_REQ_RING:
            self.nreq_lost += 1
            return
        r = &self.nreq[head & (NEIGH_REQ_RING - 1)]
        memcpy(r.addr, addr, 16)
        r.af = af
        r.port = port
        xpfdp_store_u32(&self.nreq_head, head + 1)

    cdef bint hold(self, Burst b, uint32_t i, uint32_t ingress, int32_t nh, int64_t slot,
                   uint8_t af, const uint8_t* addr) noexcept nogil:
        """Keep packet i until its neighbour resolves; False if it cannot wait (hold full,
        or its egress port is on another UMEM)."""
        cdef held_t* h
        if self.n_held >= self.hold_cap or self.cross[ingress][self.nh[nh].port]:
            return False
        h = &self.held[self.n_held]
        h.d = b.d[i]
        h.since_ns = self.now_ns
        h.slot = slot
        h.nh = nh
        h.ingress = <uint8_t>ingress
        h.af = af
        memcpy(h.addr, addr, 16)
        self.n_held += 1
        b.v[i] = VERDICT_QUEUED
        return True

    cdef void release_held(self) noexcept nogil:
        """Send held frames whose neighbour resolved, drop those that waited too long."""
        cdef uint32_t k, kept = 0, nd
        cdef held_t* h
        cdef nexthop_t* hop
        cdef int64_t slot
        cdef uint64_t word
        cdef uint8_t* f
        for k in range(self.n_held):
            h = &self.held[k]
            hop = &self.nh[h.nh]
            slot = h.slot if h.slot >= 0 else self.neighbours.find(
                <uint8_t>hop.port, h.af, h.addr)
            word = xpfdp_load_u64(&self.neighbours.e[slot].lladdr) if slot >= 0 else 0
            if neigh_valid(word):
                f = (<Burst>self.txq[hop.port]).umem.area + h.d.addr
                memcpy(f, &word, 6)
                memcpy(f + 6, hop.src_mac, 6)
                if enqueue(<Burst>self.txq[hop.port], &h.d):
                    continue
            elif self.now_ns - h.since_ns >= self.hold_ns or self.now_ns < h.since_ns:
                (<Burst>self.dropb[h.ingress]).d[0] = h.d
                (<Port>self.ports[h.ingress]).c_recycle(<Burst>self.dropb[h.ingress], 0, 1)
                self.burst_drops[DROP_NEIGH_UNRESOLVED] += 1
                if DROP_NEIGH_UNRESOLVED >= self.drop_codes_used:
                    self.drop_codes_used = DROP_NEIGH_UNRESOLVED + 1
                continue
            if kept != k:
                self.held[kept] = self.held[k]
            kept += 1
        self.n_held = kept

    def take_neighbour_requests(self):
        """The (port index, address) pairs workers dropped packets for since the last call,
        duplicates removed: the control thread asks the kernel to resolve them. Safe while
        the pipeline polls in another thread (single-producer/single-consumer ring)."""
        cdef uint32_t tail = self.nreq_tail, head = xpfdp_load_u32(&self.nreq_head)
        cdef neigh_req_t* r
        out = {}
        while tail != head:
            r = &self.nreq[tail & (NEIGH_REQ_RING - 1)]
            raw = bytes(<uint8_t[:16]>r.addr)
            out[(int(r.port), ipaddress.ip_address(raw[:4] if r.af == 4 else raw))] = None
            tail += 1
        xpfdp_store_u32(&self.nreq_tail, tail)
        return list(out)

    def invalidate(self):
        """Bump the config generation: every flow-cache entry becomes stale."""
        self.config_generation += 1

    @property
    def ports(self):
        """The ports, in index order (verdict and next-hop port numbers index this)."""
        return list(self._ports)

    @property
    def stages(self):
        """The stages, in run order."""
        return list(self._stages)

    @property
    def flow_cache(self):
        """The FlowCache, or None."""
        return self.fc

    @property
    def error(self):
        """The exception that stopped this worker (from a user stage), or None."""
        return self._error

    # ------------------------------------------------------------------ per burst

    cdef int run_gil_stage(self, uint32_t k, Burst b) noexcept with gil:
        """Run stage k's Python `process(burst)`, then hold it to the contract: the frames
        stay ours, only public verdicts count, a queued packet stays queued."""
        cdef Stage s = <Stage>self.stages[k]
        cdef uint32_t i, n = b.n
        cdef int16_t v
        for i in range(n):
            if not verdict_settled(b.v[i]):
                s.c_packets += 1
            self.saved[i] = b.d[i]
            self.saved_v[i] = b.v[i]
            self.saved_why[i] = b.why[i]
        err = None
        try:
            s.process(b)
        except BaseException as exc:
            err = exc
        # The frames stay ours whatever the stage did to the arrays: count, addresses and
        # options are restored; a length is kept only if it still fits its frame.
        b.n = n
        for i in range(n):
            b.d[i].addr = self.saved[i].addr
            b.d[i].options = 0
            if not b.umem.owns(b.d[i].addr, b.d[i].len):
                b.d[i].len = self.saved[i].len
        cdef uint32_t codes = drop_reason_count()
        for i in range(n):
            v = b.v[i]
            if self.saved_v[i] == VERDICT_QUEUED or self.saved_v[i] == VERDICT_HANDOFF:
                b.v[i] = self.saved_v[i]          # held (CoS, fragments, neighbour) or handed off
            elif self.saved_v[i] == VERDICT_DROP:   # a drop is final, reason included
                b.v[i] = VERDICT_DROP
                b.why[i] = self.saved_why[i]
            elif err is not None or (v != self.saved_v[i] and not verdict_public(v)):
                drop_packet(b, i, DROP_USER_ERROR)
                s.c_drops += 1
            elif v == VERDICT_DROP:
                if b.why[i] >= codes:             # unset, or a code nobody registered
                    b.why[i] = DROP_USER
                s.c_drops += 1
        if err is not None:
            if self._error is None:
                self._error = err
            self.stop_flag = True
            return -1
        return 0

    cdef int process(self, uint32_t ingress, Burst b, uint32_t first_stage) noexcept nogil:
        cdef uint32_t i, k
        self.fragment_marks = 0
        for i in range(b.n):
            b.v[i] = VERDICT_PENDING
            b.why[i] = DROP_UNSET
            self.ctx[i].flags = 0
            self.ctx[i].nh = -1
            self.ctx[i].handle = -1
        for k in range(first_stage, self.n_stages):
            if self.gil_stage[k]:
                self.run_gil_stage(k, b)
            else:
                (<Stage>self.stages[k]).run(self, b, ingress)
        self.settle(ingress, b, <Burst>self.dropb[ingress])
        return 0

    cdef void settle(self, uint32_t ingress, Burst b, Burst db) noexcept nogil:
        """Queue each packet on its egress TX queue or return its frame (counted)."""
        cdef uint32_t i, nd = 0
        cdef int16_t v
        cdef uint8_t why
        for i in range(b.n):
            v = b.v[i]
            if v >= 0:
                if <uint32_t>v >= self.n_ports:
                    why = DROP_BAD_EGRESS
                elif self.cross[ingress][v]:
                    why = self.copy_out(<Port>self.ports[v], <Burst>self.cpb[v],
                                        <Burst>self.txq[v], &b.d[i], b.umem)
                    if why == DROP_UNSET:   # copied: the received frame goes home, not a drop
                        db.d[nd] = b.d[i]
                        nd += 1
                        continue
                elif enqueue(<Burst>self.txq[v], &b.d[i]):
                    continue
                else:
                    why = DROP_TX_RING_FULL
            elif v == VERDICT_QUEUED:
                continue
            elif v == VERDICT_HANDOFF:   # ctx.nh names the owner
                why = self.hand_out(ingress, &b.d[i], &b.m[i], <uint32_t>self.ctx[i].nh, b.umem)
                if why == DROP_UNSET:    # copied to its owner: the frame goes home, not a drop
                    db.d[nd] = b.d[i]
                    nd += 1
                    continue
            elif v == VERDICT_DROP:
                why = b.why[i]
                if why == DROP_UNSET:
                    why = DROP_USER
            elif v == VERDICT_PASS:
                why = DROP_PASS
            else:
                why = DROP_NO_EGRESS
            self.burst_drops[why] += 1
            if why >= self.drop_codes_used:
                self.drop_codes_used = why + 1
            db.d[nd] = b.d[i]
            nd += 1
        if nd:
            (<Port>self.ports[ingress]).c_recycle(db, 0, nd)
        b.n = 0
        if self.handed_to:   # wake owners that sleep in poll(): one fence per owner and burst
            for i in range(self.n_workers):
                if (self.handed_to >> i) & 1:
                    xpfdp_waker_kick(&self.handoff.wakers[i])
            self.handed_to = 0

    cdef uint8_t hand_out(self, uint32_t ingress, const xdp_desc* d, const pkt_meta_t* m,
                          uint32_t owner, Umem u) noexcept nogil:
        """Copy one packet (parse record and bytes) into the ring to its owner; DROP_UNSET
        when it went, else the drop reason."""
        cdef xpfdp_spsc_t* r = self.handoff.ring(self.worker, owner)
        cdef handoff_hdr_t* h
        if d.len > self.handoff.frame_bytes:
            return DROP_HANDOFF_OVERSIZE
        if xpfdp_spsc_room(r, 1) == 0:
            return DROP_HANDOFF_RING_FULL
        h = <handoff_hdr_t*>xpfdp_spsc_prod_slot(r, 0)
        h.ingress = <uint16_t>ingress
        h.kind = HANDOFF_PACKET
        h.len = d.len
        h.meta = m[0]
        memcpy(<uint8_t*>h + HANDOFF_HDR_BYTES, u.area + d.addr, d.len)
        xpfdp_spsc_publish(r, 1)
        self.handoff_out += 1
        self.handed_to |= 1ULL << owner
        return DROP_UNSET

    cdef uint32_t hand_in(self) noexcept nogil:
        """Run the packets other workers handed over, a burst at a time per ingress port,
        from the session stage on. Returns how many ran."""
        cdef uint32_t src, n, got = 0, rounds
        cdef const handoff_hdr_t* h
        cdef xpfdp_spsc_t* r
        for src in range(self.n_workers):
            if src == self.worker:
                continue
            r = self.handoff.ring(src, self.worker)
            rounds = 0
            while rounds < 4:     # bounded, so the RX rings are not starved
                rounds += 1
                if xpfdp_spsc_ready(r) == 0:
                    break
                h = <const handoff_hdr_t*>xpfdp_spsc_cons_slot(r, 0)
                if h.kind == HANDOFF_FRAG_NOTE:
                    self.take_frag_notes(r)
                    continue
                n = self.hand_in_burst(r, h.ingress, <Burst>self.hib[h.ingress])
                if n == 0:
                    break
                got += n
        return got

    cdef uint32_t hand_in_burst(self, xpfdp_spsc_t* r, uint16_t ingress,
                                Burst b) noexcept nogil:
        """Take the leading run of ring slots that arrived on `ingress` (up to a burst) into
        our transmit frames and run them. When no frame is free they wait in the ring (its
        producer then counts handoff_ring_full)."""
        cdef uint32_t k, n = xpfdp_spsc_ready(r)
        cdef const handoff_hdr_t* h
        cdef int alloc
        if n > b.capacity:
            n = b.capacity
        for k in range(1, n):   # one ingress port per burst, as from an RX ring; no notes
            h = <const handoff_hdr_t*>xpfdp_spsc_cons_slot(r, k)
            if h.ingress != ingress or h.kind != HANDOFF_PACKET:
                n = k
                break
        alloc = (<Port>self.ports[ingress]).c_alloc_tx(b, n)
        if alloc <= 0:
            return 0
        n = <uint32_t>alloc
        for k in range(n):
            h = <const handoff_hdr_t*>xpfdp_spsc_cons_slot(r, k)
            memcpy(b.umem.area + b.d[k].addr, <const uint8_t*>h + HANDOFF_HDR_BYTES, h.len)
            b.d[k].len = h.len
            b.m[k] = h.meta
        xpfdp_spsc_consume(r, n)
        self.handoff_in += n
        self.handing_in = True
        self.process(ingress, b, self.steer_stage)
        self.handing_in = False
        return n

    cdef bint send_frag_note(self, uint32_t owner, const frag_info_t* fi,
                             const sdecision_t* dec) noexcept nogil:
        """Tell worker `owner`, the fragment owner of first fragment `fi`'s datagram, the
        decision `dec` its later fragments take (one ring slot, no frame). False when the
        ring is full: the note is not sent."""
        cdef xpfdp_spsc_t* r = self.handoff.ring(self.worker, owner)
        cdef frag_note_t* note
        if xpfdp_spsc_room(r, 1) == 0:
            return False
        note = <frag_note_t*>xpfdp_spsc_prod_slot(r, 0)
        note.ingress = 0
        note.kind = HANDOFF_FRAG_NOTE
        note.pad = 0
        note.info = fi[0]
        note.dec = dec[0]
        xpfdp_spsc_publish(r, 1)
        self.notes_out += 1
        self.handed_to |= 1ULL << owner
        return True

    cdef uint32_t take_frag_notes(self, xpfdp_spsc_t* r) noexcept nogil:
        """Record the leading run of fragment notes in ring `r` (up to a burst) in our
        fragment table, as local first fragments are: fragments held for their datagrams
        move to the released list. A full table refuses a note (counted dropped_limit)."""
        cdef uint32_t k = 0, n = xpfdp_spsc_ready(r)
        cdef const frag_note_t* note
        if n > self.burst_size:
            n = self.burst_size
        while k < n:
            note = <const frag_note_t*>xpfdp_spsc_cons_slot(r, k)
            if note.kind != HANDOFF_FRAG_NOTE:
                break
            if self.fragments is not None:
                frag_noted(&self.fragments.t, &note.info, &note.dec, self.now_ns)
            k += 1
        xpfdp_spsc_consume(r, k)
        self.notes_in += k
        return k

    cdef void reap_latency(self, uint32_t j) noexcept nogil:
        """Match completions reaped since the last look to submitted batches (FIFO)."""
        cdef lat_fifo_t* L = &self.lat[j]
        cdef uint64_t done = (<Port>self.ports[j]).st.completions - L.seen_completions
        cdef uint64_t now, age
        cdef uint32_t take, bucket
        if done == 0 or L.len == 0:
            L.seen_completions += done
            return
        now = monotonic_ns()
        while done and L.len:
            take = L.count[L.head]
            if take > done:
                take = <uint32_t>done
            age = now - L.stamp_ns[L.head] if now > L.stamp_ns[L.head] else 0
            self.lat_sum_ns += age * take
            bucket = 0
            age >>= 10
            while age and bucket < LAT_BUCKETS - 1:
                age >>= 1
                bucket += 1
            self.lat_hist[bucket] += take
            done -= take
            L.seen_completions += take
            L.count[L.head] -= take
            if L.count[L.head] == 0:
                L.head = (L.head + 1) % LAT_FIFO
                L.len -= 1
        L.seen_completions += done

    cdef uint8_t copy_out(self, Port port, Burst cp, Burst q, const xdp_desc* d,
                          Umem src) noexcept nogil:
        """Copy a frame into a TX frame of `port`'s UMEM and queue it; DROP_UNSET (done) or
        the drop reason."""
        if q.n >= q.capacity:
            return DROP_TX_RING_FULL
        if d.len > port.umem.frame_size or port.c_alloc_tx(cp, 1) != 1:
            return DROP_COPY_NO_FRAME
        memcpy(port.umem.area + cp.d[0].addr, src.area + d.addr, d.len)
        cp.d[0].len = d.len
        enqueue(q, &cp.d[0])
        cp.n = 0
        return DROP_UNSET

    cdef int tx_stamped(self, uint32_t j, Port port, Burst q, uint32_t n) noexcept nogil:
        """Submit q.d[0:n] to port j's TX ring, stamping the accepted prefix for latency."""
        cdef lat_fifo_t* L = &self.lat[j]
        cdef uint64_t t0 = monotonic_ns()
        cdef int s = port.c_tx(q, 0, n)
        if s <= 0:   # < 0: a descriptor we do not hold (cannot happen with our queues)
            return 0
        self.tx_packets += <uint32_t>s
        if L.len < LAT_FIFO:
            L.stamp_ns[(L.head + L.len) % LAT_FIFO] = t0
            L.count[(L.head + L.len) % LAT_FIFO] = <uint32_t>s
            L.len += 1
        else:
            L.seen_completions += <uint32_t>s   # FIFO full: not stamped
        return s

    cdef void drain_cos(self, uint32_t j, Port port, Scheduler sch, Burst q) noexcept nogil:
        """Drain the scheduler into TX; the part the ring refuses is settled back (exact
        rollback), its frames staying held by the queues."""
        cdef uint32_t n, rounds = 0
        cdef int s
        while rounds < 8:
            rounds += 1
            n = sch.drain_batch(q.d, q.capacity, self.now_ns)
            if n == 0:
                break
            s = self.tx_stamped(j, port, q, n)
            sch.settle_batch(<uint32_t>s)
            if <uint32_t>s < n:
                break
        self.reap_latency(j)

    cdef void flush_tx(self, uint32_t j) noexcept nogil:
        self.flush_queue(j, <Port>self.ports[j], <Burst>self.txq[j])

    cdef void flush_queue(self, uint32_t j, Port port, Burst q) noexcept nogil:
        """Transmit egress queue j; refused frames stay queued (still held by us)."""
        cdef int s
        if q.n == 0:
            return
        s = self.tx_stamped(j, port, q, q.n)
        if s > 0:
            if <uint32_t>s < q.n:
                memmove(q.d, q.d + s, (q.n - <uint32_t>s) * sizeof(xdp_desc))
            q.n -= <uint32_t>s
        self.reap_latency(j)

    cdef uint32_t poll_c(self, uint64_t now_ns) noexcept nogil:
        """One round: a burst from every port, then the packets other workers handed over,
        stages, TX, service; returns packets received plus packets handed in."""
        cdef uint32_t k, i, got = 0, r, handed = 0
        cdef int n
        self.now_ns = now_ns
        for k in range(self.n_ports):
            i = (self.start_port + k) % self.n_ports
            n = (<Port>self.ports[i]).c_rx(<Burst>self.rxb[i])
            if n <= 0:
                continue
            got += <uint32_t>n
            self.process(i, <Burst>self.rxb[i], 0)
            if self.fragments is not None:
                self.release_fragments()
            for r in range(self.n_ports):
                self.flush_tx(r)
            if self.stop_flag:
                break
        self.start_port = (self.start_port + 1) % self.n_ports
        if self.n_held:
            self.release_held()
        if self.n_workers > 1 and not self.stop_flag:
            handed = self.hand_in()
            if self.fragments is not None:
                self.release_fragments()   # a first fragment handed in may free held ones
        for r in range(self.n_ports):
            self.flush_tx(r)
            if self.sched[r] != NULL:
                self.drain_cos(r, <Port>self.ports[r], <Scheduler>self.sched[r],
                               <Burst>self.cosb[r])
            (<Port>self.ports[r]).c_service()
            self.reap_latency(r)
        if self.sessions is not None and (now_ns - self.last_expire_ns >= EXPIRE_INTERVAL_NS
                                          or now_ns < self.last_expire_ns):
            self.last_expire_ns = now_ns
            n = <int>self.sessions.expire_c(now_ns, &self.exp_buf, &self.exp_cap)
            if n > 0:
                self.sessions_expired += <uint32_t>n
        if self.fragments is not None and self.fragments.t.oldest >= 0:
            if frag_expire(&self.fragments.t, now_ns):
                self.recycle_fragments(FRAG_LIST_DROPPED, self.why_frag_timeout)
        for r in range(self.drop_codes_used):
            self.drops[r] += self.burst_drops[r]
            self.burst_drops[r] = 0
        self.rx_packets += got
        self.polls += 1
        if got == 0 and handed == 0:
            self.idle_polls += 1
        return got + handed

    cdef void release_fragments(self) noexcept nogil:
        """Run fragments whose first fragment has just been recorded through the stages
        again, as a burst of their ingress port (its RX burst is empty between polls of
        it); now they resolve through the fragment table like any later fragment."""
        cdef frag_table_t* t = &self.fragments.t
        cdef xdp_desc* d
        cdef uint64_t addr
        cdef uint32_t n, cap, length, r
        cdef uint16_t port
        while t.out_head[FRAG_LIST_RELEASED] >= 0:
            port = t.frames[t.out_head[FRAG_LIST_RELEASED]].port
            d = (<Burst>self.rxb[port]).d
            cap = (<Burst>self.rxb[port]).capacity
            n = 0
            while n < cap and t.out_head[FRAG_LIST_RELEASED] >= 0 and \
                    t.frames[t.out_head[FRAG_LIST_RELEASED]].port == port:
                frag_pop(t, FRAG_LIST_RELEASED, &addr, &length, &port)
                d[n].addr = addr
                d[n].len = length
                d[n].options = 0
                n += 1
            (<Burst>self.rxb[port]).n = n
            self.process(port, <Burst>self.rxb[port], 0)
            for r in range(self.n_ports):
                self.flush_tx(r)

    cdef uint32_t recycle_fragments(self, int which, uint8_t why) noexcept nogil:
        """Return every frame of fragment-table list `which` to its port, counted as `why`."""
        cdef frag_table_t* t = &self.fragments.t
        cdef xdp_desc* d
        cdef uint64_t addr
        cdef uint32_t length, n = 0
        cdef uint16_t port
        while frag_pop(t, which, &addr, &length, &port):
            d = (<Burst>self.dropb[port]).d
            d[0].addr = addr
            d[0].len = length
            d[0].options = 0
            (<Port>self.ports[port]).c_recycle(<Burst>self.dropb[port], 0, 1)
            self.drops[why] += 1
            n += 1
        return n

    # ------------------------------------------------------------------ Python API

    def _check_open(self):
        if self.closed:
            raise ValueError("pipeline is closed")
        if self.polling:
            raise RuntimeError("the pipeline is already polling (a stage may not poll it)")

    cdef void pin_umems(self, int delta):
        """Count this poll on every port's UMEM, so neither a UMEM nor a port can be closed
        under the loop (a PyStage calling close() gets UmemBusyError instead)."""
        cdef uint32_t k
        self.polling = delta > 0
        for k in range(self.n_ports):
            (<Port>self.ports[k]).umem.pins += delta

    def poll(self, now_ns=None):
        """Run one round over every port with the GIL released (a PyStage takes it once per
        burst). `now_ns` overrides the monotonic clock (tests drive session expiry with it).
        Returns the number of packets received."""
        self._check_open()
        cdef uint64_t t = monotonic_ns() if now_ns is None else integer(
            now_ns, "now_ns", 0, 0xFFFFFFFFFFFFFFFF)
        cdef uint32_t got
        self.pin_umems(1)
        try:
            with nogil:
                got = self.poll_c(t)
        finally:
            self.pin_umems(-1)
        self._raise_error()
        return got

    def run(self, seconds=None, *, max_packets=0, bint until_idle=False):
        """Poll until `seconds` pass, `max_packets` were received, `until_idle` and a poll
        received nothing with every TX queue empty, or stop() is called. Returns packets
        received. After 64 idle polls it blocks up to 1 ms in one poll() over every port."""
        self._check_open()
        max_packets = integer(max_packets, "max_packets", 0, 0xFFFFFFFFFFFFFFFF)
        if seconds is None and not max_packets and not until_idle:
            raise ValueError("run() needs seconds, max_packets or until_idle")
        cdef uint64_t deadline = 0, total = 0
        cdef bint timed = seconds is not None
        if timed:
            deadline = monotonic_ns() + <uint64_t>(float(seconds) * 1e9)
        self.stop_flag = False
        self.pin_umems(1)
        try:
            self.run_c(deadline, timed, max_packets, until_idle, &total)
        finally:
            self.pin_umems(-1)
        self._raise_error()
        return total

    cdef void run_c(self, uint64_t deadline, bint timed, uint64_t max_packets,
                    bint until_idle, uint64_t* total_out) noexcept:
        cdef uint64_t now, total = 0
        cdef uint32_t got, idle = 0, k
        cdef bint pending
        with nogil:
            while True:
                now = monotonic_ns()
                got = self.poll_c(now)
                total += got
                if self.stop_flag or (timed and now >= deadline) or (
                        max_packets and total >= max_packets):
                    break
                if got == 0:
                    pending = False
                    for k in range(self.n_ports):
                        pending = pending or (<Burst>self.txq[k]).n > 0
                    if until_idle and not pending:
                        break
                    idle += 1
                    if idle >= IDLE_POLLS_BEFORE_WAIT:
                        idle = 0
                        self.idle_wait()
                else:
                    idle = 0
        total_out[0] = total

    cdef void idle_wait(self) noexcept nogil:
        """Block up to 1 ms until a port has packets or, with a handoff, another worker
        hands us some (its producer kicks our eventfd only while we sleep)."""
        cdef uint32_t src
        cdef xpfdp_waker_t* w
        if self.n_workers == 1:
            wait_any(self.ports, self.n_ports, 1)
            return
        w = &self.handoff.wakers[self.worker]
        xpfdp_waker_announce(w)
        for src in range(self.n_workers):
            if src != self.worker and xpfdp_spsc_ready(self.handoff.ring(src, self.worker)):
                xpfdp_waker_awake(w)
                return
        wait_any(self.ports, self.n_ports, 1, w.fd)
        xpfdp_waker_awake(w)

    def _raise_error(self):
        if self._error is not None:
            raise RuntimeError(f"user stage failed: {self._error!r}") from self._error

    def stop(self):
        """Ask a running `run()` (possibly in another thread) to return after this poll."""
        self.stop_flag = True

    def pending_tx(self):
        """Frames queued for TX per port (held by the pipeline, retried every poll)."""
        return [(<Burst>self.txq[k]).n for k in range(self.n_ports)]

    def drop_pending(self):
        """Return every queued TX frame (TX queues and CoS queues) and every frame the
        fragment table holds to its pool, counted as shutdown drops."""
        cdef uint32_t k, n
        cdef Burst q
        for k in range(self.n_ports):
            if self.sched[k] == NULL:
                continue
            q = <Burst>self.cosb[k]
            while True:
                n = (<Scheduler>self.sched[k]).take_queued(q.d, q.capacity)
                if n == 0:
                    break
                (<Port>self.ports[k]).c_recycle(q, 0, n)
                self.drops[DROP_SHUTDOWN] += n
        for k in range(self.n_ports):
            q = <Burst>self.txq[k]
            n = q.n
            if n:
                (<Port>self.ports[k]).c_recycle(q, 0, n)
                self.drops[DROP_SHUTDOWN] += n
                q.n = 0
        if self.fragments is not None:
            frag_drain(&self.fragments.t)
            self.recycle_fragments(FRAG_LIST_RELEASED, DROP_SHUTDOWN)
            self.recycle_fragments(FRAG_LIST_DROPPED, DROP_SHUTDOWN)
        for k in range(self.n_held):
            q = <Burst>self.dropb[self.held[k].ingress]
            q.d[0] = self.held[k].d
            (<Port>self.ports[self.held[k].ingress]).c_recycle(q, 0, 1)
            self.drops[DROP_SHUTDOWN] += 1
        self.n_held = 0

    def discard_handed_in(self):
        """Empty the rings into this worker, counting their packets as shutdown drops
        (they hold copies, no frames; fragment notes are not packets and are not counted).
        Only while this worker does not poll."""
        cdef uint32_t src, n, k
        cdef xpfdp_spsc_t* r
        if self.handoff is None:
            return 0
        cdef uint64_t total = 0
        for src in range(self.n_workers):
            if src != self.worker:
                r = self.handoff.ring(src, self.worker)
                n = xpfdp_spsc_ready(r)
                for k in range(n):
                    if (<const handoff_hdr_t*>xpfdp_spsc_cons_slot(r, k)).kind == HANDOFF_PACKET:
                        total += 1
                xpfdp_spsc_consume(r, n)
        self.drops[DROP_SHUTDOWN] += total
        return total

    def close(self, bint close_ports=False):
        """Flush what the TX rings still take, return held frames, optionally close ports.
        Idempotent."""
        if self.closed:
            return
        if self.polling:
            raise RuntimeError("cannot close a pipeline while it polls (a stage may not)")
        cdef uint32_t k
        for k in range(self.n_ports):
            if not (<Port>self.ports[k]).closed:
                self.flush_tx(k)
        self.drop_pending()
        self.discard_handed_in()
        self.closed = True
        if close_ports:
            for x in self._ports:
                x.close()

    def stats(self):
        """A snapshot as a plain dict (shape documented in xpfdp.pipeline)."""
        drops = {drop_reason_name(r): int(self.drops[r]) for r in range(DROP_COUNTERS)
                 if self.drops[r]}
        ports = {}
        for name, x in zip(self.port_names, self._ports):
            ports[name] = x.stats() if not x.closed else {}
        out = {
            "rx_packets": int(self.rx_packets),
            "tx_packets": int(self.tx_packets),
            "drops": drops,
            "drops_total": sum(drops.values()),
            "polls": int(self.polls),
            "idle_polls": int(self.idle_polls),
            "ports": ports,
            "stages": {s.name: s.stats() for s in self._stages},
            "pending_tx": sum(self.pending_tx()),
            "tx_latency": {
                "bucket_upper_ns": list(LATENCY_BUCKET_UPPER_NS),
                "counts": [int(self.lat_hist[k]) for k in range(LAT_BUCKETS)],
                "sum_ns": int(self.lat_sum_ns),
            },
            "sessions": {
                "active": len(self.sessions) if self.sessions is not None else 0,
                "created": int(self.sessions_created),
                "expired": int(self.sessions_expired),
                "evicted": self.sessions.stats()["evictions"] if self.sessions is not None else 0,
            },
            "flow_cache": self.fc.stats() if self.fc is not None else None,
            "fragments": self.fragments.stats() if self.fragments is not None else None,
            "worker": int(self.worker),
            "handoff": {"out": int(self.handoff_out), "in": int(self.handoff_in),
                        "notes_out": int(self.notes_out), "notes_in": int(self.notes_in)},
            "neighbour_requests_lost": int(self.nreq_lost),
            "neighbour_held": int(self.n_held),
        }
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"Pipeline(ports={self.port_names}, "
                f"stages={[s.name for s in self._stages]}, burst_size={self.burst_size})")


def _mac(value):
    """6 MAC bytes from "aa:bb:cc:dd:ee:ff", "aabbccddeeff" or bytes."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raw = bytes.fromhex(str(value).replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"MAC address {value!r} is not 6 bytes")
    return raw
