# AF_XDP core: UMEM, frame pools, bursts and ports (XskPort on a kernel socket, MemPort in
# memory). Everything a per-packet loop needs is a cdef nogil method declared here, so the
# pipeline module can drive ports without touching Python objects.

from cpython.object cimport PyObject
from libc.stdint cimport int16_t, uint8_t, uint16_t, uint32_t, uint64_t

from xpfdp._fast.meta cimport pkt_meta_t
from xpfdp._fast.includes.libxdp cimport (
    xsk_ring_cons,
    xsk_ring_prod,
    xsk_socket,
    xsk_socket_config,
    xsk_umem,
)
from xpfdp._fast.includes.linux cimport xdp_desc


# Per-port counters kept in plain C fields (no atomics: one owner thread per port).
ctypedef struct port_stats_t:
    uint64_t rx_packets
    uint64_t rx_bytes
    uint64_t tx_packets
    uint64_t tx_bytes
    uint64_t tx_kicks
    uint64_t tx_kick_again      # sendto returned EAGAIN/EBUSY: kicked again
    uint64_t tx_kick_errors     # sendto failed otherwise (ENOBUFS, ENETDOWN, ...)
    uint64_t rx_wakeups         # poll(POLLIN) wakes of the driver for the fill ring
    uint64_t fill_empty         # refills that found no frame left with the kernel
    uint64_t fill_short         # fill slots wanted but not reserved (ring full)
    uint64_t tx_ring_full       # tx_burst calls that could not place every descriptor
    uint64_t completions
    uint64_t bad_desc           # descriptors refused by tx/recycle (not owned, out of range)
    uint64_t rx_oversize        # MemPort source frames too long for a frame (dropped)
    uint64_t capture_dropped    # MemPort TX frames not captured (capture buffer full)
    uint64_t tx_queue_drops     # oldest pending-TX frames dropped because the queue was full


cdef class Port


cdef class UmemArea:
    cdef uint8_t *addr
    cdef size_t nbytes                  # bytes exposed through the buffer protocol
    cdef size_t map_bytes               # bytes mapped (rounded up to huge pages)
    cdef bint keep_mapped               # still registered with the kernel: never unmap


cdef class Umem:
    cdef uint8_t *area
    cdef size_t area_bytes
    cdef size_t mmap_bytes
    cdef readonly bint hugepages
    cdef readonly uint32_t frames
    cdef readonly uint32_t frame_size
    cdef readonly uint32_t headroom
    cdef readonly uint32_t tx_frames
    cdef readonly uint32_t ring_size    # fill and completion ring entries (power of 2)
    cdef uint32_t frame_shift
    cdef uint64_t *free_tx
    cdef uint32_t n_free_tx
    cdef uint64_t *pending_fill
    cdef uint32_t n_pending_fill
    cdef uint8_t *state                 # per frame: (port slot << 3) | FRAME_*
    cdef uint32_t n_held
    cdef xsk_umem *kumem
    cdef xsk_ring_prod fill
    cdef xsk_ring_cons comp
    cdef bint rings_taken
    cdef list ports
    cdef object _buf
    cdef UmemArea _area                 # owns the mapping; numpy views keep it alive
    cdef uint32_t pins                  # pipelines polling right now: no close meanwhile

    cdef bint owns(self, uint64_t addr, uint32_t length) noexcept nogil
    cdef void route_home(self, uint64_t addr) noexcept nogil
    cdef int claim_held(self, xdp_desc *d, uint32_t count) noexcept nogil
    cdef void unclaim(self, xdp_desc *d, uint32_t count) noexcept nogil
    cdef int _attach_port(self, Port port) except -1
    cdef void _reclaim(self, uint8_t slot) noexcept nogil
    cdef int _register(self) except -1
    cdef int _unregister_if_idle(self) except -1
    cdef int check_not_polled(self, str what) except -1


