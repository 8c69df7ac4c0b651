# Included by pipeline.pyx: the rings that carry packets between workers, and the flow
# ownership rule that decides which worker a packet belongs to.
#
cdef extern from *:
    """
    #include <sys/eventfd.h>
    static inline void xpfdp_waker_awake_init(xpfdp_waker_t *w) {
        atomic_init(&w->sleeping, 0);
    }
    """
    int eventfd(unsigned int initval, int flags) nogil
    int EFD_NONBLOCK
    int EFD_CLOEXEC
    void xpfdp_waker_awake_init(xpfdp_waker_t* w) nogil
    void* aligned_alloc(size_t alignment, size_t size) nogil

from libc.errno cimport errno
from posix.unistd cimport close

# Each worker has its own UMEM, so a handed-off packet is copied: the producer copies its
# parse record and bytes into a ring slot and returns its frame at once; the consumer
# copies them into one of its own transmit frames and runs the stages from the session
# stage on. Frames never cross UMEMs, so each UMEM's frame accounting stays exact.
# A ring slot holds HANDOFF_HDR_BYTES + at least 64 bytes: a packet header fits in the
# first part, a fragment note (no packet) in the whole of the smallest slot.
assert sizeof(handoff_hdr_t) <= HANDOFF_HDR_BYTES
assert sizeof(frag_note_t) <= HANDOFF_HDR_BYTES + 64

@cython.final
cdef class Handoff:
    """Handoff(workers, *, slots=512, frame_bytes=3584)\n--\n
    The handoff rings of `workers` pipelines: one single-producer single-consumer ring
    of `slots` packets (power of two) for every ordered pair of workers, each slot holding
    one packet of up to `frame_bytes`. Give the same Handoff to every worker's Pipeline
    (`Pipeline(..., handoff=h, worker=w)`)."""

    def __cinit__(self):
        self.rings = NULL
        self.wakers = NULL

    def __init__(self, uint32_t workers, *, uint32_t slots=512, uint32_t frame_bytes=3584):
        cdef uint32_t i, slot_bytes
        if not 2 <= workers <= 64:
            raise ValueError(f"a handoff joins 2..64 workers, got {workers}")
        if slots < 2 or slots > 65536 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two in [2, 65536], got {slots}")
        if not 64 <= frame_bytes <= 65536:
            raise ValueError(f"frame_bytes must be in [64, 65536], got {frame_bytes}")
        self.workers = workers
        self.slots = slots
        self.frame_bytes = frame_bytes
        self.n_ports = -1
        self._attached = [None] * workers
        slot_bytes = (HANDOFF_HDR_BYTES + frame_bytes + 63) & ~63u
        self.rings = <xpfdp_spsc_t**>calloc(workers * workers, sizeof(xpfdp_spsc_t*))
        if self.rings == NULL:
            raise MemoryError()
        for i in range(workers * workers):
            if i // workers != i % workers:
                self.rings[i] = xpfdp_spsc_new(slots, slot_bytes)
                if self.rings[i] == NULL:
                    raise MemoryError("handoff ring allocation failed")
        self.wakers = <xpfdp_waker_t*>aligned_alloc(64, workers * sizeof(xpfdp_waker_t))
        if self.wakers == NULL:
            raise MemoryError()
        for i in range(workers):
            self.wakers[i].fd = -1
        for i in range(workers):
            xpfdp_waker_awake_init(&self.wakers[i])
            self.wakers[i].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            if self.wakers[i].fd < 0:
                raise OSError(errno, "eventfd for a handoff waker")

    def __dealloc__(self):
        cdef uint32_t i
        if self.rings != NULL:
            for i in range(self.workers * self.workers):
                xpfdp_spsc_free(self.rings[i])
            free(self.rings)
        if self.wakers != NULL:
            for i in range(self.workers):
                if self.wakers[i].fd >= 0:
                    close(self.wakers[i].fd)
            free(self.wakers)

    def _attach(self, pipeline, uint32_t worker, int n_ports):
        """Reserve worker slot `worker` for `pipeline` (each ring end has one thread)."""
        if worker >= self.workers:
            raise ValueError(f"worker {worker} out of range [0, {self.workers})")
        if self._attached[worker] is not None:
            raise ValueError(f"worker {worker} of this Handoff is already taken by a pipeline")
        if self.n_ports >= 0 and n_ports != self.n_ports:
            raise ValueError(f"every worker of a Handoff needs the same ports: {self.n_ports} "
                             f"ports elsewhere, {n_ports} here")
        self.n_ports = n_ports
        self._attached[worker] = pipeline

    def ready(self, uint32_t src, uint32_t dst):
        """Packets waiting in the ring from worker `src` to worker `dst`."""
        if src >= self.workers or dst >= self.workers or src == dst:
            raise ValueError(f"no ring from worker {src} to worker {dst}")
        return xpfdp_spsc_ready(self.ring(src, dst))

    def __repr__(self):
        return (f"Handoff(workers={self.workers}, slots={self.slots}, "
                f"frame_bytes={self.frame_bytes})")


