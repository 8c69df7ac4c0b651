# cython: language_level=3
"""SessionTable: slab records, generation-tagged handles, NAT indices, timer wheel, deltas.

Everything a packet touches runs without the GIL on plain C structs (session.pxd), in free
functions of the included files below; this file holds the constants, the numpy twins of
the structs and the Python API. An index hit is only returned after the derived key is
recomputed from the record and compared with the probe, so a stale or corrupted index
entry is a miss, never another session. The design is described in docs/sessions.md.
"""

import operator
import os

import numpy as np

cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset


cnp.import_array()

from xpfdp._fast.includes.compat cimport prefetch as xs_prefetch
from xpfdp._fast.includes.linux cimport MADV_HUGEPAGE, madvise
from xpfdp._fast.lib.arrays cimport checked_array as _need
from xpfdp._fast.lib.flowkey cimport flowkey_eq as xs_key_eq, flowkey_from_meta
from xpfdp._fast.lib.flowkey cimport flowkey_hash as xs_hash_key
from xpfdp._fast.lib.hash cimport hash_addr16 as xs_hash_addr
from xpfdp._fast.meta cimport PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_FIN, TCP_RST

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
    #define XS_MAX_NOW_NS 0x4000000000000000ull
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
    const uint64_t MAX_NOW_NS "XS_MAX_NOW_NS"   # 2**62 ns: 146 years; no sum can overflow

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
DEFAULT_MAX_SESSIONS = 262144  # entries: 131072 flows (a forward and a reverse entry each)
MAX_TIME_NS = 2**62
MAX_SESSIONS = 0x7FFFFFFE  # the slab's slot limit minus one
TCP_CLOSING_TIMEOUT_S = 30
OTHER_TIMEOUT_S = 30
DEFAULT_TCP_TIMEOUT_S = 300
DEFAULT_UDP_TIMEOUT_S = 60
DEFAULT_ICMP_TIMEOUT_S = 60
assert WHEEL_BUCKETS & (WHEEL_BUCKETS - 1) == 0, "wheel bucket count must be a power of two"
assert GC_INTERVAL_NS == WHEEL_TICK_NS
assert C_TICK_NS == WHEEL_TICK_NS and C_BUCKETS == WHEEL_BUCKETS and C_FAR == FAR_FUTURE_OFFSET
assert C_MAX_DELTAS == MAX_SESSION_DELTAS and MAX_NOW_NS == MAX_TIME_NS
assert MAX_SESSIONS == MAX_SLOTS - 1

# Batch lookups run a software pipeline over the whole batch: key i + PF_INDEX is hashed and
# its index line loaded, key i + PF_RECORD's record is loaded, then key i is looked up, so
# the cache misses of different keys overlap. Hashes wait in a ring of PIPE entries.
# Prefetches are hints: results are exactly those of the same scalar calls in order.
cdef enum:
    PIPE = 32  # a power of two > PF_INDEX
    PF_INDEX = 16
    PF_RECORD = 8
    PF_ALIAS = 4

# Early eviction inspects at most this many scheduled sessions per evicted flow.
cdef enum:
    EVICT_SCAN = 256

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
              "meta", "origin", "closing", "valid", "replied"],
    "formats": ["i8", "u8", "u8", "u8", KEY_DTYPE, DECISION_DTYPE, META_DTYPE, "u1", "u1",
                "u1", "u1"],
    "offsets": [_off(&_s.handle, &_s), _off(&_s.last_seen_ns, &_s),
                _off(&_s.expires_after_ns, &_s), _off(&_s.wheel_tick, &_s),
                _off(&_s.key, &_s), _off(&_s.dec, &_s),
                _off(&_s.meta, &_s), _off(&_s.origin, &_s), _off(&_s.closing, &_s),
                _off(&_s.valid, &_s), _off(&_s.replied, &_s)],
    "itemsize": sizeof(ssession_t),
})
DELTA_DTYPE = np.dtype({
    "names": ["kind", "origin", "reverse_egress_port", "key", "decision", "meta"],
    "formats": ["u1", "u1", "u2", KEY_DTYPE, DECISION_DTYPE, META_DTYPE],
    "offsets": [_off(&_dl.kind, &_dl), _off(&_dl.origin, &_dl),
                _off(&_dl.reverse_egress_port, &_dl), _off(&_dl.key, &_dl),
                _off(&_dl.dec, &_dl), _off(&_dl.meta, &_dl)],
    "itemsize": sizeof(sdelta_t),
})
RECORD_BYTES = sizeof(srec_t)
INDEX_NAMES = ("primary", "nat_reverse", "forward_wire", "alias")
assert KEY_DTYPE.itemsize == 40
assert RECORD_BYTES == 80 and sizeof(sdec_head_t) == 8 and sizeof(srmeta_t) == sizeof(smeta_t)

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


