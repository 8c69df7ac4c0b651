# cython: language_level=3
"""The pipeline worker loop: bursts through compiled stages, then to egress TX rings.

One `Pipeline` is one worker. A poll receives a burst from each port in turn (the first
port rotates every poll so none starves), runs every stage over the whole burst, then
queues each packet on its egress port (verdict >= 0) or returns its frame (verdict DROP,
counted by reason). Packets for a port on the same UMEM are transmitted in place; for a
port on another UMEM they are copied into one of its TX frames. A TX ring that refuses
frames leaves them queued (still held, retried next poll) up to the queue's capacity;
beyond that they are dropped as tx_ring_full_dropped. No frame is ever leaked.

Stages are `Stage` subclasses whose `run` is a cdef nogil method; `PyStage` wraps a Python
callable and takes the GIL once per burst.
"""

cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memmove, memset

from xpfdp._fast.cos cimport (
    Scheduler,
    cos_item_t,
    cos_meta_bucket,
    cosq_admit,
    cosq_pop,
    cosq_t,
    xdp_desc_t,
)
from xpfdp._fast.csum cimport (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    REWRITE_BAD_L4_CSUM,
    TTL_EXPIRED,
    is_icmp_echo,
    mss_clamp,
    nat_rewrite,
    ttl_decrement,
)
from xpfdp._fast.hash cimport mix64
from xpfdp._fast.meta cimport META_L4_VALID, PARSE_OK, pkt_meta_t
from xpfdp._fast.parse cimport parse_one
from xpfdp._fast.route cimport RouteTable
from xpfdp._fast.session cimport (
    DISP_FORWARD_CANDIDATE,
    NAT_RD,
    NAT_RDP,
    NAT_RS,
    NAT_RSP,
    SessionTable,
    sdecision_t,
    skey_t,
    smeta_t,
    srec_t,
)
from xpfdp._fast.xsk cimport Burst, Port, Umem, wait_any, xdp_desc

import ipaddress

cdef extern from *:
    """
    #include <time.h>
    static inline uint64_t xpfdp_pipe_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    """
    uint64_t xpfdp_pipe_now_ns() nogil

cdef extern from *:
    """
    #define xpfdp_pipe_prefetch(p) __builtin_prefetch((p), 0, 3)
    """
    void xpfdp_pipe_prefetch(const void* p) nogil

VERDICT_DROP = -1
VERDICT_PASS = -2

PARSE_STATUS_NAMES = (
    "ok", "trunc_l2", "non_ip", "trunc_l3", "bad_version", "bad_ihl", "bad_totlen",
    "trunc_exthdr", "too_many_exthdr", "trunc_l4", "bad_doff", "nonfirst_frag",
)
DROP_REASONS = tuple(f"parse_error:{s}" for s in PARSE_STATUS_NAMES) + (
    "no_route", "ttl_expired", "policy_denied", "session_table_full", "nat_ports_exhausted",
    "no_egress", "bad_egress", "pass_unsupported", "tx_ring_full_dropped",
    "copy_no_tx_frame", "user_drop", "user_error", "cos_drop:flow_share", "cos_drop:buffer",
    "cos_drop:capacity", "cos_drop:bad_desc", "nat_failed", "shutdown",
)
assert len(DROP_REASONS) == DROP_REASON_COUNT

# Upper bound (ns) of each TX latency bucket: bucket k holds [2^(k+9), 2^(k+10)) ns, the
# first everything below 1024 ns, the last everything above.
LATENCY_BUCKET_UPPER_NS = tuple(1 << (k + 10) for k in range(LAT_BUCKETS - 1)) + (None,)

cdef enum:
    EXPIRE_INTERVAL_NS = 1000000000
    MAX_DNAT = 32

cdef struct dnat_rule_t:
    uint8_t ingress
    uint8_t proto
    uint8_t af
    uint16_t dport
    uint16_t to_port
    uint8_t to_addr[16]

cdef enum:
    IDLE_POLLS_BEFORE_WAIT = 64


cdef inline bint enqueue(Burst q, const xdp_desc* d) noexcept nogil:
    if q.n >= q.capacity:
        return False
    q.d[q.n] = d[0]
    q.n += 1
    return True


cdef inline void drop_pkt(Burst b, pkt_ctx_t* ctx, uint32_t i, uint8_t why) noexcept nogil:
    b.v[i] = -1
    ctx[i].why = why


cdef inline uint64_t key_hash(const skey_t* k, uint16_t ingress, uint64_t seed) noexcept nogil:
    """Five independent multiplies (they overlap in the pipeline) folded by one mix."""
    cdef const uint64_t* w = <const uint64_t*>k     # 40 bytes: 5 words (pad is zeroed)
    return mix64((w[0] ^ seed) * 0x9E3779B97F4A7C15ULL + (w[1] ^ ingress) * 0xC2B2AE3D27D4EB4FULL
                 + w[2] * 0x165667B19E3779F9ULL + w[3] * 0xD6E8FEB86659FD93ULL
                 + w[4] * 0xFF51AFD7ED558CCDULL)


cdef inline bint key_eq(const skey_t* a, const skey_t* b) noexcept nogil:
    cdef const uint64_t* x = <const uint64_t*>a
    cdef const uint64_t* y = <const uint64_t*>b
    return (x[0] == y[0] and x[1] == y[1] and x[2] == y[2] and x[3] == y[3]
            and x[4] == y[4])


cdef inline bint key_from_meta(const pkt_meta_t* m, skey_t* k) noexcept nogil:
    """The session key of a parsed packet (pad zeroed); False if it has none."""
    if m.status != PARSE_OK or not (m.flags & META_L4_VALID):
        return False
    memset(k, 0, sizeof(skey_t))
    k.af = 2 if m.ip_version == 4 else 10
    k.proto = m.protocol
    memcpy(k.src, m.src, 16)
    memcpy(k.dst, m.dst, 16)
    if m.protocol == PROTO_ICMP or m.protocol == PROTO_ICMPV6:
        if is_icmp_echo(m.protocol, m.icmp_type):
            k.sport = m.sport
    else:
        k.sport = m.sport
        k.dport = m.dport
    return True


# ---------------------------------------------------------------------------------------
# Flow cache

