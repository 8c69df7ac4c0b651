# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

cdef class Stage:
    """A pipeline stage: `run` processes a whole burst without the GIL (abstract)."""

    def __init__(self, *args, **kwargs):
        if type(self) is Stage:
            raise TypeError("Stage is abstract: use a built-in stage or PyStage")

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        return 0

    def stats(self):
        """Packets this stage saw (not already dropped) and packets it dropped."""
        return {"packets": self.c_packets, "drops": self.c_drops}

    def __repr__(self):
        return f"{type(self).__name__}()"