cdef uint64_t _now(object now_ns) except? 0xFFFFFFFFFFFFFFFF:
    """A timestamp argument: an integer number of ns in 0..MAX_TIME_NS."""
    v = operator.index(now_ns)
    if not 0 <= v <= MAX_TIME_NS:
        raise ValueError(f"now_ns must be in 0..2**62 (146 years of ns), got {v}")
    return v


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
    key the pipeline's session stage uses (`_fast/lib/flowkey.pxd`). Others, later
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


# ---------------------------------------------------------------------------------------
# The table's parts (one extension, so every call below is a direct C call)

cdef enum:
    HUGE_PAGE_BYTES = 2 * 1024 * 1024
    PAGE_BYTES = 4096


cdef void* alloc_huge(size_t n) noexcept nogil:
    """malloc, asking for transparent huge pages when the block spans them (best effort):
    random probes over a large slab or index then miss the TLB far less often."""
    cdef void* p = malloc(n)
    cdef size_t start, end
    if p != NULL and n >= HUGE_PAGE_BYTES:
        start = (<size_t>p + PAGE_BYTES - 1) & ~(<size_t>PAGE_BYTES - 1)
        end = (<size_t>p + n) & ~(<size_t>PAGE_BYTES - 1)
        madvise(<void*>start, end - start, MADV_HUGEPAGE)
    return p


include "session_keys.pxi"
include "session_addrs.pxi"
include "session_index.pxi"
include "session_wheel.pxi"
include "session_deltas.pxi"
include "session_core.pxi"
include "session_check.pxi"


