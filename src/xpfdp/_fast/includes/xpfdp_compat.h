/* Small C helpers every xpfdp extension shares, declared for Cython in compat.pxd:
   the monotonic clock, a read prefetch, the golden-ratio constant, the 64x64->128 multiply-fold used by the hashes,
   unaligned native-endian loads/stores, and the host byte order. */
#ifndef XPFDP_COMPAT_H
#define XPFDP_COMPAT_H

#include <stdint.h>
#include <string.h>
#include <time.h>

static inline uint64_t xpfdp_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A read prefetch into every cache level. GCC treats __builtin_prefetch as free of side
   effects, so a helper that only prefetches is judged pure and a call whose result is unused
   is deleted with its prefetch; the empty volatile asm is a side effect that keeps it. */
static inline void xpfdp_prefetch(const void *p) {
    __builtin_prefetch(p, 0, 3);
    __asm__ __volatile__("" : : "r"(p));
}

/* 2^64 / golden ratio, odd: the usual multiplier of multiplicative hashing. */
#define XPFDP_GOLDEN64 0x9E3779B97F4A7C15ull

/* Full 128-bit product of a and b, its two halves xored: every input bit reaches the
   result, at the cost of one multiply. */
static inline uint64_t xpfdp_mum(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t xpfdp_load_ne64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t xpfdp_load_ne32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t xpfdp_load_ne16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void xpfdp_store_ne16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void xpfdp_store_ne64(void *p, uint64_t v) { memcpy(p, &v, 8); }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define XPFDP_LITTLE_ENDIAN 0
#else
#define XPFDP_LITTLE_ENDIAN 1
#endif

#endif
