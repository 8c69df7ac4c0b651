# SessionTable C layout and the nogil entry points a pipeline cimports.
#
# Keys, NAT decisions and per-session metadata are packed C structs with numpy twins
# (KEY_DTYPE, DECISION_DTYPE, META_DTYPE in session.pyx, built from these offsets).
# Handles are int64: (generation << 32) | slot; -1 means "no session".

cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from xpfdp._fast.meta cimport pkt_meta_t

from xpfdp._fast.lib.flowkey cimport skey_t

# The per-session forwarding decision: NAT rewrites plus where the packet goes.
ctypedef struct sdecision_t:
    uint8_t nat_flags     # NAT_* bits below
    uint8_t disposition   # DISP_* below
    uint16_t rsp          # rewritten source port (NAT_RSP)
    uint16_t rdp          # rewritten destination port (NAT_RDP)
    uint16_t egress_port  # pipeline egress port / next-hop index the decision resolves to
    uint8_t rs[16]        # rewritten source address (NAT_RS)
    uint8_t rd[16]        # rewritten destination address (NAT_RD)

ctypedef struct smeta_t:
    int32_t owner_rg      # owning redundancy group; <= 0 means none (never indexed)
    uint16_t ingress_zone
    uint16_t egress_zone
    uint8_t flags         # SM_* bits below
    uint8_t pad[3]

# A decision without its NAT addresses (the first 8 bytes of sdecision_t).
ctypedef struct sdec_head_t:
    uint8_t nat_flags
    uint8_t disposition
    uint16_t rsp
    uint16_t rdp
    uint16_t egress_port

# smeta_t's layout, with origin and state in its pad bytes.
ctypedef struct srmeta_t:
    int32_t owner_rg
    uint16_t ingress_zone
    uint16_t egress_zone
    uint8_t flags         # SM_* bits
    uint8_t origin        # ORIGIN_* below
    uint8_t state         # ST_* below
    uint8_t tclass        # idle timeout: index into SessionTable.tpal (seconds)

# One slab slot (88 bytes). NAT addresses live in a side pool (only sessions with NAT_RS
# or NAT_RD use one): addr_ref is a cell of addr1 (16 bytes, shared by every session
# rewriting to the same address: NAT pools are small) when one of the two is set, of addr2
# (32 bytes: rs then rd) when both are, NO_SLOT otherwise. Free slots are chained
# through rg_next. Read the full decision with SessionTable.decision_c.
ctypedef struct srec_t:
    skey_t key
    sdec_head_t dec
    srmeta_t meta
    uint32_t generation
    uint64_t last_seen_ns
    uint32_t wheel_tick   # low 32 bits of the tick this session is scheduled at
    uint32_t rg_prev      # owner-RG list links (NO_SLOT at the ends)
    uint32_t rg_next
    uint32_t addr_ref

# Reference-counted interning of addr1 cells: an open-addressing set of cell indices
# (power-of-two capacity, linear probing, backward-shift deletion) keyed by the address.
ctypedef struct sintern_t:
    uint32_t* refs        # per addr1 cell: how many records use it
    uint32_t refs_cap
    uint32_t* slots       # cell index or NO_SLOT
    uint32_t cap
    uint32_t count

# A pool of fixed-size address cells, free cells chained through their first 4 bytes.
ctypedef struct saddr_pool_t:
    uint8_t* cells
    uint32_t cap
    uint32_t hwm
    uint32_t free_head
    uint32_t used

# Open-addressing index: slots hold (hash tag << 32) | record slot; linear probing with
# backward-shift deletion (no tombstones), home bucket from the tag by fast range reduction.
ctypedef struct sindex_t:
    uint64_t* slots
    uint32_t cap
    uint32_t count

# 8-byte wheel entry: the record slot and the low 32 bits of the tick it was scheduled at.
# It is current only while the slot is live and its record's wheel_tick has those low bits;
# anything else is a stale or gone entry (a reused slot's new session owns its own entry).
ctypedef struct swheel_entry_t:
    uint32_t slot
    uint32_t tick

ctypedef struct sbucket_t:
    swheel_entry_t* buf
    uint32_t head
    uint32_t len
    uint32_t cap

ctypedef struct sdelta_t:
    uint8_t kind          # DELTA_OPEN / DELTA_CLOSE
    uint8_t origin
    uint8_t fabric_redirect_sync
    uint8_t pad
    skey_t key
    sdecision_t dec
    smeta_t meta

# What records(), entry() and expire() hand out.
ctypedef struct ssession_t:
    int64_t handle
    uint64_t last_seen_ns
    uint64_t expires_after_ns
    uint64_t wheel_tick
    skey_t key
    sdecision_t dec
    smeta_t meta
    uint8_t origin
    uint8_t closing
    uint8_t valid
    uint8_t pad

cdef enum:
    NAT_RS = 0x01
    NAT_RD = 0x02
    NAT_RSP = 0x04
    NAT_RDP = 0x08
    NAT_64 = 0x10
    NAT_PTV6 = 0x20

