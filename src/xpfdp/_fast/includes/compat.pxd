# Cython view of xpfdp_compat.h (this directory): clock, prefetch, multiply-fold, unaligned
# native-endian access, host byte order. Build include path: xpfdp.get_include().

from libc.stdint cimport uint16_t, uint32_t, uint64_t


cdef extern from "xpfdp_compat.h" nogil:
    uint64_t monotonic_ns "xpfdp_now_ns"() noexcept
    void prefetch "xpfdp_prefetch"(const void* p) noexcept
    uint64_t mum "xpfdp_mum"(uint64_t a, uint64_t b) noexcept
    uint64_t load_ne64 "xpfdp_load_ne64"(const void* p) noexcept
    uint32_t load_ne32 "xpfdp_load_ne32"(const void* p) noexcept
    uint16_t load_ne16 "xpfdp_load_ne16"(const void* p) noexcept
    void store_ne16 "xpfdp_store_ne16"(void* p, uint16_t v) noexcept
    void store_ne64 "xpfdp_store_ne64"(void* p, uint64_t v) noexcept
    const int LITTLE_ENDIAN "XPFDP_LITTLE_ENDIAN"
    const uint64_t GOLDEN64 "XPFDP_GOLDEN64"
