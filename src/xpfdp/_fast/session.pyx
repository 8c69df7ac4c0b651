# cython: language_level=3
"""SessionTable: slab records, generation-tagged handles, NAT indices, timer wheel, deltas.

Everything a packet touches runs without the GIL on C structs (session.pxd). Indices are
open-addressing tables of (hash tag, slot) pairs; an index hit is only returned after the
derived key is recomputed from the record and compared with the probe, so a stale or
corrupted index entry is a miss, never another session.
"""

import os

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset


cnp.import_array()

from xpfdp._fast.includes.compat cimport mum as xs_mum, prefetch as xs_prefetch
from xpfdp._fast.lib.flowkey cimport flowkey_eq as xs_key_eq, flowkey_hash as xs_hash_key
from xpfdp._fast.lib.arrays cimport checked_array as _need
from xpfdp._fast.lib.flowkey cimport flowkey_from_meta
from xpfdp._fast.lib.hash cimport GOLDEN64 as XS_GOLDEN, hash_addr16 as xs_hash_addr
from xpfdp._fast.meta cimport (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_FIN,
    TCP_RST,
)

# ---------------------------------------------------------------------------------------
# Constants

cdef extern from *:
    """
    #define XS_NO_SLOT 0xFFFFFFFFu
    #define XS_EMPTY 0xFFFFFFFFFFFFFFFFull
    #define XS_MAX_SLOTS 0x7FFFFFFFu
    #define XS_MAX_INDEX_CAP 0x80000000ull
    #define XS_TICK_NS 1000000000ull
    #define XS_BUCKETS 256u
    #define XS_FAR 255u
    #define XS_MAX_DELTAS 4096u
    """
    const uint32_t NO_SLOT "XS_NO_SLOT"            # empty index entry / end of a list
    const uint64_t EMPTY "XS_EMPTY"                # an empty index slot
    const uint32_t MAX_SLOTS "XS_MAX_SLOTS"
    const uint64_t MAX_INDEX_CAP "XS_MAX_INDEX_CAP"
    # compile-time constants, so divisions by the tick become multiplications
    const uint64_t C_TICK_NS "XS_TICK_NS"
    const uint32_t C_BUCKETS "XS_BUCKETS"
    const uint32_t C_FAR "XS_FAR"
    const uint32_t C_MAX_DELTAS "XS_MAX_DELTAS"

cdef enum:
    IX_PRIMARY = 0
    IX_NATREV = 1
    IX_FWIRE = 2
    IX_ALIAS = 3

cdef enum:
    POP_SCANNED = 0
    POP_GONE = 1
    POP_STALE = 2
    POP_EXPIRED = 3
    POP_REBUCKETED = 4

WHEEL_TICK_NS = 1_000_000_000
GC_INTERVAL_NS = WHEEL_TICK_NS  # GC runs once per wheel tick, by definition
WHEEL_BUCKETS = 256
FAR_FUTURE_OFFSET = WHEEL_BUCKETS - 1
MAX_SESSION_DELTAS = 4096
DEFAULT_MAX_SESSIONS = 131072
TCP_CLOSING_TIMEOUT_S = 30
OTHER_TIMEOUT_S = 30
DEFAULT_TCP_TIMEOUT_S = 300
DEFAULT_UDP_TIMEOUT_S = 60
DEFAULT_ICMP_TIMEOUT_S = 60
assert WHEEL_BUCKETS & (WHEEL_BUCKETS - 1) == 0, "wheel bucket count must be a power of two"
assert GC_INTERVAL_NS == WHEEL_TICK_NS
assert C_TICK_NS == WHEEL_TICK_NS and C_BUCKETS == WHEEL_BUCKETS and C_FAR == FAR_FUTURE_OFFSET
assert C_MAX_DELTAS == MAX_SESSION_DELTAS

cdef uint32_t C_CLOSING_S = TCP_CLOSING_TIMEOUT_S
cdef uint32_t C_OTHER_S = OTHER_TIMEOUT_S

# Batch lookups hash PIPE keys at a time, then prefetch each key's index line PF_INDEX keys
# ahead and its record PF_RECORD keys ahead, so cache misses of different keys overlap.
# Prefetches are hints: results are exactly those of the same scalar calls in order.
cdef enum:
    PIPE = 64
    PF_INDEX = 12
    PF_RECORD = 6

# ---------------------------------------------------------------------------------------
# numpy twins of the C structs, with offsets taken from the compiled layout

cdef skey_t _k
cdef sdecision_t _d
cdef smeta_t _m
cdef ssession_t _s
cdef sdelta_t _dl


cdef size_t _off(void* field, void* base):
    return <size_t>(<char*>field - <char*>base)


KEY_DTYPE = np.dtype({
    "names": ["af", "proto", "sport", "dport", "pad", "src", "dst"],
    "formats": ["u1", "u1", "u2", "u2", "u2", ("u1", 16), ("u1", 16)],
    "offsets": [_off(&_k.af, &_k), _off(&_k.proto, &_k), _off(&_k.sport, &_k),
                _off(&_k.dport, &_k), _off(&_k.pad, &_k), _off(&_k.src[0], &_k),
                _off(&_k.dst[0], &_k)],
    "itemsize": sizeof(skey_t),
})
DECISION_DTYPE = np.dtype({
    "names": ["nat_flags", "disposition", "rsp", "rdp", "egress_port", "rs", "rd"],
    "formats": ["u1", "u1", "u2", "u2", "u2", ("u1", 16), ("u1", 16)],
    "offsets": [_off(&_d.nat_flags, &_d), _off(&_d.disposition, &_d), _off(&_d.rsp, &_d),
                _off(&_d.rdp, &_d), _off(&_d.egress_port, &_d), _off(&_d.rs[0], &_d),
                _off(&_d.rd[0], &_d)],
    "itemsize": sizeof(sdecision_t),
})
META_DTYPE = np.dtype({
    "names": ["owner_rg", "ingress_zone", "egress_zone", "flags"],
    "formats": ["i4", "u2", "u2", "u1"],
    "offsets": [_off(&_m.owner_rg, &_m), _off(&_m.ingress_zone, &_m),
                _off(&_m.egress_zone, &_m), _off(&_m.flags, &_m)],
    "itemsize": sizeof(smeta_t),
})
SESSION_DTYPE = np.dtype({
    "names": ["handle", "last_seen_ns", "expires_after_ns", "wheel_tick", "key", "decision",
              "meta", "origin", "closing", "valid"],
    "formats": ["i8", "u8", "u8", "u8", KEY_DTYPE, DECISION_DTYPE, META_DTYPE, "u1", "u1",
                "u1"],
    "offsets": [_off(&_s.handle, &_s), _off(&_s.last_seen_ns, &_s),
                _off(&_s.expires_after_ns, &_s), _off(&_s.wheel_tick, &_s),
                _off(&_s.key, &_s), _off(&_s.dec, &_s),
                _off(&_s.meta, &_s), _off(&_s.origin, &_s), _off(&_s.closing, &_s),
                _off(&_s.valid, &_s)],
    "itemsize": sizeof(ssession_t),
})
DELTA_DTYPE = np.dtype({
    "names": ["kind", "origin", "fabric_redirect_sync", "key", "decision", "meta"],
    "formats": ["u1", "u1", "u1", KEY_DTYPE, DECISION_DTYPE, META_DTYPE],
    "offsets": [_off(&_dl.kind, &_dl), _off(&_dl.origin, &_dl),
                _off(&_dl.fabric_redirect_sync, &_dl), _off(&_dl.key, &_dl),
                _off(&_dl.dec, &_dl), _off(&_dl.meta, &_dl)],
    "itemsize": sizeof(sdelta_t),
})
RECORD_BYTES = sizeof(srec_t)
INDEX_NAMES = ("primary", "nat_reverse", "forward_wire", "alias")
assert KEY_DTYPE.itemsize == 40
assert RECORD_BYTES == 88 and sizeof(sdec_head_t) == 8 and sizeof(srmeta_t) == sizeof(smeta_t)

# Python names of the C enums (session.pxd)
NAT_FLAGS = {"rs": NAT_RS, "rd": NAT_RD, "rsp": NAT_RSP, "rdp": NAT_RDP,
             "nat64": NAT_64, "nptv6": NAT_PTV6}
DISPOSITIONS = ("local_delivery", "forward_candidate", "fabric_redirect", "ha_inactive",
                "policy_denied", "no_route", "missing_neighbor", "discard_route",
                "next_table_unsupported")
ORIGINS = ("forward_flow", "reverse_flow", "local_miss", "missing_neighbor_seed",
           "sync_import", "shared_materialize", "shared_promote", "worker_local_import")
SESSION_FLAGS = {"fabric_ingress": SM_FABRIC_INGRESS, "reverse": SM_REVERSE}
DELTA_KINDS = {"open": DELTA_OPEN, "close": DELTA_CLOSE}
assert len(ORIGINS) == ORIGIN_COUNT

# ---------------------------------------------------------------------------------------
# Origin predicates (sessions.md §1.5)

cdef inline bint peer_synced(uint8_t o) noexcept nogil:
    return o == ORIGIN_SYNC_IMPORT or o == ORIGIN_SHARED_MATERIALIZE or \
        o == ORIGIN_WORKER_LOCAL_IMPORT


cdef inline bint transient_seed(uint8_t o) noexcept nogil:
    return o == ORIGIN_MISSING_NEIGHBOR_SEED


cdef inline bint emits_deltas(const srec_t* r) noexcept nogil:
    """Open/Close deltas are only for local forward sessions that are not seeds."""
    return not (r.meta.flags & SM_REVERSE) and not peer_synced(r.meta.origin) and \
        not transient_seed(r.meta.origin)


# ---------------------------------------------------------------------------------------
# Key transforms (sessions.md §1.7). ICMP/ICMPv6 ports are never rewritten or swapped.

cdef inline bint is_icmp(uint8_t proto) noexcept nogil:
    return proto == PROTO_ICMP or proto == PROTO_ICMPV6


cdef inline void nat64_family(skey_t* out) noexcept nogil:
    """NAT64 crosses families: flip af and map ICMPv6 <-> ICMP to fit the new family."""
    if out.af == 10:
        out.af = 2
        if out.proto == PROTO_ICMPV6:
            out.proto = PROTO_ICMP
    else:
        out.af = 10
        if out.proto == PROTO_ICMP:
            out.proto = PROTO_ICMPV6


cdef inline void k_translated(const skey_t* k, const sdecision_t* d, skey_t* out) noexcept nogil:
    out[0] = k[0]
    out.pad = 0
    if d.nat_flags & NAT_RS:
        memcpy(out.src, d.rs, 16)
    if d.nat_flags & NAT_RD:
        memcpy(out.dst, d.rd, 16)
    if not is_icmp(k.proto):
        if d.nat_flags & NAT_RSP:
            out.sport = d.rsp
        if d.nat_flags & NAT_RDP:
            out.dport = d.rdp


cdef inline void k_forward_wire(const skey_t* k, const sdecision_t* d, skey_t* out) noexcept nogil:
    k_translated(k, d, out)
    if d.nat_flags & NAT_64:
        nat64_family(out)


cdef inline void k_reverse_wire(const skey_t* k, const sdecision_t* d, skey_t* out) noexcept nogil:
    out.af = k.af
    out.proto = k.proto
    out.pad = 0
    if d.nat_flags & NAT_RD:
        memcpy(out.src, d.rd, 16)
    else:
        memcpy(out.src, k.dst, 16)
    if d.nat_flags & NAT_RS:
        memcpy(out.dst, d.rs, 16)
    else:
        memcpy(out.dst, k.src, 16)
    if is_icmp(k.proto):
        out.sport = k.sport
        out.dport = k.dport
    else:
        out.sport = d.rdp if d.nat_flags & NAT_RDP else k.dport
        out.dport = d.rsp if d.nat_flags & NAT_RSP else k.sport
    if d.nat_flags & NAT_64:
        nat64_family(out)


cdef inline void k_reverse_canonical(const skey_t* k, skey_t* out) noexcept nogil:
    out.af = k.af
    out.proto = k.proto
    out.pad = 0
    memcpy(out.src, k.dst, 16)
    memcpy(out.dst, k.src, 16)
    if is_icmp(k.proto):
        out.sport = k.sport
        out.dport = k.dport
    else:
        out.sport = k.dport
        out.dport = k.sport


cdef inline void d_reverse(const skey_t* k, const sdecision_t* d, sdecision_t* out) noexcept nogil:
    """The reply direction's NAT: undo each rewrite of the forward decision."""
    memset(out, 0, sizeof(sdecision_t))
    out.disposition = d.disposition
    out.egress_port = d.egress_port
    out.nat_flags = d.nat_flags & (NAT_64 | NAT_PTV6)
    if d.nat_flags & NAT_RD:
        out.nat_flags |= NAT_RS
        memcpy(out.rs, k.dst, 16)
    if d.nat_flags & NAT_RS:
        out.nat_flags |= NAT_RD
        memcpy(out.rd, k.src, 16)
    if d.nat_flags & NAT_RDP:
        out.nat_flags |= NAT_RSP
        out.rsp = k.dport
    if d.nat_flags & NAT_RSP:
        out.nat_flags |= NAT_RDP
        out.rdp = k.sport


