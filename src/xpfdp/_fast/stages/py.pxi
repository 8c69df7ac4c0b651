# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class PyStage(Stage):
    """PyStage(fn, name=None, *, needs=(), provides=())\n--\n
    A Python callable run once per burst with the GIL: `fn(burst)`.

    It may set `burst.verdict[i]` to a port index (>= 0), `Verdict.DROP` (counted as
    user_drop) or `Verdict.PASS`, drop with a named reason through
    `burst.drop(mask, reason="policer")`, and rewrite frames through `burst.frame(i)` or
    `burst.umem.buf`. Any other verdict is dropped as user_error; a packet held by a CoS
    queue keeps its verdict. An exception drops the burst (user_error) and stops the
    worker; `Pipeline.error` keeps it. `needs`/`provides` declare facts as for any stage
    ("gil" is always needed).
    """

    cdef readonly object fn

    def __init__(self, fn, str name=None, *, needs=(), provides=()):
        if not callable(fn):
            raise TypeError(f"PyStage needs a callable, got {type(fn).__name__}")
        Stage.__init__(self, name or getattr(fn, "__name__", "user"),
                       needs=("gil", *needs), provides=provides)
        self.fn = fn

    def process(self, burst):
        """Run the wrapped callable over `burst`."""
        self.fn(burst)
