# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

cdef class Stage:
    """Stage(name=None, *, needs=(), provides=())\n--\n
    A pipeline stage: `run` processes a whole burst without the GIL (abstract).

    A stage declares `needs` (facts an earlier stage must provide, and the resources
    "routes", "sessions" or "gil" it uses) and `provides` (facts it leaves for later
    stages); `Pipeline` refuses an order that leaves a need unmet. A stage that needs "gil"
    is run through its Python `process(burst)` method instead of `run`. The whole contract
    (what a stage may read and write, verdicts, drop reasons) is docs/stages.md.
    """

    def __init__(self, name=None, *, needs=(), provides=()):
        if type(self) is Stage:
            raise TypeError("Stage is abstract: use a built-in stage, PyStage or a subclass")
        self.name = str(name) if name is not None else type(self).__name__.lower()
        self.needs = tuple(str(x) for x in needs)
        self.provides = tuple(str(x) for x in provides)

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        return 0

    def egress_schedulers(self):
        """{egress port index: xpfdp.cos.Scheduler} this stage queues packets into; the
        pipeline drains each of them to its port every poll. None by default."""
        return {}

    def stats(self):
        """Packets this stage saw (not already dropped) and packets it dropped."""
        return {"packets": self.c_packets, "drops": self.c_drops}

    def __repr__(self):
        return f"{type(self).__name__}()"