cdef inline uint32_t home_of(uint32_t tag, uint32_t cap) noexcept nogil:
    return <uint32_t>((<uint64_t>tag * cap) >> 32)


cdef inline uint32_t rg_home(int32_t rg, uint32_t mask) noexcept nogil:
    return <uint32_t>xs_mum(<uint64_t><uint32_t>rg, XS_GOLDEN) & mask


cdef inline bint pool_reserve(saddr_pool_t* p, size_t cell_bytes) noexcept nogil:
    """Room for one more address cell (growth by doubling)."""
    if p.free_head != NO_SLOT or p.hwm < p.cap:
        return True
    if p.cap >= MAX_SLOTS:
        return False
    cdef uint32_t newcap = p.cap * 2 if p.cap else 16
    cdef uint8_t* nc = <uint8_t*>realloc(p.cells, <size_t>newcap * cell_bytes)
    if nc == NULL:
        return False
    p.cells = nc
    p.cap = newcap
    return True


cdef inline uint32_t pool_alloc(saddr_pool_t* p, size_t cell_bytes) noexcept nogil:
    """A cell; the caller has reserved one with pool_reserve."""
    cdef uint32_t c
    if p.free_head != NO_SLOT:
        c = p.free_head
        memcpy(&p.free_head, p.cells + <size_t>c * cell_bytes, sizeof(uint32_t))
    else:
        c = p.hwm
        p.hwm += 1
    p.used += 1
    return c


cdef inline void pool_free(saddr_pool_t* p, size_t cell_bytes, uint32_t c) noexcept nogil:
    memcpy(p.cells + <size_t>c * cell_bytes, &p.free_head, sizeof(uint32_t))
    p.free_head = c
    p.used -= 1


cdef inline void rec_decision(const srec_t* r, const uint8_t* cells1, const uint8_t* cells2,
                              sdecision_t* out) noexcept nogil:
    """SessionTable.decision_c, inlined into the table's own hot paths."""
    memcpy(out, &r.dec, sizeof(sdec_head_t))
    cdef uint8_t f = r.dec.nat_flags & (NAT_RS | NAT_RD)
    if f == (NAT_RS | NAT_RD):
        memcpy(out.rs, cells2 + <size_t>r.addr_ref * 32, 32)
    elif f == NAT_RS:
        memcpy(out.rs, cells1 + <size_t>r.addr_ref * 16, 16)
        memset(out.rd, 0, 16)
    elif f == NAT_RD:
        memset(out.rs, 0, 16)
        memcpy(out.rd, cells1 + <size_t>r.addr_ref * 16, 16)
    else:
        memset(out.rs, 0, 32)


cdef inline int64_t make_handle(uint32_t gen, uint32_t slot) noexcept nogil:
    return <int64_t>((<uint64_t>gen << 32) | slot)


# ---------------------------------------------------------------------------------------
# Array argument checks (Python side of every batch call)

cdef inline void* _ptr(object arr):
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


cdef object _one(object value, object dtype, str name):
    """A scalar argument as a 1-element contiguous array of `dtype` (None -> zeros)."""
    if value is None:
        return np.zeros(1, dtype=dtype)
    if isinstance(value, (bytes, bytearray)):
        if len(value) != dtype.itemsize:
            raise ValueError(f"{name} must be {dtype.itemsize} bytes, got {len(value)}")
        return np.frombuffer(bytes(value), dtype=dtype).copy()
    arr = np.asarray(value)
    if arr.dtype != dtype:
        raise TypeError(f"{name} must be a {dtype} record, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr.reshape(-1))
    if arr.shape[0] != 1:
        raise ValueError(f"{name} must be a single record, got {arr.shape[0]}")
    return arr


cdef object _u8_per_key(object value, Py_ssize_t n, str name):
    """A per-key uint8 argument (TCP flags, origins): scalar broadcast or length-n array."""
    if value is None:
        return np.zeros(n, dtype=np.uint8)
    if np.isscalar(value):
        v = int(value)
        if not 0 <= v <= 255:
            raise ValueError(f"{name} must be in 0..255, got {v}")
        return np.full(n, v, dtype=np.uint8)
    arr = np.ascontiguousarray(value)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] < n:
        raise ValueError(f"{name} must be 1-D with at least {n} entries")
    return arr


cdef object _out_i64(object out, Py_ssize_t n, str name):
    if out is None:
        return np.empty(n, dtype=np.int64)
    _need(out, np.dtype(np.int64), name, True)
    if out.shape[0] < n:
        raise ValueError(f"{name} has {out.shape[0]} entries, needs {n}")
    return out


cdef object _check_origin(object origin):
    o = int(origin)
    if not 0 <= o < ORIGIN_COUNT:
        raise ValueError(f"origin must be 0..{ORIGIN_COUNT - 1}, got {o}")
    return o


cdef object _same_len(object a, object b, str an, str bn):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{an} ({a.shape[0]}) and {bn} ({b.shape[0]}) differ in length")


# ---------------------------------------------------------------------------------------
# Vectorised key transforms and key building

def forward_wire(keys, decisions):
    """forward_wire(F, nat) for each pair: the forward packet as it leaves, after NAT."""
    return _transform(keys, decisions, 0)


def reverse_wire(keys, decisions):
    """reverse_wire(F, nat) for each pair: the reply as it arrives on the wire."""
    return _transform(keys, decisions, 1)


def translated(keys, decisions):
    """translated(K, nat) for each pair: forward_wire without the NAT64 af/proto change."""
    return _transform(keys, decisions, 2)


def reverse_canonical(keys):
    """reverse_canonical(F): addresses swapped, ports swapped unless ICMP; NAT ignored."""
    _need(keys, KEY_DTYPE, "keys")
    cdef Py_ssize_t i, n = keys.shape[0]
    out = np.empty(n, dtype=KEY_DTYPE)
    cdef skey_t* kp = <skey_t*>_ptr(keys)
    cdef skey_t* op = <skey_t*>_ptr(out)
    with nogil:
        for i in range(n):
            k_reverse_canonical(&kp[i], &op[i])
    return out


def reverse_decisions(keys, decisions):
    """NAT decision of the reply direction for each forward (key, decision)."""
    _need(keys, KEY_DTYPE, "keys")
    _need(decisions, DECISION_DTYPE, "decisions")
    _same_len(keys, decisions, "keys", "decisions")
    cdef Py_ssize_t i, n = keys.shape[0]
    out = np.empty(n, dtype=DECISION_DTYPE)
    cdef skey_t* kp = <skey_t*>_ptr(keys)
    cdef sdecision_t* dp = <sdecision_t*>_ptr(decisions)
    cdef sdecision_t* op = <sdecision_t*>_ptr(out)
    with nogil:
        for i in range(n):
            d_reverse(&kp[i], &dp[i], &op[i])
    return out


cdef object _transform(object keys, object decisions, int which):
    _need(keys, KEY_DTYPE, "keys")
    _need(decisions, DECISION_DTYPE, "decisions")
    _same_len(keys, decisions, "keys", "decisions")
    cdef Py_ssize_t i, n = keys.shape[0]
    out = np.empty(n, dtype=KEY_DTYPE)
    cdef skey_t* kp = <skey_t*>_ptr(keys)
    cdef sdecision_t* dp = <sdecision_t*>_ptr(decisions)
    cdef skey_t* op = <skey_t*>_ptr(out)
    with nogil:
        for i in range(n):
            if which == 0:
                k_forward_wire(&kp[i], &dp[i], &op[i])
            elif which == 1:
                k_reverse_wire(&kp[i], &dp[i], &op[i])
            else:
                k_translated(&kp[i], &dp[i], &op[i])
    return out


def keys_from_meta(meta, out_keys):
    """Build session keys from parser records (PKT_META) into `out_keys`; returns how many
    packets produced a key.

    A packet gets a key when it is IPv4/IPv6, parsed OK with its L4 header read: the same
    key the pipeline's session stage uses (`_fast/lib/flowkey.pxd`). Others, non-first
    fragments included, get an all-zero key (af 0), which every table call treats as
    invalid. ICMP/ICMPv6 keys carry the echo identifier in sport and 0 in dport.
    """
    from xpfdp._fast.meta import PKT_META

    _need(meta, PKT_META, "meta")
    _need(out_keys, KEY_DTYPE, "out_keys", True)
    if out_keys.shape[0] < meta.shape[0]:
        raise ValueError(f"out_keys has {out_keys.shape[0]} entries, needs {meta.shape[0]}")
    cdef Py_ssize_t i, n = meta.shape[0], made = 0
    cdef pkt_meta_t* mp = <pkt_meta_t*>_ptr(meta)
    cdef skey_t* kp = <skey_t*>_ptr(out_keys)
    with nogil:
        for i in range(n):
            made += flowkey_from_meta(&mp[i], &kp[i])
    return made


cdef inline bint key_valid(const skey_t* k) noexcept nogil:
    return k.af == 2 or k.af == 10


# ---------------------------------------------------------------------------------------

cdef bint ring_grow(void** buf, uint32_t* head, uint32_t length, uint32_t* cap,
                    size_t item_bytes, uint32_t first_cap) noexcept nogil:
    """Double a full power-of-two ring (or allocate `first_cap` items), unwrapping its
    `length` items to the front. False when memory runs out (the ring is unchanged)."""
    cdef uint32_t new_cap = cap[0] * 2 if cap[0] else first_cap
    cdef char* grown = <char*>malloc(<size_t>new_cap * item_bytes)
    if grown == NULL:
        return False
    cdef uint32_t first = cap[0] - head[0] if length > cap[0] - head[0] else length
    if length:
        memcpy(grown, <char*>buf[0] + <size_t>head[0] * item_bytes, <size_t>first * item_bytes)
        memcpy(grown + <size_t>first * item_bytes, buf[0], <size_t>(length - first) * item_bytes)
    free(buf[0])
    buf[0] = grown
    cap[0] = new_cap
    head[0] = 0
    return True


