# Integer mixing shared by the hash tables of the Cython modules (routes, sessions); the
# flow-key hash is in flowkey.pxd.

from libc.stdint cimport uint8_t, uint64_t

from xpfdp._fast.includes.compat cimport GOLDEN64, load_ne64, mum


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    """splitmix64 finaliser: every input bit affects every output bit."""
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    x ^= x >> 31
    return x


cdef inline uint64_t hash_addr16(const uint8_t* p, uint64_t seed) noexcept nogil:
    """64-bit hash of a 16-byte address under `seed` (two words, each multiplied by a
    constant, folded by one data multiply)."""
    return mum(mum(load_ne64(p) ^ seed ^ 0xa0761d6478bd642fULL, 0xe7037ed1a0b428dbULL)
               ^ 0xff51afd7ed558ccdULL,
               mum(load_ne64(p + 8) ^ seed ^ 0x8ebc6af09c88c6e3ULL, 0x589965cc75374cc3ULL)
               ^ 0xc4ceb9fe1a85ec53ULL)
