# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class RouteStage(Stage):
    """RouteStage()\n--\n
    Longest-prefix match on the (post-NAT) destination: verdict = the next hop's port.
    Packets whose next hop is already known (flow cache hit, new flow) skip the lookup; misses
    resolved here are stored in the flow cache. Unroutable packets are dropped as no_route.

    Needs "parsed" and the pipeline's `routes`; provides "routed" (the verdict is the egress
    port and ctx `nh` the next hop).
    """

    def __init__(self):
        self.name = "route"
        self.needs = ("parsed", "routes")
        self.provides = ("routed",)

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef pkt_ctx_t* c
        cdef int32_t nh
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            c = &p.ctx[i]
            if c.flags & CTX_ROUTED:
                nh = c.nh
            elif b.m[i].ip_version != 4 and b.m[i].ip_version != 6:
                nh = -1
            else:
                nh = p.routes.lookup_addr(b.m[i].dst, b.m[i].ip_version)
            if nh < 0 or <uint32_t>nh >= p.n_nh:
                drop_packet(b, i, DROP_NO_ROUTE)
                self.c_drops += 1
                continue
            c.nh = nh
            b.v[i] = <int16_t>p.nh[nh].port
            if (c.flags & CTX_FC_INSERT) and p.fc is not None:
                p.fc.insert(&c.key, <uint16_t>ingress, c.fch, p.routes.generation,
                            p.config_generation, c.handle, nh)
        return 0