cdef class SessionTable:
    """Per-worker session table: forward/reverse entries, NAT indices, GC wheel, HA deltas.

    Not thread-safe: one table per worker. All times are passed in as `now_ns`.
    Capacity policy: a new key is refused (and counted in `create_drops`) once `len()`
    reaches `max_sessions`; replacing an existing key is always allowed; HA imports
    (`upsert_synced`) are not capped so a failover never loses synced state.
    """

    def __cinit__(self, *args, **kwargs):
        self.recs = NULL
        self.free_head = NO_SLOT
        memset(&self.primary, 0, sizeof(sindex_t))
        memset(&self.natrev, 0, sizeof(sindex_t))
        memset(&self.fwire, 0, sizeof(sindex_t))
        memset(&self.alias, 0, sizeof(sindex_t))
        memset(&self.addr1, 0, sizeof(saddr_pool_t))
        memset(&self.addr2, 0, sizeof(saddr_pool_t))
        self.addr1.free_head = NO_SLOT
        self.addr2.free_head = NO_SLOT
        memset(&self.intern1, 0, sizeof(sintern_t))
        memset(self.wheel, 0, sizeof(self.wheel))
        memset(self.pop_stats, 0, sizeof(self.pop_stats))
        self.rg_keys = NULL
        self.rg_heads = NULL
        self.rg_counts = NULL
        self.deltas = NULL

    def __init__(self, max_sessions=DEFAULT_MAX_SESSIONS, tcp_timeout_s=0, udp_timeout_s=0,
                 icmp_timeout_s=0, hash_seed=None):
        if not 1 <= int(max_sessions) <= MAX_SLOTS - 1:
            raise ValueError(f"max_sessions must be in 1..{MAX_SLOTS - 1}, got {max_sessions}")
        self.max_sessions = int(max_sessions)
        self.set_timeouts(tcp_timeout_s, udp_timeout_s, icmp_timeout_s)
        if hash_seed is None:
            hash_seed = int.from_bytes(os.urandom(8), "little")
        self.seed = <uint64_t>(int(hash_seed) & 0xFFFFFFFFFFFFFFFF)

    def __dealloc__(self):
        cdef int i
        free(self.recs)
        free(self.primary.slots)
        free(self.natrev.slots)
        free(self.fwire.slots)
        free(self.alias.slots)
        free(self.addr1.cells)
        free(self.addr2.cells)
        free(self.intern1.refs)
        free(self.intern1.slots)
        free(self.rg_keys)
        free(self.rg_heads)
        free(self.rg_counts)
        free(self.deltas)
        for i in range(256):
            free(self.wheel[i].buf)

    def set_timeouts(self, tcp_timeout_s=0, udp_timeout_s=0, icmp_timeout_s=0):
        """Set idle timeouts in whole seconds (0 = default 300/60/60). Only affects later
        installs, lookups and updates; existing sessions keep their timeout."""
        self._idle()
        vals = []
        for name, v, dflt in (("tcp_timeout_s", tcp_timeout_s, DEFAULT_TCP_TIMEOUT_S),
                              ("udp_timeout_s", udp_timeout_s, DEFAULT_UDP_TIMEOUT_S),
                              ("icmp_timeout_s", icmp_timeout_s, DEFAULT_ICMP_TIMEOUT_S)):
            if int(v) != v or not 0 <= v <= 0xFFFFFFFF:
                raise ValueError(f"{name} must be a whole number of seconds >= 0, got {v!r}")
            vals.append(int(v) or dflt)
        vals += [TCP_CLOSING_TIMEOUT_S, OTHER_TIMEOUT_S]
        classes = [self._palette_class(v) for v in vals]
        if -1 in classes:
            self._compact_palette()
            classes = [self._palette_class(v) for v in vals]
            if -1 in classes:
                raise ValueError("live sessions already hold 256 distinct idle timeouts; "
                                 "a new timeout value cannot be added")
        self.tcp_timeout_s, self.udp_timeout_s, self.icmp_timeout_s = vals[:3]
        self.cls_tcp, self.cls_udp, self.cls_icmp, self.cls_closing, self.cls_other = classes

    cdef int _palette_class(self, uint32_t secs):
        """Index of `secs` in the timeout palette (added if new), or -1 if it is full."""
        cdef uint32_t i
        for i in range(self.tpal_len):
            if self.tpal[i] == secs:
                return i
        if self.tpal_len == 256:
            return -1
        self.tpal[self.tpal_len] = secs
        self.tpal_len += 1
        return self.tpal_len - 1

    cdef object _compact_palette(self):
        """Keep only the timeouts live records use (O(N); only when the palette is full)."""
        cdef uint8_t remap[256]
        cdef uint32_t newpal[256]
        cdef uint32_t s, n = 0
        cdef bint used[256]
        memset(used, 0, sizeof(used))
        for s in range(self.rec_hwm):
            if self.recs[s].meta.state & ST_LIVE:
                used[self.recs[s].meta.tclass] = True
        for s in range(self.tpal_len):
            if used[s]:
                remap[s] = n
                newpal[n] = self.tpal[s]
                n += 1
        for s in range(self.rec_hwm):
            if self.recs[s].meta.state & ST_LIVE:
                self.recs[s].meta.tclass = remap[self.recs[s].meta.tclass]
        memcpy(self.tpal, newpal, n * sizeof(uint32_t))
        self.tpal_len = n

    @property
    def timeouts_s(self):
        """(tcp, udp, icmp) idle timeouts in seconds."""
        return (self.tcp_timeout_s, self.udp_timeout_s, self.icmp_timeout_s)

    def __len__(self):
        """Number of primary keys (never slab slots)."""
        self._idle()
        return self.primary.count

    cdef sindex_t* _index_named(self, str name) except NULL:
        """The index called `name` (primary, nat_reverse, forward_wire, alias)."""
        if name == "primary":
            return &self.primary
        if name == "nat_reverse":
            return &self.natrev
        if name == "forward_wire":
            return &self.fwire
        if name == "alias":
            return &self.alias
        raise ValueError(f"index must be one of {INDEX_NAMES}, got {name!r}")

    cdef object _idle(self):
        """Refuse a call while a batch call of another thread runs without the GIL."""
        if self.busy:
            raise RuntimeError("SessionTable is not thread-safe: a batch call from another "
                               "thread is running on it")

    # ----------------------------------------------------------------- internals: hashing

    cdef uint64_t hash_c(self, const skey_t* k) noexcept nogil:
        return xs_hash_key(k, self.seed)

    cdef void prefetch_home(self, sindex_t* ix, uint64_t h) noexcept nogil:
        """Start loading the index line a probe for hash h begins at."""
        if ix.cap:
            xs_prefetch(&ix.slots[home_of(<uint32_t>(h >> 32), ix.cap)])

    cdef bint prefetch_record(self, sindex_t* ix, uint64_t h) noexcept nogil:
        """Start loading the record of the first tag match near h's home (a hint only)."""
        if ix.cap == 0:
            return False
        cdef uint32_t tag = <uint32_t>(h >> 32)
        cdef uint32_t i = home_of(tag, ix.cap), step
        cdef uint64_t e
        for step in range(4):
            e = ix.slots[i]
            if <uint32_t>e == NO_SLOT:
                return False
            if <uint32_t>(e >> 32) == tag:
                if <uint32_t>e < self.rec_hwm:
                    xs_prefetch(&self.recs[<uint32_t>e])
                return True
            i += 1
            if i == ix.cap:
                i = 0
        return False

    cdef bint matches(self, int kind, uint32_t slot, const skey_t* k) noexcept nogil:
        """Does index entry -> slot really stand for probe k? (the I3 validation)"""
        cdef skey_t t
        cdef sdecision_t d
        cdef srec_t* r
        if slot >= self.rec_hwm:
            return False
        r = &self.recs[slot]
        if not (r.meta.state & ST_LIVE):
            return False
        if kind == IX_PRIMARY:
            return xs_key_eq(&r.key, k)
        if kind == IX_ALIAS:
            if not (r.meta.flags & SM_REVERSE):
                return False
            rec_decision(r, self.addr1.cells, self.addr2.cells, &d)
            k_translated(&r.key, &d, &t)
            return xs_key_eq(&t, k)
        if r.meta.flags & SM_REVERSE:
            return False
        rec_decision(r, self.addr1.cells, self.addr2.cells, &d)
        if kind == IX_FWIRE:
            k_forward_wire(&r.key, &d, &t)
            return xs_key_eq(&t, k)
        k_reverse_wire(&r.key, &d, &t)
        if xs_key_eq(&t, k):
            return True
        k_reverse_canonical(&r.key, &t)
        return xs_key_eq(&t, k)

    # ----------------------------------------------------------------- internals: indices

    cdef int64_t idx_pos(self, sindex_t* ix, int kind, const skey_t* k, uint64_t h) noexcept nogil:
        cdef uint32_t empty_at
        return self.idx_probe(ix, kind, k, h, &empty_at)

    cdef int64_t idx_probe(self, sindex_t* ix, int kind, const skey_t* k, uint64_t h,
                           uint32_t* empty_at) noexcept nogil:
        """Position of k's validated entry, or -1 with the empty slot that ended the probe
        (where k would be inserted) in `empty_at`."""
        empty_at[0] = NO_SLOT
        if ix.cap == 0:
            return -1
        cdef uint32_t tag = <uint32_t>(h >> 32)
        cdef uint32_t i = home_of(tag, ix.cap)
        cdef uint64_t e
        while True:
            e = ix.slots[i]
            if <uint32_t>e == NO_SLOT:
                empty_at[0] = i
                return -1
            if <uint32_t>(e >> 32) == tag and self.matches(kind, <uint32_t>e, k):
                return i
            i += 1
            if i == ix.cap:
                i = 0

    cdef bint idx_reserve(self, sindex_t* ix, uint32_t extra) noexcept nogil:
        """Make room for `extra` more entries at load <= 3/4. Home buckets come from a
        multiply-shift range reduction, so any capacity works: a rehash sizes the index to
        load 5/8 (growth x1.2), which keeps the load in (5/8, 3/4] instead of the
        (3/8, 3/4] of doubling and saves about a third of the index bytes on average."""
        cdef uint64_t need = <uint64_t>ix.count + extra
        if need * 4 <= <uint64_t>ix.cap * 3:
            return True
        cdef uint64_t newcap = (need * 8 + 4) // 5
        if newcap < 16:
            newcap = 16
        if newcap > MAX_INDEX_CAP:
            return False
        cdef uint64_t* ns = <uint64_t*>malloc(newcap * sizeof(uint64_t))
        if ns == NULL:
            return False
        memset(ns, 0xFF, newcap * sizeof(uint64_t))
        cdef uint32_t i, j
        cdef uint64_t e
        for i in range(ix.cap):
            e = ix.slots[i]
            if <uint32_t>e == NO_SLOT:
                continue
            j = home_of(<uint32_t>(e >> 32), <uint32_t>newcap)
            while <uint32_t>ns[j] != NO_SLOT:
                j += 1
                if j == newcap:
                    j = 0
            ns[j] = e
        free(ix.slots)
        ix.slots = ns
        ix.cap = <uint32_t>newcap
        return True

    cdef void idx_raw_put(self, sindex_t* ix, uint64_t h, uint32_t slot) noexcept nogil:
        cdef uint32_t tag = <uint32_t>(h >> 32)
        cdef uint32_t i = home_of(tag, ix.cap)
        while <uint32_t>ix.slots[i] != NO_SLOT:
            i += 1
            if i == ix.cap:
                i = 0
        ix.slots[i] = (<uint64_t>tag << 32) | slot
        ix.count += 1

    cdef void idx_upsert(self, sindex_t* ix, int kind, const skey_t* k, uint32_t slot) noexcept nogil:
        """Map k -> slot; an existing entry for k is overwritten (last writer wins)."""
        self.idx_upsert_h(ix, kind, k, self.hash_c(k), slot)

    cdef void idx_upsert_h(self, sindex_t* ix, int kind, const skey_t* k, uint64_t h,
                           uint32_t slot) noexcept nogil:
        """idx_upsert with k's hash already computed (h == hash_c(k))."""
        cdef uint32_t empty_at
        cdef int64_t pos = self.idx_probe(ix, kind, k, h, &empty_at)
        if pos >= 0:
            ix.slots[pos] = (h >> 32 << 32) | slot
        else:
            ix.slots[empty_at] = (h >> 32 << 32) | slot
            ix.count += 1

    cdef void idx_remove_value(self, sindex_t* ix, uint64_t h, uint32_t slot) noexcept nogil:
        """Value-guarded removal: delete the entry (tag(h), slot) if present, i.e. only if
        the key still maps to `slot`. It is found by value, with no record access. Only the
        two reverse keys of one record can share that value (equal 32-bit tags); they are
        always removed together, so which one goes first does not matter."""
        if ix.cap == 0:
            return
        cdef uint64_t want = (h >> 32 << 32) | slot
        cdef uint32_t i = home_of(<uint32_t>(h >> 32), ix.cap)
        cdef uint64_t e
        while True:
            e = ix.slots[i]
            if <uint32_t>e == NO_SLOT:
                return
            if e == want:
                self.idx_delete_at(ix, i)
                return
            i += 1
            if i == ix.cap:
                i = 0

    cdef void idx_delete_at(self, sindex_t* ix, uint32_t pos) noexcept nogil:
        """Backward-shift deletion: keeps every probe chain intact without tombstones."""
        cdef uint32_t i = pos, j, kh
        cdef uint64_t e
        cdef bint stay
        while True:
            j = i
            while True:
                j += 1
                if j == ix.cap:
                    j = 0
                e = ix.slots[j]
                if <uint32_t>e == NO_SLOT:
                    ix.slots[i] = EMPTY
                    ix.count -= 1
                    return
                kh = home_of(<uint32_t>(e >> 32), ix.cap)
                if i <= j:
                    stay = i < kh and kh <= j
                else:
                    stay = i < kh or kh <= j
                if not stay:
                    break
            ix.slots[i] = ix.slots[j]
            i = j

    # ----------------------------------------------------------------- internals: slab

    cdef bint reserve_insert(self) noexcept nogil:
        """Ensure one more record and its index entries fit, before anything is mutated."""
        cdef uint32_t newcap
        cdef srec_t* nr
        if self.free_head == NO_SLOT and self.rec_hwm == self.rec_cap:
            if self.rec_cap >= MAX_SLOTS:
                return False
            newcap = self.rec_cap * 2 if self.rec_cap else 16
            if newcap > MAX_SLOTS:
                newcap = MAX_SLOTS
            nr = <srec_t*>realloc(self.recs, <size_t>newcap * sizeof(srec_t))
            if nr == NULL:
                return False
            self.recs = nr
            self.rec_cap = newcap
        if not (self.idx_reserve(&self.primary, 1) and self.idx_reserve(&self.natrev, 2)
                and self.idx_reserve(&self.fwire, 1) and self.idx_reserve(&self.alias, 1)
                and pool_reserve(&self.addr1, 16) and pool_reserve(&self.addr2, 32)
                and self.intern_reserve()):
            return False
        return self.rg_reserve()

    cdef bint rg_reserve(self) noexcept nogil:
        """Room for one more owner RG in the rg -> list-head map (power-of-two, load <= 3/4)."""
        if (<uint64_t>self.rg_used + 1) * 4 <= <uint64_t>self.rg_cap * 3:
            return True
        cdef uint32_t newcap = self.rg_cap * 2 if self.rg_cap else 8
        cdef int32_t* nk = <int32_t*>malloc(newcap * sizeof(int32_t))
        cdef uint32_t* nh = <uint32_t*>malloc(newcap * sizeof(uint32_t))
        cdef uint32_t* nc = <uint32_t*>malloc(newcap * sizeof(uint32_t))
        cdef uint32_t i, j
        if nk == NULL or nh == NULL or nc == NULL:
            free(nk)
            free(nh)
            free(nc)
            return False
        memset(nk, 0, newcap * sizeof(int32_t))
        for i in range(self.rg_cap):
            if self.rg_keys[i] == 0:
                continue
            j = rg_home(self.rg_keys[i], newcap - 1)
            while nk[j] != 0:
                j = (j + 1) & (newcap - 1)
            nk[j] = self.rg_keys[i]
            nh[j] = self.rg_heads[i]
            nc[j] = self.rg_counts[i]
        free(self.rg_keys)
        free(self.rg_heads)
        free(self.rg_counts)
        self.rg_keys = nk
        self.rg_heads = nh
        self.rg_counts = nc
        self.rg_cap = newcap
        return True

    cdef void rg_delete_at(self, uint32_t pos) noexcept nogil:
        """Backward-shift deletion in the rg map (an emptied owner group disappears)."""
        cdef uint32_t mask = self.rg_cap - 1
        cdef uint32_t i = pos, j = pos, kh
        cdef bint stay
        while True:
            j = (j + 1) & mask
            if self.rg_keys[j] == 0:
                break
            kh = rg_home(self.rg_keys[j], mask)
            if i <= j:
                stay = i < kh and kh <= j
            else:
                stay = i < kh or kh <= j
            if stay:
                continue
            self.rg_keys[i] = self.rg_keys[j]
            self.rg_heads[i] = self.rg_heads[j]
            self.rg_counts[i] = self.rg_counts[j]
            i = j
        self.rg_keys[i] = 0
        self.rg_used -= 1

    cdef uint32_t slab_alloc(self) noexcept nogil:
        cdef uint32_t s
        if self.free_head != NO_SLOT:
            s = self.free_head
            self.free_head = self.recs[s].rg_next
            return s
        s = self.rec_hwm
        self.rec_hwm += 1
        self.recs[s].generation = 0
        return s

    cdef void slab_free(self, uint32_t slot) noexcept nogil:
        cdef srec_t* r = &self.recs[slot]
        self.rec_release_addrs(r)
        r.meta.state = 0
        r.generation = (r.generation + 1) & 0x7FFFFFFF
        r.rg_next = self.free_head
        self.free_head = slot

    cdef srec_t* record_c(self, int64_t handle) noexcept nogil:
        """The live record a handle names, or NULL if the handle is stale or invalid."""
        if handle < 0:
            return NULL
        cdef uint32_t slot = <uint32_t>(<uint64_t>handle)
        cdef uint32_t gen = <uint32_t>(handle >> 32)
        if slot >= self.rec_hwm:
            return NULL
        cdef srec_t* r = &self.recs[slot]
        if not (r.meta.state & ST_LIVE) or r.generation != gen:
            return NULL
        return r

    # ----------------------------------------------------------------- internals: record

    cdef void decision_c(self, const srec_t* r, sdecision_t* out) noexcept nogil:
        """The full decision of a record (addresses from the pool; an address whose NAT
        flag is clear reads as zeros)."""
        rec_decision(r, self.addr1.cells, self.addr2.cells, out)

    cdef void rec_write(self, srec_t* r, const sdecision_t* d, const smeta_t* m,
                        uint8_t origin) noexcept nogil:
        """Store decision (its set addresses into a pool cell), meta and origin; the caller
        has released the record's old cell and reserved pool room (reserve_insert)."""
        memcpy(&r.dec, d, sizeof(sdec_head_t))
        r.meta.owner_rg = m.owner_rg
        r.meta.ingress_zone = m.ingress_zone
        r.meta.egress_zone = m.egress_zone
        r.meta.flags = m.flags & (SM_FABRIC_INGRESS | SM_REVERSE)
        r.meta.origin = origin
        cdef uint8_t f = d.nat_flags & (NAT_RS | NAT_RD)
        if f == (NAT_RS | NAT_RD):
            r.addr_ref = pool_alloc(&self.addr2, 32)
            memcpy(self.addr2.cells + <size_t>r.addr_ref * 32, d.rs, 32)
        elif f:
            r.addr_ref = self.intern_acquire(&d.rs[0] if f == NAT_RS else &d.rd[0])
        else:
            r.addr_ref = NO_SLOT

    cdef void rec_release_addrs(self, srec_t* r) noexcept nogil:
        cdef uint8_t f = r.dec.nat_flags & (NAT_RS | NAT_RD)
        if r.addr_ref == NO_SLOT:
            return
        if f == (NAT_RS | NAT_RD):
            pool_free(&self.addr2, 32, r.addr_ref)
        else:
            self.intern_release(r.addr_ref)
        r.addr_ref = NO_SLOT

    cdef bint intern_reserve(self) noexcept nogil:
        """Room to intern one more address (after pool_reserve of addr1)."""
        cdef sintern_t* t = &self.intern1
        cdef uint32_t* nr
        cdef uint32_t* ns
        cdef uint32_t newcap, i, j, c
        if t.refs_cap < self.addr1.cap:
            nr = <uint32_t*>realloc(t.refs, <size_t>self.addr1.cap * sizeof(uint32_t))
            if nr == NULL:
                return False
            t.refs = nr
            t.refs_cap = self.addr1.cap
        if (<uint64_t>t.count + 1) * 4 <= <uint64_t>t.cap * 3:
            return True
        newcap = t.cap * 2 if t.cap else 16
        ns = <uint32_t*>malloc(<size_t>newcap * sizeof(uint32_t))
        if ns == NULL:
            return False
        memset(ns, 0xFF, <size_t>newcap * sizeof(uint32_t))
        for i in range(t.cap):
            c = t.slots[i]
            if c == NO_SLOT:
                continue
            j = <uint32_t>xs_hash_addr(self.addr1.cells + <size_t>c * 16, self.seed) & (newcap - 1)
            while ns[j] != NO_SLOT:
                j = (j + 1) & (newcap - 1)
            ns[j] = c
        free(t.slots)
        t.slots = ns
        t.cap = newcap
        return True

    cdef uint32_t intern_acquire(self, const uint8_t* addr) noexcept nogil:
        """The shared addr1 cell holding `addr` (created if new); the caller reserved."""
        cdef sintern_t* t = &self.intern1
        cdef uint32_t mask = t.cap - 1, c
        cdef uint32_t i = <uint32_t>xs_hash_addr(addr, self.seed) & mask
        while t.slots[i] != NO_SLOT:
            c = t.slots[i]
            if memcmp(self.addr1.cells + <size_t>c * 16, addr, 16) == 0:
                t.refs[c] += 1
                return c
            i = (i + 1) & mask
        c = pool_alloc(&self.addr1, 16)
        memcpy(self.addr1.cells + <size_t>c * 16, addr, 16)
        t.refs[c] = 1
        t.slots[i] = c
        t.count += 1
        return c

    cdef void intern_release(self, uint32_t cell) noexcept nogil:
        """Drop one reference; the last one removes the address and frees its cell."""
        cdef sintern_t* t = &self.intern1
        t.refs[cell] -= 1
        if t.refs[cell]:
            return
        cdef uint32_t mask = t.cap - 1, j, kh
        cdef uint32_t i = <uint32_t>xs_hash_addr(self.addr1.cells + <size_t>cell * 16, self.seed) & mask
        cdef bint stay
        while t.slots[i] != cell:
            i = (i + 1) & mask
        j = i
        while True:  # backward-shift deletion, as in rg_delete_at
            j = (j + 1) & mask
            if t.slots[j] == NO_SLOT:
                break
            kh = <uint32_t>xs_hash_addr(self.addr1.cells + <size_t>t.slots[j] * 16, self.seed) & mask
            if i <= j:
                stay = i < kh and kh <= j
            else:
                stay = i < kh or kh <= j
            if stay:
                continue
            t.slots[i] = t.slots[j]
            i = j
        t.slots[i] = NO_SLOT
        t.count -= 1
        pool_free(&self.addr1, 16, cell)

    cdef void rec_meta_out(self, const srec_t* r, smeta_t* out) noexcept nogil:
        """The public meta of a record (origin and state are not part of it)."""
        memset(out, 0, sizeof(smeta_t))
        out.owner_rg = r.meta.owner_rg
        out.ingress_zone = r.meta.ingress_zone
        out.egress_zone = r.meta.egress_zone
        out.flags = r.meta.flags

    cdef int64_t primary_slot(self, const skey_t* k) noexcept nogil:
        cdef int64_t pos = self.idx_pos(&self.primary, IX_PRIMARY, k, self.hash_c(k))
        if pos < 0:
            return -1
        return <uint32_t>self.primary.slots[pos]

    # ----------------------------------------------------------------- internals: owner RG

    cdef int64_t rg_find(self, int32_t rg) noexcept nogil:
        if self.rg_cap == 0:
            return -1
        cdef uint32_t mask = self.rg_cap - 1
        cdef uint32_t i = rg_home(rg, mask)
        while self.rg_keys[i] != 0:
            if self.rg_keys[i] == rg:
                return i
            i = (i + 1) & mask
        return -1

    cdef bint rg_link(self, uint32_t slot) noexcept nogil:
        cdef srec_t* r = &self.recs[slot]
        cdef int32_t rg = r.meta.owner_rg
        r.rg_prev = NO_SLOT
        r.rg_next = NO_SLOT
        if rg <= 0:
            return True
        cdef int64_t pos = self.rg_find(rg)
        cdef uint32_t mask = self.rg_cap - 1, i
        if pos < 0:
            i = rg_home(rg, mask)
            while self.rg_keys[i] != 0:
                i = (i + 1) & mask
            self.rg_keys[i] = rg
            self.rg_heads[i] = NO_SLOT
            self.rg_counts[i] = 0
            self.rg_used += 1
            pos = i
        r.rg_next = self.rg_heads[pos]
        if r.rg_next != NO_SLOT:
            self.recs[r.rg_next].rg_prev = slot
        self.rg_heads[pos] = slot
        self.rg_counts[pos] += 1
        return True

    cdef void rg_unlink(self, uint32_t slot) noexcept nogil:
        cdef srec_t* r = &self.recs[slot]
        if r.meta.owner_rg <= 0:
            return
        cdef int64_t pos = self.rg_find(r.meta.owner_rg)
        if pos < 0:
            return
        if r.rg_prev != NO_SLOT:
            self.recs[r.rg_prev].rg_next = r.rg_next
        else:
            self.rg_heads[pos] = r.rg_next
        if r.rg_next != NO_SLOT:
            self.recs[r.rg_next].rg_prev = r.rg_prev
        r.rg_prev = NO_SLOT
        r.rg_next = NO_SLOT
        self.rg_counts[pos] -= 1
        if self.rg_counts[pos] == 0:
            self.rg_delete_at(<uint32_t>pos)

    # ----------------------------------------------------------------- internals: indexing

    cdef void index_secondary(self, uint32_t slot) noexcept nogil:
        """Insert the derived keys of one record with the exact gates of sessions.md §2.2."""
        cdef skey_t t
        cdef sdecision_t d
        cdef srec_t* r = &self.recs[slot]
        cdef skey_t t2, t3
        cdef uint64_t h1, h2, h3
        rec_decision(r, self.addr1.cells, self.addr2.cells, &d)
        if not (r.meta.flags & SM_REVERSE):
            # derive and hash all three keys first, so their index lines load in parallel
            k_reverse_wire(&r.key, &d, &t)
            k_reverse_canonical(&r.key, &t2)
            k_forward_wire(&r.key, &d, &t3)
            h1 = self.hash_c(&t)
            h2 = self.hash_c(&t2)
            h3 = self.hash_c(&t3)
            self.prefetch_home(&self.natrev, h1)
            self.prefetch_home(&self.natrev, h2)
            self.prefetch_home(&self.fwire, h3)
            self.idx_upsert_h(&self.natrev, IX_NATREV, &t, h1, slot)
            if not xs_key_eq(&t2, &r.key):
                self.idx_upsert_h(&self.natrev, IX_NATREV, &t2, h2, slot)
            if not xs_key_eq(&t3, &r.key):
                self.idx_upsert_h(&self.fwire, IX_FWIRE, &t3, h3, slot)
        elif not (d.nat_flags & NAT_64):
            # NAT64 aliases keep the forward af/proto and could never match (§7 Q4): skipped.
            k_translated(&r.key, &d, &t)
            if not xs_key_eq(&t, &r.key):
                self.idx_upsert(&self.alias, IX_ALIAS, &t, slot)
        self.rg_link(slot)

    cdef void unindex_secondary(self, uint32_t slot) noexcept nogil:
        cdef skey_t t
        cdef sdecision_t d
        cdef srec_t* r = &self.recs[slot]
        cdef uint64_t h1, h2, h3
        rec_decision(r, self.addr1.cells, self.addr2.cells, &d)
        if not (r.meta.flags & SM_REVERSE):
            # all three hashes first, so their index lines load in parallel
            k_reverse_wire(&r.key, &d, &t)
            h1 = self.hash_c(&t)
            k_reverse_canonical(&r.key, &t)
            h2 = self.hash_c(&t)
            k_forward_wire(&r.key, &d, &t)
            h3 = self.hash_c(&t)
            self.prefetch_home(&self.natrev, h1)
            self.prefetch_home(&self.natrev, h2)
            self.prefetch_home(&self.fwire, h3)
            self.idx_remove_value(&self.natrev, h1, slot)
            self.idx_remove_value(&self.natrev, h2, slot)
            self.idx_remove_value(&self.fwire, h3, slot)
        else:
            k_translated(&r.key, &d, &t)
            self.idx_remove_value(&self.alias, self.hash_c(&t), slot)
        self.rg_unlink(slot)

    cdef bint remove_slot(self, uint32_t slot, uint64_t h) noexcept nogil:
        """The single removal path: secondaries (value-guarded), owner RG, primary, slab.
        `h` is the hash of the record's key."""
        self.unindex_secondary(slot)
        self.idx_remove_value(&self.primary, h, slot)
        self.slab_free(slot)
        return True

    cdef bint remove_key(self, const skey_t* k) noexcept nogil:
        return self.remove_key_h(k, self.hash_c(k))

    cdef bint remove_key_h(self, const skey_t* k, uint64_t h) noexcept nogil:
        """remove_key with k's hash already computed (h == hash_c(k))."""
        cdef int64_t pos = self.idx_pos(&self.primary, IX_PRIMARY, k, h)
        if pos < 0:
            return False
        return self.remove_slot(<uint32_t>self.primary.slots[pos], h)

    # ----------------------------------------------------------------- internals: timing

    cdef uint8_t timeout_class(self, uint8_t proto, uint8_t tcp_flags) noexcept nogil:
        """The palette class of the idle timeout a packet sets."""
        if proto == PROTO_TCP:
            if tcp_flags & (TCP_FIN | TCP_RST):
                return self.cls_closing
            return self.cls_tcp
        if proto == PROTO_UDP:
            return self.cls_udp
        if is_icmp(proto):
            return self.cls_icmp
        return self.cls_other

    cdef inline void rec_see(self, srec_t* r, uint8_t proto, uint8_t tcp_flags) noexcept nogil:
        """A packet of the session was seen: FIN/RST sets the sticky closing flag, and the
        idle timeout follows (closing TCP keeps the short one)."""
        if proto == PROTO_TCP and tcp_flags & (TCP_FIN | TCP_RST):
            r.meta.state |= ST_CLOSING
        if proto == PROTO_TCP and r.meta.state & ST_CLOSING:
            r.meta.tclass = self.cls_closing
        else:
            r.meta.tclass = self.timeout_class(proto, tcp_flags)

    cdef void wheel_observe(self, uint64_t now_ns) noexcept nogil:
        if not self.wheel_started:
            self.cursor_tick = now_ns // C_TICK_NS
            self.wheel_started = True

    cdef void wheel_append(self, uint32_t slot, uint64_t tick) noexcept nogil:
        cdef sbucket_t* b = &self.wheel[tick & (C_BUCKETS - 1)]
        if b.len == b.cap and not ring_grow(<void**>&b.buf, &b.head, b.len, &b.cap,
                                            sizeof(swheel_entry_t), 8):
            self.c_alloc_failures += 1
            return
        b.buf[(b.head + b.len) & (b.cap - 1)].slot = slot
        b.buf[(b.head + b.len) & (b.cap - 1)].tick = <uint32_t>tick
        b.len += 1
        self.wheel_entries += 1

    cdef inline uint64_t wheel_target(self, const srec_t* r, uint64_t now_tick) noexcept nogil:
        """The tick a session expires at, clamped to C_FAR ticks ahead of `now_tick`."""
        cdef uint64_t exp_tick = (r.last_seen_ns + <uint64_t>self.tpal[r.meta.tclass] * C_TICK_NS) // C_TICK_NS
        cdef uint64_t delta = exp_tick - now_tick if exp_tick > now_tick else 0
        return now_tick + (delta if delta < C_FAR else C_FAR)

    cdef void push_to_wheel(self, uint32_t slot, uint64_t now_ns) noexcept nogil:
        """Schedule a session at its expiry tick (clamped to 255 ticks ahead); a push to the
        tick it already holds is skipped, which bounds duplicates per session."""
        self.wheel_observe(now_ns)
        cdef srec_t* r = &self.recs[slot]
        cdef uint64_t target = self.wheel_target(r, now_ns // C_TICK_NS)
        if <uint32_t>target != r.wheel_tick:
            r.wheel_tick = <uint32_t>target
            self.wheel_append(slot, target)

    # ----------------------------------------------------------------- internals: deltas

    cdef void push_delta(self, uint8_t kind, const srec_t* r, uint8_t fabric_sync) noexcept nogil:
        """Bounded FIFO, drop-newest when full (counted)."""
        cdef sdelta_t* d
        if self.delta_len >= C_MAX_DELTAS:
            self.c_delta_drops += 1
            return
        if self.delta_len == self.delta_cap and not ring_grow(
                <void**>&self.deltas, &self.delta_head, self.delta_len, &self.delta_cap,
                sizeof(sdelta_t), 64):
            self.c_delta_drops += 1
            return
        d = &self.deltas[(self.delta_head + self.delta_len) & (self.delta_cap - 1)]
        memset(d, 0, sizeof(sdelta_t))
        d.kind = kind
        d.origin = r.meta.origin
        d.fabric_redirect_sync = fabric_sync
        d.key = r.key
        rec_decision(r, self.addr1.cells, self.addr2.cells, &d.dec)
        self.rec_meta_out(r, &d.meta)
        self.delta_len += 1
        self.c_delta_pushed += 1

    # ----------------------------------------------------------------- write paths

    cdef int64_t insert_new(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                            uint8_t origin, uint64_t now_ns, uint8_t tcp_flags,
                            bint capped, bint emit) noexcept nogil:
        if not key_valid(k) or origin >= ORIGIN_COUNT:
            self.c_create_drops += 1
            return -1
        cdef uint64_t h = self.hash_c(k)
        cdef int64_t pos
        cdef uint32_t empty_at
        if not self.reserve_insert():  # first: a rehash would move index positions
            self.c_alloc_failures += 1
            self.c_create_drops += 1
            return -1
        pos = self.idx_probe(&self.primary, IX_PRIMARY, k, h, &empty_at)
        if capped and pos < 0 and self.primary.count >= self.max_sessions:
            self.c_create_drops += 1
            return -1
        if pos >= 0:
            self.remove_slot(<uint32_t>self.primary.slots[pos], h)
            self.c_replacements += 1
        cdef uint32_t slot = self.slab_alloc()
        cdef srec_t* r = &self.recs[slot]
        r.key = k[0]
        r.key.pad = 0
        self.rec_write(r, d, m, origin)
        r.meta.state = ST_LIVE
        self.rec_see(r, k.proto, tcp_flags)
        r.last_seen_ns = now_ns
        r.wheel_tick = <uint32_t>(now_ns // C_TICK_NS - 1)  # a tick no push can target
        if pos < 0:  # nothing moved since the probe: its empty slot is k's place
            self.primary.slots[empty_at] = (h >> 32 << 32) | slot
            self.primary.count += 1
        else:
            self.idx_raw_put(&self.primary, h, slot)
        self.index_secondary(slot)
        self.push_to_wheel(slot, now_ns)
        self.c_installs += 1
        r = &self.recs[slot]
        if emit and emits_deltas(r):
            self.push_delta(DELTA_OPEN, r, 0)
        return make_handle(r.generation, slot)

    cdef int64_t install_c(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                           uint8_t origin, uint64_t now_ns, uint8_t tcp_flags) noexcept nogil:
        return self.insert_new(k, d, m, origin, now_ns, tcp_flags, True, True)

    cdef int install_pair_c(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                            uint64_t now_ns, uint8_t tcp_flags, uint16_t reverse_egress_port,
                            int64_t* out_fwd, int64_t* out_rev) noexcept nogil:
        """Forward entry F plus reverse entry reverse_wire(F) with the reversed NAT."""
        cdef skey_t rk
        cdef sdecision_t rd
        cdef smeta_t rm
        cdef uint32_t needed = 0
        cdef bint with_reverse
        out_fwd[0] = -1
        out_rev[0] = -1
        if not key_valid(k):
            self.c_create_drops += 1
            return 0
        if d.disposition == DISP_LOCAL_DELIVERY:
            return 0
        with_reverse = not (d.disposition == DISP_FABRIC_REDIRECT and
                            not (m.flags & SM_FABRIC_INGRESS))
        k_reverse_wire(k, d, &rk)
        d_reverse(k, d, &rd)
        rd.egress_port = reverse_egress_port
        rm = m[0]
        rm.ingress_zone = m.egress_zone
        rm.egress_zone = m.ingress_zone
        rm.flags = (m.flags & SM_FABRIC_INGRESS) | SM_REVERSE
        if self.primary_slot(k) < 0:
            needed += 1
        if with_reverse and self.primary_slot(&rk) < 0:
            needed += 1
        if self.primary.count + needed > self.max_sessions:
            self.c_create_drops += needed
            return 0
        cdef smeta_t fm = m[0]
        fm.flags &= SM_FABRIC_INGRESS
        out_fwd[0] = self.insert_new(k, d, &fm, ORIGIN_FORWARD_FLOW, now_ns, tcp_flags,
                                     False, True)
        if out_fwd[0] < 0 or not with_reverse:
            return out_fwd[0] >= 0
        out_rev[0] = self.insert_new(&rk, &rd, &rm, ORIGIN_REVERSE_FLOW, now_ns, tcp_flags,
                                     False, True)
        return 1 + (out_rev[0] >= 0)

    # ----------------------------------------------------------------- read paths

    cdef int64_t lookup_c(self, const skey_t* k, uint64_t now_ns, uint8_t tcp_flags,
                          bint refresh, bint* via_alias) noexcept nogil:
        """Primary key, else the reverse-translated alias; refreshing when `refresh`."""
        return self.lookup_h(k, self.hash_c(k), now_ns, tcp_flags, refresh, via_alias)

    cdef int64_t lookup_h(self, const skey_t* k, uint64_t h, uint64_t now_ns, uint8_t tcp_flags,
                          bint refresh, bint* via_alias) noexcept nogil:
        cdef int64_t pos = self.idx_pos(&self.primary, IX_PRIMARY, k, h)
        cdef uint32_t slot
        cdef srec_t* r
        via_alias[0] = False
        self.c_lookups += refresh  # a probe (refresh False) is not a lookup in stats()
        if pos >= 0:
            slot = <uint32_t>self.primary.slots[pos]
        else:
            pos = self.idx_pos(&self.alias, IX_ALIAS, k, h)
            if pos < 0:
                return -1
            slot = <uint32_t>self.alias.slots[pos]
            via_alias[0] = True
            self.c_alias_hits += refresh
        self.c_hits += refresh
        r = &self.recs[slot]
        if refresh:
            self.rec_see(r, k.proto, tcp_flags)
            r.last_seen_ns = now_ns
            self.push_to_wheel(slot, now_ns)  # canonical record, never the alias key
        return make_handle(r.generation, slot)

    cdef int64_t find_forward_nat_c(self, const skey_t* reply) noexcept nogil:
        """The forward session a reply belongs to (reverse-wire or reverse-canonical)."""
        return self.find_nat_h(reply, self.hash_c(reply))

    cdef int64_t find_nat_h(self, const skey_t* reply, uint64_t h) noexcept nogil:
        self.c_nat_lookups += 1
        cdef int64_t pos = self.idx_pos(&self.natrev, IX_NATREV, reply, h)
        if pos < 0:
            return -1
        self.c_nat_hits += 1
        cdef uint32_t slot = <uint32_t>self.natrev.slots[pos]
        return make_handle(self.recs[slot].generation, slot)

    cdef int64_t find_forward_wire_c(self, const skey_t* wire) noexcept nogil:
        """The forward session whose post-NAT packet is `wire` (does not refresh)."""
        return self.find_wire_h(wire, self.hash_c(wire))

    cdef int64_t find_wire_h(self, const skey_t* wire, uint64_t h) noexcept nogil:
        self.c_wire_lookups += 1
        cdef int64_t pos = self.idx_pos(&self.fwire, IX_FWIRE, wire, h)
        if pos < 0:
            return -1
        self.c_wire_hits += 1
        cdef uint32_t slot = <uint32_t>self.fwire.slots[pos]
        return make_handle(self.recs[slot].generation, slot)

    cdef bint touch_handle_c(self, int64_t handle, uint64_t now_ns) noexcept nogil:
        """Keepalive: last_seen = now (timeout unchanged), then reschedule."""
        cdef srec_t* r = self.record_c(handle)
        if r == NULL:
            return False
        r.last_seen_ns = now_ns
        self.push_to_wheel(<uint32_t>(<uint64_t>handle), now_ns)
        self.c_touches += 1
        return True

    cdef void fill_session(self, uint32_t slot, ssession_t* out) noexcept nogil:
        cdef srec_t* r = &self.recs[slot]
        out.handle = make_handle(r.generation, slot)
        out.last_seen_ns = r.last_seen_ns
        out.expires_after_ns = <uint64_t>self.tpal[r.meta.tclass] * C_TICK_NS
        # the scheduled tick is within 2**31 ticks (68 years) of the wheel cursor
        out.wheel_tick = self.cursor_tick + <uint64_t><int64_t><int32_t>(
            r.wheel_tick - <uint32_t>self.cursor_tick)
        out.key = r.key
        rec_decision(r, self.addr1.cells, self.addr2.cells, &out.dec)
        self.rec_meta_out(r, &out.meta)
        out.origin = r.meta.origin
        out.closing = (r.meta.state & ST_CLOSING) != 0
        out.valid = 1
        out.pad = 0

    # ================================================================= Python API: writes

    def install(self, key, decision=None, meta=None, uint64_t now_ns=0,
                origin=ORIGIN_FORWARD_FLOW, tcp_flags=0):
        """Install (or replace) one entry; returns its handle, or -1 if refused.

        Refusals are counted: the table is full and the key is new, or the key is invalid.
        A replaced entry emits no delta; a new local forward entry emits an Open delta.
        """
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef uint8_t o = _check_origin(origin)
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        return self.install_c(<skey_t*>_ptr(k), <sdecision_t*>_ptr(d), <smeta_t*>_ptr(m),
                              o, now_ns, f)

    def install_batch(self, keys, decisions, metas, uint64_t now_ns, origins=None,
                      tcp_flags=None, out_handles=None):
        """install() for each row, in order, without the GIL; returns the int64 handles."""
        self._idle()
        _need(keys, KEY_DTYPE, "keys")
        _need(decisions, DECISION_DTYPE, "decisions")
        _need(metas, META_DTYPE, "metas")
        _same_len(keys, decisions, "keys", "decisions")
        _same_len(keys, metas, "keys", "metas")
        cdef Py_ssize_t i, n = keys.shape[0]
        # a scalar origin / flag is read through a stride of 0 (no per-call array)
        cdef uint8_t o_one = ORIGIN_FORWARD_FLOW, f_one = 0
        cdef uint8_t* op = &o_one
        cdef uint8_t* fp = &f_one
        cdef Py_ssize_t ostep = 0, fstep = 0
        if isinstance(origins, int):
            o_one = _check_origin(origins)
        elif origins is not None:
            org = _u8_per_key(origins, n, "origins")
            if n and org[:n].max() >= ORIGIN_COUNT:
                raise ValueError(f"origins must be 0..{ORIGIN_COUNT - 1}")
            op, ostep = <uint8_t*>_ptr(org), 1
        if tcp_flags is not None:
            fl = _u8_per_key(tcp_flags, n, "tcp_flags")
            fp, fstep = <uint8_t*>_ptr(fl), 1
        out = _out_i64(out_handles, n, "out_handles")
        cdef skey_t* kp = <skey_t*>_ptr(keys)
        cdef sdecision_t* dp = <sdecision_t*>_ptr(decisions)
        cdef smeta_t* mp = <smeta_t*>_ptr(metas)
        cdef int64_t* hp = <int64_t*>_ptr(out)
        self.busy = True
        with nogil:
            for i in range(n):
                hp[i] = self.install_c(&kp[i], &dp[i], &mp[i], op[i * ostep], now_ns,
                                       fp[i * fstep])
        self.busy = False
        return out

    def install_pair(self, key, decision=None, meta=None, uint64_t now_ns=0, tcp_flags=0,
                     reverse_egress_port=0):
        """Install a new flow: forward entry `key` and its reverse entry
        reverse_wire(key, decision) carrying the reversed NAT and swapped zones.

        Returns (forward_handle, reverse_handle), -1 for an entry not installed. Nothing is
        installed for LocalDelivery; the reverse entry is skipped for a FabricRedirect that
        did not arrive over the fabric. The pair is admitted whole or not at all.
        """
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        cdef int64_t hf, hr
        self.install_pair_c(<skey_t*>_ptr(k), <sdecision_t*>_ptr(d), <smeta_t*>_ptr(m),
                            now_ns, f, <uint16_t>reverse_egress_port, &hf, &hr)
        return hf, hr

    def install_pair_batch(self, keys, decisions, metas, uint64_t now_ns, tcp_flags=None,
                           reverse_egress_ports=None, out_forward=None, out_reverse=None):
        """install_pair() for each row, in order, without the GIL; returns (fwd, rev)."""
        self._idle()
        _need(keys, KEY_DTYPE, "keys")
        _need(decisions, DECISION_DTYPE, "decisions")
        _need(metas, META_DTYPE, "metas")
        _same_len(keys, decisions, "keys", "decisions")
        _same_len(keys, metas, "keys", "metas")
        cdef Py_ssize_t i, n = keys.shape[0]
        fl = _u8_per_key(tcp_flags, n, "tcp_flags")
        if reverse_egress_ports is None:
            rep = np.zeros(n, dtype=np.uint16)
        else:
            rep = np.ascontiguousarray(np.broadcast_to(reverse_egress_ports, (n,)),
                                       dtype=np.uint16)
        of = _out_i64(out_forward, n, "out_forward")
        orv = _out_i64(out_reverse, n, "out_reverse")
        cdef skey_t* kp = <skey_t*>_ptr(keys)
        cdef sdecision_t* dp = <sdecision_t*>_ptr(decisions)
        cdef smeta_t* mp = <smeta_t*>_ptr(metas)
        cdef uint8_t* fp = <uint8_t*>_ptr(fl)
        cdef uint16_t* rp = <uint16_t*>_ptr(rep)
        cdef int64_t* fo = <int64_t*>_ptr(of)
        cdef int64_t* ro = <int64_t*>_ptr(orv)
        self.busy = True
        with nogil:
            for i in range(n):
                self.install_pair_c(&kp[i], &dp[i], &mp[i], now_ns, fp[i], rp[i],
                                    &fo[i], &ro[i])
        self.busy = False
        return of, orv

    def upsert_synced(self, key, decision=None, meta=None, uint64_t now_ns=0,
                      origin=ORIGIN_SYNC_IMPORT, tcp_flags=0, allow_replace_local=False):
        """Import a peer's session (HA). Refused (-1) if a local, not peer-synced entry with
        the same key exists and `allow_replace_local` is false. Never capped by
        max_sessions, never emits deltas. Returns the handle."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef uint8_t o = _check_origin(origin)
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        cdef int64_t slot = self.primary_slot(<skey_t*>_ptr(k))
        if slot >= 0 and not peer_synced(self.recs[slot].meta.origin) and not allow_replace_local:
            self.c_synced_rejects += 1
            return -1
        h = self.insert_new(<skey_t*>_ptr(k), <sdecision_t*>_ptr(d), <smeta_t*>_ptr(m),
                            o, now_ns, f, False, False)
        if h >= 0:
            self.c_synced_upserts += 1
        return h

    def update_session(self, key, decision, meta, origin, uint64_t now_ns, tcp_flags=0,
                       ha_activation=False):
        """Rewrite an existing entry in place (its handle stays valid).

        Accepted when `ha_activation`, or when the new origin is local: a local entry is
        refreshed, a peer-synced one promoted (Open delta if forward). A peer-synced new
        origin is rejected. On accept, decision, meta, origin, last_seen, timeout and the
        closing flag (from `tcp_flags`) are rewritten. Returns whether it was accepted.
        """
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef uint8_t o = _check_origin(origin)
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        cdef skey_t* kp = <skey_t*>_ptr(k)
        cdef int64_t slot = self.primary_slot(kp)
        if slot < 0:
            return False
        cdef uint8_t old_origin = self.recs[slot].meta.origin
        if not ha_activation and peer_synced(o):
            self.c_update_rejects += 1
            return False
        if not self.reserve_insert():
            self.c_alloc_failures += 1
            raise MemoryError("session table could not grow its indices")
        self.unindex_secondary(<uint32_t>slot)
        cdef srec_t* r = &self.recs[slot]
        self.rec_release_addrs(r)
        self.rec_write(r, <sdecision_t*>_ptr(d), <smeta_t*>_ptr(m), o)
        r.last_seen_ns = now_ns
        r.meta.state = ST_LIVE
        self.rec_see(r, kp.proto, f)
        self.index_secondary(<uint32_t>slot)
        self.push_to_wheel(<uint32_t>slot, now_ns)
        self.c_updates += 1
        r = &self.recs[slot]
        if peer_synced(old_origin) and not peer_synced(o) and not (r.meta.flags & SM_REVERSE):
            self.push_delta(DELTA_OPEN, r, 0)
        return True

    def refresh_local(self, key, decision, meta, uint64_t now_ns, tcp_flags=0):
        """update_session keeping the current origin: refuses peer-synced entries."""
        self._idle()
        h = self.peek(key)
        if h < 0:
            return False
        return self.update_session(key, decision, meta, self.recs[<uint32_t>h].meta.origin,
                                   now_ns, tcp_flags, False)

    def refresh_for_ha_activation(self, key, decision, meta, uint64_t now_ns, tcp_flags=0):
        """update_session keeping the current origin and always accepting (RG activation)."""
        self._idle()
        h = self.peek(key)
        if h < 0:
            return False
        return self.update_session(key, decision, meta, self.recs[<uint32_t>h].meta.origin,
                                   now_ns, tcp_flags, True)

    def promote_synced(self, key, decision, meta, origin, uint64_t now_ns, tcp_flags=0):
        """update_session with a new (local) origin: promotes a peer-synced entry."""
        self._idle()
        return self.update_session(key, decision, meta, origin, now_ns, tcp_flags, False)

    def refresh_for_ha_transition(self, key, decision, meta, uint64_t now_ns):
        """New decision and meta, last_seen = now; origin, timeout and closing are kept.
        Never emits a delta. Returns whether the key existed."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef int64_t slot = self.primary_slot(<skey_t*>_ptr(k))
        if slot < 0:
            return False
        if not self.reserve_insert():
            self.c_alloc_failures += 1
            raise MemoryError("session table could not grow its indices")
        self.unindex_secondary(<uint32_t>slot)
        cdef srec_t* r = &self.recs[slot]
        self.rec_release_addrs(r)
        self.rec_write(r, <sdecision_t*>_ptr(d), <smeta_t*>_ptr(m), r.meta.origin)
        r.last_seen_ns = now_ns
        self.index_secondary(<uint32_t>slot)
        self.push_to_wheel(<uint32_t>slot, now_ns)
        self.c_updates += 1
        return True

    def delete(self, key):
        """Remove one entry and every index entry pointing at it. Emits no Close delta
        (callers clean up HA state themselves). Returns whether it existed."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        if self.remove_key(<skey_t*>_ptr(k)):
            self.c_deletes += 1
            return True
        return False

    def delete_batch(self, keys):
        """delete() for each key in order, without the GIL; returns how many existed."""
        self._idle()
        _need(keys, KEY_DTYPE, "keys")
        cdef Py_ssize_t i, n = keys.shape[0], removed = 0
        cdef skey_t* kp = <skey_t*>_ptr(keys)
        cdef uint64_t hb[PIPE]
        cdef Py_ssize_t base, m, j
        self.busy = True
        with nogil:
            base = 0
            while base < n:  # pipelined like _lookup_batch
                m = n - base if n - base < PIPE else PIPE
                for j in range(m):
                    hb[j] = self.hash_c(&kp[base + j])
                for j in range(m if m < PF_INDEX else PF_INDEX):
                    self.prefetch_home(&self.primary, hb[j])
                for j in range(m):
                    if j + PF_INDEX < m:
                        self.prefetch_home(&self.primary, hb[j + PF_INDEX])
                    if j + PF_RECORD < m:
                        self.prefetch_record(&self.primary, hb[j + PF_RECORD])
                    if self.remove_key_h(&kp[base + j], hb[j]):
                        removed += 1
                base += m
            self.c_deletes += removed
        self.busy = False
        return removed

    def touch(self, key, uint64_t now_ns):
        """Keepalive by primary key (no alias): last_seen = now; timeout unchanged."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef int64_t slot = self.primary_slot(<skey_t*>_ptr(k))
        if slot < 0:
            return False
        return self.touch_handle_c(make_handle(self.recs[slot].generation, <uint32_t>slot),
                                   now_ns)

    def touch_batch(self, handles, uint64_t now_ns):
        """Keepalive by handle; stale handles are skipped. Returns how many were touched."""
        self._idle()
        _need(handles, np.dtype(np.int64), "handles")
        cdef Py_ssize_t i, n = handles.shape[0], touched = 0
        cdef int64_t* hp = <int64_t*>_ptr(handles)
        self.busy = True
        with nogil:
            for i in range(n):
                touched += self.touch_handle_c(hp[i], now_ns)
        self.busy = False
        return touched

    # ================================================================= Python API: reads

    def lookup(self, key, uint64_t now_ns, tcp_flags=0):
        """Refreshing lookup (primary key, then reverse-translated alias); handle or -1."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        cdef bint alias
        return self.lookup_c(<skey_t*>_ptr(k), now_ns, f, True, &alias)

    def peek(self, key):
        """lookup() without refreshing anything; handle or -1."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef bint alias
        return self.lookup_c(<skey_t*>_ptr(k), 0, 0, False, &alias)

    def lookup_batch(self, keys, uint64_t now_ns, out_handles=None, tcp_flags=None,
                     out_via_alias=None):
        """lookup() for each key in order, without the GIL. Fills `out_handles` (int64,
        -1 = miss) and optionally `out_via_alias` (uint8); returns the number of hits."""
        self._idle()
        return self._lookup_batch(keys, now_ns, out_handles, tcp_flags, out_via_alias, True)

    def peek_batch(self, keys, out_handles=None, out_via_alias=None):
        """Non-refreshing lookup_batch (counters are not touched either)."""
        self._idle()
        return self._lookup_batch(keys, 0, out_handles, None, out_via_alias, False)

    cdef object _lookup_batch(self, keys, uint64_t now_ns, out_handles, tcp_flags,
                              out_via_alias, bint refresh):
        _need(keys, KEY_DTYPE, "keys")
        cdef Py_ssize_t i, n = keys.shape[0], hits = 0
        out = _out_i64(out_handles, n, "out_handles")
        cdef uint8_t f_one = 0
        cdef uint8_t* fp = &f_one
        cdef Py_ssize_t fstep = 0
        if isinstance(tcp_flags, int):
            f_one = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        elif tcp_flags is not None:
            fl = _u8_per_key(tcp_flags, n, "tcp_flags")
            fp, fstep = <uint8_t*>_ptr(fl), 1
        cdef uint8_t* ap = NULL
        if out_via_alias is not None:
            _need(out_via_alias, np.dtype(np.uint8), "out_via_alias", True)
            if out_via_alias.shape[0] < n:
                raise ValueError(f"out_via_alias needs {n} entries")
            ap = <uint8_t*>_ptr(out_via_alias)
        cdef skey_t* kp = <skey_t*>_ptr(keys)
        cdef int64_t* hp = <int64_t*>_ptr(out)
        cdef bint alias
        cdef uint64_t hb[PIPE]
        cdef Py_ssize_t base, m, j
        self.busy = True
        with nogil:
            base = 0
            while base < n:
                m = n - base if n - base < PIPE else PIPE
                for j in range(m):
                    hb[j] = self.hash_c(&kp[base + j])
                for j in range(m if m < PF_INDEX else PF_INDEX):
                    self.prefetch_home(&self.primary, hb[j])
                    self.prefetch_home(&self.alias, hb[j])
                for j in range(m):
                    if j + PF_INDEX < m:
                        self.prefetch_home(&self.primary, hb[j + PF_INDEX])
                        self.prefetch_home(&self.alias, hb[j + PF_INDEX])
                    if j + PF_RECORD < m and not self.prefetch_record(&self.primary,
                                                                      hb[j + PF_RECORD]):
                        self.prefetch_record(&self.alias, hb[j + PF_RECORD])
                    i = base + j
                    hp[i] = self.lookup_h(&kp[i], hb[j], now_ns, fp[i * fstep], refresh, &alias)
                    if hp[i] >= 0:
                        hits += 1
                    if ap != NULL:
                        ap[i] = alias
                base += m
        self.busy = False
        return hits

    def find_forward_nat(self, reply_key):
        """The forward session a reply matches (reverse-wire or reverse-canonical key);
        handle or -1. Read-only."""
        self._idle()
        k = _one(reply_key, KEY_DTYPE, "reply_key")
        return self.find_forward_nat_c(<skey_t*>_ptr(k))

    def find_forward_wire(self, wire_key):
        """The forward session whose post-NAT packet is `wire_key`; handle or -1."""
        self._idle()
        k = _one(wire_key, KEY_DTYPE, "wire_key")
        return self.find_forward_wire_c(<skey_t*>_ptr(k))

    def find_forward_nat_batch(self, keys, out_handles=None):
        """find_forward_nat for each key, without the GIL; returns the number of hits."""
        self._idle()
        return self._find_batch(keys, out_handles, True)

    def find_forward_wire_batch(self, keys, out_handles=None):
        """find_forward_wire for each key, without the GIL; returns the number of hits."""
        self._idle()
        return self._find_batch(keys, out_handles, False)

    cdef object _find_batch(self, keys, out_handles, bint nat):
        _need(keys, KEY_DTYPE, "keys")
        cdef Py_ssize_t i, n = keys.shape[0], hits = 0
        out = _out_i64(out_handles, n, "out_handles")
        cdef skey_t* kp = <skey_t*>_ptr(keys)
        cdef int64_t* hp = <int64_t*>_ptr(out)
        cdef uint64_t hb[PIPE]
        cdef Py_ssize_t base, m, j
        cdef sindex_t* ix = &self.natrev if nat else &self.fwire
        self.busy = True
        with nogil:
            base = 0
            while base < n:
                m = n - base if n - base < PIPE else PIPE
                for j in range(m):
                    hb[j] = self.hash_c(&kp[base + j])
                for j in range(m if m < PF_INDEX else PF_INDEX):
                    self.prefetch_home(ix, hb[j])
                for j in range(m):
                    if j + PF_INDEX < m:
                        self.prefetch_home(ix, hb[j + PF_INDEX])
                    if j + PF_RECORD < m:
                        self.prefetch_record(ix, hb[j + PF_RECORD])
                    i = base + j
                    if nat:
                        hp[i] = self.find_nat_h(&kp[i], hb[j])
                    else:
                        hp[i] = self.find_wire_h(&kp[i], hb[j])
                    if hp[i] >= 0:
                        hits += 1
                base += m
        self.busy = False
        return hits

    def records(self, handles):
        """SESSION_DTYPE copies of the records named by `handles` (valid = 0 if stale)."""
        self._idle()
        hs = np.ascontiguousarray(handles, dtype=np.int64).reshape(-1)
        cdef Py_ssize_t i, n = hs.shape[0]
        out = np.zeros(n, dtype=SESSION_DTYPE)
        cdef int64_t* hp = <int64_t*>_ptr(hs)
        cdef ssession_t* op = <ssession_t*>_ptr(out)
        self.busy = True
        with nogil:
            for i in range(n):
                if self.record_c(hp[i]) != NULL:
                    self.fill_session(<uint32_t>hp[i], &op[i])
                else:
                    op[i].handle = -1
        self.busy = False
        return out

    def entry(self, key):
        """The record stored under primary `key` (SESSION_DTYPE scalar), or None."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef int64_t slot = self.primary_slot(<skey_t*>_ptr(k))
        if slot < 0:
            return None
        return self.records([make_handle(self.recs[slot].generation, <uint32_t>slot)])[0]

    def __contains__(self, key):
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        return self.primary_slot(<skey_t*>_ptr(k)) >= 0

    def keys(self):
        """Every primary key (KEY_DTYPE array, slab order)."""
        self._idle()
        cdef uint32_t s
        cdef Py_ssize_t j = 0
        out = np.empty(self.primary.count, dtype=KEY_DTYPE)
        cdef skey_t* op = <skey_t*>_ptr(out)
        for s in range(self.rec_hwm):
            if self.recs[s].meta.state & ST_LIVE and j < out.shape[0]:
                op[j] = self.recs[s].key
                j += 1
        return out[:j]

    # ================================================================= GC

    @property
    def last_gc_ns(self):
        """Time of the last ungated expire() call (None before the first)."""
        return self.last_gc_ns_ if self.gc_started else None

    @last_gc_ns.setter
    def last_gc_ns(self, value):
        if value is None:
            self.gc_started = False
            self.last_gc_ns_ = 0
        else:
            self.gc_started = True
            self.last_gc_ns_ = <uint64_t>value

    @property
    def wheel_cursor_tick(self):
        """Next wheel tick the GC will process (None until the first timestamp is seen)."""
        return self.cursor_tick if self.wheel_started else None

    def wheel_entries_for(self, key):
        """How many wheel entries name the slot of the session under primary `key`, current
        and stale (stale ones of an earlier occupant of the slot included; for tests)."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef int64_t slot = self.primary_slot(<skey_t*>_ptr(k))
        if slot < 0:
            return 0
        cdef uint32_t b, i
        cdef Py_ssize_t count = 0
        for b in range(C_BUCKETS):
            for i in range(self.wheel[b].len):
                if self.wheel[b].buf[(self.wheel[b].head + i) & (self.wheel[b].cap - 1)].slot == slot:
                    count += 1
        return count

    def last_pop_stats(self):
        """What the last expire() call saw: scanned = gone + stale + expired + re_bucketed."""
        self._idle()
        return {"scanned": self.pop_stats[POP_SCANNED], "dropped_gone": self.pop_stats[POP_GONE],
                "dropped_stale": self.pop_stats[POP_STALE],
                "expired": self.pop_stats[POP_EXPIRED],
                "re_bucketed": self.pop_stats[POP_REBUCKETED]}

    def expire(self, uint64_t now_ns):
        """Collect sessions idle longer than their timeout (strictly), at most once per
        1 s GC interval. Returns the removed sessions as a SESSION_DTYPE array (handles
        already stale). Local forward sessions emit a Close delta."""
        self._idle()
        memset(self.pop_stats, 0, sizeof(self.pop_stats))
        if self.gc_started and (now_ns < self.last_gc_ns_ or
                                now_ns - self.last_gc_ns_ < C_TICK_NS):
            return np.zeros(0, dtype=SESSION_DTYPE)
        self.gc_started = True
        self.last_gc_ns_ = now_ns
        cdef ssession_t* buf = NULL
        cdef size_t cap = 0
        cdef Py_ssize_t n
        self.busy = True
        with nogil:
            n = self.expire_c(now_ns, &buf, &cap)
        self.busy = False
        if n < 0:
            free(buf)
            raise MemoryError("expire could not allocate its result")
        out = np.empty(n, dtype=SESSION_DTYPE)
        if n:
            memcpy(_ptr(out), buf, n * sizeof(ssession_t))
        free(buf)
        return out

    cdef Py_ssize_t expire_c(self, uint64_t now_ns, ssession_t** buf, size_t* cap) noexcept nogil:
        cdef uint64_t now_tick = now_ns // C_TICK_NS
        cdef sbucket_t* b
        cdef uint32_t todo, slot
        cdef swheel_entry_t e
        cdef srec_t* r
        cdef Py_ssize_t n = 0
        cdef ssession_t* nb
        cdef uint64_t target
        self.wheel_observe(now_ns)
        if now_tick > self.cursor_tick + C_BUCKETS:
            # every bucket is visited in the last 256 ticks anyway; skip whole rotations
            self.cursor_tick = now_tick - C_BUCKETS
        while self.cursor_tick < now_tick:
            b = &self.wheel[self.cursor_tick & (C_BUCKETS - 1)]
            todo = b.len
            while todo:
                todo -= 1
                e = b.buf[b.head]
                b.head = (b.head + 1) & (b.cap - 1)
                b.len -= 1
                self.wheel_entries -= 1
                self.pop_stats[POP_SCANNED] += 1
                slot = e.slot
                if slot >= self.rec_hwm or not (self.recs[slot].meta.state & ST_LIVE):
                    self.pop_stats[POP_GONE] += 1
                    continue
                r = &self.recs[slot]
                if r.wheel_tick != e.tick:
                    self.pop_stats[POP_STALE] += 1
                    continue
                if now_ns > r.last_seen_ns and \
                        now_ns - r.last_seen_ns > <uint64_t>self.tpal[r.meta.tclass] * C_TICK_NS:
                    if <size_t>n == cap[0]:
                        nb = <ssession_t*>realloc(buf[0], (cap[0] * 2 + 64) * sizeof(ssession_t))
                        if nb == NULL:
                            return -1
                        buf[0] = nb
                        cap[0] = cap[0] * 2 + 64
                    self.fill_session(slot, &buf[0][n])
                    buf[0][n].handle = -1
                    n += 1
                    if emits_deltas(r):
                        self.push_delta(DELTA_CLOSE, r, 0)
                    self.remove_slot(slot, self.hash_c(&r.key))
                    self.pop_stats[POP_EXPIRED] += 1
                else:
                    target = self.wheel_target(r, now_tick)
                    r.wheel_tick = <uint32_t>target
                    self.wheel_append(slot, target)
                    self.pop_stats[POP_REBUCKETED] += 1
            if b.len == 0 and b.cap > 1024:
                free(b.buf)
                b.buf = NULL
                b.cap = 0
                b.head = 0
            self.cursor_tick += 1
        self.c_expired += self.pop_stats[POP_EXPIRED]
        return n

    # ================================================================= HA

    def drain_deltas(self, max_deltas=256):
        """Pop up to max(max_deltas, 1) queued deltas (DELTA_DTYPE array), oldest first."""
        self._idle()
        cdef uint32_t want = max(int(max_deltas), 1), i
        cdef uint32_t n = min(want, self.delta_len)
        out = np.empty(n, dtype=DELTA_DTYPE)
        cdef sdelta_t* op = <sdelta_t*>_ptr(out)
        for i in range(n):
            op[i] = self.deltas[(self.delta_head + i) & (self.delta_cap - 1)]
        if n:
            self.delta_head = (self.delta_head + n) & (self.delta_cap - 1)
            self.delta_len -= n
        self.c_delta_drained += n
        return out

    @property
    def pending_deltas(self):
        """Number of deltas waiting in the queue."""
        return self.delta_len

    cdef object _rg_walk(self, rgs, int mode):
        """Walk owner-RG lists (validated: live and owner_rg == rg). mode 0: keys,
        1: demote (keys), 2: export (deltas)."""
        seen = set()
        chunks = []
        cdef int64_t pos
        cdef uint32_t s
        cdef srec_t* r
        cdef int32_t rg
        cdef Py_ssize_t j, cap
        cdef skey_t* kout
        cdef sdelta_t* dout
        for rgv in rgs:
            rg = int(rgv)
            if rg <= 0 or rg in seen:
                continue
            seen.add(rg)
            pos = self.rg_find(rg)
            if pos < 0:
                continue
            cap = self.rg_counts[pos]
            out = np.empty(cap, dtype=DELTA_DTYPE if mode == 2 else KEY_DTYPE)
            kout = <skey_t*>_ptr(out)
            dout = <sdelta_t*>_ptr(out)
            j = 0
            self.busy = True
            with nogil:
                s = self.rg_heads[pos]
                while s != NO_SLOT and j < cap:
                    r = &self.recs[s]
                    s = r.rg_next
                    if not (r.meta.state & ST_LIVE) or r.meta.owner_rg != rg:
                        continue
                    if mode != 2:
                        if mode == 1 and not peer_synced(r.meta.origin):
                            r.meta.origin = ORIGIN_SYNC_IMPORT
                        kout[j] = r.key
                        j += 1
                    elif (r.meta.flags & (SM_REVERSE | SM_FABRIC_INGRESS)) == 0 and \
                            not peer_synced(r.meta.origin) and not transient_seed(r.meta.origin) and \
                            (r.dec.disposition == DISP_FORWARD_CANDIDATE or
                             r.dec.disposition == DISP_FABRIC_REDIRECT):
                        memset(&dout[j], 0, sizeof(sdelta_t))
                        dout[j].kind = DELTA_OPEN
                        dout[j].origin = r.meta.origin
                        dout[j].fabric_redirect_sync = 1
                        dout[j].key = r.key
                        rec_decision(r, self.addr1.cells, self.addr2.cells, &dout[j].dec)
                        self.rec_meta_out(r, &dout[j].meta)
                        j += 1
            self.busy = False
            chunks.append(out[:j])
        if not chunks:
            return np.zeros(0, dtype=DELTA_DTYPE if mode == 2 else KEY_DTYPE)
        if len(chunks) == 1:
            return chunks[0]
        return np.concatenate(chunks)

    def owner_rg_keys(self, rgs):
        """Primary keys of every session owned by any of the RGs in `rgs` (KEY_DTYPE)."""
        self._idle()
        return self._rg_walk(rgs, 0)

    def demote_owner_rg(self, rg):
        """Mark every session of `rg` (forward and reverse) SyncImport unless already
        peer-synced; returns all of their keys. Indices are untouched."""
        self._idle()
        return self._rg_walk([rg], 1)

    def export_owner_rg(self, rgs):
        """Open deltas (fabric_redirect_sync = 1) for the local forward sessions of `rgs`
        that a peer should own: not peer-synced, not seeds, not fabric-ingress,
        ForwardCandidate or FabricRedirect. Returned directly (lossless), not queued."""
        self._idle()
        return self._rg_walk(rgs, 2)

    # ================================================================= introspection

    def stats(self):
        """Every counter and size, as a dict of ints."""
        self._idle()
        return {
            "sessions": self.primary.count,
            "installs": self.c_installs,
            "replacements": self.c_replacements,
            "create_drops": self.c_create_drops,
            "alloc_failures": self.c_alloc_failures,
            "lookups": self.c_lookups,
            "hits": self.c_hits,
            "hits_via_alias": self.c_alias_hits,
            "nat_lookups": self.c_nat_lookups,
            "nat_hits": self.c_nat_hits,
            "wire_lookups": self.c_wire_lookups,
            "wire_hits": self.c_wire_hits,
            "touches": self.c_touches,
            "deletes": self.c_deletes,
            "expired": self.c_expired,
            "synced_upserts": self.c_synced_upserts,
            "synced_rejects": self.c_synced_rejects,
            "updates": self.c_updates,
            "update_rejects": self.c_update_rejects,
            "deltas_pushed": self.c_delta_pushed,
            "delta_drops": self.c_delta_drops,
            "delta_drained": self.c_delta_drained,
            "deltas_pending": self.delta_len,
            "nat_reverse_entries": self.natrev.count,
            "forward_wire_entries": self.fwire.count,
            "alias_entries": self.alias.count,
            "owner_rgs": self.rg_used,
            "wheel_entries": self.wheel_entries,
            "slab_capacity": self.rec_cap,
            "nat_address_cells": self.addr1.used + self.addr2.used,
            "memory_bytes": self.memory_bytes(),
        }

    def memory_bytes(self, include_wheel=True):
        """Heap bytes held by the slab, all indices, the delta queue and (optionally) the
        timer wheel."""
        self._idle()
        cdef uint64_t total = <uint64_t>self.rec_cap * sizeof(srec_t)
        total += (<uint64_t>self.primary.cap + self.natrev.cap + self.fwire.cap +
                  self.alias.cap) * sizeof(uint64_t)
        total += <uint64_t>self.rg_cap * (sizeof(int32_t) + 2 * sizeof(uint32_t))
        total += <uint64_t>self.addr1.cap * 16 + <uint64_t>self.addr2.cap * 32
        total += (<uint64_t>self.intern1.refs_cap + self.intern1.cap) * sizeof(uint32_t)
        total += <uint64_t>self.delta_cap * sizeof(sdelta_t)
        cdef int b
        if include_wheel:
            for b in range(256):
                total += <uint64_t>self.wheel[b].cap * sizeof(swheel_entry_t)
        return total

    def index_load(self):
        """Per index: (entries, capacity, mean probe displacement); a hash-quality check."""
        self._idle()
        out = {}
        cdef sindex_t* ix
        cdef uint32_t i, home
        cdef uint64_t e, disp
        for name in INDEX_NAMES:
            ix = self._index_named(name)
            disp = 0
            for i in range(ix.cap):
                e = ix.slots[i]
                if <uint32_t>e == NO_SLOT:
                    continue
                home = home_of(<uint32_t>(e >> 32), ix.cap)
                disp += i - home if i >= home else i + ix.cap - home
            out[name] = (ix.count, ix.cap, (<double>disp) / ix.count if ix.count else 0.0)
        return out

    def _debug_inject(self, index, key, handle):
        """Test hook: add a raw entry key -> slot(handle) to an index without validation,
        to simulate a corrupted or stale mapping. index: primary, nat_reverse,
        forward_wire or alias."""
        self._idle()
        cdef sindex_t* ix = self._index_named(index)
        k = _one(key, KEY_DTYPE, "key")
        if not self.idx_reserve(ix, 1):
            raise MemoryError()
        self.idx_raw_put(ix, self.hash_c(<skey_t*>_ptr(k)), <uint32_t>(int(handle) & 0xFFFFFFFF))

    def check_invariants(self):
        """O(N) scan of invariants I1-I7 (sessions.md §2.7); raises AssertionError naming
        the first violation, returns a summary dict otherwise."""
        self._idle()
        cdef uint32_t s, i, b, live = 0, pos
        cdef srec_t* r
        cdef uint64_t e
        cdef skey_t t
        cdef int64_t p
        cdef Py_ssize_t rg_total = 0
        # I1: primary entries <-> live records, one each
        seen = np.zeros(self.rec_hwm, dtype=np.uint8)
        for i in range(self.primary.cap):
            e = self.primary.slots[i]
            if <uint32_t>e == NO_SLOT:
                continue
            s = <uint32_t>e
            if s >= self.rec_hwm or not (self.recs[s].meta.state & ST_LIVE):
                raise AssertionError(f"I1/I2: primary entry at {i} points at free slot {s}")
            if <uint32_t>(e >> 32) != <uint32_t>(self.hash_c(&self.recs[s].key) >> 32):
                raise AssertionError(f"I1: primary entry at {i} is not stored under its record's key")
            if seen[s]:
                raise AssertionError(f"I1: slot {s} has two primary entries")
            seen[s] = 1
        for s in range(self.rec_hwm):
            if self.recs[s].meta.state & ST_LIVE:
                live += 1
                if not seen[s]:
                    raise AssertionError(f"I1: live slot {s} has no primary entry")
                if self.primary_slot(&self.recs[s].key) != s:
                    raise AssertionError(f"I1: key of slot {s} does not resolve to it")
        if live != self.primary.count:
            raise AssertionError(f"I1: len {self.primary.count} != live records {live}")
        # I2/I3: every secondary entry points at a live record whose derived key it carries
        for name, kind in (("nat_reverse", IX_NATREV), ("forward_wire", IX_FWIRE),
                           ("alias", IX_ALIAS)):
            self._check_secondary(name, kind)
        # I5: owner-RG lists hold exactly the live records with owner_rg > 0, once each
        in_rg = np.zeros(self.rec_hwm, dtype=np.uint8)
        for i in range(self.rg_cap):
            if self.rg_keys[i] == 0:
                continue
            cnt = 0
            s = self.rg_heads[i]
            prev = NO_SLOT
            while s != NO_SLOT:
                if s >= self.rec_hwm or not (self.recs[s].meta.state & ST_LIVE):
                    raise AssertionError(f"I5: RG {self.rg_keys[i]} lists free slot {s}")
                if self.recs[s].meta.owner_rg != self.rg_keys[i]:
                    raise AssertionError(f"I5: slot {s} listed under the wrong RG")
                if in_rg[s]:
                    raise AssertionError(f"I5: slot {s} listed twice")
                if self.recs[s].rg_prev != prev:
                    raise AssertionError(f"I5: broken back link at slot {s}")
                in_rg[s] = 1
                cnt += 1
                prev = s
                s = self.recs[s].rg_next
            if cnt != self.rg_counts[i] or cnt == 0:
                raise AssertionError(f"I5: RG {self.rg_keys[i]} count {self.rg_counts[i]} != {cnt}")
            rg_total += cnt
        for s in range(self.rec_hwm):
            if self.recs[s].meta.state & ST_LIVE and (self.recs[s].meta.owner_rg > 0) != in_rg[s]:
                raise AssertionError(f"I5: slot {s} (rg {self.recs[s].meta.owner_rg}) "
                                     "membership wrong")
        # I7: every live record has a wheel entry at its scheduled tick
        cdef swheel_entry_t we
        sched = np.zeros(self.rec_hwm, dtype=np.uint8)
        cdef uint64_t wcount = 0
        for b in range(C_BUCKETS):
            for i in range(self.wheel[b].len):
                we = self.wheel[b].buf[(self.wheel[b].head + i) & (self.wheel[b].cap - 1)]
                wcount += 1
                if we.slot < self.rec_hwm and self.recs[we.slot].meta.state & ST_LIVE and \
                        self.recs[we.slot].wheel_tick == we.tick:
                    if (self.recs[we.slot].wheel_tick & (C_BUCKETS - 1)) != b:
                        raise AssertionError(f"I7: entry for slot {we.slot} in wrong bucket")
                    sched[we.slot] = 1
        if wcount != self.wheel_entries:
            raise AssertionError(f"wheel entry count {self.wheel_entries} != {wcount}")
        for s in range(self.rec_hwm):
            if self.recs[s].meta.state & ST_LIVE and not sched[s]:
                raise AssertionError(f"I7: live slot {s} is not scheduled in the wheel")
        # interned NAT addresses: each addr1 cell's count is the number of records using it
        refs = {}
        for s in range(self.rec_hwm):
            r = &self.recs[s]
            if r.meta.state & ST_LIVE and (r.dec.nat_flags & (NAT_RS | NAT_RD)) in (NAT_RS, NAT_RD):
                refs[r.addr_ref] = refs.get(r.addr_ref, 0) + 1
        if len(refs) != self.intern1.count or len(refs) != self.addr1.used:
            raise AssertionError(f"intern: {len(refs)} cells in use, table holds "
                                 f"{self.intern1.count}, pool {self.addr1.used}")
        for i in range(self.intern1.cap):
            if self.intern1.slots[i] == NO_SLOT:
                continue
            s = self.intern1.slots[i]
            if refs.get(s, 0) != self.intern1.refs[s]:
                raise AssertionError(f"intern: cell {s} counts {self.intern1.refs[s]} "
                                     f"references, records hold {refs.get(s, 0)}")
                # free list holds exactly the free slots
        s = self.free_head
        nfree = 0
        while s != NO_SLOT:
            if self.recs[s].meta.state & ST_LIVE:
                raise AssertionError(f"free list holds live slot {s}")
            nfree += 1
            if nfree > self.rec_hwm:
                raise AssertionError("free list has a cycle")
            s = self.recs[s].rg_next
        if nfree + live != self.rec_hwm:
            raise AssertionError(f"slab: {live} live + {nfree} free != {self.rec_hwm} slots")
        return {"sessions": live, "nat_reverse": self.natrev.count,
                "forward_wire": self.fwire.count, "alias": self.alias.count,
                "owner_rg_members": rg_total, "wheel_entries": wcount}

    cdef object _check_secondary(self, str name, int kind):
        """I2/I3 for one secondary index: every entry names a live record of the right
        direction whose derived key carries the entry's tag."""
        cdef sindex_t* ix = self._index_named(name)
        cdef uint32_t i, s, tag
        cdef uint64_t e
        cdef srec_t* r
        cdef skey_t t
        cdef sdecision_t d
        cdef Py_ssize_t n = 0
        for i in range(ix.cap):
            e = ix.slots[i]
            if <uint32_t>e == NO_SLOT:
                continue
            n += 1
            s = <uint32_t>e
            tag = <uint32_t>(e >> 32)
            if s >= self.rec_hwm or not (self.recs[s].meta.state & ST_LIVE):
                raise AssertionError(f"I2: {name} entry at {i} points at free slot {s}")
            r = &self.recs[s]
            rec_decision(r, self.addr1.cells, self.addr2.cells, &d)
            ok = False
            if kind == IX_ALIAS:
                if r.meta.flags & SM_REVERSE:
                    k_translated(&r.key, &d, &t)
                    ok = <uint32_t>(self.hash_c(&t) >> 32) == tag
            elif not (r.meta.flags & SM_REVERSE):
                if kind == IX_FWIRE:
                    k_forward_wire(&r.key, &d, &t)
                    ok = <uint32_t>(self.hash_c(&t) >> 32) == tag
                else:
                    k_reverse_wire(&r.key, &d, &t)
                    ok = <uint32_t>(self.hash_c(&t) >> 32) == tag
                    k_reverse_canonical(&r.key, &t)
                    ok = ok or <uint32_t>(self.hash_c(&t) >> 32) == tag
            if not ok:
                raise AssertionError(f"I3: {name} entry at {i} does not match slot {s}")
        if n != ix.count:
            raise AssertionError(f"{name}: count {ix.count} != entries {n}")