@cython.final
cdef class FlowCache:
    """Per-worker cache of forwarding decisions: `sets` × `ways` entries with LRU per set.

    An entry maps (ingress port, pre-NAT session key) to the session handle and next hop.
    It is valid only while the route generation and pipeline config generation it was made
    under still hold and its session handle still names a live record (a deleted, expired
    or replaced session fails the handle's generation check), so nothing stale is served.
    """

    def __cinit__(self, uint32_t sets=1024, uint32_t ways=4):
        if sets == 0 or sets & (sets - 1) or sets > (1 << 24):
            raise ValueError(f"flow cache sets must be a power of two in [1, 2^24], got {sets}")
        if ways == 0 or ways > 16:
            raise ValueError(f"flow cache ways must be in [1, 16], got {ways}")
        self.sets = sets
        self.ways = ways
        self.e = <fc_entry_t*>calloc(<size_t>sets * ways, sizeof(fc_entry_t))
        if self.e == NULL:
            raise MemoryError("flow cache")
        self.seed = 0x9E3779B97F4A7C15ULL

    def __dealloc__(self):
        free(self.e)

    cdef uint64_t hash_key(self, const skey_t* k, uint16_t ingress) noexcept nogil:
        """The set hash of (ingress, k); prefetches the set's entries."""
        cdef uint64_t h = key_hash(k, ingress, self.seed)
        xpfdp_pipe_prefetch(self.e + (h & (self.sets - 1)) * self.ways)
        return h

    cdef fc_entry_t* find(self, const skey_t* k, uint16_t ingress, uint64_t h,
                          uint64_t route_gen, uint64_t config_gen, SessionTable table,
                          srec_t** rec) noexcept nogil:
        """The valid entry for (ingress, k) (set hash `h`) with its live session record in
        `rec`, or NULL (a stale entry is invalidated and counted)."""
        cdef fc_entry_t* row = self.e + (h & (self.sets - 1)) * self.ways
        cdef uint32_t w
        for w in range(self.ways):
            if row[w].valid and row[w].ingress == ingress and key_eq(&row[w].key, k):
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
            if not row[w].valid or (row[w].ingress == ingress and key_eq(&row[w].key, k)):
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


# ---------------------------------------------------------------------------------------
# Stages

cdef class Stage:
    """A pipeline stage: `run` processes a whole burst without the GIL (abstract)."""

    def __init__(self, *args, **kwargs):
        if type(self) is Stage:
            raise TypeError("Stage is abstract: use a built-in stage or PyStage")

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        return 0

    def stats(self):
        """Packets this stage saw (not already dropped) and packets it dropped."""
        return {"packets": self.c_packets, "drops": self.c_drops}

    def __repr__(self):
        return f"{type(self).__name__}()"


@cython.final
cdef class ParseStage(Stage):
    """Parse every frame into the burst's meta; malformed frames are dropped as
    parse_error:<status>. `allow_non_ip=True` lets non-IP frames through unparsed."""

    cdef bint allow_non_ip

    def __init__(self, *, bint allow_non_ip=False):
        self.name = "parse"
        self.allow_non_ip = allow_non_ip

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef uint8_t* area = b.umem.area
        cdef uint8_t st
        for i in range(b.n):
            if b.v[i] == -1:
                continue
            self.c_packets += 1
            parse_one(area + b.d[i].addr, b.d[i].len, &b.m[i])
            st = b.m[i].status
            if st != PARSE_OK and not (st == 2 and self.allow_non_ip):
                drop_pkt(b, p.ctx, i, DROP_PARSE + st)
                self.c_drops += 1
        return 0


