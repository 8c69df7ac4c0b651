# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class L2Stage(Stage):
    """L2Stage()\n--\n
    Rewrite Ethernet source and destination MACs from the packet's next hop.

    Needs "routed" (ctx `nh`); a next hop without MACs leaves the frame as it is.
    """

    def __init__(self):
        self.name = "l2"
        self.needs = ("routed",)
        self.provides = ()

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef int32_t nh
        cdef uint8_t* f
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            nh = p.ctx[i].nh
            if nh < 0 or not p.nh[nh].has_macs or b.d[i].len < 14:
                continue
            f = b.umem.area + b.d[i].addr
            memcpy(f, p.nh[nh].dst_mac, 6)
            memcpy(f + 6, p.nh[nh].src_mac, 6)
        return 0
