# cython: language_level=3
"""AF_XDP core: UMEM and frame pools, bursts, and two ports with one interface.

Every frame of a `Umem` is always in exactly one state, recorded in a per-frame byte
(the owning port's slot in the high bits, the state in the low three):

* ``fill_ring`` / ``rx_ring`` -- given to a port's fill ring, received but not yet taken;
* ``held`` -- owned by the caller through a `Burst` (after rx_burst or alloc_tx);
* ``pending_fill`` -- waiting to go back to a fill ring;
* ``free_tx`` -- a transmit frame ready to be written;
* ``pending_tx`` -- handed to a port's bounded TX queue (`queue_tx`), waiting for ring space;
* ``tx_ring`` -- submitted to a TX ring, completion not yet reaped.

Frames ``[0, tx_frames)`` are transmit frames and always come home to ``free_tx``; the others
are receive frames and come home to ``pending_fill``. `Umem.check_frames()` recounts the
states from the per-frame bytes and the pools and raises `FrameLeakError` on any mismatch.

`XskPort` drives a kernel AF_XDP socket (created through libxdp with INHIBIT_PROG_LOAD; the
XDP program is ours, see `xpfdp.bpf`); `MemPort` does the same in memory. Both expose cdef
nogil methods (`c_rx`, `c_tx`, `c_recycle`, `c_alloc_tx`, `c_service`) for Cython loops and
thin Python wrappers that take one Python call per burst.
"""

cimport cython
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_AsString
from libc.errno cimport EAGAIN, EBUSY, errno
from libc.stdint cimport int16_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset, strerror

from xpfdp._fast.includes.compat cimport monotonic_ns
from xpfdp._fast.includes.libxdp cimport (
    XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
    xsk_cons_nb_avail,
    xsk_prod_nb_free,
    xsk_ring_cons__comp_addr,
    xsk_ring_cons__peek,
    xsk_ring_cons__release,
    xsk_ring_cons__rx_desc,
    xsk_ring_prod__fill_addr,
    xsk_ring_prod__needs_wakeup,
    xsk_ring_prod__reserve,
    xsk_ring_prod__submit,
    xsk_ring_prod__tx_desc,
    xsk_socket__create,
    xsk_socket__create_shared,
    xsk_socket__delete,
    xsk_socket__fd,
    xsk_umem__create,
    xsk_umem__delete,
    xsk_umem_config,
)
from xpfdp._fast.includes.linux cimport (
    MADV_HUGEPAGE,
    MAP_ANONYMOUS,
    MAP_FAILED,
    MAP_HUGETLB,
    MAP_POPULATE,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
    XDP_COPY,
    XDP_OPTIONS,
    XDP_OPTIONS_ZEROCOPY,
    XDP_PACKET_HEADROOM,
    XDP_STATISTICS,
    XDP_USE_NEED_WAKEUP,
    XDP_ZEROCOPY,
    madvise,
    mmap,
    munmap,
    xdp_options,
    xdp_statistics,
)
from xpfdp._fast.meta cimport pkt_meta_t
from xpfdp._fast.verdict cimport (
    DROP_UNSET,
    VERDICT_DROP,
    verdict_settled,
)

import errno as _errno
import fcntl
import os
import socket
import struct
import time

import numpy as np

from xpfdp._check import integer
from xpfdp._fast.meta import PKT_META
from xpfdp.errors import XpfdpError
from xpfdp._fast.meta import XDP_DESC as DESC
from xpfdp._fast.verdict import drop_reason


cdef extern from *:
    """
    #ifndef MAP_HUGE_2MB
    #define MAP_HUGE_2MB (21 << 26)
    #endif
    #include <sys/socket.h>
    #include <poll.h>
    #include "../../../bpf/xsk_abi.h"
    #ifndef SOL_XDP
    #define SOL_XDP 283
    #endif
    static inline int xpfdp_kick(int fd) {
        return (int)sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
    }
    static inline int xpfdp_poll_in(int fd, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        return poll(&p, 1, timeout_ms);
    }
    static inline int xpfdp_poll_in_many(const int *fds, unsigned n, int timeout_ms) {
        struct pollfd p[17];
        unsigned k, m = 0;
        for (k = 0; k < n && m < 17; k++)
            if (fds[k] >= 0) { p[m].fd = fds[k]; p[m].events = POLLIN; p[m].revents = 0; m++; }
        return m ? poll(p, m, timeout_ms) : 0;
    }
    static inline uint32_t xpfdp_load_acquire(const uint32_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    """
    int MAP_HUGE_2MB
    int SOL_XDP
    int XPFDP_XSK_ABI_VERSION
    int xpfdp_kick(int fd) nogil
    int xpfdp_poll_in(int fd, int timeout_ms) nogil
    int xpfdp_poll_in_many(const int *fds, unsigned n, int timeout_ms) nogil
    uint32_t xpfdp_load_acquire(const uint32_t *p) nogil
    int getsockopt(int fd, int level, int optname, void *optval, unsigned int *optlen) nogil
    int setsockopt(int fd, int level, int optname, const void *optval, unsigned int optlen) nogil
    int SOL_SOCKET

ABI_VERSION = XPFDP_XSK_ABI_VERSION

# Busy-polling socket options (asm-generic/socket.h; the same on every architecture Linux
# runs AF_XDP on but parisc/sparc/alpha, which xpfdp does not build for).
cdef enum:
    SO_BUSY_POLL = 46
    SO_PREFER_BUSY_POLL = 69
    SO_BUSY_POLL_BUDGET = 70
BUSY_POLL_BUDGET = 64       # packets per busy-poll run: one NAPI budget
MAX_BUSY_POLL_US = 1000000  # a second: anything longer is a mistake


cdef int _set_int_option(int fd, int option, int value) noexcept nogil:
    return setsockopt(fd, SOL_SOCKET, option, &value, sizeof(int))

# Frame states (low three bits of Umem.state[frame]).
cdef enum:
    FRAME_FREE_TX = 1
    FRAME_PENDING_FILL = 2
    FRAME_KERNEL_RX = 3
    FRAME_HELD = 4
    FRAME_TX = 5
    FRAME_CLAIMED = 6  # transient inside tx/recycle calls; never visible between calls
    FRAME_PENDING_TX = 7
    STATE_MASK = 7
    SLOT_SHIFT = 3
    MAX_PORTS_PER_UMEM = 31

# Copy-mode sendto transmits at most this many descriptors per call (kernel TX batch).
cdef enum:
    COPY_TX_PER_KICK = 32
    FILL_WAKE_SAFETY_NS = 500000
    FILL_BATCH = 1024

assert DESC.itemsize == sizeof(xdp_desc)

_HUGE_PAGE_BYTES = 2 * 1024 * 1024
_BIND_RETRY_BUDGET_S = 5.0
_SIOCGIFMTU = 0x8921
_BIND_RETRY_SLEEP_S = 0.01

cdef tuple _port_stat_names():
    """port_stats_t's field names, in order (a struct converts to a dict by field)."""
    cdef port_stats_t zero
    memset(&zero, 0, sizeof(zero))
    return tuple(<dict>zero)


STAT_NAMES = _port_stat_names()
KERNEL_STAT_NAMES = (
    "rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
    "rx_fill_ring_empty_descs", "tx_ring_empty_descs",
)
FRAME_STATES = (
    "fill_ring", "rx_ring", "held", "pending_fill", "free_tx", "pending_tx", "tx_ring",
)


