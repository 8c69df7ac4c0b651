# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class TtlStage(Stage):
    """Decrement the IPv4 TTL / IPv6 hop limit. A packet at <= 1 expires: with `icmp` (an
    IcmpErrors) it becomes a Time Exceeded back out of its ingress port, rate-limited; else,
    or when the limits refuse, it is dropped as ttl_expired.

    Needs "parsed"; provides nothing new.
    """

    cdef readonly IcmpErrors icmp
    cdef readonly uint64_t expired

    def __init__(self, IcmpErrors icmp=None):
        self.name = "ttl"
        self.needs = ("parsed",)
        self.provides = ()
        self.icmp = icmp

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            if ttl_decrement(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i]) == TTL_EXPIRED:
                self.expired += 1
                if self.icmp is not None and self.icmp.reply(
                        p, b, i, ingress,
                        ICMP4_TIME_EXCEEDED if b.m[i].ip_version == 4 else ICMP6_TIME_EXCEEDED,
                        0, 0, True):
                    continue
                drop_packet(b, i, DROP_TTL_EXPIRED)
                self.c_drops += 1
        return 0

    def stats(self):
        out = Stage.stats(self)
        out["expired"] = self.expired
        return out