cdef class SessionTable:
    """SessionTable(max_sessions=262144, tcp_timeout_s=0, udp_timeout_s=0, icmp_timeout_s=0, hash_seed=None, early_eviction=True)\n--\n
    Per-worker session table: forward/reverse entries, NAT indices, GC wheel, deltas.

    Not thread-safe: one table per worker. All times are passed in as `now_ns` (integer ns,
    0..2**62; any order: a clock that jumps or steps back does not stall expiry).
    Capacity policy: at `max_sessions` entries a new flow first evicts the unreplied local
    flow due to expire first (counted in `evictions`; `early_eviction=False` turns this
    off); with no such flow it is refused (counted in `create_drops`). Replacing an existing key is always allowed; imports from
    another table (`upsert_synced`, `apply_deltas`) are not capped, so a failover never
    loses synced state.
    """

    def __cinit__(self, *args, **kwargs):
        memset(&self.t, 0, sizeof(stable_t))
        self.t.slab.free_head = NO_SLOT
        self.t.addrs.one.free_head = NO_SLOT
        self.t.addrs.two.free_head = NO_SLOT

    def __init__(self, max_sessions=DEFAULT_MAX_SESSIONS, tcp_timeout_s=0, udp_timeout_s=0,
                 icmp_timeout_s=0, hash_seed=None, early_eviction=True):
        self.max_sessions = max_sessions
        self.t.early_eviction = bool(early_eviction)
        self.set_timeouts(tcp_timeout_s, udp_timeout_s, icmp_timeout_s)
        if hash_seed is None:
            hash_seed = int.from_bytes(os.urandom(8), "little")
        self.t.seed = <uint64_t>(int(hash_seed) & 0xFFFFFFFFFFFFFFFF)

    def __dealloc__(self):
        table_free(&self.t)

    @property
    def max_sessions(self):
        """Most entries the table holds (a flow is two: forward and reverse)."""
        return self.t.max_sessions

    @max_sessions.setter
    def max_sessions(self, value):
        if int(value) != value or not 1 <= value <= MAX_SESSIONS:
            raise ValueError(f"max_sessions must be in 1..{MAX_SESSIONS}, got {value!r}")
        self.t.max_sessions = int(value)

    def set_timeouts(self, tcp_timeout_s=0, udp_timeout_s=0, icmp_timeout_s=0):
        """Set idle timeouts in whole seconds (0 = default 300/60/60). Only affects later
        installs, lookups and updates; existing sessions keep their timeout."""
        self._idle()
        cdef stimeouts_t* to = &self.t.timeouts
        vals = []
        for name, v, dflt in (("tcp_timeout_s", tcp_timeout_s, DEFAULT_TCP_TIMEOUT_S),
                              ("udp_timeout_s", udp_timeout_s, DEFAULT_UDP_TIMEOUT_S),
                              ("icmp_timeout_s", icmp_timeout_s, DEFAULT_ICMP_TIMEOUT_S)):
            if int(v) != v or not 0 <= v <= 0xFFFFFFFF:
                raise ValueError(f"{name} must be a whole number of seconds >= 0, got {v!r}")
            vals.append(int(v) or dflt)
        vals += [TCP_CLOSING_TIMEOUT_S, OTHER_TIMEOUT_S]
        classes = [timeouts_class(to, v) for v in vals]
        if -1 in classes:
            timeouts_compact(to, &self.t.slab)
            classes = [timeouts_class(to, v) for v in vals]
            if -1 in classes:
                raise ValueError("live sessions already hold 256 distinct idle timeouts; "
                                 "a new timeout value cannot be added")
        to.tcp_s, to.udp_s, to.icmp_s = vals[:3]
        to.cls_tcp, to.cls_udp, to.cls_icmp, to.cls_closing, to.cls_other = classes

    @property
    def timeouts_s(self):
        """(tcp, udp, icmp) idle timeouts in seconds."""
        return (self.t.timeouts.tcp_s, self.t.timeouts.udp_s, self.t.timeouts.icmp_s)

    def __len__(self):
        """Number of primary keys (never slab slots)."""
        self._idle()
        return self.t.primary.count

    cdef object _idle(self):
        """Refuse a call while a batch call of another thread runs without the GIL."""
        if self.busy:
            raise RuntimeError("SessionTable is not thread-safe: a batch call from another "
                               "thread is running on it")

    # ================================================================= nogil entry points

    cdef int64_t lookup_c(self, const skey_t* k, uint64_t now_ns, uint8_t tcp_flags,
                          bint refresh, bint* via_alias) noexcept nogil:
        """Primary key, else the reverse-translated alias; refreshing when `refresh`."""
        return table_lookup(&self.t, k, xs_hash_key(k, self.t.seed), now_ns, tcp_flags,
                            refresh, via_alias)

    cdef int64_t install_c(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                           uint8_t origin, uint64_t now_ns, uint8_t tcp_flags) noexcept nogil:
        """Install or replace one entry (capped, early eviction); an Open delta if it is a
        local forward session and a feed is attached."""
        cdef int64_t h = table_insert(&self.t, k, d, m, origin, now_ns, tcp_flags, True)
        if h >= 0:
            deltas_push(&self.t, DELTA_OPEN, table_record(&self.t, h), 0)
        return h

    cdef int install_pair_c(self, const skey_t* k, const sdecision_t* d, const smeta_t* m,
                            uint64_t now_ns, uint8_t tcp_flags, uint16_t reverse_egress_port,
                            int64_t* out_fwd, int64_t* out_rev) noexcept nogil:
        """Forward entry k plus reverse entry reverse_wire(k) with the reversed NAT."""
        return table_install_pair(&self.t, k, d, m, now_ns, tcp_flags, reverse_egress_port,
                                  out_fwd, out_rev)

    cdef int64_t find_forward_nat_c(self, const skey_t* reply) noexcept nogil:
        """The forward session a reply belongs to (reverse-wire or reverse-canonical)."""
        cdef int64_t h = table_find(&self.t, &self.t.natrev, IX_NATREV, reply,
                                    xs_hash_key(reply, self.t.seed))
        self.t.c.nat_lookups += 1
        self.t.c.nat_hits += h >= 0
        return h

    cdef int64_t find_forward_wire_c(self, const skey_t* wire) noexcept nogil:
        """The forward session whose post-NAT packet is `wire` (does not refresh)."""
        cdef int64_t h = table_find(&self.t, &self.t.fwire, IX_FWIRE, wire,
                                    xs_hash_key(wire, self.t.seed))
        self.t.c.wire_lookups += 1
        self.t.c.wire_hits += h >= 0
        return h

    cdef bint touch_handle_c(self, int64_t handle, uint64_t now_ns) noexcept nogil:
        """Keepalive: last_seen = now (timeout unchanged), then reschedule."""
        return table_touch(&self.t, handle, now_ns)

    cdef srec_t* record_c(self, int64_t handle) noexcept nogil:
        """The live record a handle names, or NULL if the handle is stale or invalid."""
        return table_record(&self.t, handle)

    cdef void decision_c(self, const srec_t* r, sdecision_t* out) noexcept nogil:
        """The full decision of a record (addresses from the pool; an address whose NAT
        flag is clear reads as zeros)."""
        addrs_decision(&self.t.addrs, r, out)

    cdef Py_ssize_t expire_c(self, uint64_t now_ns, ssession_t** buf, size_t* cap) noexcept nogil:
        """Collect idle sessions into buf (grown as needed); how many, -1 out of memory."""
        return wheel_expire(&self.t, now_ns, buf, cap)

    # ================================================================= Python API: writes

    def install(self, key, decision=None, meta=None, now_ns=0, origin=ORIGIN_FORWARD_FLOW,
                tcp_flags=0):
        """Install (or replace) one entry; returns its handle, or -1 if refused.

        Refusals are counted: the table is full with nothing evictable, or the key is
        invalid. A local forward entry queues an Open delta when a feed is attached.
        """
        self._idle()
        cdef uint64_t now = _now(now_ns)
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef uint8_t o = _check_origin(origin)
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        return self.install_c(<skey_t*>_ptr(k), <sdecision_t*>_ptr(d), <smeta_t*>_ptr(m),
                              o, now, f)

    def install_batch(self, keys, decisions, metas, now_ns, origins=None, tcp_flags=None,
                      out_handles=None):
        """install() for each row, in order, without the GIL; returns the int64 handles."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
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
                hp[i] = self.install_c(&kp[i], &dp[i], &mp[i], op[i * ostep], now,
                                       fp[i * fstep])
        self.busy = False
        return out

    def install_pair(self, key, decision=None, meta=None, now_ns=0, tcp_flags=0,
                     reverse_egress_port=0):
        """Install a new flow: forward entry `key` and its reverse entry
        reverse_wire(key, decision) carrying the reversed NAT and swapped zones.

        Returns (forward_handle, reverse_handle), -1 for an entry not installed. Nothing is
        installed for LocalDelivery; the reverse entry is skipped for a FabricRedirect that
        did not arrive over the fabric. The pair is admitted whole or not at all.
        """
        self._idle()
        cdef uint64_t now = _now(now_ns)
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        if not 0 <= reverse_egress_port <= 0xFFFF:
            raise ValueError(f"reverse_egress_port must be 0..65535, got {reverse_egress_port}")
        cdef int64_t hf, hr
        self.install_pair_c(<skey_t*>_ptr(k), <sdecision_t*>_ptr(d), <smeta_t*>_ptr(m),
                            now, f, <uint16_t>reverse_egress_port, &hf, &hr)
        return hf, hr

    def install_pair_batch(self, keys, decisions, metas, now_ns, tcp_flags=None,
                           reverse_egress_ports=None, out_forward=None, out_reverse=None):
        """install_pair() for each row, in order, without the GIL; returns (fwd, rev)."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
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
                self.install_pair_c(&kp[i], &dp[i], &mp[i], now, fp[i], rp[i], &fo[i], &ro[i])
        self.busy = False
        return of, orv

    def upsert_synced(self, key, decision=None, meta=None, now_ns=0,
                      origin=ORIGIN_SYNC_IMPORT, tcp_flags=0, allow_replace_local=False):
        """Import one entry of another table (state sync). Refused (-1) if a local, not
        peer-synced entry with the same key exists and `allow_replace_local` is false.
        Never capped by max_sessions, never emits deltas. Returns the handle."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
        k = _one(key, KEY_DTYPE, "key")
        d = _one(decision, DECISION_DTYPE, "decision")
        m = _one(meta, META_DTYPE, "meta")
        cdef uint8_t o = _check_origin(origin)
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        return table_upsert_synced(&self.t, <skey_t*>_ptr(k), <sdecision_t*>_ptr(d),
                                   <smeta_t*>_ptr(m), o, now, f, allow_replace_local)

    def apply_deltas(self, deltas, now_ns, allow_replace_local=False):
        """Import another table's deltas (DeltaFeed.drain or export_deltas), in order: an
        Open installs the flow's forward and reverse entry with upsert_synced semantics
        (origin sync_import, last seen `now_ns`), a Close removes the flow's peer-synced
        entries. Returns how many entries were installed or removed."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
        if isinstance(deltas, np.ndarray) and deltas.dtype != DELTA_DTYPE and \
                deltas.dtype.names == DELTA_DTYPE.names:
            deltas = deltas.astype(DELTA_DTYPE)  # np.concatenate drops the struct padding
        _need(deltas, DELTA_DTYPE, "deltas")
        cdef Py_ssize_t i, n = deltas.shape[0], changed = 0
        cdef sdelta_t* dp = <sdelta_t*>_ptr(deltas)
        cdef bint allow = allow_replace_local
        self.busy = True
        with nogil:
            for i in range(n):
                changed += table_apply_delta(&self.t, &dp[i], now, allow)
        self.busy = False
        return changed

    def delete(self, key):
        """Remove one entry and every index entry pointing at it. Emits no Close delta
        (the caller decides what another table should know). Returns whether it existed."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef skey_t* kp = <skey_t*>_ptr(k)
        if table_remove_key(&self.t, kp, xs_hash_key(kp, self.t.seed)):
            self.t.c.deletes += 1
            return True
        return False

    def delete_batch(self, keys):
        """delete() for each key in order, without the GIL; returns how many existed."""
        self._idle()
        _need(keys, KEY_DTYPE, "keys")
        cdef Py_ssize_t n = keys.shape[0], removed = 0, i
        cdef skey_t* kp = <skey_t*>_ptr(keys)
        cdef uint64_t hb[PIPE]
        self.busy = True
        with nogil:
            for i in range(-PF_INDEX, n):  # pipelined like _lookup_batch
                pipe_ahead(&self.t, kp, i, n, hb, &self.t.primary)
                if i >= 0 and table_remove_key(&self.t, &kp[i], hb[i & (PIPE - 1)]):
                    removed += 1
            self.t.c.deletes += removed
        self.busy = False
        return removed

    def touch(self, key, now_ns):
        """Keepalive by primary key (no alias): last_seen = now; timeout unchanged."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
        k = _one(key, KEY_DTYPE, "key")
        cdef int64_t slot = table_primary_slot(&self.t, <skey_t*>_ptr(k))
        if slot < 0:
            return False
        return table_touch(&self.t, make_handle(self.t.slab.recs[slot].generation,
                                                <uint32_t>slot), now)

    def touch_batch(self, handles, now_ns):
        """Keepalive by handle; stale handles are skipped. Returns how many were touched."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
        _need(handles, np.dtype(np.int64), "handles")
        cdef Py_ssize_t i, n = handles.shape[0], touched = 0
        cdef int64_t* hp = <int64_t*>_ptr(handles)
        self.busy = True
        with nogil:
            for i in range(n):
                touched += table_touch(&self.t, hp[i], now)
        self.busy = False
        return touched

    # ================================================================= Python API: reads

    def lookup(self, key, now_ns, tcp_flags=0):
        """Refreshing lookup (primary key, then reverse-translated alias); handle or -1."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
        k = _one(key, KEY_DTYPE, "key")
        cdef uint8_t f = _u8_per_key(tcp_flags, 1, "tcp_flags")[0]
        cdef bint alias
        return self.lookup_c(<skey_t*>_ptr(k), now, f, True, &alias)

    def peek(self, key):
        """lookup() without refreshing anything; handle or -1."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef bint alias
        return self.lookup_c(<skey_t*>_ptr(k), 0, 0, False, &alias)

    def lookup_batch(self, keys, now_ns, out_handles=None, tcp_flags=None, out_via_alias=None):
        """lookup() for each key in order, without the GIL. Fills `out_handles` (int64,
        -1 = miss) and optionally `out_via_alias` (uint8); returns the number of hits."""
        self._idle()
        return _lookup_batch(self, keys, _now(now_ns), out_handles, tcp_flags, out_via_alias,
                                  True)

    def peek_batch(self, keys, out_handles=None, out_via_alias=None):
        """Non-refreshing lookup_batch (counters are not touched either)."""
        self._idle()
        return _lookup_batch(self, keys, 0, out_handles, None, out_via_alias, False)

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
        return _find_batch(self, keys, out_handles, True)

    def find_forward_wire_batch(self, keys, out_handles=None):
        """find_forward_wire for each key, without the GIL; returns the number of hits."""
        self._idle()
        return _find_batch(self, keys, out_handles, False)

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
                if table_record(&self.t, hp[i]) != NULL:
                    table_fill_session(&self.t, <uint32_t>hp[i], &op[i])
                else:
                    op[i].handle = -1
        self.busy = False
        return out

    def entry(self, key):
        """The record stored under primary `key` (SESSION_DTYPE scalar), or None."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef int64_t slot = table_primary_slot(&self.t, <skey_t*>_ptr(k))
        if slot < 0:
            return None
        return self.records([make_handle(self.t.slab.recs[slot].generation, <uint32_t>slot)])[0]

    def __contains__(self, key):
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        return table_primary_slot(&self.t, <skey_t*>_ptr(k)) >= 0

    def keys(self):
        """Every primary key (KEY_DTYPE array, slab order)."""
        self._idle()
        cdef uint32_t s
        cdef Py_ssize_t j = 0
        out = np.empty(self.t.primary.count, dtype=KEY_DTYPE)
        cdef skey_t* op = <skey_t*>_ptr(out)
        for s in range(self.t.slab.hwm):
            if self.t.slab.recs[s].meta.state & ST_LIVE and j < out.shape[0]:
                op[j] = self.t.slab.recs[s].key
                j += 1
        return out[:j]

    # ================================================================= GC

    @property
    def last_gc_ns(self):
        """Time of the last ungated expire() call (None before the first)."""
        return self.t.wheel.last_gc_ns if self.t.wheel.gc_started else None

    @last_gc_ns.setter
    def last_gc_ns(self, value):
        if value is None:
            self.t.wheel.gc_started = False
            self.t.wheel.last_gc_ns = 0
        else:
            self.t.wheel.gc_started = True
            self.t.wheel.last_gc_ns = _now(value)

    @property
    def wheel_cursor_tick(self):
        """Next wheel tick the GC will process (None until the first timestamp is seen)."""
        return self.t.wheel.cursor_tick if self.t.wheel.started else None

    def wheel_entries_for(self, key):
        """How many wheel entries name the slot of the session under primary `key`, current
        and stale (stale ones of an earlier occupant of the slot included; for tests)."""
        self._idle()
        k = _one(key, KEY_DTYPE, "key")
        cdef int64_t slot = table_primary_slot(&self.t, <skey_t*>_ptr(k))
        if slot < 0:
            return 0
        cdef uint32_t b, i
        cdef Py_ssize_t count = 0
        for b in range(C_BUCKETS):
            for i in range(self.t.wheel.buckets[b].len):
                if bucket_at(&self.t.wheel.buckets[b], i).slot == slot:
                    count += 1
        return count

    def last_pop_stats(self):
        """What the last expire() call saw: scanned = gone + stale + expired + re_bucketed."""
        self._idle()
        cdef uint64_t* p = self.t.wheel.pop_stats
        return {"scanned": p[POP_SCANNED], "dropped_gone": p[POP_GONE],
                "dropped_stale": p[POP_STALE], "expired": p[POP_EXPIRED],
                "re_bucketed": p[POP_REBUCKETED]}

    def expire(self, now_ns):
        """Collect sessions idle longer than their timeout (strictly), at most once per
        1 s GC interval (a clock that went back is followed at once). Returns the removed
        sessions as a SESSION_DTYPE array (handles already stale). Local forward sessions
        queue a Close delta when a feed is attached."""
        self._idle()
        cdef uint64_t now = _now(now_ns)
        cdef swheel_t* w = &self.t.wheel
        if w.gc_started and now >= w.last_gc_ns and now - w.last_gc_ns < C_TICK_NS:
            memset(w.pop_stats, 0, sizeof(w.pop_stats))
            return np.zeros(0, dtype=SESSION_DTYPE)
        w.gc_started = True
        w.last_gc_ns = now
        cdef ssession_t* buf = NULL
        cdef size_t cap = 0
        cdef Py_ssize_t n
        self.busy = True
        with nogil:
            n = wheel_expire(&self.t, now, &buf, &cap)
        self.busy = False
        if n < 0:
            free(buf)
            raise MemoryError("expire could not allocate its result")
        out = np.empty(n, dtype=SESSION_DTYPE)
        if n:
            memcpy(_ptr(out), buf, n * sizeof(ssession_t))
        free(buf)
        return out

    # ================================================================= state sync

    def subscribe_deltas(self, batch=256):
        """Attach the table's delta consumer (a DeltaFeed): from now on new local forward
        sessions queue an Open delta and expired or evicted ones a Close delta. At most one
        feed per table; without one no delta is queued."""
        return DeltaFeed(self, batch)

    def export_deltas(self):
        """An Open delta for every live local forward session (DELTA_DTYPE), for a standby
        that starts after the sessions were created; returned directly, not queued."""
        self._idle()
        cdef uint32_t s, n = 0
        cdef srec_t* r
        cdef int64_t rev
        out = np.empty(self.t.primary.count, dtype=DELTA_DTYPE)
        cdef sdelta_t* op = <sdelta_t*>_ptr(out)
        for s in range(self.t.slab.hwm):
            r = &self.t.slab.recs[s]
            if r.meta.state & ST_LIVE and emits_deltas(r) and n < out.shape[0]:
                rev = reverse_slot_of(&self.t, r)
                delta_fill(&self.t, &op[n], DELTA_OPEN, r,
                           self.t.slab.recs[rev].dec.egress_port if rev >= 0 else 0)
                n += 1
        return out[:n]

    # ================================================================= introspection

    def stats(self):
        """Every counter and size, as a dict of ints."""
        self._idle()
        out = {"sessions": self.t.primary.count}
        out.update(self.t.c)
        out.update({
            "deltas_pending": self.t.deltas.len,
            "deltas_enabled": int(self.t.deltas.enabled),
            "nat_reverse_entries": self.t.natrev.count,
            "forward_wire_entries": self.t.fwire.count,
            "alias_entries": self.t.alias.count,
            "wheel_entries": self.t.wheel.entries,
            "slab_capacity": self.t.slab.cap,
            "nat_address_cells": self.t.addrs.one.used + self.t.addrs.two.used,
            "memory_bytes": self.memory_bytes(),
        })
        return out

    def memory_bytes(self, include_wheel=True):
        """Heap bytes held by the slab, all indices, the NAT address cells, the delta queue
        and (optionally) the timer wheel."""
        self._idle()
        cdef stable_t* t = &self.t
        cdef uint64_t total = <uint64_t>t.slab.cap * sizeof(srec_t)
        total += (<uint64_t>t.primary.cap + t.natrev.cap + t.fwire.cap +
                  t.alias.cap) * sizeof(uint64_t)
        total += <uint64_t>t.addrs.one.cap * 16 + <uint64_t>t.addrs.two.cap * 32
        total += (<uint64_t>t.addrs.intern.refs_cap + t.addrs.intern.cap) * sizeof(uint32_t)
        total += <uint64_t>t.deltas.cap * sizeof(sdelta_t)
        cdef int b
        if include_wheel:
            for b in range(C_BUCKETS):
                total += <uint64_t>t.wheel.buckets[b].cap * sizeof(swheel_entry_t)
        return total

    def index_load(self):
        """Per index: (entries, capacity, mean probe displacement); a hash-quality check."""
        self._idle()
        out = {}
        cdef sindex_t* ix
        for name in INDEX_NAMES:
            ix = _index_named(self, name)
            out[name] = (ix.count, ix.cap, ix_mean_displacement(ix))
        return out

    def _debug_inject(self, index, key, handle):
        """Test hook: add a raw entry key -> slot(handle) to an index without validation,
        to simulate a corrupted or stale mapping. index: primary, nat_reverse,
        forward_wire or alias."""
        self._idle()
        cdef sindex_t* ix = _index_named(self, index)
        k = _one(key, KEY_DTYPE, "key")
        if not ix_reserve(ix, 1):
            raise MemoryError()
        ix_raw_put(ix, xs_hash_key(<skey_t*>_ptr(k), self.t.seed),
                   <uint32_t>(int(handle) & 0xFFFFFFFF))

    def check_invariants(self):
        """O(N) scan of the invariants in docs/sessions.md ("Invariants"); raises
        AssertionError naming the first violation, returns a summary dict otherwise."""
        self._idle()
        return table_check(&self.t)