class FrameLeakError(XpfdpError, AssertionError):
    """Frame conservation failed: the per-state counts do not add up to the UMEM size."""


class RingSizeError(XpfdpError, ValueError):
    """A ring size is not a power of two in the accepted range."""


class UmemBusyError(XpfdpError, RuntimeError):
    """A UMEM or port was asked to close while a pipeline is polling it (from a PyStage,
    say): the loop still uses its memory and rings, so closing must wait until it returns."""


cdef inline bint _is_pow2(uint64_t x) noexcept nogil:
    return x != 0 and (x & (x - 1)) == 0


cdef uint32_t _next_pow2(uint32_t x) noexcept nogil:
    cdef uint32_t p = 1
    while p < x:
        p <<= 1
    return p


def validate_ring_size(int size, str what="ring_size"):
    """Raise RingSizeError unless `size` is a power of two in [32, 65536]."""
    if size < 32 or size > 65536 or not _is_pow2(size):
        raise RingSizeError(f"{what} must be a power of two in [32, 65536], got {size}")


cdef uint32_t _reserve_up_to(xsk_ring_prod *r, uint32_t want, uint32_t *idx) noexcept nogil:
    """Reserve as many of `want` producer slots as are free (libxdp reserve is all-or-none)."""
    cdef uint32_t got
    if want == 0:
        return 0
    got = xsk_ring_prod__reserve(r, want, idx)
    if got:
        return got
    got = xsk_prod_nb_free(r, want)
    if got > want:
        got = want
    if got == 0:
        return 0
    return xsk_ring_prod__reserve(r, got, idx)


