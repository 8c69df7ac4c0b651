# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

cdef inline uint8_t cos_drop_reason(int admission) noexcept nogil:
    """The pipeline drop reason of a COS_DROP_* admission verdict (named one by one, so
    the two enums may be ordered independently)."""
    if admission == COS_DROP_FLOW_SHARE:
        return DROP_COS_FLOW_SHARE
    if admission == COS_DROP_BUFFER:
        return DROP_COS_BUFFER
    if admission == COS_DROP_CAPACITY:
        return DROP_COS_CAPACITY
    if admission == COS_DROP_BAD_DESC:
        return DROP_COS_BAD_DESC
    return DROP_COS_BAD_DESC    # unreachable: pipeline.pyx checks every COS_DROP_* at import


@cython.final
cdef class CosStage(Stage):
    """CosStage(schedulers, rules=(), *, default_queue=0)\n--\n
    CoS classify + enqueue for shaped egress ports (one `xpfdp.cos` Scheduler each).

    Packets routed to a port in `schedulers` are classified by the first matching rule
    (else `default_queue`) and admitted to that queue; the pipeline then drains each
    scheduler into its port's TX ring every poll and settles back exactly what the ring
    refused. Admission drops are counted as cos_drop:<reason>. Rules are dicts with
    "queue" (queue id) and any of "proto" (number, or "icmp" for ICMP and ICMPv6),
    "family" (4/6), "dscp" (0..63) and "port" (source or destination port). Ports whose
    UMEM differs from the ingress port's are not shaped (their frames are copied out).

    Needs "parsed" and "routed" (the verdict is the egress port); provides "queued": an
    admitted packet's verdict becomes `Verdict.QUEUED` and its frame belongs to the queue,
    so later stages leave it alone. Its schedulers are the pipeline's for those ports
    (`egress_schedulers()`).
    """

    cdef readonly dict schedulers
    cdef PyObject* sched[MAX_PORTS]          # borrowed from `schedulers`; NULL: not shaped
    cdef cos_rule_t rules[MAX_PORTS][MAX_COS_RULES]
    cdef uint32_t n_rules[MAX_PORTS]
    cdef uint16_t default_q[MAX_PORTS]
    cdef readonly uint64_t admitted
    cdef readonly uint64_t ecn_marked

    def __init__(self, schedulers, rules=(), *, int default_queue=0):
        self.name = "cos"
        self.needs = ("parsed", "routed")
        self.provides = ("queued",)
        self.schedulers = dict(schedulers)
        expanded = []
        for r in rules:
            r = dict(r)
            unknown = set(r) - {"queue", "proto", "family", "dscp", "port"}
            if unknown or "queue" not in r:
                raise ValueError(f"CoS rule {r!r}: needs 'queue', allows proto/family/dscp/port")
            if r.get("proto") == "icmp":
                expanded.append({**r, "proto": 1, "family": 4})
                expanded.append({**r, "proto": 58, "family": 6})
            else:
                expanded.append(r)
        if len(expanded) > MAX_COS_RULES:
            raise ValueError(f"at most {MAX_COS_RULES} CoS rules")
        for port, sch in self.schedulers.items():
            if not 0 <= int(port) < MAX_PORTS:
                raise ValueError(f"CoS: port index {port} out of range")
            if not isinstance(sch, Scheduler):
                raise TypeError(f"CoS: port {port} needs an xpfdp.cos Scheduler")
            ids = list(sch.queue_ids)
            if default_queue not in ids:
                raise ValueError(f"CoS: default queue {default_queue} not in port {port}'s "
                                 f"scheduler (queues {ids})")
            self.sched[port] = <PyObject*>sch
            self.default_q[port] = ids.index(default_queue)
            self.n_rules[port] = len(expanded)
            for k, r in enumerate(expanded):
                if r["queue"] not in ids:
                    raise ValueError(f"CoS rule {r!r}: queue not in port {port}'s scheduler")
                self.rules[port][k].queue_index = ids.index(r["queue"])
                self.rules[port][k].proto = int(r.get("proto", 0))
                self.rules[port][k].family = int(r.get("family", 0))
                self.rules[port][k].dscp = int(r.get("dscp", -1))
                self.rules[port][k].port = int(r.get("port", 0))

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i, k, e, qi
        cdef int16_t v
        cdef pkt_meta_t* m
        cdef cos_rule_t* r
        cdef int rc
        for i in range(b.n):
            v = b.v[i]
            if verdict_settled(v):
                continue
            self.c_packets += 1
            if v < 0 or <uint32_t>v >= p.n_ports or self.sched[v] == NULL or p.cross[ingress][v]:
                continue
            e = <uint32_t>v
            m = &b.m[i]
            qi = self.default_q[e]
            for k in range(self.n_rules[e]):
                r = &self.rules[e][k]
                if ((r.proto == 0 or r.proto == m.protocol)
                        and (r.family == 0 or r.family == m.ip_version)
                        and (r.dscp < 0 or r.dscp == (m.tos >> 2))
                        and (r.port == 0 or ((m.flags & META_L4_VALID)
                                             and (r.port == m.sport or r.port == m.dport)))):
                    qi = r.queue_index
                    break
            rc = (<Scheduler>self.sched[e]).admit(qi, b.d[i].addr, b.d[i].len, m,
                                                   b.umem.area + b.d[i].addr)
            if rc <= COS_ADMIT_MARKED:
                b.v[i] = VERDICT_QUEUED
                self.admitted += 1
                self.ecn_marked += rc == COS_ADMIT_MARKED
            else:
                drop_packet(b, i, cos_drop_reason(rc))
                self.c_drops += 1
        return 0

    def egress_schedulers(self):
        """{egress port index: Scheduler} this stage admits packets into."""
        return dict(self.schedulers)

    def stats(self):
        out = Stage.stats(self)
        out["admitted"] = self.admitted
        out["ecn_marked"] = self.ecn_marked
        return out
