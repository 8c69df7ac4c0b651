# RouteTable layout and the nogil lookups a pipeline cimports (definitions in route.pyx).

cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

cdef struct route_slot_t:
    uint64_t hi          # masked address bits 127..64 (IPv4 sits in bits 127..96)
    uint64_t lo          # masked address bits 63..0
    int32_t value        # the route's value; NO_ROUTE marks an empty slot
    uint8_t family       # 4 or 6
    uint8_t prefix_len

cdef enum:
    NO_ROUTE = -1
    MAX_PREFIX_LEN = 128
    INITIAL_SLOTS = 64


# final: calls inside route.pyx are direct C calls the compiler can inline into the loops.
@cython.final
cdef class RouteTable:
    cdef route_slot_t* slots
    cdef uint64_t mask                                   # slot count - 1 (a power of two)
    cdef uint64_t count
    cdef uint32_t length_refs[2][MAX_PREFIX_LEN + 1]     # routes per (family, prefix length)
    cdef uint8_t lengths[2][MAX_PREFIX_LEN + 1]          # prefix lengths in use, longest first
    cdef int n_lengths[2]
    cdef readonly uint64_t generation

    cdef int _allocate(self, uint64_t n_slots) except -1
    cdef int64_t _find(self, uint64_t hi, uint64_t lo, uint8_t family,
                       uint8_t prefix_len) noexcept nogil
    cdef void _place(self, uint64_t hi, uint64_t lo, uint8_t family, uint8_t prefix_len,
                     int32_t value) noexcept nogil
    cdef int _grow(self) except -1
    cdef int64_t _find_prefix(self, prefix, route_slot_t* probe) except -2
    cdef void _erase(self, uint64_t i) noexcept nogil
    cdef void _length_used(self, uint8_t family, uint8_t prefix_len, int delta) noexcept nogil
    cdef int32_t lookup_words(self, uint64_t hi, uint64_t lo, uint8_t family) noexcept nogil
    cdef int32_t lookup_addr(self, const uint8_t* addr, uint8_t family) noexcept nogil