@cython.final
cdef class SessionStage(Stage):
    """Stateful session resolve: flow cache → session table → new flow under policy.

    Packets of a known session (either direction) take its decision (the reverse entry of
    a NAT session carries the un-NAT). A packet with no session may open one only when it
    arrived on a port in `new_flow_ports` (None: any port) and its destination routes to a
    port; otherwise it is dropped as policy_denied (no_route when unroutable). A new flow
    leaving through a port with an SNAT pool gets the pool address and a free port from
    the pool range (ICMP echo keeps its identifier); both entries are installed at once.
    Packets without a session key (non-first fragments, non-L4) are dropped as
    policy_denied when they come from outside `new_flow_ports`, else passed statelessly.
    """

    cdef uint32_t new_flow_mask
    cdef uint8_t snat_flags[MAX_PORTS]        # bit 0: IPv4 pool, bit 1: IPv6 pool
    cdef uint8_t snat_v4[MAX_PORTS][16]
    cdef uint8_t snat_v6[MAX_PORTS][16]
    cdef uint16_t port_lo[MAX_PORTS]
    cdef uint16_t port_hi[MAX_PORTS]
    cdef uint32_t cursor[MAX_PORTS]
    cdef readonly uint64_t nat_allocations
    cdef readonly uint64_t nat_collisions
    cdef dnat_rule_t dnat[MAX_DNAT]
    cdef uint32_t n_dnat

    def __init__(self, *, new_flow_ports=None, snat=None, dnat=()):
        """`new_flow_ports`: port indices that may open sessions. `snat`: {egress port index:
        (addresses, (port_lo, port_hi))} with addresses an IPv4 and/or IPv6 address (str or
        list of up to one per family). `dnat`: (ingress, proto, dport, to_address, to_port)
        port-forward rules (see add_dnat)."""
        self.name = "session"
        if new_flow_ports is None:
            self.new_flow_mask = 0xFFFFFFFF
        else:
            for i in new_flow_ports:
                if not 0 <= int(i) < MAX_PORTS:
                    raise ValueError(f"new_flow_ports: port index {i} out of range")
                self.new_flow_mask |= 1u << int(i)
        for egress, spec in (snat or {}).items():
            self.set_snat(egress, *spec)
        for rule in dnat:
            self.add_dnat(*rule)

    def set_snat(self, int egress, addresses, ports=(1024, 65535)):
        """SNAT new flows leaving through `egress` to `addresses` (one per family)."""
        if not 0 <= egress < MAX_PORTS:
            raise ValueError(f"snat: egress port index {egress} out of range")
        lo, hi = (int(x) for x in ports)
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"snat: port range {ports!r} must satisfy 1 <= lo <= hi <= 65535")
        if isinstance(addresses, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
            addresses = [addresses]
        self.snat_flags[egress] = 0
        for a in addresses:
            ip = ipaddress.ip_address(a)
            raw = ip.packed.ljust(16, b"\0")
            if ip.version == 4:
                if self.snat_flags[egress] & 1:
                    raise ValueError("snat: at most one IPv4 address per port")
                self.snat_flags[egress] |= 1
                memcpy(self.snat_v4[egress], <const char*>raw, 16)
            else:
                if self.snat_flags[egress] & 2:
                    raise ValueError("snat: at most one IPv6 address per port")
                self.snat_flags[egress] |= 2
                memcpy(self.snat_v6[egress], <const char*>raw, 16)
        self.port_lo[egress] = lo
        self.port_hi[egress] = hi
        self.cursor[egress] = 0

    def add_dnat(self, int ingress, int proto, int dport, to_address, int to_port=0):
        """Port forward: new flows arriving on port `ingress` for L4 `proto`/`dport` go to
        `to_address` (and `to_port`, 0 = keep) and are allowed even when `ingress` may not
        open flows otherwise. Replies are un-NATed through the session."""
        if self.n_dnat >= MAX_DNAT:
            raise ValueError(f"at most {MAX_DNAT} DNAT rules")
        if not 0 <= ingress < MAX_PORTS:
            raise ValueError(f"dnat: ingress port index {ingress} out of range")
        if not 0 < proto < 256 or not 0 < dport < 65536 or not 0 <= to_port < 65536:
            raise ValueError("dnat: proto in 1..255, dport in 1..65535, to_port in 0..65535")
        ip = ipaddress.ip_address(to_address)
        raw = ip.packed.ljust(16, b"\0")
        cdef dnat_rule_t* r = &self.dnat[self.n_dnat]
        r.ingress = <uint8_t>ingress
        r.proto = <uint8_t>proto
        r.af = 2 if ip.version == 4 else 10
        r.dport = <uint16_t>dport
        r.to_port = <uint16_t>to_port
        memcpy(r.to_addr, <const char*>raw, 16)
        self.n_dnat += 1

    cdef int match_dnat(self, uint32_t ingress, const skey_t* k) noexcept nogil:
        cdef uint32_t n
        for n in range(self.n_dnat):
            if (self.dnat[n].ingress == ingress and self.dnat[n].proto == k.proto
                    and self.dnat[n].af == k.af and self.dnat[n].dport == k.dport):
                return <int>n
        return -1

    cdef bint reply_free(self, SessionTable t, const skey_t* rk) noexcept nogil:
        cdef bint alias
        return (t.lookup_c(rk, 0, 0, False, &alias) < 0
                and t.find_forward_nat_c(rk) < 0)

    cdef int snat_pick(self, Pipeline p, uint32_t e, const skey_t* k,
                       sdecision_t* d) noexcept nogil:
        """Fill the SNAT part of `d` for key `k` leaving through `e`; -1 when no port is
        free, 0 when the port has no pool for this family, 1 when set."""
        cdef uint8_t fam = 1 if k.af == 2 else 2
        cdef skey_t rk
        cdef uint32_t span, tries, cand
        if not (self.snat_flags[e] & fam):
            return 0
        memset(&rk, 0, sizeof(skey_t))
        rk.af = k.af
        rk.proto = k.proto
        if d.nat_flags & NAT_RD:
            memcpy(rk.src, d.rd, 16)
        else:
            memcpy(rk.src, k.dst, 16)
        if fam == 1:
            memcpy(rk.dst, self.snat_v4[e], 16)
        else:
            memcpy(rk.dst, self.snat_v6[e], 16)
        d.nat_flags |= NAT_RS
        memcpy(d.rs, rk.dst, 16)
        if k.proto == PROTO_ICMP or k.proto == PROTO_ICMPV6:
            rk.sport = k.sport     # echo identifier kept: the reverse key must be free
            rk.dport = k.dport
            if self.reply_free(p.sessions, &rk):
                return 1
            self.nat_collisions += 1
            return -1
        rk.sport = d.rdp if d.nat_flags & NAT_RDP else k.dport
        span = <uint32_t>self.port_hi[e] - self.port_lo[e] + 1
        tries = span if span < 256 else 256
        while tries:
            tries -= 1
            cand = self.port_lo[e] + self.cursor[e] % span
            self.cursor[e] += 1
            rk.dport = <uint16_t>cand
            if self.reply_free(p.sessions, &rk):
                d.nat_flags |= NAT_RSP
                d.rsp = <uint16_t>cand
                self.nat_allocations += 1
                return 1
            self.nat_collisions += 1
        return -1

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        return self.resolve(p, b, ingress, p.sessions)

    cdef int resolve(self, Pipeline p, Burst b, uint32_t ingress, SessionTable t) noexcept nogil:
        cdef uint32_t i
        cdef pkt_ctx_t* c
        cdef pkt_meta_t* m
        cdef fc_entry_t* hit
        cdef int64_t h, hf, hr
        cdef bint alias
        cdef srec_t* r = NULL
        cdef uint64_t route_gen = p.routes.generation
        cdef int32_t nh
        cdef uint32_t e
        cdef smeta_t sm
        cdef int rc, dn
        # Pass 1: keys, and the flow cache sets prefetched while the next keys are built.
        for i in range(b.n):
            if b.v[i] == -1:
                continue
            self.c_packets += 1
            c = &p.ctx[i]
            if not key_from_meta(&b.m[i], &c.key):
                if not (self.new_flow_mask >> ingress) & 1:
                    drop_pkt(b, p.ctx, i, DROP_POLICY_DENIED)
                    self.c_drops += 1
                continue
            c.flags |= CTX_HAS_KEY
            if p.fc is not None:
                c.fch = p.fc.hash_key(&c.key, <uint16_t>ingress)
        # Pass 2: flow cache, session table, new flows.
        for i in range(b.n):
            c = &p.ctx[i]
            if b.v[i] == -1 or not (c.flags & CTX_HAS_KEY):
                continue
            m = &b.m[i]
            if p.fc is not None and not (m.protocol == PROTO_TCP and m.tcp_flags & 0x05):
                hit = p.fc.find(&c.key, <uint16_t>ingress, c.fch, route_gen,
                                p.config_generation, t, &r)
                if hit != NULL:
                    # Keepalive. The wheel is lazy: an entry popped before last_seen +
                    # timeout is rescheduled from last_seen, so no push is needed here.
                    r.last_seen_ns = p.now_ns
                    c.handle = hit.handle
                    t.decision_c(r, &c.dec)
                    c.nh = hit.nh
                    c.flags |= CTX_HAS_DEC | CTX_ROUTED
                    continue
            h = t.lookup_c(&c.key, p.now_ns, m.tcp_flags, True, &alias)
            if h >= 0:
                c.handle = h
                t.decision_c(t.record_c(h), &c.dec)
                c.flags |= CTX_HAS_DEC | CTX_FC_INSERT
                continue
            memset(&c.dec, 0, sizeof(sdecision_t))
            dn = self.match_dnat(ingress, &c.key)
            if dn < 0 and not (self.new_flow_mask >> ingress) & 1:
                drop_pkt(b, p.ctx, i, DROP_POLICY_DENIED)
                self.c_drops += 1
                continue
            if dn >= 0:   # a port forward: the flow goes to the rule's address and port
                c.dec.nat_flags |= NAT_RD
                memcpy(c.dec.rd, self.dnat[dn].to_addr, 16)
                if self.dnat[dn].to_port:
                    c.dec.nat_flags |= NAT_RDP
                    c.dec.rdp = self.dnat[dn].to_port
                nh = p.routes.lookup_addr(c.dec.rd, m.ip_version)
            else:
                nh = p.routes.lookup_addr(m.dst, m.ip_version)
            if nh < 0 or <uint32_t>nh >= p.n_nh:
                drop_pkt(b, p.ctx, i, DROP_NO_ROUTE)
                self.c_drops += 1
                continue
            e = <uint32_t>p.nh[nh].port
            c.dec.disposition = DISP_FORWARD_CANDIDATE
            c.dec.egress_port = <uint16_t>e
            if e < MAX_PORTS:
                rc = self.snat_pick(p, e, &c.key, &c.dec)
                if rc < 0:
                    drop_pkt(b, p.ctx, i, DROP_NAT_PORTS_EXHAUSTED)
                    self.c_drops += 1
                    continue
            memset(&sm, 0, sizeof(smeta_t))
            sm.ingress_zone = <uint16_t>ingress
            sm.egress_zone = <uint16_t>e
            if t.install_pair_c(&c.key, &c.dec, &sm, p.now_ns, m.tcp_flags,
                                <uint16_t>ingress, &hf, &hr) == 0 or hf < 0:
                drop_pkt(b, p.ctx, i, DROP_SESSION_TABLE_FULL)
                self.c_drops += 1
                continue
            p.sessions_created += 1
            c.handle = hf
            c.nh = nh   # the route stage reuses it: the table cannot change within a poll
            c.flags |= CTX_HAS_DEC | CTX_FC_INSERT | CTX_ROUTED
        return 0


@cython.final
cdef class NatStage(Stage):
    """Apply each packet's session NAT (SNAT and/or DNAT, ports or echo id) in place with
    incremental checksum updates."""

    def __init__(self):
        self.name = "nat"

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef pkt_ctx_t* c
        cdef uint8_t f
        cdef int rc
        for i in range(b.n):
            if b.v[i] == -1:
                continue
            self.c_packets += 1
            c = &p.ctx[i]
            f = c.dec.nat_flags
            if not (c.flags & CTX_HAS_DEC) or not (f & (NAT_RS | NAT_RD | NAT_RSP | NAT_RDP)):
                continue
            rc = nat_rewrite(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i],
                             c.dec.rs if f & NAT_RS else NULL,
                             c.dec.rd if f & NAT_RD else NULL,
                             c.dec.rsp if f & NAT_RSP else -1,
                             c.dec.rdp if f & NAT_RDP else -1)
            if rc == REWRITE_BAD_L4_CSUM:
                drop_pkt(b, p.ctx, i, DROP_NAT_FAILED)
                self.c_drops += 1
        return 0


