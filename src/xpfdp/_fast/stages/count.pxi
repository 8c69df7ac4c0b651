# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class CountStage(Stage):
    """Count packets and bytes reaching this point of the pipeline (packets already taken
    by a CoS queue included: counting does not touch them).

    Needs nothing; provides nothing.
    """

    cdef readonly uint64_t bytes

    def __init__(self, str name="count"):
        self.name = name
        self.needs = ()
        self.provides = ()

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if b.v[i] != VERDICT_DROP and b.v[i] != VERDICT_HANDOFF:
                self.c_packets += 1
                self.bytes += b.d[i].len
        return 0

    def stats(self):
        out = Stage.stats(self)
        out["bytes"] = self.bytes
        return out