cdef class Burst:
    cdef readonly object desc
    cdef readonly object meta
    cdef readonly object verdict
    cdef readonly object reason
    cdef xdp_desc *d
    cdef pkt_meta_t *m
    cdef int16_t *v
    cdef uint8_t *why          # drop reason code of a DROP verdict (verdict.pxd registry)
    cdef uint32_t n
    cdef readonly uint32_t capacity
    cdef readonly Umem umem

    cdef void swap_macs(self, uint32_t start, uint32_t count) noexcept nogil
    cdef uint32_t _span(self, uint32_t start, count) except? 0xffffffff


cdef class Port:
    cdef readonly Umem umem
    cdef port_stats_t st
    cdef uint8_t slot
    cdef uint32_t n_kernel_rx           # frames given to the fill ring, not yet received
    cdef uint32_t n_tx_out              # frames in the TX ring or in flight, not yet completed
    cdef uint32_t fill_target
    cdef xdp_desc *pend                 # pending-TX FIFO (ring of pend_cap descriptors)
    cdef uint32_t pend_head
    cdef uint32_t pend_len
    cdef uint32_t pend_cap
    cdef readonly bint closed
    cdef readonly uint32_t mtu          # IP MTU of the link in bytes (0: unknown, unchecked)

    cdef int c_rx(self, Burst b) noexcept nogil
    cdef int c_tx(self, Burst b, uint32_t start, uint32_t count) noexcept nogil
    cdef int c_recycle(self, Burst b, uint32_t start, uint32_t count) noexcept nogil
    cdef int c_alloc_tx(self, Burst b, uint32_t count) noexcept nogil
    cdef int c_queue_tx(self, Burst b, uint32_t start, uint32_t count) noexcept nogil
    cdef uint32_t c_flush_tx(self) noexcept nogil
    cdef uint32_t submit(self, const xdp_desc *d, uint32_t count) noexcept nogil
    cdef int _alloc_pending(self, uint32_t capacity) except -1
    cdef void c_service(self) noexcept nogil
    cdef int c_wait(self, int timeout_ms) noexcept nogil
    cdef int c_fd(self) noexcept nogil
    cdef int _ready(self, Burst b) except -1


cdef class XskPort(Port):
    cdef xsk_socket *xsk
    cdef xsk_ring_cons rx
    cdef xsk_ring_prod tx
    cdef xsk_ring_prod own_fill
    cdef xsk_ring_cons own_comp
    cdef xsk_ring_prod *fillq
    cdef xsk_ring_cons *compq
    cdef readonly int fd
    cdef readonly int busy_poll_us      # SO_BUSY_POLL of the socket (0: off)
    cdef readonly bint zerocopy
    cdef readonly uint32_t ring_size
    cdef uint64_t last_wake_ns
    cdef readonly str ifname
    cdef readonly int queue
    cdef readonly str attach_mode
    cdef readonly object program         # the XdpProgram on this interface (None once closed)
    cdef object programs                 # the ProgramRegistry that attached `program`
    cdef object _mtu_sock               # a socket in the interface's namespace, for SIOCGIFMTU

    cdef uint32_t reap(self) noexcept nogil
    cdef void refill(self) noexcept nogil
    cdef void kick_tx(self) noexcept nogil
    cdef int _create(self, bytes name_b, bint primary, xsk_socket_config *cfg) except? 1


cdef class MemPort(Port):
    cdef object _src_buf
    cdef object _src_off
    cdef object _src_len
    cdef const uint8_t *src_buf
    cdef const uint64_t *src_off
    cdef const uint32_t *src_len
    cdef uint64_t n_src
    cdef uint64_t pos
    cdef readonly bint loop
    cdef uint64_t *stock
    cdef uint32_t n_stock
    cdef readonly uint32_t ring_size
    cdef object _cap_buf
    cdef object _cap_len
    cdef uint8_t *cap_buf
    cdef uint32_t *cap_len
    cdef uint32_t cap_frames
    cdef uint32_t cap_frame_bytes
    cdef uint32_t n_captured

    cdef void _restock(self) noexcept nogil


# Block until any of the ports has something to receive (or `extra_fd`, when >= 0, is
# readable), or timeout_ms passes: one poll() over every socket, so traffic on one port
# never waits out a timeout spent on another.
cdef int wait_any(PyObject** ports, uint32_t n_ports, int timeout_ms,
                  int extra_fd=*) noexcept nogil