cdef inline void pipe_hash(const stable_t* t, const skey_t* kp, Py_ssize_t a, Py_ssize_t n,
                           uint64_t* hb, const sindex_t* ix) noexcept nogil:
    """Hash key a (if there is one) into the ring hb and load its home line in ix."""
    cdef uint64_t h
    if a < n:
        h = xs_hash_key(&kp[a], t.seed)
        hb[a & (PIPE - 1)] = h
        ix_prefetch_home(ix, h)


cdef inline void pipe_ahead(const stable_t* t, const skey_t* kp, Py_ssize_t i, Py_ssize_t n,
                            uint64_t* hb, const sindex_t* ix) noexcept nogil:
    """Before probing ix for key i (i = -PF_INDEX .. -1 fills the pipeline): hash key
    i + PF_INDEX into the ring hb and load its home line; load key i + PF_RECORD's record."""
    cdef Py_ssize_t r = i + PF_RECORD
    pipe_hash(t, kp, i + PF_INDEX, n, hb, ix)
    if 0 <= r < n:
        ix_prefetch_record(ix, &t.slab, hb[r & (PIPE - 1)])


cdef inline void pipe_ahead_alias(const stable_t* t, const skey_t* kp, Py_ssize_t i,
                                  Py_ssize_t n, uint64_t* hb, bint* alias_ring) noexcept nogil:
    """pipe_ahead for refreshing lookups (primary key, else alias): the alias index is only
    loaded for keys the primary index holds no tag for (decided at i + PF_RECORD), and their
    alias record at i + PF_ALIAS, so a primary hit costs no alias line."""
    cdef Py_ssize_t r = i + PF_RECORD, s = i + PF_ALIAS
    cdef uint64_t h
    pipe_hash(t, kp, i + PF_INDEX, n, hb, &t.primary)
    if 0 <= r < n:
        h = hb[r & (PIPE - 1)]
        alias_ring[r & (PIPE - 1)] = not ix_prefetch_record(&t.primary, &t.slab, h)
        if alias_ring[r & (PIPE - 1)]:
            ix_prefetch_home(&t.alias, h)
    if 0 <= s < n and alias_ring[s & (PIPE - 1)]:
        ix_prefetch_record(&t.alias, &t.slab, hb[s & (PIPE - 1)])


