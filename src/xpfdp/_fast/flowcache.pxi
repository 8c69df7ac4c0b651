# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class FlowCache:
    """FlowCache(sets=1024, ways=4)\n--\n
    Per-worker cache of forwarding decisions: `sets` × `ways` entries with LRU per set.

    An entry maps (ingress port, pre-NAT session key) to the session handle and next hop.
    It is valid only while the route generation and pipeline config generation it was made
    under still hold and its session handle still names a live record (a deleted, expired
    or replaced session fails the handle's generation check), so nothing stale is served.
    """

    def __cinit__(self, sets=1024, ways=4):
        self.sets = integer(sets, "flow cache sets", 0, 1 << 30)
        self.ways = integer(ways, "flow cache ways", 0, 1 << 16)
        if self.sets == 0 or self.sets & (self.sets - 1) or self.sets > (1 << 24):
            raise ValueError(f"flow cache sets must be a power of two in [1, 2^24], got {sets}")
        if self.ways == 0 or self.ways > 16:
            raise ValueError(f"flow cache ways must be in [1, 16], got {ways}")
        self.e = <fc_entry_t*>calloc(<size_t>self.sets * self.ways, sizeof(fc_entry_t))
        if self.e == NULL:
            raise MemoryError("flow cache")
        self.seed = 0x9E3779B97F4A7C15ULL

    def __dealloc__(self):
        free(self.e)

    cdef uint64_t hash_key(self, const skey_t* k, uint16_t ingress) noexcept nogil:
        """The set hash of (ingress, k); prefetches the set's entries."""
        cdef uint64_t h = flowkey_hash(k, self.seed ^ (ingress * GOLDEN64))
        prefetch(self.e + (h & (self.sets - 1)) * self.ways)
        return h

    cdef fc_entry_t* find(self, const skey_t* k, uint16_t ingress, uint64_t h,
                          uint64_t route_gen, uint64_t config_gen, SessionTable table,
                          srec_t** rec) noexcept nogil:
        """The valid entry for (ingress, k) (set hash `h`) with its live session record in
        `rec`, or NULL (a stale entry is invalidated and counted)."""
        cdef fc_entry_t* row = self.e + (h & (self.sets - 1)) * self.ways
        cdef uint32_t w
        for w in range(self.ways):
            if row[w].valid and row[w].ingress == ingress and flowkey_eq(&row[w].key, k):
                rec[0] = table.record_c(row[w].handle)
                if (row[w].route_gen != route_gen or row[w].config_gen != config_gen
                        or rec[0] == NULL):
                    row[w].valid = 0
                    self.st.stale += 1
                    self.st.misses += 1
                    return NULL
                self.tick += 1
                row[w].lru = self.tick
                self.st.hits += 1
                return &row[w]
        self.st.misses += 1
        return NULL

    cdef void insert(self, const skey_t* k, uint16_t ingress, uint64_t h, uint64_t route_gen,
                     uint64_t config_gen, int64_t handle, int32_t nh) noexcept nogil:
        """Cache a decision; `h` is hash_key(k, ingress), computed once per packet."""
        cdef fc_entry_t* row = self.e + (h & (self.sets - 1)) * self.ways
        cdef uint32_t w, victim = 0
        for w in range(self.ways):
            if not row[w].valid or (row[w].ingress == ingress and flowkey_eq(&row[w].key, k)):
                victim = w
                break
            if row[w].lru - row[victim].lru > 0x80000000u:   # older (wrap-safe)
                victim = w
        else:
            self.st.evictions += 1
        self.tick += 1
        row[victim].key = k[0]
        row[victim].ingress = ingress
        row[victim].route_gen = route_gen
        row[victim].config_gen = config_gen
        row[victim].handle = handle
        row[victim].nh = nh
        row[victim].lru = self.tick
        row[victim].valid = 1
        self.st.insertions += 1

    def clear(self):
        """Forget every entry (counters are kept)."""
        memset(self.e, 0, <size_t>self.sets * self.ways * sizeof(fc_entry_t))

    def __len__(self):
        cdef uint64_t i, n = 0
        for i in range(<uint64_t>self.sets * self.ways):
            n += self.e[i].valid
        return n

    def stats(self):
        """hits, misses, stale, insertions, evictions and the live entry count."""
        return {"hits": self.st.hits, "misses": self.st.misses, "stale": self.st.stale,
                "insertions": self.st.insertions, "evictions": self.st.evictions,
                "entries": len(self), "capacity": self.sets * self.ways}
