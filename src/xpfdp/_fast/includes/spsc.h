/* Single-producer single-consumer ring of fixed-size slots, shared by two worker threads.
 *
 * The producer owns `head`, the consumer owns `tail`; each publishes its index with a C11
 * release store and reads the other's with an acquire load, so a slot's bytes written
 * before the producer's publish are visible to the consumer after its acquire. Each side
 * keeps a private copy of the other's index and re-reads the shared one only when that
 * copy says the ring is full (producer) or empty (consumer): one shared cache-line read
 * per burst, not per packet. No locks, no read-modify-write instructions.
 */
#ifndef XPFDP_SPSC_H
#define XPFDP_SPSC_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    _Alignas(64) _Atomic uint32_t head;   /* next slot the producer writes */
    uint32_t tail_seen;                   /* producer's last view of tail */
    _Alignas(64) _Atomic uint32_t tail;   /* next slot the consumer reads */
    uint32_t head_seen;                   /* consumer's last view of head */
    _Alignas(64) uint32_t mask;           /* slots - 1 (slots is a power of two) */
    uint32_t slot_bytes;
    uint8_t *slots;
} xpfdp_spsc_t;

/* A ring of `slots` (power of two) slots of `slot_bytes` (multiple of 64); NULL on ENOMEM. */
static inline xpfdp_spsc_t *xpfdp_spsc_new(uint32_t slots, uint32_t slot_bytes) {
    xpfdp_spsc_t *r = aligned_alloc(64, sizeof(xpfdp_spsc_t));
    if (!r)
        return NULL;
    r->slots = aligned_alloc(64, (size_t)slots * slot_bytes);
    if (!r->slots) {
        free(r);
        return NULL;
    }
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->tail_seen = 0;
    r->head_seen = 0;
    r->mask = slots - 1;
    r->slot_bytes = slot_bytes;
    return r;
}

static inline void xpfdp_spsc_free(xpfdp_spsc_t *r) {
    if (r) {
        free(r->slots);
        free(r);
    }
}

/* Producer: the slot at offset k past head (k < xpfdp_spsc_room()). */
static inline uint8_t *xpfdp_spsc_prod_slot(xpfdp_spsc_t *r, uint32_t k) {
    uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    return r->slots + (size_t)((h + k) & r->mask) * r->slot_bytes;
}

/* Producer: free slots, re-reading tail only when the cached view shows fewer than `want`. */
static inline uint32_t xpfdp_spsc_room(xpfdp_spsc_t *r, uint32_t want) {
    uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t room = r->mask + 1 - (h - r->tail_seen);
    if (room < want) {
        r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        room = r->mask + 1 - (h - r->tail_seen);
    }
    return room;
}

/* Producer: make the next n written slots visible to the consumer. */
static inline void xpfdp_spsc_publish(xpfdp_spsc_t *r, uint32_t n) {
    uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    atomic_store_explicit(&r->head, h + n, memory_order_release);
}

/* Consumer: slots ready to read, re-reading head only when the cached view is empty. */
static inline uint32_t xpfdp_spsc_ready(xpfdp_spsc_t *r) {
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t n = r->head_seen - t;
    if (n == 0) {
        r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
        n = r->head_seen - t;
    }
    return n;
}

/* Consumer: the slot at offset k past tail (k < xpfdp_spsc_ready()). */
static inline const uint8_t *xpfdp_spsc_cons_slot(xpfdp_spsc_t *r, uint32_t k) {
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    return r->slots + (size_t)((t + k) & r->mask) * r->slot_bytes;
}

/* Consumer: give the next n read slots back to the producer. */
static inline void xpfdp_spsc_consume(xpfdp_spsc_t *r, uint32_t n) {
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    atomic_store_explicit(&r->tail, t + n, memory_order_release);
}

/* Waking a worker that sleeps in poll() while packets wait in its rings.
 *
 * The consumer announces it is about to sleep (seq_cst store), then looks at its rings
 * once more; a producer publishes, then (seq_cst fence) reads the flag and, only if the
 * consumer sleeps, writes its eventfd. Either the consumer sees the packets or the
 * producer sees the flag: no wake-up is lost, and a busy consumer costs producers one
 * fence per burst, never a system call. */
typedef struct {
    _Alignas(64) _Atomic uint32_t sleeping;
    int fd;                               /* eventfd, in the consumer's poll() set */
} xpfdp_waker_t;

static inline void xpfdp_waker_announce(xpfdp_waker_t *w) {
    atomic_store_explicit(&w->sleeping, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
}

static inline void xpfdp_waker_awake(xpfdp_waker_t *w) {
    uint64_t count;
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
    (void)!read(w->fd, &count, sizeof count);   /* non-blocking: clears a pending kick */
}

static inline void xpfdp_waker_kick(xpfdp_waker_t *w) {
    uint64_t one = 1;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->sleeping, memory_order_relaxed))
        (void)!write(w->fd, &one, sizeof one);
}

#endif