cdef object _lookup_batch(SessionTable self, keys, uint64_t now_ns, out_handles, tcp_flags,
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
    cdef stable_t* t = &self.t
    cdef bint alias
    cdef uint64_t hb[PIPE]
    cdef bint alias_ring[PIPE]
    self.busy = True
    with nogil:
        for i in range(-PF_INDEX, n):
            pipe_ahead_alias(t, kp, i, n, hb, alias_ring)
            if i >= 0:
                hp[i] = table_lookup(t, &kp[i], hb[i & (PIPE - 1)], now_ns, fp[i * fstep],
                                     refresh, &alias)
                if hp[i] >= 0:
                    hits += 1
                if ap != NULL:
                    ap[i] = alias
    self.busy = False
    return hits


cdef object _find_batch(SessionTable self, keys, out_handles, bint nat):
    _need(keys, KEY_DTYPE, "keys")
    cdef Py_ssize_t i, n = keys.shape[0], hits = 0
    out = _out_i64(out_handles, n, "out_handles")
    cdef skey_t* kp = <skey_t*>_ptr(keys)
    cdef int64_t* hp = <int64_t*>_ptr(out)
    cdef uint64_t hb[PIPE]
    cdef stable_t* t = &self.t
    cdef sindex_t* ix = &t.natrev if nat else &t.fwire
    cdef int kind = IX_NATREV if nat else IX_FWIRE
    self.busy = True
    with nogil:
        for i in range(-PF_INDEX, n):
            pipe_ahead(t, kp, i, n, hb, ix)
            if i >= 0:
                hp[i] = table_find(t, ix, kind, &kp[i], hb[i & (PIPE - 1)])
                if hp[i] >= 0:
                    hits += 1
        if nat:
            t.c.nat_lookups += n
            t.c.nat_hits += hits
        else:
            t.c.wire_lookups += n
            t.c.wire_hits += hits
    self.busy = False
    return hits


cdef sindex_t* _index_named(SessionTable self, str name) except NULL:
    """The index called `name` (primary, nat_reverse, forward_wire, alias)."""
    if name == "primary":
        return &self.t.primary
    if name == "nat_reverse":
        return &self.t.natrev
    if name == "forward_wire":
        return &self.t.fwire
    if name == "alias":
        return &self.t.alias
    raise ValueError(f"index must be one of {INDEX_NAMES}, got {name!r}")
