# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class MssClampStage(Stage):
    """Lower the MSS option of TCP SYNs to `mss_v4` (IPv4) / `mss_v6` (IPv6).

    Needs "parsed"; provides nothing new; never drops.
    """

    cdef readonly uint16_t mss_v4
    cdef readonly uint16_t mss_v6
    cdef readonly uint64_t clamped

    def __init__(self, mss_v4, mss_v6=None):
        mss_v4 = integer(mss_v4, "mss_v4", 1, 65535)
        v6 = mss_v4 - 20 if mss_v6 is None else integer(mss_v6, "mss_v6", 1, 65535)
        if not 1 <= v6 <= 65535:
            raise ValueError(f"MSS values must be in [1, 65535], got {mss_v4}, {v6}")
        self.name = "mss_clamp"
        self.needs = ("parsed",)
        self.provides = ()
        self.mss_v4 = mss_v4
        self.mss_v6 = v6

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            if b.m[i].protocol == PROTO_TCP and b.m[i].tcp_flags & TCP_SYN:
                self.clamped += mss_clamp(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i],
                                          self.mss_v4 if b.m[i].ip_version == 4
                                          else self.mss_v6) == 1
        return 0