@cython.final
cdef class RouteStage(Stage):
    """Longest-prefix match on the (post-NAT) destination: verdict = the next hop's port.
    Packets whose next hop is already known (flow cache hit, new flow) skip the lookup; misses
    resolved here are stored in the flow cache."""

    def __init__(self):
        self.name = "route"

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef pkt_ctx_t* c
        cdef int32_t nh
        for i in range(b.n):
            if b.v[i] == -1:
                continue
            self.c_packets += 1
            c = &p.ctx[i]
            if c.flags & CTX_ROUTED:
                nh = c.nh
            elif b.m[i].ip_version != 4 and b.m[i].ip_version != 6:
                nh = -1
            else:
                nh = p.routes.lookup_addr(b.m[i].dst, b.m[i].ip_version)
            if nh < 0 or <uint32_t>nh >= p.n_nh:
                drop_pkt(b, p.ctx, i, DROP_NO_ROUTE)
                self.c_drops += 1
                continue
            c.nh = nh
            b.v[i] = <int16_t>p.nh[nh].port
            if (c.flags & CTX_FC_INSERT) and p.fc is not None:
                p.fc.insert(&c.key, <uint16_t>ingress, c.fch, p.routes.generation,
                            p.config_generation, c.handle, nh)
        return 0


@cython.final
cdef class L2Stage(Stage):
    """Rewrite Ethernet source and destination MACs from the packet's next hop."""

    def __init__(self):
        self.name = "l2"

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef int32_t nh
        cdef uint8_t* f
        for i in range(b.n):
            if b.v[i] == -1:
                continue
            self.c_packets += 1
            nh = p.ctx[i].nh
            if nh < 0 or not p.nh[nh].has_macs or b.d[i].len < 14:
                continue
            f = b.umem.area + b.d[i].addr
            memcpy(f, p.nh[nh].dst_mac, 6)
            memcpy(f + 6, p.nh[nh].src_mac, 6)
        return 0


@cython.final
cdef class TtlStage(Stage):
    """Decrement the IPv4 TTL / IPv6 hop limit; packets at <= 1 are dropped as ttl_expired."""

    def __init__(self):
        self.name = "ttl"

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if b.v[i] == -1:
                continue
            self.c_packets += 1
            if ttl_decrement(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i]) == TTL_EXPIRED:
                drop_pkt(b, p.ctx, i, DROP_TTL_EXPIRED)
                self.c_drops += 1
        return 0


@cython.final
cdef class MssClampStage(Stage):
    """Lower the MSS option of TCP SYNs to `mss_v4` (IPv4) / `mss_v6` (IPv6)."""

    cdef readonly uint16_t mss_v4
    cdef readonly uint16_t mss_v6
    cdef readonly uint64_t clamped

    def __init__(self, int mss_v4, mss_v6=None):
        v6 = mss_v4 - 20 if mss_v6 is None else int(mss_v6)
        if not 1 <= mss_v4 <= 65535 or not 1 <= v6 <= 65535:
            raise ValueError(f"MSS values must be in [1, 65535], got {mss_v4}, {v6}")
        self.name = "mss_clamp"
        self.mss_v4 = mss_v4
        self.mss_v6 = v6

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if b.v[i] == -1:
                continue
            self.c_packets += 1
            if b.m[i].protocol == PROTO_TCP and b.m[i].tcp_flags & 0x02:
                self.clamped += mss_clamp(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i],
                                          self.mss_v4 if b.m[i].ip_version == 4
                                          else self.mss_v6) == 1
        return 0


@cython.final
cdef class CountStage(Stage):
    """Count packets and bytes reaching this point of the pipeline."""

    cdef readonly uint64_t bytes

    def __init__(self, str name="count"):
        self.name = name

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            if b.v[i] != -1:
                self.c_packets += 1
                self.bytes += b.d[i].len
        return 0

    def stats(self):
        out = Stage.stats(self)
        out["bytes"] = self.bytes
        return out