cdef enum:
    DISP_LOCAL_DELIVERY = 0
    DISP_FORWARD_CANDIDATE = 1
    DISP_FABRIC_REDIRECT = 2
    DISP_HA_INACTIVE = 3
    DISP_POLICY_DENIED = 4
    DISP_NO_ROUTE = 5
    DISP_MISSING_NEIGHBOR = 6
    DISP_DISCARD_ROUTE = 7
    DISP_NEXT_TABLE_UNSUPPORTED = 8

cdef enum:
    ORIGIN_FORWARD_FLOW = 0
    ORIGIN_REVERSE_FLOW = 1
    ORIGIN_LOCAL_MISS = 2
    ORIGIN_MISSING_NEIGHBOR_SEED = 3
    ORIGIN_SYNC_IMPORT = 4
    ORIGIN_SHARED_MATERIALIZE = 5
    ORIGIN_SHARED_PROMOTE = 6
    ORIGIN_WORKER_LOCAL_IMPORT = 7
    ORIGIN_COUNT = 8

cdef enum:
    SM_FABRIC_INGRESS = 0x01
    SM_REVERSE = 0x02

cdef enum:
    ST_LIVE = 0x01
    ST_CLOSING = 0x02

cdef enum:
    DELTA_OPEN = 1
    DELTA_CLOSE = 2