# ---------------------------------------------------------------------------------------
# Flow ownership: a function of the packet alone, the same on every worker.

cdef inline uint64_t endpoint_hash(const uint8_t* addr, uint16_t port,
                                   uint8_t proto) noexcept nogil:
    cdef uint64_t a, b
    memcpy(&a, addr, 8)
    memcpy(&b, addr + 8, 8)
    return mix64(a * 0x9E3779B97F4A7C15ULL + b * 0xC2B2AE3D27D4EB4FULL
                 + (<uint64_t>port << 8 | proto) * 0x165667B19E3779F9ULL)


cdef inline uint32_t worker_of(uint64_t h, uint32_t workers) noexcept nogil:
    return <uint32_t>(((h >> 32) * workers) >> 32)


cdef inline uint32_t slice_lo(uint32_t lo, uint32_t span, uint32_t w,
                              uint32_t workers) noexcept nogil:
    """First port of worker w's slice of [lo, lo + span): slices are contiguous, in worker
    order, and differ in size by at most one."""
    return lo + <uint32_t>((<uint64_t>span * w) // workers)


cdef inline uint32_t slice_owner(uint32_t lo, uint32_t span, uint32_t port,
                                 uint32_t workers) noexcept nogil:
    """The worker whose slice holds `port` (lo <= port < lo + span, span >= workers)."""
    cdef uint32_t w = <uint32_t>((<uint64_t>(port - lo) * workers) // span)
    if w + 1 < workers and slice_lo(lo, span, w + 1, workers) <= port:
        w += 1
    return w


def snat_slice(uint32_t lo, uint32_t hi, uint32_t worker, uint32_t workers):
    """(first, last) SNAT port of `worker`'s slice of [lo, hi] when `workers` share it."""
    if not lo <= hi or worker >= workers or hi - lo + 1 < workers:
        raise ValueError(f"cannot give {workers} workers a slice each of [{lo}, {hi}]")
    cdef uint32_t span = hi - lo + 1
    return (slice_lo(lo, span, worker, workers),
            slice_lo(lo, span, worker + 1, workers) - 1)


cdef inline uint32_t fragment_owner_of(const frag_key_t* k, uint32_t workers) noexcept nogil:
    """The worker every later fragment of the datagram with fragment key `k` goes to: a
    hash of what all its fragments carry (addresses, protocol, fragment ID)."""
    return worker_of(frag_key_hash(k), workers)


def fragment_owner(frame, uint32_t workers):
    """The fragment owner among `workers` of the datagram an Ethernet frame (an IP
    fragment, first or later) belongs to; None when the frame is not a fragment."""
    cdef const uint8_t[::1] view = bytes(frame)
    cdef pkt_meta_t m
    cdef frag_info_t f
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if view.shape[0] == 0:
        return None
    parse_one(&view[0], <uint32_t>view.shape[0], &m)
    if not frag_info_from(&view[0], <uint32_t>view.shape[0], &m, &f):
        return None
    return fragment_owner_of(&f.key, workers)


def snat_port_owner(uint32_t lo, uint32_t hi, uint32_t port, uint32_t workers):
    """The worker whose SNAT slice of [lo, hi] holds `port`."""
    if not lo <= port <= hi or workers < 1 or hi - lo + 1 < workers:
        raise ValueError(f"port {port} / {workers} workers do not fit [{lo}, {hi}]")
    return slice_owner(lo, hi - lo + 1, port, workers)