@cython.final
cdef class UmemArea:
    """The mmap'd packet memory of a Umem, unmapped when its last reference goes.

    `Umem.buf` and `Burst.frame()` views are numpy arrays over this object's buffer, so a
    view kept after `Umem.close()` still reads and writes mapped memory (the close only
    drops the Umem's own reference); nothing Python can reach points into unmapped pages.
    """

    def __getbuffer__(self, Py_buffer *view, int flags):
        if self.addr == NULL:
            raise ValueError("UMEM area is unmapped")
        PyBuffer_FillInfo(view, self, self.addr, <Py_ssize_t>self.nbytes, 0, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        if self.addr != NULL and not self.keep_mapped:
            munmap(self.addr, self.map_bytes)


@cython.final
cdef class Umem:
    """Umem(frames, frame_size=4096, headroom=256, tx_frames=None)\n--\n
    Packet memory shared by the ports of one worker: `frames` chunks of `frame_size` bytes.

    Anonymous mmap, 2 MiB huge pages when available (else transparent huge pages are
    requested). `buf` is a zero-copy numpy uint8 view of the whole area. `tx_frames`
    chunks (default a quarter) are transmit frames; the rest feed the fill rings.
    The kernel registration happens when the first XskPort opens, so a Umem used only
    with MemPort needs no privileges.
    """

    def __cinit__(self, frames, frame_size=4096, headroom=256, tx_frames=None):
        cdef void *p
        self.frames = integer(frames, "frames", 1, 1 << 24)
        self.frame_size = integer(frame_size, "frame_size", 0, 1 << 16)
        self.headroom = integer(headroom, "headroom", 0, 1 << 16)
        if self.frame_size not in (2048, 4096):
            raise ValueError(f"frame_size must be 2048 or 4096 (aligned mode), got {frame_size}")
        if self.headroom + XDP_PACKET_HEADROOM + 64 > self.frame_size:
            raise ValueError(f"headroom {headroom} leaves no room for a packet")
        cdef uint32_t n = self.frames
        cdef uint32_t ntx = n // 4 if tx_frames is None else integer(tx_frames, "tx_frames", 0, n)
        self.frame_shift = 12 if self.frame_size == 4096 else 11
        self.tx_frames = ntx
        self.ring_size = _next_pow2(max(n, 64))
        self.area_bytes = <size_t>n * self.frame_size
        self.mmap_bytes = ((self.area_bytes + _HUGE_PAGE_BYTES - 1)
                           // _HUGE_PAGE_BYTES * _HUGE_PAGE_BYTES)
        p = mmap(NULL, self.mmap_bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0)
        self.hugepages = p != MAP_FAILED
        if p == MAP_FAILED:
            p = mmap(NULL, self.mmap_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
            if p == MAP_FAILED:
                raise MemoryError(f"mmap of {self.mmap_bytes} bytes for the UMEM failed")
            madvise(p, self.mmap_bytes, MADV_HUGEPAGE)  # best effort
        self.area = <uint8_t *>p
        self._area = UmemArea.__new__(UmemArea)
        self._area.addr = self.area
        self._area.nbytes = self.area_bytes
        self._area.map_bytes = self.mmap_bytes
        self.free_tx = <uint64_t *>calloc(n, sizeof(uint64_t))
        self.pending_fill = <uint64_t *>calloc(n, sizeof(uint64_t))
        self.state = <uint8_t *>calloc(n, 1)
        if not self.free_tx or not self.pending_fill or not self.state:
            raise MemoryError("frame pool allocation failed")
        cdef uint32_t i
        # Pop order: low addresses first.
        for i in range(ntx):
            self.free_tx[i] = <uint64_t>(ntx - 1 - i) << self.frame_shift
            self.state[ntx - 1 - i] = FRAME_FREE_TX
        self.n_free_tx = ntx
        for i in range(n - ntx):
            self.pending_fill[i] = <uint64_t>(n - 1 - i) << self.frame_shift
            self.state[n - 1 - i] = FRAME_PENDING_FILL
        self.n_pending_fill = n - ntx
        self.ports = []
        self._buf = np.frombuffer(self._area, dtype=np.uint8)

    def __dealloc__(self):
        if self.kumem != NULL and xsk_umem__delete(self.kumem) == 0:
            self.kumem = NULL
        if self.kumem != NULL and self._area is not None:
            self._area.keep_mapped = True   # the kernel still has it: leak, never unmap
        free(self.free_tx)
        free(self.pending_fill)
        free(self.state)

    @property
    def buf(self):
        """Zero-copy numpy uint8 view of the whole UMEM. A view kept past close() stays
        valid: it keeps the memory mapped until the view itself is released."""
        if self.area == NULL:
            raise ValueError("UMEM is closed")
        return self._buf

    @property
    def size_bytes(self):
        """Registered UMEM size in bytes (frames * frame_size)."""
        return self.area_bytes

    cdef bint owns(self, uint64_t addr, uint32_t length) noexcept nogil:
        cdef uint64_t in_frame = addr & (self.frame_size - 1)
        return (addr < self.area_bytes and length >= 1
                and in_frame + length <= self.frame_size)

    cdef void route_home(self, uint64_t addr) noexcept nogil:
        cdef uint32_t fi = <uint32_t>(addr >> self.frame_shift)
        cdef uint64_t base = <uint64_t>fi << self.frame_shift
        if fi < self.tx_frames:
            self.state[fi] = FRAME_FREE_TX
            self.free_tx[self.n_free_tx] = base
            self.n_free_tx += 1
        else:
            self.state[fi] = FRAME_PENDING_FILL
            self.pending_fill[self.n_pending_fill] = base
            self.n_pending_fill += 1

    cdef int claim_held(self, xdp_desc *d, uint32_t count) noexcept nogil:
        """Claim the frames of `count` descriptors for hand-back. Returns -1 when each
        names a frame the caller holds, exactly once; otherwise the first bad index, and
        nothing stays claimed. Every claimed frame must then be re-homed, submitted or
        unclaimed."""
        cdef uint32_t i, fi
        for i in range(count):
            fi = <uint32_t>(d[i].addr >> self.frame_shift)
            if not self.owns(d[i].addr, d[i].len) or self.state[fi] != FRAME_HELD:
                self.unclaim(d, i)
                return <int>i
            self.state[fi] = FRAME_CLAIMED
        return -1

    cdef void unclaim(self, xdp_desc *d, uint32_t count) noexcept nogil:
        cdef uint32_t i
        for i in range(count):
            self.state[d[i].addr >> self.frame_shift] = FRAME_HELD

    cdef int _attach_port(self, Port port) except -1:
        if len(self.ports) >= MAX_PORTS_PER_UMEM:
            raise ValueError(f"at most {MAX_PORTS_PER_UMEM} ports per UMEM")
        used = {(<Port>p).slot for p in self.ports}
        port.slot = next(s for s in range(1, MAX_PORTS_PER_UMEM + 1) if s not in used)
        self.ports.append(port)
        return 0

    cdef void _reclaim(self, uint8_t slot) noexcept nogil:
        """Bring home every frame a closed port left in its rings."""
        cdef uint32_t fi
        cdef uint8_t st
        for fi in range(self.frames):
            st = self.state[fi]
            if (st >> SLOT_SHIFT) == slot and (st & STATE_MASK) in (
                    FRAME_KERNEL_RX, FRAME_TX, FRAME_PENDING_TX):
                self.route_home(<uint64_t>fi << self.frame_shift)

    cdef int _register(self) except -1:
        """Register the area with the kernel (first XskPort). The fill and completion rings
        are sized to hold every frame."""
        cdef xsk_umem_config cfg
        cdef int ret
        if self.kumem != NULL:
            return 0
        if self.area == NULL:
            raise ValueError("UMEM is closed")
        cfg.fill_size = self.ring_size
        cfg.comp_size = self.ring_size
        cfg.frame_size = self.frame_size
        cfg.frame_headroom = self.headroom
        cfg.flags = 0
        ret = xsk_umem__create(&self.kumem, self.area, self.area_bytes, &self.fill, &self.comp,
                               &cfg)
        if ret:
            self.kumem = NULL
            raise OSError(-ret, f"xsk_umem__create: {os.strerror(-ret)}")
        self.rings_taken = False
        return 0

    cdef int _unregister_if_idle(self) except -1:
        cdef int ret
        if self.kumem == NULL or self.ports:
            return 0
        ret = xsk_umem__delete(self.kumem)
        if ret:
            raise OSError(-ret, f"xsk_umem__delete: {os.strerror(-ret)}")
        self.kumem = NULL
        self.rings_taken = False
        return 0

    def check_frames(self):
        """Prove every frame is in exactly one state; return the counts per state.

        Raises FrameLeakError (with the counts) when the per-frame records, the pools and
        the ports' counters disagree or do not add up to `frames`.
        """
        cdef uint32_t fi, i
        cdef uint32_t[8] by_state
        cdef uint64_t a
        memset(by_state, 0, sizeof(by_state))
        if self.state == NULL:
            raise ValueError("UMEM is closed")
        for fi in range(self.frames):
            by_state[self.state[fi] & STATE_MASK] += 1
        problems = []
        for i in range(self.n_free_tx):
            a = self.free_tx[i]
            if (a >> self.frame_shift >= self.frames
                    or self.state[a >> self.frame_shift] != FRAME_FREE_TX):
                problems.append(f"free_tx entry {i} (addr {a}) is not a free TX frame")
        for i in range(self.n_pending_fill):
            a = self.pending_fill[i]
            if (a >> self.frame_shift >= self.frames
                    or self.state[a >> self.frame_shift] != FRAME_PENDING_FILL):
                problems.append(f"pending_fill entry {i} (addr {a}) is not a pending fill frame")
        kernel_rx = sum((<Port>p).n_kernel_rx for p in self.ports)
        tx_out = sum((<Port>p).n_tx_out for p in self.ports)
        pending_tx = sum((<Port>p).pend_len for p in self.ports)
        rx_ring = sum(p._rx_ring_depth() for p in self.ports)
        counts = dict(zip(FRAME_STATES, (
            kernel_rx - rx_ring, rx_ring, self.n_held, self.n_pending_fill, self.n_free_tx,
            pending_tx, tx_out)))
        recorded = {
            "kernel_rx": by_state[FRAME_KERNEL_RX], "held": by_state[FRAME_HELD],
            "pending_fill": by_state[FRAME_PENDING_FILL], "free_tx": by_state[FRAME_FREE_TX],
            "pending_tx": by_state[FRAME_PENDING_TX], "tx_ring": by_state[FRAME_TX],
            "unassigned": by_state[0] + by_state[FRAME_CLAIMED],
        }
        expected = {
            "kernel_rx": kernel_rx, "held": self.n_held, "pending_fill": self.n_pending_fill,
            "free_tx": self.n_free_tx, "pending_tx": pending_tx, "tx_ring": tx_out,
            "unassigned": 0,
        }
        if recorded != expected:
            problems.append(f"per-frame records {recorded} != pool counters {expected}")
        if sum(counts.values()) != self.frames:
            problems.append(f"states add up to {sum(counts.values())}, not {self.frames}")
        if problems:
            raise FrameLeakError("; ".join(problems) + f" (counts: {counts})")
        return counts

    def _debug_set_state(self, uint32_t frame, uint8_t state):
        """Overwrite one frame's state record (tests use it to prove check_frames detects
        corruption)."""
        if frame >= self.frames:
            raise IndexError(frame)
        self.state[frame] = state

    cdef int check_not_polled(self, str what) except -1:
        if self.pins:
            raise UmemBusyError(f"cannot close {what} while a pipeline is polling it "
                                "(stop the pipeline first; a stage may not close it)")
        return 0

    def close(self):
        """Close every port on this UMEM (sockets first), unregister it and release the
        memory (unmapped once no `buf`/`frame()` view refers to it). Raises UmemBusyError
        while a pipeline is polling it."""
        self.check_not_polled("a UMEM")
        for p in list(self.ports):
            p.close()
        self._unregister_if_idle()
        if self.area != NULL:
            self.area = NULL
            self._buf = None
            self._area = None

    @property
    def closed(self):
        return self.area == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"Umem(frames={self.frames}, frame_size={self.frame_size}, "
                f"headroom={self.headroom}, tx_frames={self.tx_frames}, "
                f"hugepages={bool(self.hugepages)})")


@cython.final
cdef class Burst:
    """Burst(capacity=64)\n--\n
    A reusable batch of up to `capacity` descriptors with parser metadata and verdicts.

    `desc` is a numpy array in the kernel `xdp_desc` layout (addr u64, len u32, options
    u32), `meta` has dtype `PKT_META`, `verdict` is int16 (a port index or a `Verdict`),
    `reason` the uint8 drop-reason code of each dropped packet. `n` is how many are valid.
    """

    def __cinit__(self, capacity=64):
        self.capacity = integer(capacity, "burst capacity", 1, 4096)
        self.desc = np.zeros(capacity, dtype=DESC)
        self.meta = np.zeros(capacity, dtype=PKT_META)
        self.verdict = np.zeros(capacity, dtype=np.int16)
        self.reason = np.full(capacity, DROP_UNSET, dtype=np.uint8)
        cdef uint8_t[::1] dv = self.desc.view(np.uint8)
        cdef uint8_t[::1] mv = self.meta.view(np.uint8)
        cdef int16_t[::1] vv = self.verdict
        cdef uint8_t[::1] wv = self.reason
        self.d = <xdp_desc *>&dv[0]
        self.m = <pkt_meta_t *>&mv[0]
        self.v = &vv[0]
        self.why = &wv[0]
        self.n = 0

    @property
    def n(self):
        """How many descriptors (from index 0) hold packets; at most `capacity`."""
        return self.n

    @n.setter
    def n(self, uint32_t value):
        if value > self.capacity:
            raise ValueError(f"n {value} exceeds the burst capacity {self.capacity}")
        self.n = value

    def __len__(self):
        return self.n

    def drop(self, mask, str reason="user_drop"):
        """Drop the packets `mask` selects (a bool array of length n, or packet indices),
        counted under drop reason `reason` (registered on first use, see
        `xpfdp.pipeline.drop_reason`). Packets already dropped keep their first reason and
        packets held by a CoS queue are left alone. Returns how many were dropped now."""
        cdef uint8_t code = <uint8_t>drop_reason(reason)
        sel = np.asarray(mask)
        if sel.dtype == np.bool_:
            if sel.shape != (self.n,):
                raise ValueError(f"drop: a bool mask needs shape ({self.n},), got {sel.shape}")
            sel = np.flatnonzero(sel)
        elif sel.dtype.kind in "iu":
            sel = sel.reshape(-1)
            if sel.size and (sel.min() < 0 or sel.max() >= self.n):
                raise IndexError(f"drop: packet index out of range (burst holds {self.n})")
        else:
            raise TypeError(f"drop: mask must be bool or integer indices, got {sel.dtype}")
        cdef uint32_t dropped = 0
        for i in sel.tolist():
            if not verdict_settled(self.v[i]):
                self.v[i] = VERDICT_DROP
                self.why[i] = code
                dropped += 1
        return dropped

    def frame(self, uint32_t i):
        """Zero-copy numpy view of packet i's bytes in the UMEM."""
        if i >= self.n:
            raise IndexError(f"packet {i} out of range (burst holds {self.n})")
        if self.umem is None or self.umem.area == NULL:
            raise ValueError("burst is not attached to an open UMEM")
        cdef uint64_t a = self.d[i].addr
        return self.umem._buf[a:a + self.d[i].len]

    cdef void swap_macs(self, uint32_t start, uint32_t count) noexcept nogil:
        cdef uint32_t i
        cdef uint8_t tmp[6]
        cdef uint8_t *p
        for i in range(start, start + count):
            if self.d[i].len < 12 or not self.umem.owns(self.d[i].addr, self.d[i].len):
                continue
            p = self.umem.area + self.d[i].addr
            memcpy(tmp, p, 6)
            memcpy(p, p + 6, 6)
            memcpy(p + 6, tmp, 6)

    def swap_mac_addresses(self, uint32_t start=0, count=None):
        """Swap destination and source MAC of packets [start, start+count) in place."""
        cdef uint32_t c = self._span(start, count)
        with nogil:
            self.swap_macs(start, c)

    cdef uint32_t _span(self, uint32_t start, count) except? 0xffffffff:
        if start > self.n:
            raise ValueError(f"start {start} beyond the burst's {self.n} packets")
        if count is None:
            return self.n - start
        if count < 0 or start + <uint32_t>count > self.n:
            raise ValueError(f"count {count} from {start} exceeds the burst's {self.n} packets")
        return count

    def __repr__(self):
        return f"Burst(capacity={self.capacity}, n={self.n})"


cdef class Port:
    """The port interface shared by XskPort and MemPort (not instantiated directly)."""

    def __init__(self, *args, **kwargs):
        if type(self) is Port:
            raise TypeError("Port is abstract: use XskPort or MemPort")

    def __dealloc__(self):
        free(self.pend)

    def set_mtu(self, mtu):
        """Set the IP MTU of this port's link in bytes (68..65535; 0: unknown, so the
        pipeline's MTU stage checks nothing). Packets longer than it are not sent out of the
        port as they are: see xpfdp.pipeline.MtuStage."""
        mtu = integer(mtu, "mtu", 0, 65535)
        if mtu != 0 and mtu < 68:
            raise ValueError(f"mtu must be 0 or in 68..65535, not {mtu}")
        self.mtu = mtu

    cdef int _alloc_pending(self, uint32_t capacity) except -1:
        """The pending-TX FIFO; a power of two (2 x a validated ring size), so indices wrap
        with a mask instead of a division per descriptor."""
        if capacity == 0 or capacity & (capacity - 1):
            raise ValueError(f"pending TX capacity {capacity} is not a power of two")
        self.pend = <xdp_desc *>calloc(capacity, sizeof(xdp_desc))
        if not self.pend:
            raise MemoryError()
        self.pend_cap = capacity
        return 0

    cdef uint32_t submit(self, const xdp_desc *d, uint32_t count) noexcept nogil:
        """Put frames the port already owns on the TX ring; return how many fit."""
        return 0

    cdef int c_queue_tx(self, Burst b, uint32_t start, uint32_t count) noexcept nogil:
        cdef int bad = self.umem.claim_held(b.d + start, count)
        cdef uint32_t i, tail
        cdef uint64_t a
        if bad >= 0:
            self.st.bad_desc += 1
            return -1 - bad
        for i in range(start, start + count):
            if self.pend_len == self.pend_cap:  # full: drop the oldest
                self.umem.route_home(self.pend[self.pend_head].addr)
                self.pend_head = (self.pend_head + 1) & (self.pend_cap - 1)
                self.pend_len -= 1
                self.st.tx_queue_drops += 1
            tail = (self.pend_head + self.pend_len) & (self.pend_cap - 1)
            self.pend[tail] = b.d[i]
            self.pend[tail].options = 0
            a = b.d[i].addr
            self.umem.state[a >> self.umem.frame_shift] = (
                (self.slot << SLOT_SHIFT) | FRAME_PENDING_TX)
            self.pend_len += 1
        self.umem.n_held -= count
        self.c_flush_tx()
        return <int>count

    cdef uint32_t c_flush_tx(self) noexcept nogil:
        """Move pending-TX frames, oldest first, onto the TX ring while it has room."""
        cdef uint32_t chunk, got, total = 0
        while self.pend_len:
            chunk = self.pend_cap - self.pend_head
            if chunk > self.pend_len:
                chunk = self.pend_len
            got = self.submit(self.pend + self.pend_head, chunk)
            self.pend_head = (self.pend_head + got) & (self.pend_cap - 1)
            self.pend_len -= got
            total += got
            if got < chunk:
                break
        return total

    cdef int c_rx(self, Burst b) noexcept nogil:
        return 0

    cdef int c_tx(self, Burst b, uint32_t start, uint32_t count) noexcept nogil:
        return 0

    cdef int c_recycle(self, Burst b, uint32_t start, uint32_t count) noexcept nogil:
        cdef int bad = self.umem.claim_held(b.d + start, count)
        cdef uint32_t i
        if bad >= 0:
            self.st.bad_desc += 1
            return -1 - bad
        self.umem.n_held -= count
        for i in range(start, start + count):
            self.umem.route_home(b.d[i].addr)
        return <int>count

    cdef int c_alloc_tx(self, Burst b, uint32_t count) noexcept nogil:
        cdef uint32_t i, n = count
        cdef uint64_t a
        if n > b.capacity:
            n = b.capacity
        if n > self.umem.n_free_tx:
            n = self.umem.n_free_tx
        for i in range(n):
            self.umem.n_free_tx -= 1
            a = self.umem.free_tx[self.umem.n_free_tx]
            self.umem.state[a >> self.umem.frame_shift] = FRAME_HELD
            b.d[i].addr = a
            b.d[i].len = 0
            b.d[i].options = 0
        self.umem.n_held += n
        b.n = n
        return <int>n

    cdef void c_service(self) noexcept nogil:
        pass

    cdef int c_wait(self, int timeout_ms) noexcept nogil:
        return 0

    cdef int c_fd(self) noexcept nogil:
        """The socket to poll for RX, or -1 when the port has none (in memory)."""
        return -1

    def _rx_ring_depth(self):
        return 0

    cdef int _ready(self, Burst b) except -1:
        if self.closed:
            raise ValueError(f"{type(self).__name__} is closed")
        if b.umem is not self.umem:
            if b.n and b.umem is not None:
                raise ValueError("burst holds frames of another UMEM")
            b.umem = self.umem
        return 0

    def rx_burst(self, Burst burst):
        """Receive up to burst.capacity packets into `burst`; return how many (also burst.n).

        The frames belong to the caller until tx_burst accepts them or recycle returns them.
        The burst must be empty (n == 0), so no held frame is forgotten.
        """
        self._ready(burst)
        if burst.n:
            raise ValueError(f"burst still holds {burst.n} frames: transmit or recycle them, "
                             "then set burst.n = 0")
        cdef int n
        with nogil:
            n = self.c_rx(burst)
        return n

    def tx_burst(self, Burst burst, uint32_t start=0, count=None):
        """Submit descriptors [start, start+count) for transmission; return how many the TX
        ring accepted (a prefix). The rest stay owned by the caller."""
        self._ready(burst)
        cdef uint32_t c = burst._span(start, count)
        cdef int n
        with nogil:
            n = self.c_tx(burst, start, c)
        if n < 0:
            raise ValueError(f"descriptor {start - 1 - n} does not name a frame held by the "
                             "caller (out of range, bad length, or already given back)")
        return n

    def recycle(self, Burst burst, uint32_t start=0, count=None):
        """Give frames [start, start+count) of `burst` back to their pools (drop them)."""
        self._ready(burst)
        cdef uint32_t c = burst._span(start, count)
        cdef int n
        with nogil:
            n = self.c_recycle(burst, start, c)
        if n < 0:
            raise ValueError(f"descriptor {start - 1 - n} does not name a frame held by the "
                             "caller (out of range, bad length, or already given back)")
        return n

    def queue_tx(self, Burst burst, uint32_t start=0, count=None):
        """Hand descriptors [start, start+count) to the port for transmission, in order.

        Unlike tx_burst the port takes every frame: what the TX ring cannot take now waits
        in a bounded FIFO (2 x ring_size) that every later call drains first; when it is
        full the oldest waiting frame is dropped (counted in tx_queue_drops). Returns count.
        """
        self._ready(burst)
        cdef uint32_t c = burst._span(start, count)
        cdef int n
        with nogil:
            n = self.c_queue_tx(burst, start, c)
        if n < 0:
            raise ValueError(f"descriptor {start - 1 - n} does not name a frame held by the "
                             "caller (out of range, bad length, or already given back)")
        return n

    def alloc_tx(self, Burst burst, uint32_t count):
        """Take up to `count` free transmit frames into `burst` (addr set, len 0); return
        how many."""
        self._ready(burst)
        if burst.n:
            raise ValueError("alloc_tx needs an empty burst (recycle or transmit its frames first)")
        cdef int n
        with nogil:
            n = self.c_alloc_tx(burst, count)
        return n

    def poll(self):
        """Reap completions, refill the fill ring and push out queued TX (no packets move
        to the caller)."""
        if self.closed:
            raise ValueError(f"{type(self).__name__} is closed")
        with nogil:
            self.c_service()

    def wait(self, int timeout_ms):
        """Block up to `timeout_ms` for received packets (GIL released); True if any."""
        cdef int r
        with nogil:
            r = self.c_wait(timeout_ms)
        return r > 0

    def stats(self):
        """Our counters plus frames in each state for this port (and kernel ones for XskPort)."""
        cdef dict out = self.st
        depth = self._rx_ring_depth()
        out["frames_fill_ring"] = self.n_kernel_rx - depth
        out["frames_rx_ring"] = depth
        out["frames_pending_tx"] = self.pend_len
        out["frames_tx_ring"] = self.n_tx_out
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@cython.final
cdef class XskPort(Port):
    """XskPort(ifname, queue=0, umem=None, *, mode='auto', ring_size=1024, zerocopy=None, fill_target=None, programs=None, busy_poll_us=0)\n--\n
    An AF_XDP socket on (ifname, queue) using frames of `umem`.

    The redirect program is attached on first use of an interface (`mode`: "auto" tries
    native then generic for this interface only) and detached when its last port closes;
    `programs` is the registry that does it (default: the process's `xpfdp.bpf.programs`).
    The first port of a UMEM uses the UMEM's fill/completion rings (primed before bind);
    later ports are created with xsk_socket__create_shared and their own rings. Bind is
    copy or zero-copy according to the real attach mode and confirmed with XDP_OPTIONS.
    `busy_poll_us` > 0 turns on busy polling for the socket (`set_busy_poll`).
    """

    def __cinit__(self):
        self.fd = -1
        self.closed = True

    def __init__(self, str ifname, queue=0, Umem umem=None, *, str mode="auto",
                 ring_size=1024, zerocopy=None, fill_target=None, programs=None,
                 busy_poll_us=0):
        cdef xsk_socket_config cfg
        cdef int ret = 0
        cdef bytes name_b
        cdef xdp_options opts
        cdef unsigned int optlen = sizeof(opts)
        if umem is None:
            raise TypeError("XskPort needs a Umem (umem=...)")
        queue = integer(queue, "queue", 0, 0x7FFFFFFF)
        ring_size = integer(ring_size, "ring_size", 0, 0x7FFFFFFF)
        validate_ring_size(ring_size)
        if mode not in ("auto", "native", "generic"):
            raise ValueError(f"mode must be 'auto', 'native' or 'generic', not {mode!r}")
        if zerocopy not in (None, True, False):
            raise TypeError("zerocopy must be None (auto), True or False")
        if zerocopy and mode == "generic":
            raise ValueError("zero-copy needs native XDP; mode='generic' is always copy mode")
        if queue < 0:
            raise ValueError(f"queue must be >= 0, got {queue}")
        if umem.closed:
            raise ValueError("UMEM is closed")
        self.umem = umem
        self.ifname = ifname
        self.queue = queue
        self.ring_size = ring_size
        self._alloc_pending(2 * ring_size)
        ft = min(2 * ring_size, umem.ring_size) if fill_target is None else int(fill_target)
        if ft < 1 or ft > umem.ring_size:
            raise ValueError(f"fill_target must be in [1, {umem.ring_size}]")
        self.fill_target = ft
        from xpfdp import bpf
        from xpfdp.bpf import MAX_QUEUES, ifindex_of, require_capabilities
        require_capabilities()
        ifindex_of(ifname)
        if queue >= MAX_QUEUES:
            raise ValueError(f"queue {queue} out of range [0, {MAX_QUEUES})")
        self.programs = bpf.programs if programs is None else programs
        self.program = self.programs.acquire(ifname, mode)
        try:
            self.attach_mode = self.program.mode
            umem._register()
            primary = not umem.rings_taken
            if primary:
                self.fillq = &umem.fill
                self.compq = &umem.comp
            else:
                self.fillq = &self.own_fill
                self.compq = &self.own_comp
            umem._attach_port(self)
            self.closed = False
            if primary:
                umem.rings_taken = True
                self.refill()  # prime before bind: the ring exists with the UMEM
            if self.attach_mode == "generic" or zerocopy is False:
                candidates = [XDP_COPY | XDP_USE_NEED_WAKEUP]
            elif zerocopy:
                candidates = [XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP]
            else:
                candidates = [XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP, XDP_COPY | XDP_USE_NEED_WAKEUP]
            name_b = ifname.encode()
            errors = []
            for flags in candidates:
                memset(&cfg, 0, sizeof(cfg))
                cfg.rx_size = ring_size
                cfg.tx_size = ring_size
                cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD
                cfg.xdp_flags = 0
                cfg.bind_flags = flags
                ret = self._create(name_b, primary, &cfg)
                if ret == 0:
                    break
                errors.append(f"{'zero-copy' if flags & XDP_ZEROCOPY else 'copy'}: "
                              f"{os.strerror(-ret)}")
            if ret:
                raise OSError(-ret, f"cannot bind AF_XDP socket to {ifname} queue {queue} "
                                    f"({self.attach_mode} XDP): {'; '.join(errors)}")
            self.fd = xsk_socket__fd(self.xsk)
            if getsockopt(self.fd, SOL_XDP, XDP_OPTIONS, &opts, &optlen) != 0:
                raise OSError(errno, f"getsockopt(XDP_OPTIONS): {strerror(errno).decode()}")
            self.zerocopy = (opts.flags & XDP_OPTIONS_ZEROCOPY) != 0
            if zerocopy and not self.zerocopy:
                raise OSError(_errno.EOPNOTSUPP, f"{ifname} queue {queue} bound without zero-copy")
            if not primary:
                self.refill()
            self.program.set_socket(queue, self.fd)
            if busy_poll_us:
                self.set_busy_poll(busy_poll_us)
            self.st.fill_empty = 0  # priming an empty ring is not a starvation event
            self._mtu_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.refresh_mtu()
        except BaseException:
            self.close()
            raise

    def set_busy_poll(self, busy_poll_us, budget=BUSY_POLL_BUDGET):
        """Busy polling on this socket: its receive, transmit and poll calls run the
        queue's NAPI in the calling thread for up to `busy_poll_us` µs (at most `budget`
        packets per run) and the kernel is asked to prefer that over its softirq
        (SO_PREFER_BUSY_POLL). 0 turns it off. It only takes over from the softirq when the
        device defers it (`napi_defer_hard_irqs`, `gro_flush_timeout` in sysfs); on veth it
        did not help (docs/performance.md)."""
        cdef int us = integer(busy_poll_us, "busy_poll_us", 0, MAX_BUSY_POLL_US)
        cdef int n = integer(budget, "budget", 1, 65535)
        cdef int prefer = 1 if us else 0
        if self.xsk == NULL:
            raise ValueError("port is closed")
        for name, opt, value in (("SO_PREFER_BUSY_POLL", SO_PREFER_BUSY_POLL, prefer),
                                 ("SO_BUSY_POLL", SO_BUSY_POLL, us),
                                 ("SO_BUSY_POLL_BUDGET", SO_BUSY_POLL_BUDGET, n)):
            if _set_int_option(self.fd, opt, value) != 0:
                raise OSError(errno, f"setsockopt({name}): {strerror(errno).decode()}")
        self.busy_poll_us = us

    def refresh_mtu(self):
        """Re-read the interface's MTU (SIOCGIFMTU through a socket made in its namespace,
        so it works from any thread or namespace) and return it."""
        if self._mtu_sock is None:
            raise ValueError("port is closed")
        req = struct.pack("16si", self.ifname.encode()[:15], 0)
        res = fcntl.ioctl(self._mtu_sock.fileno(), _SIOCGIFMTU, req)
        self.set_mtu(struct.unpack("16si", res)[1])
        return self.mtu

    cdef int _create(self, bytes name_b, bint primary, xsk_socket_config *cfg) except? 1:
        """Create/bind the socket, retrying EBUSY (the previous socket on this queue is
        still being torn down) within a bounded budget."""
        cdef int ret
        cdef const char *name = PyBytes_AsString(name_b)
        deadline = time.monotonic() + _BIND_RETRY_BUDGET_S
        while True:
            if primary:
                ret = xsk_socket__create(&self.xsk, name, self.queue, self.umem.kumem,
                                         &self.rx, &self.tx, cfg)
            else:
                ret = xsk_socket__create_shared(&self.xsk, name, self.queue, self.umem.kumem,
                                                &self.rx, &self.tx, self.fillq, self.compq, cfg)
            if ret != -_errno.EBUSY or time.monotonic() >= deadline:
                if ret:
                    self.xsk = NULL
                return ret
            time.sleep(_BIND_RETRY_SLEEP_S)

    def close(self):
        """Remove the XSKMAP entry, delete the socket, reclaim its frames, release the
        program (detached with its last port) and unregister an idle UMEM. Idempotent,
        and safe on a port whose construction failed part way. Raises UmemBusyError while
        a pipeline is polling it."""
        if not self.closed and self.umem is not None:
            self.umem.check_not_polled(f"port {self.ifname}:{self.queue}")
        self.closed = True
        if self._mtu_sock is not None:
            self._mtu_sock.close()
            self._mtu_sock = None
        try:
            if self.program is not None and self.fd >= 0:
                self.program.clear_socket(self.queue)
        finally:
            if self.xsk != NULL:
                xsk_socket__delete(self.xsk)
                self.xsk = NULL
            self.fd = -1
            if self.umem is not None and self in self.umem.ports:
                self.umem._reclaim(self.slot)
                self.n_kernel_rx = 0
                self.n_tx_out = 0
                self.pend_len = 0
                self.umem.ports.remove(self)
            try:
                if self.program is not None:
                    program, self.program = self.program, None
                    self.programs.release(program)
            finally:
                if self.umem is not None:
                    self.umem._unregister_if_idle()

    def __dealloc__(self):
        if self.xsk != NULL:
            xsk_socket__delete(self.xsk)

    def _rx_ring_depth(self):
        if self.xsk == NULL:
            return 0
        return xpfdp_load_acquire(self.rx.producer) - self.rx.cached_cons

    cdef uint32_t reap(self) noexcept nogil:
        cdef uint32_t idx, n, i
        if self.n_tx_out == 0:
            return 0
        n = xsk_ring_cons__peek(self.compq, self.n_tx_out, &idx)
        for i in range(n):
            self.umem.route_home(xsk_ring_cons__comp_addr(self.compq, idx + i)[0])
        xsk_ring_cons__release(self.compq, n)
        self.n_tx_out -= n
        self.st.completions += n
        return n

    cdef void refill(self) noexcept nogil:
        cdef uint32_t want, got, idx, i
        cdef uint64_t now, addr
        if self.n_kernel_rx == 0:
            self.st.fill_empty += 1
        if self.n_kernel_rx >= self.fill_target:
            return
        want = self.fill_target - self.n_kernel_rx
        if want > self.umem.n_pending_fill:
            want = self.umem.n_pending_fill
        if want > FILL_BATCH:
            want = FILL_BATCH
        if want == 0:
            return
        got = _reserve_up_to(self.fillq, want, &idx)
        for i in range(got):
            self.umem.n_pending_fill -= 1
            addr = self.umem.pending_fill[self.umem.n_pending_fill]
            xsk_ring_prod__fill_addr(self.fillq, idx + i)[0] = addr
            self.umem.state[addr >> self.umem.frame_shift] = (
                (self.slot << SLOT_SHIFT) | FRAME_KERNEL_RX)
        xsk_ring_prod__submit(self.fillq, got)
        self.n_kernel_rx += got
        self.st.fill_short += want - got
        if self.xsk == NULL or got == 0:
            return
        now = monotonic_ns()
        if xsk_ring_prod__needs_wakeup(self.fillq) or now - self.last_wake_ns > FILL_WAKE_SAFETY_NS:
            xpfdp_poll_in(self.fd, 0)
            self.last_wake_ns = now
            self.st.rx_wakeups += 1

    cdef void kick_tx(self) noexcept nogil:
        """sendto until the TX ring is drained; copy mode sends at most 32 per call and
        answers EAGAIN while more are queued."""
        cdef uint32_t tries = (self.n_tx_out + COPY_TX_PER_KICK - 1) // COPY_TX_PER_KICK + 1
        cdef uint32_t t
        cdef int e
        if not self.zerocopy or xsk_ring_prod__needs_wakeup(&self.tx):
            for t in range(tries):
                self.st.tx_kicks += 1
                if xpfdp_kick(self.fd) >= 0:
                    break
                e = errno
                if e == EAGAIN or e == EBUSY:
                    self.st.tx_kick_again += 1
                    if self.zerocopy:
                        break
                    continue
                self.st.tx_kick_errors += 1
                break

    cdef int c_rx(self, Burst b) noexcept nogil:
        cdef uint32_t idx, n, i
        cdef uint64_t nbytes = 0
        cdef const xdp_desc *d
        self.reap()
        if self.pend_len:
            self.c_flush_tx()
        self.refill()
        n = xsk_ring_cons__peek(&self.rx, b.capacity, &idx)
        for i in range(n):
            d = xsk_ring_cons__rx_desc(&self.rx, idx + i)
            b.d[i] = d[0]
            nbytes += d.len
            self.umem.state[d.addr >> self.umem.frame_shift] = FRAME_HELD
        xsk_ring_cons__release(&self.rx, n)
        self.n_kernel_rx -= n
        self.umem.n_held += n
        b.n = n
        self.st.rx_packets += n
        self.st.rx_bytes += nbytes
        return <int>n

    cdef uint32_t submit(self, const xdp_desc *src, uint32_t count) noexcept nogil:
        cdef uint32_t idx, got, i
        cdef uint64_t nbytes = 0
        cdef xdp_desc *d
        cdef uint8_t tx_state = (self.slot << SLOT_SHIFT) | FRAME_TX
        self.reap()
        got = _reserve_up_to(&self.tx, count, &idx)
        if got < count:
            self.st.tx_ring_full += 1
        for i in range(got):
            d = xsk_ring_prod__tx_desc(&self.tx, idx + i)
            d.addr = src[i].addr
            d.len = src[i].len
            d.options = 0
            nbytes += d.len
            self.umem.state[d.addr >> self.umem.frame_shift] = tx_state
        xsk_ring_prod__submit(&self.tx, got)
        self.n_tx_out += got
        self.st.tx_packets += got
        self.st.tx_bytes += nbytes
        if self.n_tx_out:
            self.kick_tx()
            self.reap()
        return got

    cdef int c_tx(self, Burst b, uint32_t start, uint32_t count) noexcept nogil:
        cdef uint32_t got
        cdef int bad = self.umem.claim_held(b.d + start, count)
        if bad >= 0:
            self.st.bad_desc += 1
            return -1 - bad
        got = self.submit(b.d + start, count)
        self.umem.n_held -= got
        if got < count:
            self.umem.unclaim(b.d + start + got, count - got)
        self.refill()  # fill keeps flowing even when TX is backed up
        return <int>got

    cdef void c_service(self) noexcept nogil:
        self.reap()
        self.c_flush_tx()
        if self.n_tx_out and not self.zerocopy:
            self.kick_tx()
            self.reap()
        self.refill()

    cdef int c_wait(self, int timeout_ms) noexcept nogil:
        if xsk_cons_nb_avail(&self.rx, 1):
            return 1
        return xpfdp_poll_in(self.fd, timeout_ms)

    cdef int c_fd(self) noexcept nogil:
        return self.fd

    def stats(self):
        """Kernel XDP_STATISTICS (six counters), our counters and frames per state."""
        cdef xdp_statistics ks
        cdef unsigned int optlen = sizeof(ks)
        out = Port.stats(self)
        if self.fd >= 0:
            if getsockopt(self.fd, SOL_XDP, XDP_STATISTICS, &ks, &optlen) != 0:
                raise OSError(errno, f"getsockopt(XDP_STATISTICS): {strerror(errno).decode()}")
            out.update(zip(KERNEL_STAT_NAMES, (
                ks.rx_dropped, ks.rx_invalid_descs, ks.tx_invalid_descs, ks.rx_ring_full,
                ks.rx_fill_ring_empty_descs, ks.tx_ring_empty_descs)))
        return out

    def __repr__(self):
        return (f"XskPort({self.ifname!r}, queue={self.queue}, attach={self.attach_mode!r}, "
                f"zerocopy={bool(self.zerocopy)}, ring_size={self.ring_size})")


@cython.final
cdef class MemPort(Port):
    """MemPort(umem, source=None, *, loop=False, ring_size=1024, capture=0, fill_target=None, mtu=1500)\n--\n
    A port in memory: RX replays frames (a FrameBatch, e.g. from read_pcap), TX copies
    into a capture buffer and completes at once. Same frame accounting as XskPort, so
    pipelines, tests and benchmarks run without root or a kernel.

    `source` needs `buf` (uint8), `offsets` (uint64) and `lengths` (uint32) like
    `xpfdp.pcap.FrameBatch`. `loop=True` replays it forever. `capture` is how many TX
    frames to keep (0: count only). `mtu` is the link MTU the pipeline checks (0: none).
    """

    def __init__(self, Umem umem, source=None, *, bint loop=False, ring_size=1024,
                 capture=0, fill_target=None, mtu=1500):
        if umem is None or umem.closed:
            raise ValueError("MemPort needs an open Umem")
        self.set_mtu(mtu)
        ring_size = integer(ring_size, "ring_size", 0, 0x7FFFFFFF)
        capture = integer(capture, "capture", 0, 1 << 24)
        validate_ring_size(ring_size)
        self.umem = umem
        self.ring_size = ring_size
        self._alloc_pending(2 * ring_size)
        self.loop = loop
        ft = min(2 * ring_size, umem.ring_size) if fill_target is None else int(fill_target)
        if ft < 1 or ft > umem.ring_size:
            raise ValueError(f"fill_target must be in [1, {umem.ring_size}]")
        self.fill_target = ft
        self.stock = <uint64_t *>calloc(ft, sizeof(uint64_t))
        if not self.stock:
            raise MemoryError()
        self.set_source(source)
        self.cap_frames = capture
        self.cap_frame_bytes = umem.frame_size
        self._cap_buf = np.zeros((capture, umem.frame_size), dtype=np.uint8)
        self._cap_len = np.zeros(capture, dtype=np.uint32)
        cdef uint8_t[:, ::1] cb
        cdef uint32_t[::1] cl
        if capture:
            cb = self._cap_buf
            cl = self._cap_len
            self.cap_buf = &cb[0, 0]
            self.cap_len = &cl[0]
        umem._attach_port(self)
        self.closed = False

    def __dealloc__(self):
        free(self.stock)

    def set_source(self, source):
        """Replace the frames RX replays (restarting at the first)."""
        cdef const uint8_t[::1] sb
        cdef const uint64_t[::1] so
        cdef const uint32_t[::1] sl
        self.pos = 0
        if source is None:
            self.n_src = 0
            return
        buf = np.ascontiguousarray(source.buf, dtype=np.uint8)
        off = np.ascontiguousarray(source.offsets, dtype=np.uint64)
        lens = np.ascontiguousarray(source.lengths, dtype=np.uint32)
        if len(off) != len(lens):
            raise ValueError("source offsets and lengths differ in length")
        if len(lens) and int((off + lens).max()) > len(buf):
            raise ValueError("source frame extends past its buffer")
        self._src_buf, self._src_off, self._src_len = buf, off, lens
        self.n_src = len(lens)
        if self.n_src:
            sb = buf if len(buf) else np.zeros(1, np.uint8)
            so = off
            sl = lens
            self.src_buf = &sb[0]
            self.src_off = &so[0]
            self.src_len = &sl[0]

    cdef void _restock(self) noexcept nogil:
        cdef uint64_t a
        while self.n_stock < self.fill_target and self.umem.n_pending_fill:
            self.umem.n_pending_fill -= 1
            a = self.umem.pending_fill[self.umem.n_pending_fill]
            self.umem.state[a >> self.umem.frame_shift] = (
                (self.slot << SLOT_SHIFT) | FRAME_KERNEL_RX)
            self.stock[self.n_stock] = a
            self.n_stock += 1
        self.n_kernel_rx = self.n_stock

    cdef int c_rx(self, Burst b) noexcept nogil:
        cdef uint32_t n = 0, room = self.umem.frame_size - self.umem.headroom - XDP_PACKET_HEADROOM
        cdef uint32_t length
        cdef uint64_t a, nbytes = 0
        if self.pend_len:
            self.c_flush_tx()
        self._restock()
        if self.n_stock == 0:
            self.st.fill_empty += 1
        while n < b.capacity and self.n_stock and self.n_src:
            if self.pos == self.n_src:
                if not self.loop:
                    break
                self.pos = 0
            length = self.src_len[self.pos]
            if length == 0 or length > room:
                self.st.rx_oversize += 1
                self.pos += 1
                continue
            self.n_stock -= 1
            a = self.stock[self.n_stock] + self.umem.headroom + XDP_PACKET_HEADROOM
            memcpy(self.umem.area + a, self.src_buf + self.src_off[self.pos], length)
            self.umem.state[a >> self.umem.frame_shift] = FRAME_HELD
            b.d[n].addr = a
            b.d[n].len = length
            b.d[n].options = 0
            nbytes += length
            n += 1
            self.pos += 1
        self.n_kernel_rx = self.n_stock
        self.umem.n_held += n
        b.n = n
        self.st.rx_packets += n
        self.st.rx_bytes += nbytes
        return <int>n

    cdef uint32_t submit(self, const xdp_desc *d, uint32_t count) noexcept nogil:
        cdef uint32_t i, got = count
        cdef uint64_t nbytes = 0
        if got > self.ring_size:
            got = self.ring_size
            self.st.tx_ring_full += 1
        for i in range(got):
            nbytes += d[i].len
            if self.n_captured < self.cap_frames:
                memcpy(self.cap_buf + <size_t>self.n_captured * self.cap_frame_bytes,
                       self.umem.area + d[i].addr, d[i].len)
                self.cap_len[self.n_captured] = d[i].len
                self.n_captured += 1
            elif self.cap_frames:
                self.st.capture_dropped += 1
            self.umem.route_home(d[i].addr)
        self.st.tx_packets += got
        self.st.tx_bytes += nbytes
        self.st.completions += got
        return got

    cdef int c_tx(self, Burst b, uint32_t start, uint32_t count) noexcept nogil:
        cdef uint32_t got = count if count <= self.ring_size else self.ring_size
        cdef int bad = self.umem.claim_held(b.d + start, got)
        if bad >= 0:
            self.st.bad_desc += 1
            return -1 - bad
        self.umem.n_held -= got
        self.submit(b.d + start, got)
        if got < count:
            self.st.tx_ring_full += 1
        return <int>got

    cdef void c_service(self) noexcept nogil:
        self.c_flush_tx()
        self._restock()

    cdef int c_wait(self, int timeout_ms) noexcept nogil:
        return 1 if (self.n_src and (self.loop or self.pos < self.n_src)) else 0

    def captured(self):
        """The captured TX frames, oldest first, as a list of bytes."""
        return [bytes(self._cap_buf[i, :self._cap_len[i]]) for i in range(self.n_captured)]

    def clear_capture(self):
        """Forget captured frames (the capture buffer is reused)."""
        self.n_captured = 0

    def close(self):
        """Return stocked frames to the UMEM and detach from it. Idempotent. Raises
        UmemBusyError while a pipeline is polling it."""
        if self.closed:
            return
        self.umem.check_not_polled("a MemPort")
        self.closed = True
        self.umem._reclaim(self.slot)
        self.n_stock = 0
        self.n_kernel_rx = 0
        self.pend_len = 0
        self.umem.ports.remove(self)

    def __repr__(self):
        return f"MemPort(frames={self.n_src}, loop={bool(self.loop)}, capture={self.cap_frames})"


# ---------------------------------------------------------------------------------------
# Blocking wait on several ports (the pipeline's idle path)

cdef int wait_any(PyObject** ports, uint32_t n_ports, int timeout_ms,
                  int extra_fd=-1) noexcept nogil:
    cdef int fds[17]
    cdef uint32_t k, n = n_ports if n_ports < 16 else 16
    for k in range(n):
        fds[k] = (<Port>ports[k]).c_fd()
    fds[n] = extra_fd
    return xpfdp_poll_in_many(fds, n + 1, timeout_ms)