@cython.final
cdef class CosStage(Stage):
    """CoS classify + enqueue for shaped egress ports (one `xpfdp.cos` Scheduler each).

    Packets routed to a port in `schedulers` are classified by the first matching rule
    (else `default_queue`) and admitted to that queue; the pipeline then drains each
    scheduler into its port's TX ring every poll and settles back exactly what the ring
    refused. Admission drops are counted as cos_drop:<reason>. Rules are dicts with
    "queue" (queue id) and any of "proto" (number, or "icmp" for ICMP and ICMPv6),
    "family" (4/6), "dscp" (0..63) and "port" (source or destination port). Ports whose
    UMEM differs from the ingress port's are not shaped (their frames are copied out).
    """

    cdef readonly dict schedulers
    cdef cos_rule_t rules[MAX_PORTS][MAX_COS_RULES]
    cdef uint32_t n_rules[MAX_PORTS]
    cdef uint16_t default_q[MAX_PORTS]
    cdef readonly uint64_t admitted
    cdef readonly uint64_t ecn_marked

    def __init__(self, schedulers, rules=(), *, int default_queue=0):
        self.name = "cos"
        self.schedulers = dict(schedulers)
        expanded = []
        for r in rules:
            r = dict(r)
            unknown = set(r) - {"queue", "proto", "family", "dscp", "port"}
            if unknown or "queue" not in r:
                raise ValueError(f"CoS rule {r!r}: needs 'queue', allows proto/family/dscp/port")
            if r.get("proto") == "icmp":
                expanded.append({**r, "proto": 1, "family": 4})
                expanded.append({**r, "proto": 58, "family": 6})
            else:
                expanded.append(r)
        if len(expanded) > MAX_COS_RULES:
            raise ValueError(f"at most {MAX_COS_RULES} CoS rules")
        for port, sch in self.schedulers.items():
            if not 0 <= int(port) < MAX_PORTS:
                raise ValueError(f"CoS: port index {port} out of range")
            if not isinstance(sch, Scheduler):
                raise TypeError(f"CoS: port {port} needs an xpfdp.cos Scheduler")
            ids = list(sch.queue_ids)
            if default_queue not in ids:
                raise ValueError(f"CoS: default queue {default_queue} not in port {port}'s "
                                 f"scheduler (queues {ids})")
            self.default_q[port] = ids.index(default_queue)
            self.n_rules[port] = len(expanded)
            for k, r in enumerate(expanded):
                if r["queue"] not in ids:
                    raise ValueError(f"CoS rule {r!r}: queue not in port {port}'s scheduler")
                self.rules[port][k].queue_index = ids.index(r["queue"])
                self.rules[port][k].proto = int(r.get("proto", 0))
                self.rules[port][k].family = int(r.get("family", 0))
                self.rules[port][k].dscp = int(r.get("dscp", -1))
                self.rules[port][k].port = int(r.get("port", 0))

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i, k, e, qi
        cdef int16_t v
        cdef pkt_meta_t* m
        cdef cos_rule_t* r
        cdef cos_item_t it
        cdef cosq_t* q
        cdef int rc
        for i in range(b.n):
            v = b.v[i]
            if v == -1:
                continue
            self.c_packets += 1
            if v < 0 or <uint32_t>v >= p.n_ports or p.sched[v] == NULL or p.cross[ingress][v]:
                continue
            e = <uint32_t>v
            m = &b.m[i]
            qi = self.default_q[e]
            for k in range(self.n_rules[e]):
                r = &self.rules[e][k]
                if ((r.proto == 0 or r.proto == m.protocol)
                        and (r.family == 0 or r.family == m.ip_version)
                        and (r.dscp < 0 or r.dscp == (m.tos >> 2))
                        and (r.port == 0 or ((m.flags & META_L4_VALID)
                                             and (r.port == m.sport or r.port == m.dport)))):
                    qi = r.queue_index
                    break
            q = (<Scheduler>p.sched[e]).classes[qi].q
            it.addr = b.d[i].addr
            it.len = b.d[i].len
            it.options = 0
            it.bucket = cos_meta_bucket(q.seed, q.mask, m) if q.flow_fair else 0
            rc = cosq_admit(q, &it, b.umem.area + b.d[i].addr)
            if rc <= 1:
                b.v[i] = VERDICT_QUEUED
                self.admitted += 1
                self.ecn_marked += rc == 1
            else:
                drop_pkt(b, p.ctx, i, DROP_COS_FLOW_SHARE + rc - 2)
                self.c_drops += 1
        return 0

    def stats(self):
        out = Stage.stats(self)
        out["admitted"] = self.admitted
        out["ecn_marked"] = self.ecn_marked
        return out


