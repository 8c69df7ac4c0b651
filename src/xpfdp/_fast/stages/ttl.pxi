# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class TtlStage(Stage):
    """TtlStage()\n--\n
    Decrement the IPv4 TTL / IPv6 hop limit; packets at <= 1 are dropped as ttl_expired.

    Needs "parsed"; provides nothing new.
    """

    def __init__(self):
        self.name = "ttl"
        self.needs = ("parsed",)
        self.provides = ()

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            if ttl_decrement(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i]) == TTL_EXPIRED:
                drop_packet(b, i, DROP_TTL_EXPIRED)
                self.c_drops += 1
        return 0
