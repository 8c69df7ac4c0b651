# libxdp's AF_XDP ring and socket API (<xdp/xsk.h>, package libxdp-dev): the ring inlines
# are used as they are, never re-implemented.

from libc.stdint cimport uint16_t, uint32_t, uint64_t

from xpfdp._fast.includes.linux cimport xdp_desc


cdef extern from "<xdp/xsk.h>" nogil:
    struct xsk_ring_prod:
        uint32_t cached_prod
        uint32_t cached_cons
        uint32_t mask
        uint32_t size
        uint32_t *producer
        uint32_t *consumer
        void *ring
        uint32_t *flags

    struct xsk_ring_cons:
        uint32_t cached_prod
        uint32_t cached_cons
        uint32_t mask
        uint32_t size
        uint32_t *producer
        uint32_t *consumer
        void *ring
        uint32_t *flags

    struct xsk_umem:
        pass

    struct xsk_socket:
        pass

    struct xsk_umem_config:
        uint32_t fill_size
        uint32_t comp_size
        uint32_t frame_size
        uint32_t frame_headroom
        uint32_t flags

    struct xsk_socket_config:
        uint32_t rx_size
        uint32_t tx_size
        uint32_t libxdp_flags
        uint32_t xdp_flags
        uint16_t bind_flags

    enum:
        XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD

    uint64_t *xsk_ring_prod__fill_addr(xsk_ring_prod *fill, uint32_t idx)
    const uint64_t *xsk_ring_cons__comp_addr(const xsk_ring_cons *comp, uint32_t idx)
    xdp_desc *xsk_ring_prod__tx_desc(xsk_ring_prod *tx, uint32_t idx)
    const xdp_desc *xsk_ring_cons__rx_desc(const xsk_ring_cons *rx, uint32_t idx)
    int xsk_ring_prod__needs_wakeup(const xsk_ring_prod *r)
    uint32_t xsk_prod_nb_free(xsk_ring_prod *r, uint32_t nb)
    uint32_t xsk_cons_nb_avail(xsk_ring_cons *r, uint32_t nb)
    uint32_t xsk_ring_prod__reserve(xsk_ring_prod *prod, uint32_t nb, uint32_t *idx)
    void xsk_ring_prod__submit(xsk_ring_prod *prod, uint32_t nb)
    uint32_t xsk_ring_cons__peek(xsk_ring_cons *cons, uint32_t nb, uint32_t *idx)
    void xsk_ring_cons__release(xsk_ring_cons *cons, uint32_t nb)

    int xsk_socket__fd(const xsk_socket *xsk)
    int xsk_umem__create(xsk_umem **umem, void *umem_area, uint64_t size,
                         xsk_ring_prod *fill, xsk_ring_cons *comp,
                         const xsk_umem_config *config)
    int xsk_socket__create(xsk_socket **xsk, const char *ifname, uint32_t queue_id,
                           xsk_umem *umem, xsk_ring_cons *rx, xsk_ring_prod *tx,
                           const xsk_socket_config *config)
    int xsk_socket__create_shared(xsk_socket **xsk_ptr, const char *ifname,
                                  uint32_t queue_id, xsk_umem *umem,
                                  xsk_ring_cons *rx, xsk_ring_prod *tx,
                                  xsk_ring_prod *fill, xsk_ring_cons *comp,
                                  const xsk_socket_config *config)
    int xsk_umem__delete(xsk_umem *umem)
    void xsk_socket__delete(xsk_socket *xsk)
