# Kernel declarations: AF_XDP (<linux/if_xdp.h>: the descriptor every ring, burst and queue
# carries, socket statistics and options) and the mmap calls behind a UMEM.

from libc.stdint cimport uint32_t, uint64_t


cdef extern from "<linux/if_xdp.h>":
    struct xdp_desc:
        uint64_t addr
        uint32_t len
        uint32_t options

    struct xdp_statistics:
        uint64_t rx_dropped
        uint64_t rx_invalid_descs
        uint64_t tx_invalid_descs
        uint64_t rx_ring_full
        uint64_t rx_fill_ring_empty_descs
        uint64_t tx_ring_empty_descs

    struct xdp_options:
        uint32_t flags

    enum:
        XDP_COPY
        XDP_ZEROCOPY
        XDP_USE_NEED_WAKEUP
        XDP_STATISTICS
        XDP_OPTIONS
        XDP_OPTIONS_ZEROCOPY
        XDP_PACKET_HEADROOM


cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int madvise(void *addr, size_t length, int advice)
    enum:
        PROT_READ
        PROT_WRITE
        MAP_PRIVATE
        MAP_ANONYMOUS
        MAP_POPULATE
        MAP_HUGETLB
        MADV_HUGEPAGE
    void *MAP_FAILED