@cython.final
cdef class PyStage(Stage):
    """A Python callable run once per burst with the GIL: `fn(burst)`.

    It may set `burst.verdict[i]` (-1 drops, counted as user_drop; >= 0 picks an egress
    port) and rewrite frames through `burst.frame(i)` or `burst.umem.buf`. An exception
    drops the burst (user_error) and stops the worker; `Pipeline.error` keeps it.
    """

    cdef readonly object fn

    def __init__(self, fn, str name=None):
        if not callable(fn):
            raise TypeError(f"PyStage needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "user")

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        return 0


# ---------------------------------------------------------------------------------------
# The pipeline

cdef class Pipeline:
    """One worker: ports, stages, routes/next hops, session table, flow cache, counters."""

    def __cinit__(self):
        self.ctx = NULL
        self.saved = NULL
        self.nh = NULL
        self.lat = NULL
        self.exp_buf = NULL

    def __init__(self, ports, stages, *, routes=None, next_hops=(), sessions=None,
                 flow_cache=None, uint32_t burst_size=64, names=None, uint32_t tx_queue=0):
        ports = list(ports)
        stages = list(stages)
        if not 1 <= len(ports) <= MAX_PORTS:
            raise ValueError(f"a pipeline needs 1..{MAX_PORTS} ports, got {len(ports)}")
        if len(stages) > MAX_STAGES:
            raise ValueError(f"at most {MAX_STAGES} stages, got {len(stages)}")
        for x in ports:
            if not isinstance(x, Port):
                raise TypeError(f"ports must be XskPort/MemPort, got {type(x).__name__}")
            if (<Port>x).closed:
                raise ValueError(f"{x!r} is closed")
        if len(set(map(id, ports))) != len(ports):
            raise ValueError("a port appears twice")
        for s in stages:
            if not isinstance(s, Stage):
                raise TypeError(f"stages must be Stage instances (wrap callables in PyStage), "
                                f"got {type(s).__name__}")
        if not 1 <= burst_size <= 256:
            raise ValueError(f"burst_size must be in [1, 256], got {burst_size}")
        self.burst_size = burst_size
        if tx_queue == 0:
            tx_queue = 4 * burst_size
        if tx_queue < burst_size:
            raise ValueError("tx_queue must hold at least one burst")
        self._ports = ports
        self._stages = stages
        self.port_names = list(names) if names is not None else [
            getattr(x, "ifname", None) or f"port{i}" for i, x in enumerate(ports)]
        if len(self.port_names) != len(ports):
            raise ValueError("names must have one entry per port")
        needs_routes = any(isinstance(s, (RouteStage, SessionStage)) for s in stages)
        needs_sessions = any(isinstance(s, SessionStage) for s in stages)
        if needs_routes and routes is None:
            raise ValueError("route/session stages need `routes` (a RouteTable)")
        if needs_sessions and sessions is None:
            raise ValueError("a SessionStage needs `sessions` (a SessionTable)")
        self.routes = routes
        self.sessions = sessions
        self.fc = flow_cache
        if flow_cache is not None and not isinstance(flow_cache, FlowCache):
            raise TypeError("flow_cache must be a FlowCache")
        self.n_ports = len(ports)
        self.n_stages = len(stages)
        self._rx_bursts = []
        self._tx_bursts = []
        self._drop_bursts = []
        self._cos_bursts = []
        self._copy_bursts = []
        for i, x in enumerate(ports):
            for j, y in enumerate(ports):
                self.cross[i][j] = (<Port>x).umem is not (<Port>y).umem
            cb = Burst(64)
            cb.umem = (<Port>x).umem
            cp = Burst(1)
            cp.umem = (<Port>x).umem
            self._cos_bursts.append(cb)
            self._copy_bursts.append(cp)
            self.cosb[i] = <PyObject*>cb
            self.cpb[i] = <PyObject*>cp
            self.sched[i] = NULL
        for st in stages:
            if isinstance(st, CosStage):
                for j, sch in (<CosStage>st).schedulers.items():
                    if j >= len(ports):
                        raise ValueError(f"CoS: port index {j} out of range "
                                         f"(pipeline has {len(ports)} ports)")
                    if self.sched[j] != NULL and <object>self.sched[j] is not sch:
                        raise ValueError(f"CoS: two schedulers for port {j}")
                    self.sched[j] = <PyObject*>sch
        for i, x in enumerate(ports):
            rb = Burst(burst_size)
            rb.umem = (<Port>x).umem
            tb = Burst(tx_queue)
            tb.umem = (<Port>x).umem
            db = Burst(burst_size)
            db.umem = (<Port>x).umem
            self._rx_bursts.append(rb)
            self._tx_bursts.append(tb)
            self._drop_bursts.append(db)
            self.ports[i] = <PyObject*>x
            self.rxb[i] = <PyObject*>rb
            self.txq[i] = <PyObject*>tb
            self.dropb[i] = <PyObject*>db
        for k, s in enumerate(stages):
            self.stages[k] = <PyObject*>s
            if isinstance(s, PyStage):
                self.py_stage[k] = 1
        self.ctx = <pkt_ctx_t*>calloc(burst_size, sizeof(pkt_ctx_t))
        self.saved = <xdp_desc*>calloc(burst_size, sizeof(xdp_desc))
        self.lat = <lat_fifo_t*>calloc(self.n_ports, sizeof(lat_fifo_t))
        if self.ctx == NULL or self.lat == NULL or self.saved == NULL:
            raise MemoryError("pipeline scratch")
        for i, x in enumerate(ports):
            self.lat[i].seen_completions = (<Port>x).st.completions
        self.set_next_hops(next_hops)

    def __dealloc__(self):
        free(self.ctx)
        free(self.saved)
        free(self.nh)
        free(self.lat)
        free(self.exp_buf)

    def set_next_hops(self, next_hops):
        """Replace the next-hop table: a sequence of (port index, src MAC, dst MAC) with
        MACs as "aa:bb:..", bytes or None (no L2 rewrite). Route values index it.
        Not while the pipeline polls in another thread: use Forwarder.update()."""
        hops = list(next_hops)
        cdef nexthop_t* new = <nexthop_t*>calloc(max(len(hops), 1), sizeof(nexthop_t))
        if new == NULL:
            raise MemoryError("next hops")
        try:
            for k, hop in enumerate(hops):
                port, src, dst = hop
                if not 0 <= int(port) < self.n_ports:
                    raise ValueError(f"next hop {k}: port {port} out of range "
                                     f"(pipeline has {self.n_ports} ports)")
                new[k].port = int(port)
                if (src is None) != (dst is None):
                    raise ValueError(f"next hop {k}: give both MACs or neither")
                if src is not None:
                    s, d = _mac(src), _mac(dst)
                    memcpy(new[k].src_mac, <const char*>s, 6)
                    memcpy(new[k].dst_mac, <const char*>d, 6)
                    new[k].has_macs = 1
        except BaseException:
            free(new)
            raise
        free(self.nh)
        self.nh = new
        self.n_nh = len(hops)
        self.config_generation += 1

    def invalidate(self):
        """Bump the config generation: every flow-cache entry becomes stale."""
        self.config_generation += 1

    @property
    def ports(self):
        """The ports, in index order (verdict and next-hop port numbers index this)."""
        return list(self._ports)

    @property
    def stages(self):
        """The stages, in run order."""
        return list(self._stages)

    @property
    def flow_cache(self):
        """The FlowCache, or None."""
        return self.fc

    @property
    def error(self):
        """The exception that stopped this worker (from a user stage), or None."""
        return self._error

    # ------------------------------------------------------------------ per burst

    cdef int run_py_stage(self, uint32_t k, Burst b) noexcept with gil:
        cdef PyStage s = <PyStage>self.stages[k]
        cdef uint32_t i, n = b.n
        for i in range(n):
            if b.v[i] != -1:
                s.c_packets += 1
            self.saved[i] = b.d[i]
        err = None
        try:
            s.fn(b)
        except BaseException as exc:
            err = exc
        # The frames stay ours whatever the stage did to the arrays: count, addresses and
        # options are restored; a length is kept only if it still fits its frame.
        b.n = n
        for i in range(n):
            b.d[i].addr = self.saved[i].addr
            b.d[i].options = 0
            if not b.umem.owns(b.d[i].addr, b.d[i].len):
                b.d[i].len = self.saved[i].len
        if err is not None:
            if self._error is None:
                self._error = err
            self.stop_flag = True
            for i in range(b.n):
                if b.v[i] != -1:
                    drop_pkt(b, self.ctx, i, DROP_USER_ERROR)
                    s.c_drops += 1
            return -1
        for i in range(b.n):
            if b.v[i] == -1 and self.ctx[i].why == 0xFF:
                self.ctx[i].why = DROP_USER
                s.c_drops += 1
        return 0

    cdef int process(self, uint32_t ingress, Burst b) noexcept nogil:
        cdef uint32_t i, k
        for i in range(b.n):
            b.v[i] = VERDICT_PENDING
            self.ctx[i].flags = 0
            self.ctx[i].nh = -1
            self.ctx[i].handle = -1
            self.ctx[i].why = 0xFF
        for k in range(self.n_stages):
            if self.py_stage[k]:
                self.run_py_stage(k, b)
            else:
                (<Stage>self.stages[k]).run(self, b, ingress)
        self.settle(ingress, b, <Burst>self.dropb[ingress])
        return 0

    cdef void settle(self, uint32_t ingress, Burst b, Burst db) noexcept nogil:
        """Queue each packet on its egress TX queue or return its frame (counted)."""
        cdef uint32_t i, nd = 0
        cdef int16_t v
        cdef uint8_t why
        for i in range(b.n):
            v = b.v[i]
            if v >= 0:
                if <uint32_t>v >= self.n_ports:
                    why = DROP_BAD_EGRESS
                elif self.cross[ingress][v]:
                    why = self.copy_out(<Port>self.ports[v], <Burst>self.cpb[v],
                                        <Burst>self.txq[v], &b.d[i], b.umem)
                    if why == 0xFF:   # copied: the received frame goes home, not a drop
                        db.d[nd] = b.d[i]
                        nd += 1
                        continue
                elif enqueue(<Burst>self.txq[v], &b.d[i]):
                    continue
                else:
                    why = DROP_TX_RING_FULL
            elif v == VERDICT_QUEUED:
                continue
            elif v == -1:
                why = self.ctx[i].why
                if why == 0xFF:
                    why = DROP_USER
            elif v == -2:
                why = DROP_PASS
            else:
                why = DROP_NO_EGRESS
            self.burst_drops[why] += 1
            db.d[nd] = b.d[i]
            nd += 1
        if nd:
            (<Port>self.ports[ingress]).c_recycle(db, 0, nd)
        b.n = 0

    cdef void reap_latency(self, uint32_t j) noexcept nogil:
        """Match completions reaped since the last look to submitted batches (FIFO)."""
        cdef lat_fifo_t* L = &self.lat[j]
        cdef uint64_t done = (<Port>self.ports[j]).st.completions - L.seen_completions
        cdef uint64_t now, age
        cdef uint32_t take, bucket
        if done == 0 or L.len == 0:
            L.seen_completions += done
            return
        now = xpfdp_pipe_now_ns()
        while done and L.len:
            take = L.count[L.head]
            if take > done:
                take = <uint32_t>done
            age = now - L.stamp_ns[L.head] if now > L.stamp_ns[L.head] else 0
            bucket = 0
            age >>= 10
            while age and bucket < LAT_BUCKETS - 1:
                age >>= 1
                bucket += 1
            self.lat_hist[bucket] += take
            done -= take
            L.seen_completions += take
            L.count[L.head] -= take
            if L.count[L.head] == 0:
                L.head = (L.head + 1) % LAT_FIFO
                L.len -= 1
        L.seen_completions += done

    cdef uint8_t copy_out(self, Port port, Burst cp, Burst q, const xdp_desc* d,
                          Umem src) noexcept nogil:
        """Copy a frame into a TX frame of `port`'s UMEM and queue it; 0xFF or a reason."""
        if q.n >= q.capacity:
            return DROP_TX_RING_FULL
        if d.len > port.umem.frame_size or port.c_alloc_tx(cp, 1) != 1:
            return DROP_COPY_NO_FRAME
        memcpy(port.umem.area + cp.d[0].addr, src.area + d.addr, d.len)
        cp.d[0].len = d.len
        enqueue(q, &cp.d[0])
        cp.n = 0
        return 0xFF

    cdef int tx_stamped(self, uint32_t j, Port port, Burst q, uint32_t n) noexcept nogil:
        """Submit q.d[0:n] to port j's TX ring, stamping the accepted prefix for latency."""
        cdef lat_fifo_t* L = &self.lat[j]
        cdef uint64_t t0 = xpfdp_pipe_now_ns()
        cdef int s = port.c_tx(q, 0, n)
        if s <= 0:   # < 0: a descriptor we do not hold (cannot happen with our queues)
            return 0
        self.tx_packets += <uint32_t>s
        if L.len < LAT_FIFO:
            L.stamp_ns[(L.head + L.len) % LAT_FIFO] = t0
            L.count[(L.head + L.len) % LAT_FIFO] = <uint32_t>s
            L.len += 1
        else:
            L.seen_completions += <uint32_t>s   # FIFO full: not stamped
        return s

    cdef void drain_cos(self, uint32_t j, Port port, Scheduler sch, Burst q) noexcept nogil:
        """Drain the scheduler into TX; the part the ring refuses is settled back (exact
        rollback), its frames staying held by the queues."""
        cdef uint32_t n, rounds = 0
        cdef int s
        while rounds < 8:
            rounds += 1
            n = sch.drain_batch(<xdp_desc_t*>q.d, q.capacity, self.now_ns)
            if n == 0:
                break
            s = self.tx_stamped(j, port, q, n)
            sch.settle_batch(<uint32_t>s)
            if <uint32_t>s < n:
                break
        self.reap_latency(j)

    cdef void flush_tx(self, uint32_t j) noexcept nogil:
        self.flush_queue(j, <Port>self.ports[j], <Burst>self.txq[j])

    cdef void flush_queue(self, uint32_t j, Port port, Burst q) noexcept nogil:
        """Transmit egress queue j; refused frames stay queued (still held by us)."""
        cdef int s
        if q.n == 0:
            return
        s = self.tx_stamped(j, port, q, q.n)
        if s > 0:
            if <uint32_t>s < q.n:
                memmove(q.d, q.d + s, (q.n - <uint32_t>s) * sizeof(xdp_desc))
            q.n -= <uint32_t>s
        self.reap_latency(j)

    cdef uint32_t poll_c(self, uint64_t now_ns) noexcept nogil:
        """One round: a burst from every port, stages, TX, service; returns packets received."""
        cdef uint32_t k, i, got = 0, r
        cdef int n
        self.now_ns = now_ns
        for k in range(self.n_ports):
            i = (self.start_port + k) % self.n_ports
            n = (<Port>self.ports[i]).c_rx(<Burst>self.rxb[i])
            if n <= 0:
                continue
            got += <uint32_t>n
            self.process(i, <Burst>self.rxb[i])
            for r in range(self.n_ports):
                self.flush_tx(r)
            if self.stop_flag:
                break
        self.start_port = (self.start_port + 1) % self.n_ports
        for r in range(self.n_ports):
            self.flush_tx(r)
            if self.sched[r] != NULL:
                self.drain_cos(r, <Port>self.ports[r], <Scheduler>self.sched[r],
                               <Burst>self.cosb[r])
            (<Port>self.ports[r]).c_service()
            self.reap_latency(r)
        if self.sessions is not None and (now_ns - self.last_expire_ns >= EXPIRE_INTERVAL_NS
                                          or now_ns < self.last_expire_ns):
            self.last_expire_ns = now_ns
            n = <int>self.sessions.expire_c(now_ns, &self.exp_buf, &self.exp_cap)
            if n > 0:
                self.sessions_expired += <uint32_t>n
        for r in range(DROP_REASON_COUNT):
            self.drops[r] += self.burst_drops[r]
            self.burst_drops[r] = 0
        self.rx_packets += got
        self.polls += 1
        if got == 0:
            self.idle_polls += 1
        return got

    # ------------------------------------------------------------------ Python API

    def _check_open(self):
        if self.closed:
            raise ValueError("pipeline is closed")

    def poll(self, now_ns=None):
        """Run one round over every port with the GIL released (a PyStage takes it once per
        burst). `now_ns` overrides the monotonic clock (tests drive session expiry with it).
        Returns the number of packets received."""
        self._check_open()
        cdef uint64_t t = xpfdp_pipe_now_ns() if now_ns is None else <uint64_t>now_ns
        cdef uint32_t got
        with nogil:
            got = self.poll_c(t)
        self._raise_error()
        return got

    def run(self, seconds=None, *, uint64_t max_packets=0, bint until_idle=False):
        """Poll until `seconds` pass, `max_packets` were received, `until_idle` and a poll
        received nothing with every TX queue empty, or stop() is called. Returns packets
        received. After 64 idle polls it blocks up to 1 ms in one poll() over every port."""
        self._check_open()
        if seconds is None and not max_packets and not until_idle:
            raise ValueError("run() needs seconds, max_packets or until_idle")
        cdef uint64_t deadline = 0, now, total = 0
        cdef bint timed = seconds is not None
        cdef uint32_t got, idle = 0, k
        cdef bint pending
        if timed:
            deadline = xpfdp_pipe_now_ns() + <uint64_t>(float(seconds) * 1e9)
        self.stop_flag = False
        with nogil:
            while True:
                now = xpfdp_pipe_now_ns()
                got = self.poll_c(now)
                total += got
                if self.stop_flag or (timed and now >= deadline) or (
                        max_packets and total >= max_packets):
                    break
                if got == 0:
                    pending = False
                    for k in range(self.n_ports):
                        pending = pending or (<Burst>self.txq[k]).n > 0
                    if until_idle and not pending:
                        break
                    idle += 1
                    if idle >= IDLE_POLLS_BEFORE_WAIT:
                        idle = 0
                        wait_any(self.ports, self.n_ports, 1)
                else:
                    idle = 0
        self._raise_error()
        return total

    def _raise_error(self):
        if self._error is not None:
            raise RuntimeError(f"user stage failed: {self._error!r}") from self._error

    def stop(self):
        """Ask a running `run()` (possibly in another thread) to return after this poll."""
        self.stop_flag = True

    def pending_tx(self):
        """Frames queued for TX per port (held by the pipeline, retried every poll)."""
        return [(<Burst>self.txq[k]).n for k in range(self.n_ports)]

    def drop_pending(self):
        """Return every queued TX frame (TX queues and CoS queues) to its pool, counted as
        shutdown drops."""
        cdef uint32_t k, n, c
        cdef Burst q
        cdef Scheduler sch
        cdef cos_item_t it
        for k in range(self.n_ports):
            if self.sched[k] == NULL:
                continue
            sch = <Scheduler>self.sched[k]
            q = <Burst>self.cosb[k]
            for c in range(sch.n_classes):
                while True:
                    n = 0
                    while n < q.capacity and cosq_pop(sch.classes[c].q, False, &it) == 0:
                        q.d[n].addr = it.addr
                        q.d[n].len = it.len
                        q.d[n].options = 0
                        n += 1
                    if n == 0:
                        break
                    (<Port>self.ports[k]).c_recycle(q, 0, n)
                    self.drops[DROP_SHUTDOWN] += n
        for k in range(self.n_ports):
            q = <Burst>self.txq[k]
            n = q.n
            if n:
                (<Port>self.ports[k]).c_recycle(q, 0, n)
                self.drops[DROP_SHUTDOWN] += n
                q.n = 0

    def close(self, bint close_ports=False):
        """Flush what the TX rings still take, return held frames, optionally close ports.
        Idempotent."""
        if self.closed:
            return
        cdef uint32_t k
        for k in range(self.n_ports):
            if not (<Port>self.ports[k]).closed:
                self.flush_tx(k)
        self.drop_pending()
        self.closed = True
        if close_ports:
            for x in self._ports:
                x.close()

    def stats(self):
        """A snapshot as a plain dict (shape documented in xpfdp.pipeline)."""
        drops = {name: int(self.drops[r]) for r, name in enumerate(DROP_REASONS)
                 if self.drops[r]}
        ports = {}
        for name, x in zip(self.port_names, self._ports):
            ports[name] = x.stats() if not x.closed else {}
        out = {
            "rx_packets": int(self.rx_packets),
            "tx_packets": int(self.tx_packets),
            "drops": drops,
            "drops_total": sum(drops.values()),
            "polls": int(self.polls),
            "idle_polls": int(self.idle_polls),
            "ports": ports,
            "stages": {s.name: s.stats() for s in self._stages},
            "pending_tx": sum(self.pending_tx()),
            "tx_latency": {
                "bucket_upper_ns": list(LATENCY_BUCKET_UPPER_NS),
                "counts": [int(self.lat_hist[k]) for k in range(LAT_BUCKETS)],
            },
            "sessions": {
                "active": len(self.sessions) if self.sessions is not None else 0,
                "created": int(self.sessions_created),
                "expired": int(self.sessions_expired),
            },
            "flow_cache": self.fc.stats() if self.fc is not None else None,
        }
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"Pipeline(ports={self.port_names}, "
                f"stages={[s.name for s in self._stages]}, burst_size={self.burst_size})")


def _mac(value):
    """6 MAC bytes from "aa:bb:cc:dd:ee:ff", "aabbccddeeff" or bytes."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raw = bytes.fromhex(str(value).replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"MAC address {value!r} is not 6 bytes")
    return raw