# final: method calls are direct C calls (no vtable), so the compiler can inline them
@cython.final
cdef class SessionTable:
    cdef srec_t* recs
    cdef uint32_t rec_cap
    cdef uint32_t rec_hwm
    cdef uint32_t free_head
    cdef uint64_t seed
    cdef public uint32_t max_sessions
    cdef uint32_t tcp_timeout_s
    cdef uint32_t udp_timeout_s
    cdef uint32_t icmp_timeout_s
    # timeout palette: the distinct idle timeouts (s) records refer to by tclass
    cdef uint32_t tpal[256]
    cdef uint32_t tpal_len
    cdef uint8_t cls_tcp
    cdef uint8_t cls_udp
    cdef uint8_t cls_icmp
    cdef uint8_t cls_closing
    cdef uint8_t cls_other
    cdef sindex_t primary
    cdef sindex_t natrev
    cdef sindex_t fwire
    cdef sindex_t alias
    cdef saddr_pool_t addr1   # 16-byte cells: the one NAT address of a session
    cdef saddr_pool_t addr2   # 32-byte cells: rs and rd of a session rewriting both
    cdef sintern_t intern1    # address -> shared addr1 cell
    # owner-RG map: rg -> (head slot, count), open addressing with backward-shift deletion
    cdef int32_t* rg_keys
    cdef uint32_t* rg_heads
    cdef uint32_t* rg_counts
    cdef uint32_t rg_cap
    cdef uint32_t rg_used
    # timer wheel
    cdef sbucket_t wheel[256]
    cdef uint64_t cursor_tick
    cdef bint wheel_started
    cdef uint64_t wheel_entries
    cdef uint64_t last_gc_ns_
    cdef bint gc_started
    cdef uint64_t pop_stats[5]
    # delta queue (ring, grows up to MAX_SESSION_DELTAS)
    cdef sdelta_t* deltas
    cdef uint32_t delta_cap
    cdef uint32_t delta_head
    cdef uint32_t delta_len
    # counters (see stats())
    cdef uint64_t c_installs
    cdef uint64_t c_replacements
    cdef uint64_t c_create_drops
    cdef uint64_t c_alloc_failures
    cdef uint64_t c_lookups
    cdef uint64_t c_hits
    cdef uint64_t c_alias_hits
    cdef uint64_t c_nat_lookups
    cdef uint64_t c_nat_hits
    cdef uint64_t c_wire_lookups
    cdef uint64_t c_wire_hits
    cdef uint64_t c_touches
    cdef uint64_t c_deletes
    cdef uint64_t c_expired
    cdef uint64_t c_synced_upserts
    cdef uint64_t c_synced_rejects
    cdef uint64_t c_updates
    cdef uint64_t c_update_rejects
    cdef uint64_t c_delta_pushed
    cdef uint64_t c_delta_drops
    cdef uint64_t c_delta_drained
    cdef bint busy        # a batch call is running without the GIL (see _idle)

    # nogil entry points for the pipeline
    cdef int64_t lookup_c(self, const skey_t* k, uint64_t now_ns, uint8_t tcp_flags,
                          bint refresh, bint* via_alias) noexcept nogil
    cdef int64_t install_c(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                           uint8_t origin, uint64_t now_ns, uint8_t tcp_flags) noexcept nogil
    cdef int install_pair_c(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                            uint64_t now_ns, uint8_t tcp_flags, uint16_t reverse_egress_port,
                            int64_t* out_fwd, int64_t* out_rev) noexcept nogil
    cdef int64_t find_forward_nat_c(self, const skey_t* reply) noexcept nogil
    cdef int64_t find_forward_wire_c(self, const skey_t* wire) noexcept nogil
    cdef bint touch_handle_c(self, int64_t handle, uint64_t now_ns) noexcept nogil
    cdef srec_t* record_c(self, int64_t handle) noexcept nogil
    cdef void decision_c(self, const srec_t* r, sdecision_t* out) noexcept nogil

    cdef int64_t lookup_h(self, const skey_t* k, uint64_t h, uint64_t now_ns, uint8_t tcp_flags,
                          bint refresh, bint* via_alias) noexcept nogil
    cdef int64_t find_nat_h(self, const skey_t* reply, uint64_t h) noexcept nogil
    cdef int64_t find_wire_h(self, const skey_t* wire, uint64_t h) noexcept nogil

    # internals
    cdef uint64_t hash_c(self, const skey_t* k) noexcept nogil
    cdef void prefetch_home(self, sindex_t* ix, uint64_t h) noexcept nogil
    cdef bint prefetch_record(self, sindex_t* ix, uint64_t h) noexcept nogil
    cdef bint matches(self, int kind, uint32_t slot, const skey_t* k) noexcept nogil
    cdef int64_t idx_pos(self, sindex_t* ix, int kind, const skey_t* k, uint64_t h) noexcept nogil
    cdef bint idx_reserve(self, sindex_t* ix, uint32_t extra) noexcept nogil
    cdef void idx_upsert(self, sindex_t* ix, int kind, const skey_t* k, uint32_t slot) noexcept nogil
    cdef void idx_upsert_h(self, sindex_t* ix, int kind, const skey_t* k, uint64_t h,
                           uint32_t slot) noexcept nogil
    cdef int64_t idx_probe(self, sindex_t* ix, int kind, const skey_t* k, uint64_t h,
                           uint32_t* empty_at) noexcept nogil
    cdef void idx_remove_value(self, sindex_t* ix, uint64_t h, uint32_t slot) noexcept nogil
    cdef void idx_delete_at(self, sindex_t* ix, uint32_t pos) noexcept nogil
    cdef void idx_raw_put(self, sindex_t* ix, uint64_t h, uint32_t slot) noexcept nogil
    cdef bint reserve_insert(self) noexcept nogil
    cdef void rec_write(self, srec_t* r, const sdecision_t* d, const smeta_t* m,
                        uint8_t origin) noexcept nogil
    cdef void rec_release_addrs(self, srec_t* r) noexcept nogil
    cdef bint intern_reserve(self) noexcept nogil
    cdef uint32_t intern_acquire(self, const uint8_t* addr) noexcept nogil
    cdef void intern_release(self, uint32_t cell) noexcept nogil
    cdef void rec_meta_out(self, const srec_t* r, smeta_t* out) noexcept nogil
    cdef uint32_t slab_alloc(self) noexcept nogil
    cdef void slab_free(self, uint32_t slot) noexcept nogil
    cdef int64_t primary_slot(self, const skey_t* k) noexcept nogil
    cdef void index_secondary(self, uint32_t slot) noexcept nogil
    cdef void unindex_secondary(self, uint32_t slot) noexcept nogil
    cdef int64_t rg_find(self, int32_t rg) noexcept nogil
    cdef bint rg_reserve(self) noexcept nogil
    cdef void rg_delete_at(self, uint32_t pos) noexcept nogil
    cdef bint rg_link(self, uint32_t slot) noexcept nogil
    cdef void rg_unlink(self, uint32_t slot) noexcept nogil
    cdef bint remove_slot(self, uint32_t slot, uint64_t h) noexcept nogil
    cdef bint remove_key(self, const skey_t* k) noexcept nogil
    cdef bint remove_key_h(self, const skey_t* k, uint64_t h) noexcept nogil
    cdef uint8_t timeout_class(self, uint8_t proto, uint8_t tcp_flags) noexcept nogil
    cdef int _palette_class(self, uint32_t secs)
    cdef object _compact_palette(self)
    cdef void wheel_observe(self, uint64_t now_ns) noexcept nogil
    cdef void wheel_append(self, uint32_t slot, uint64_t tick) noexcept nogil
    cdef void rec_see(self, srec_t* r, uint8_t proto, uint8_t tcp_flags) noexcept nogil
    cdef uint64_t wheel_target(self, const srec_t* r, uint64_t now_tick) noexcept nogil
    cdef void push_to_wheel(self, uint32_t slot, uint64_t now_ns) noexcept nogil
    cdef void push_delta(self, uint8_t kind, const srec_t* r, uint8_t fabric_sync) noexcept nogil
    cdef int64_t insert_new(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                            uint8_t origin, uint64_t now_ns, uint8_t tcp_flags,
                            bint capped, bint emit) noexcept nogil
    cdef void fill_session(self, uint32_t slot, ssession_t* out) noexcept nogil
    cdef Py_ssize_t expire_c(self, uint64_t now_ns, ssession_t** buf, size_t* cap) noexcept nogil
    cdef object _lookup_batch(self, keys, uint64_t now_ns, out_handles, tcp_flags,
                              out_via_alias, bint refresh)
    cdef object _find_batch(self, keys, out_handles, bint nat)
    cdef object _rg_walk(self, rgs, int mode)
    cdef object _check_secondary(self, str name, int kind)
    cdef sindex_t* _index_named(self, str name) except NULL
    cdef object _idle(self)
