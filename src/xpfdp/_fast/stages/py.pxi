# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class PyStage(Stage):
    """PyStage(fn, name=None)\n--\n
    A Python callable run once per burst with the GIL: `fn(burst)`.

    It may set `burst.verdict[i]` (-1 drops, counted as user_drop; >= 0 picks an egress
    port) and rewrite frames through `burst.frame(i)` or `burst.umem.buf`. An exception
    drops the burst (user_error) and stops the worker; `Pipeline.error` keeps it.
    """

    cdef readonly object fn

    def __init__(self, fn, str name=None):
        if not callable(fn):
            raise TypeError(f"PyStage needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "user")

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        return 0
