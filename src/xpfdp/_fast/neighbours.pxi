# Included by pipeline.pyx: the neighbour table next hops resolve their MACs through.

cdef extern from *:
    """
    static inline uint64_t xpfdp_load_u64(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void xpfdp_store_u64(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline uint32_t xpfdp_load_u32(const uint32_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void xpfdp_store_u32(uint32_t *p, uint32_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline uint8_t xpfdp_load_u8(const uint8_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void xpfdp_store_u8(uint8_t *p, uint8_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    """
    uint64_t xpfdp_load_u64(const uint64_t* p) nogil
    void xpfdp_store_u64(uint64_t* p, uint64_t v) nogil
    uint32_t xpfdp_load_u32(const uint32_t* p) nogil
    void xpfdp_store_u32(uint32_t* p, uint32_t v) nogil
    uint8_t xpfdp_load_u8(const uint8_t* p) nogil
    void xpfdp_store_u8(uint8_t* p, uint8_t v) nogil

CONNECTED = "connected"      # next-hop destination: the packet's own destination's MAC
# Counted by L2Stage (hold full) and by the pipeline (held past its time).
cdef uint8_t DROP_NEIGH_UNRESOLVED = drop_reason("neighbour_unresolved")


cdef inline uint64_t neigh_hash(uint8_t port, uint8_t af, const uint8_t* addr) noexcept nogil:
    cdef uint64_t a, b
    memcpy(&a, addr, 8)
    memcpy(&b, addr + 8, 8)
    return mix64(a * 0x9E3779B97F4A7C15ULL + b * 0xC2B2AE3D27D4EB4FULL
                 + (<uint64_t>port << 8 | af))


cdef inline bint neigh_key_eq(const neigh_entry_t* x, uint8_t port, uint8_t af,
                              const uint8_t* addr) noexcept nogil:
    return x.port == port and x.af == af and memcmp(x.addr, addr, 16) == 0


cdef bytes _addr16(address):
    """16 key bytes (IPv4 in bytes 0..3) of an address given as str or ipaddress object."""
    ip = ipaddress.ip_address(address)
    return ip.packed.ljust(16, b"\0")


@cython.final
cdef class NeighbourTable:
    """IP address on a pipeline port -> MAC, shared by every worker of a forwarder.

    One control thread writes (`set`, holding the GIL); workers read without locks: a key,
    once added, keeps its slot forever (open addressing, no deletion), and its MAC is one
    aligned 64-bit word stored atomically, 0 while the neighbour is unresolved.
    """

    def __cinit__(self, uint32_t capacity=4096):
        if capacity < 8 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 8, got {capacity}")
        self.e = <neigh_entry_t*>calloc(capacity, sizeof(neigh_entry_t))
        if self.e == NULL:
            raise MemoryError("neighbour table")
        self.capacity = capacity

    def __dealloc__(self):
        free(self.e)

    cdef int64_t find(self, uint8_t port, uint8_t af, const uint8_t* addr) noexcept nogil:
        """Slot of (port, af, addr), or -1."""
        cdef uint32_t mask = self.capacity - 1, k
        cdef uint32_t i = <uint32_t>neigh_hash(port, af, addr) & mask
        for k in range(self.capacity):
            if not xpfdp_load_u8(&self.e[i].used):
                return -1
            if neigh_key_eq(&self.e[i], port, af, addr):
                return i
            i = (i + 1) & mask
        return -1

    cdef int64_t slot(self, uint8_t port, uint8_t af, const uint8_t* addr) except -2:
        """Slot of (port, af, addr), added (unresolved) if new; MemoryError when 3/4 full."""
        cdef int64_t found = self.find(port, af, addr)
        cdef uint32_t mask = self.capacity - 1
        cdef uint32_t i
        if found >= 0:
            return found
        if (self.n_entries + 1) * 4 > self.capacity * 3:
            raise MemoryError(f"neighbour table full ({self.n_entries} entries)")
        i = <uint32_t>neigh_hash(port, af, addr) & mask
        while self.e[i].used:
            i = (i + 1) & mask
        memcpy(self.e[i].addr, addr, 16)
        self.e[i].af = af
        self.e[i].port = port
        self.e[i].lladdr = 0
        xpfdp_store_u8(&self.e[i].used, 1)     # publish: the key is complete
        self.n_entries += 1
        return i

    def set(self, int port, address, mac):
        """Record that `address` on pipeline port `port` has MAC `mac` ("aa:bb:.." or
        bytes); None marks it unresolved (packets to it are dropped, never misdirected)."""
        cdef bytes key = _addr16(address)
        cdef uint8_t af = ipaddress.ip_address(address).version
        cdef uint64_t word = 0
        cdef bytes raw
        if not 0 <= port < MAX_PORTS:
            raise ValueError(f"port {port} out of range [0, {MAX_PORTS})")
        if mac is not None:
            raw = _mac(mac)
            memcpy(&word, <const char*>raw, 6)
            (<uint8_t*>&word)[6] = 1
        cdef int64_t i = self.slot(<uint8_t>port, af, key)
        xpfdp_store_u64(&self.e[i].lladdr, word)

    def get(self, int port, address):
        """The MAC of `address` on `port` ("aa:bb:..") or None (unknown or unresolved)."""
        cdef bytes key = _addr16(address)
        cdef uint8_t af = ipaddress.ip_address(address).version
        if not 0 <= port < MAX_PORTS:
            return None
        cdef int64_t i = self.find(<uint8_t>port, af, key)
        if i < 0:
            return None
        return _mac_text(xpfdp_load_u64(&self.e[i].lladdr))

    def entries(self):
        """Every known neighbour as {(port, address): MAC or None}."""
        out = {}
        cdef uint32_t i
        for i in range(self.capacity):
            if self.e[i].used:
                raw = bytes(<uint8_t[:16]>self.e[i].addr)
                ip = ipaddress.ip_address(raw[:4] if self.e[i].af == 4 else raw)
                out[(int(self.e[i].port), ip)] = _mac_text(xpfdp_load_u64(&self.e[i].lladdr))
        return out

    def __len__(self):
        return self.n_entries


cdef inline bint neigh_valid(uint64_t word) noexcept nogil:
    """A neighbour word holds the MAC in its first 6 bytes in memory and 1 in byte 6."""
    return (<uint8_t*>&word)[6] != 0


cdef object _mac_text(uint64_t word):
    if not neigh_valid(word):
        return None
    return bytes((<uint8_t*>&word)[:6]).hex(":")
