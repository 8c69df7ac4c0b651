# SessionTable C layout and the nogil entry points a pipeline cimports.
#
# Keys, NAT decisions and per-session metadata are packed C structs with numpy twins
# (KEY_DTYPE, DECISION_DTYPE, META_DTYPE in session.pyx, built from these offsets).
# Handles are int64: (generation << 32) | slot; -1 means "no session".
#
# The table's state is a set of plain structs, one per concern, each operated on by the
# free functions of one file included into session.pyx (one extension, so every call is a
# direct C call):
#   session_keys.pxi    key hash/equality and the key transforms of a NAT session
#   session_addrs.pxi   NAT address cells and their interning   (saddrs_t)
#   session_index.pxi   open-addressing indices                  (sindex_t)
#   session_wheel.pxi   idle timeouts and the timer wheel        (stimeouts_t, swheel_t)
#   session_deltas.pxi  the state-sync delta queue and its feed  (sdeltaq_t)
#   session_core.pxi    slab, insert/remove/lookup over all of them (stable_t)
#   session_check.pxi   the O(N) invariant checker (tests)
# The design is described in docs/sessions.md.

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

# One slab slot (80 bytes). NAT addresses live in a side pool (only sessions with NAT_RS
# or NAT_RD use one): addr_ref is a cell of the 16-byte pool (shared by every session
# rewriting to the same address: NAT pools are small) when one of the two is set, of the
# 32-byte pool (rs then rd) when both are, NO_SLOT otherwise. A free slot chains the free
# list through addr_ref. Read the full decision with SessionTable.decision_c.
ctypedef struct srec_t:
    skey_t key
    sdec_head_t dec
    srmeta_t meta
    uint32_t generation
    uint64_t last_seen_ns
    uint32_t wheel_tick   # low 32 bits of the tick this session is scheduled at
    uint32_t addr_ref     # live: NAT address cell or NO_SLOT; free: next free slot

# Records in one array that grows by doubling; handles stay valid across growth.
ctypedef struct sslab_t:
    srec_t* recs
    uint32_t cap
    uint32_t hwm          # slots ever used: recs[hwm:] were never handed out
    uint32_t free_head

# A pool of fixed-size address cells, free cells chained through their first 4 bytes.
ctypedef struct saddr_pool_t:
    uint8_t* cells
    uint32_t cap
    uint32_t hwm
    uint32_t free_head
    uint32_t used

# Reference-counted interning of 16-byte cells: an open-addressing set of cell indices
# (power-of-two capacity, linear probing, backward-shift deletion) keyed by the address.
ctypedef struct sintern_t:
    uint32_t* refs        # per cell: how many records use it
    uint32_t refs_cap
    uint32_t* slots       # cell index or NO_SLOT
    uint32_t cap
    uint32_t count

# NAT addresses of all records (session_addrs.pxi).
ctypedef struct saddrs_t:
    saddr_pool_t one      # 16-byte cells: the one NAT address of a session, interned
    saddr_pool_t two      # 32-byte cells: rs and rd of a session rewriting both
    sintern_t intern      # address -> shared cell of `one`

# Open-addressing index: slots hold (hash tag << 32) | record slot; linear probing with
# backward-shift deletion (no tombstones), home bucket from the tag by fast range reduction.
ctypedef struct sindex_t:
    uint64_t* slots
    uint32_t cap
    uint32_t count

# Idle timeouts: records name theirs by a one-byte class into a palette of seconds.
ctypedef struct stimeouts_t:
    uint32_t palette_s[256]
    uint32_t palette_len
    uint32_t tcp_s
    uint32_t udp_s
    uint32_t icmp_s
    uint8_t cls_tcp
    uint8_t cls_udp
    uint8_t cls_icmp
    uint8_t cls_closing
    uint8_t cls_other

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

# The GC timer wheel: 256 buckets of one 1 s tick each (session_wheel.pxi).
ctypedef struct swheel_t:
    sbucket_t buckets[256]
    uint64_t cursor_tick  # next tick the GC processes
    uint64_t entries
    uint64_t last_gc_ns
    uint64_t pop_stats[5] # POP_* of the last expire
    bint started          # cursor_tick set from the first timestamp seen
    bint gc_started

ctypedef struct sdelta_t:
    uint8_t kind          # DELTA_OPEN / DELTA_CLOSE
    uint8_t origin
    uint16_t reverse_egress_port  # egress port of the session's reverse entry
    skey_t key
    sdecision_t dec
    smeta_t meta

# Bounded FIFO of deltas, a power-of-two ring that grows up to MAX_SESSION_DELTAS.
ctypedef struct sdeltaq_t:
    sdelta_t* buf
    uint32_t cap
    uint32_t head
    uint32_t len
    bint enabled          # a consumer is attached (DeltaFeed); nothing is queued otherwise

# Counters; stats() returns them under these names.
ctypedef struct scounters_t:
    uint64_t installs
    uint64_t replacements
    uint64_t create_drops
    uint64_t evictions
    uint64_t alloc_failures
    uint64_t lookups
    uint64_t hits
    uint64_t hits_via_alias
    uint64_t nat_lookups
    uint64_t nat_hits
    uint64_t wire_lookups
    uint64_t wire_hits
    uint64_t touches
    uint64_t deletes
    uint64_t expired
    uint64_t synced_upserts
    uint64_t synced_rejects
    uint64_t deltas_pushed
    uint64_t delta_drops
    uint64_t delta_drained

# The whole table (session_core.pxi).
ctypedef struct stable_t:
    sslab_t slab
    saddrs_t addrs
    sindex_t primary      # key -> record
    sindex_t natrev       # reverse_wire(F) and reverse_canonical(F) -> forward record F
    sindex_t fwire        # forward_wire(F) -> forward record F (when NAT changes it)
    sindex_t alias        # translated(R) -> reverse record R (when NAT changes it)
    stimeouts_t timeouts
    swheel_t wheel
    sdeltaq_t deltas
    scounters_t c
    uint64_t seed         # hash seed
    uint32_t max_sessions
    bint early_eviction   # when full, evict an unreplied flow instead of refusing

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
    uint8_t replied       # reverse entry: the reply direction has been seen

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
    ST_REPLIED = 0x04     # reverse entry: a packet of the reply direction was seen

cdef enum:
    DELTA_OPEN = 1
    DELTA_CLOSE = 2


# final: method calls are direct C calls (no vtable), so the compiler can inline them
@cython.final
cdef class SessionTable:
    cdef stable_t t
    cdef bint busy        # a batch call is running without the GIL (see _idle)

    # nogil entry points for pipelines
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
    cdef Py_ssize_t expire_c(self, uint64_t now_ns, ssession_t** buf, size_t* cap) noexcept nogil

    cdef object _idle(self)
