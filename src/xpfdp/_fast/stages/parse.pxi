# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class ParseStage(Stage):
    """Parse every frame into the burst's meta; malformed frames are dropped as
    parse_error:<status>. `allow_non_ip=True` lets non-IP frames through unparsed. Later
    fragments (status nonfirst_frag: the IP header parsed, no L4 header in them) pass; a
    SessionStage resolves them through the fragment table.

    Needs nothing; provides "parsed" (`burst.meta` holds each live packet's record).
    """

    cdef bint allow_non_ip

    def __init__(self, *, bint allow_non_ip=False):
        self.name = "parse"
        self.needs = ()
        self.provides = ("parsed",)
        self.allow_non_ip = allow_non_ip

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef uint8_t* area = b.umem.area
        cdef uint8_t st
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            parse_one(area + b.d[i].addr, b.d[i].len, &b.m[i])
            st = b.m[i].status
            if st != PARSE_OK and st != PARSE_NONFIRST_FRAG and not (
                    st == PARSE_NON_IP and self.allow_non_ip):
                drop_packet(b, i, DROP_PARSE + st)
                self.c_drops += 1
        return 0
