# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class NatStage(Stage):
    """NatStage()\n--\n
    Apply each packet's session NAT (SNAT and/or DNAT, ports or echo id) in place with
    incremental checksum updates; a frame whose L4 checksum cannot be updated is dropped
    as nat_failed.

    Needs "parsed" and "has_decision" (SessionStage); provides nothing new. Put it before
    RouteStage so routes see the translated destination.
    """

    def __init__(self):
        self.name = "nat"
        self.needs = ("parsed", "has_decision")
        self.provides = ()

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef pkt_ctx_t* c
        cdef uint8_t f
        cdef int rc
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            c = &p.ctx[i]
            f = c.dec.nat_flags
            if not (c.flags & CTX_HAS_DEC) or not (f & (NAT_RS | NAT_RD | NAT_RSP | NAT_RDP)):
                continue
            rc = nat_rewrite(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i],
                             c.dec.rs if f & NAT_RS else NULL,
                             c.dec.rd if f & NAT_RD else NULL,
                             c.dec.rsp if f & NAT_RSP else -1,
                             c.dec.rdp if f & NAT_RDP else -1)
            if rc == REWRITE_BAD_L4_CSUM:
                drop_packet(b, i, DROP_NAT_FAILED)
                self.c_drops += 1
        return 0
