# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class SessionStage(Stage):
    """SessionStage(*, new_flow_ports=None, snat=None, dnat=())\n--\n
    Stateful session resolve: flow cache → session table → new flow under policy.

    Packets of a known session (either direction) take its decision (the reverse entry of
    a NAT session carries the un-NAT). A packet with no session may open one only when it
    arrived on a port in `new_flow_ports` (None: any port) and its destination routes to a
    port; otherwise it is dropped as policy_denied (no_route when unroutable). A new flow
    leaving through a port with an SNAT pool gets the pool address and a free port from
    the pool range (ICMP echo keeps its identifier); both entries are installed at once.
    Fragments: a first fragment's session is recorded in the pipeline's fragment table
    under (source, destination, protocol, fragment ID), and every later fragment of that
    datagram takes the same decision (NAT rewrites only its addresses: the ports and the
    L4 checksum live in the first fragment). Later fragments are resolved after the
    burst's first fragments; one that arrives before its first is held by the table
    (verdict QUEUED) and runs through the stages again once the first arrives. Drops:
    frag_limit (table full), frag_session_gone (the session ended). Other packets without
    a session key (non-L4) are dropped as policy_denied when they come from outside
    `new_flow_ports`; from inside they pass statelessly unless they would leave through an
    SNAT port (nat_untranslatable), as do new flows of a protocol SNAT cannot translate.
    ICMP errors open nothing: each is translated through the session of the packet it
    quotes (icmp_error_no_session when there is none, icmp_error_malformed when the quote or
    checksum is bad); other non-echo ICMP is dropped as icmp_unsupported.

    Needs "parsed" and the pipeline's `routes`, `sessions` and `fragments`; provides "has_key" (ctx
    `key`) and "has_decision" (ctx `dec`, `handle`) for the packets that have them. Packets
    it routed already (cache hits, new flows) carry `nh` and the CTX_ROUTED flag, which
    RouteStage honours; misses it wants cached carry CTX_FC_INSERT.
    """

    cdef uint32_t new_flow_mask
    cdef uint8_t snat_flags[MAX_PORTS]        # bit 0: IPv4 pool, bit 1: IPv6 pool
    cdef uint8_t snat_v4[MAX_PORTS][16]
    cdef uint8_t snat_v6[MAX_PORTS][16]
    cdef uint16_t port_lo[MAX_PORTS]
    cdef uint16_t port_hi[MAX_PORTS]
    cdef uint32_t cursor[MAX_PORTS]
    cdef uint8_t snat_egress[MAX_PORTS]       # egress ports with an SNAT pool
    cdef uint32_t n_snat_egress
    cdef readonly uint64_t nat_allocations
    cdef readonly uint64_t nat_collisions
    cdef readonly uint64_t icmp_errors_translated
    cdef uint8_t why_untranslatable          # drop-reason codes registered at construction
    cdef uint8_t why_icmp[4]                 # by icmp_error_translate result
    cdef dnat_rule_t dnat[MAX_DNAT]
    cdef uint32_t n_dnat
    cdef uint8_t why_frag_limit
    cdef uint8_t why_frag_session_gone
    cdef uint8_t why_frag_note_ring_full

    def __init__(self, *, new_flow_ports=None, snat=None, dnat=()):
        """`new_flow_ports`: port indices that may open sessions. `snat`: {egress port index:
        (addresses, (port_lo, port_hi))} with addresses an IPv4 and/or IPv6 address (str or
        list of up to one per family). `dnat`: (ingress, proto, dport, to_address, to_port)
        port-forward rules (see add_dnat)."""
        self.name = "session"
        self.why_untranslatable = drop_reason("nat_untranslatable")
        self.why_icmp[ICMP_MALFORMED] = drop_reason("icmp_error_malformed")
        self.why_icmp[ICMP_NO_SESSION] = drop_reason("icmp_error_no_session")
        self.why_icmp[ICMP_NOT_ERROR] = drop_reason("icmp_unsupported")
        self.needs = ("parsed", "routes", "sessions", "fragments")
        self.provides = ("has_key", "has_decision")
        self.why_frag_limit = drop_reason("frag_limit")
        self.why_frag_session_gone = drop_reason("frag_session_gone")
        self.why_frag_note_ring_full = drop_reason("frag_note_ring_full")
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
        self.n_snat_egress = 0
        for e in range(MAX_PORTS):
            if self.snat_flags[e]:
                self.snat_egress[self.n_snat_egress] = e
                self.n_snat_egress += 1

    def check_workers(self, uint32_t workers):
        """Raise ValueError unless every SNAT port range gives `workers` a slice each."""
        cdef uint32_t n, e
        for n in range(self.n_snat_egress):
            e = self.snat_egress[n]
            if <uint32_t>self.port_hi[e] - self.port_lo[e] + 1 < workers:
                raise ValueError(f"snat: port range [{self.port_lo[e]}, {self.port_hi[e]}] of "
                                 f"port {e} is smaller than the {workers} workers sharing it")

    cdef uint32_t owner_of(self, uint32_t ingress, uint8_t icmp_type, const skey_t* k,
                           uint32_t local, uint32_t workers) noexcept nogil:
        """The worker that owns this packet's session, from the packet alone (the same
        answer on every worker and for both directions of a flow; see docs/multicore.md):
        a DNAT port forward by its client endpoint, an SNAT reply by the slice of the SNAT
        port range its destination port is in, a DNAT reply by its client endpoint, ICMP
        echo by server and identifier, anything else by its direction-free 5-tuple.
        `icmp_type` is the packet's ICMP type when k is an ICMP key."""
        cdef uint32_t n, e
        cdef uint8_t fam = 1 if k.af == 2 else 2
        cdef const uint8_t* pool
        cdef const dnat_rule_t* r
        cdef uint64_t h1, h2
        if k.proto == PROTO_ICMP or k.proto == PROTO_ICMPV6:
            if not is_icmp_echo(k.proto, icmp_type):
                return local      # no session key of its own: handled where it lands
            if icmp_type == 8 or icmp_type == 128:    # request: the server is dst
                return worker_of(endpoint_hash(k.dst, k.sport, k.proto), workers)
            return worker_of(endpoint_hash(k.src, k.sport, k.proto), workers)
        if self.match_dnat(ingress, k) >= 0:
            return worker_of(endpoint_hash(k.src, k.sport, k.proto), workers)
        for n in range(self.n_snat_egress):
            e = self.snat_egress[n]
            if not (self.snat_flags[e] & fam):
                continue
            if fam == 1:
                pool = &self.snat_v4[e][0]
            else:
                pool = &self.snat_v6[e][0]
            if (self.port_lo[e] <= k.dport <= self.port_hi[e]
                    and memcmp(pool, k.dst, 16) == 0):
                return slice_owner(self.port_lo[e],
                                   <uint32_t>self.port_hi[e] - self.port_lo[e] + 1,
                                   k.dport, workers)
        for n in range(self.n_dnat):
            r = &self.dnat[n]
            if (r.af == k.af and r.proto == k.proto
                    and (r.to_port if r.to_port else r.dport) == k.sport
                    and memcmp(r.to_addr, k.src, 16) == 0):
                return worker_of(endpoint_hash(k.dst, k.dport, k.proto), workers)
        h1 = endpoint_hash(k.src, k.sport, k.proto)
        h2 = endpoint_hash(k.dst, k.dport, k.proto)
        return worker_of(mix64((h1 ^ h2) + (h1 + h2) * 0xD6E8FEB86659FD93ULL), workers)

    cdef uint32_t error_owner(self, uint32_t ingress, const uint8_t* f, uint32_t frame_len,
                              const pkt_meta_t* m, uint32_t local,
                              uint32_t workers) noexcept nogil:
        """The worker that owns the session an ICMP error is about: owner_of the quoted
        packet turned round (a packet of the flow travelling the error's way). An error
        whose quote cannot be read stays where it landed, to be counted there."""
        cdef icmp_quote_t q
        cdef skey_t k
        if icmp_quote_parse(f, frame_len, m, &q) != QUOTE_OK:
            return local
        icmp_quote_reply_key(&q, m.ip_version, &k)
        # the turned-round quote of an echo request travels as a reply, and the reverse
        return self.owner_of(ingress, echo_other_half(f[q.q_l4]) if q.echo else 0, &k,
                             local, workers)

    cdef bint is_dnat_port(self, uint32_t ingress, const skey_t* k,
                           uint16_t port) noexcept nogil:
        """True if a port forward listens on (ingress, k's proto and family, port)."""
        cdef uint32_t n
        for n in range(self.n_dnat):
            if (self.dnat[n].ingress == ingress and self.dnat[n].proto == k.proto
                    and self.dnat[n].af == k.af and self.dnat[n].dport == port):
                return True
        return False

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
        free, -2 for a protocol SNAT cannot translate (not TCP, UDP or echo), 0 when the port
        has no pool for this family, 1 when set."""
        cdef uint8_t fam = 1 if k.af == 2 else 2
        cdef skey_t rk
        cdef uint32_t span, tries, cand, lo
        if not (self.snat_flags[e] & fam):
            return 0
        if k.proto != PROTO_TCP and k.proto != PROTO_UDP and k.proto != PROTO_ICMP \
                and k.proto != PROTO_ICMPV6:
            return -2   # no port or identifier to translate: never leaves untranslated
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
        # With several workers each allocates only from its own slice of the range, so a
        # reply names its owner by its destination port.
        span = <uint32_t>self.port_hi[e] - self.port_lo[e] + 1
        lo = self.port_lo[e]
        if p.n_workers > 1:
            if span < p.n_workers:
                return -1
            lo = slice_lo(self.port_lo[e], span, p.worker, p.n_workers)
            span = slice_lo(self.port_lo[e], span, p.worker + 1, p.n_workers) - lo
        tries = span if span < 256 else 256
        while tries:
            tries -= 1
            cand = lo + self.cursor[e] % span
            self.cursor[e] += 1
            if self.is_dnat_port(e, k, <uint16_t>cand):
                continue    # a reply to it would look like a new port-forwarded flow
            rk.dport = <uint16_t>cand
            if self.reply_free(p.sessions, &rk):
                d.nat_flags |= NAT_RSP
                d.rsp = <uint16_t>cand
                self.nat_allocations += 1
                return 1
            self.nat_collisions += 1
        return -1

    cdef bint leaves_snat(self, Pipeline p, const pkt_meta_t* m) noexcept nogil:
        """A packet with no session key would leave through a port that SNATs its family."""
        cdef int32_t nh
        if m.ip_version != 4 and m.ip_version != 6:
            return False
        nh = p.routes.lookup_addr(m.dst, m.ip_version)
        if nh < 0 or <uint32_t>nh >= p.n_nh or p.nh[nh].port >= MAX_PORTS:
            return False
        return (self.snat_flags[p.nh[nh].port] & (1 if m.ip_version == 4 else 2)) != 0

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        return self.resolve(p, b, ingress, p.sessions)

    def stats(self):
        out = Stage.stats(self)
        out["icmp_errors_translated"] = self.icmp_errors_translated
        return out

    cdef uint32_t later_fragment_owner(self, Pipeline p, Burst b, uint32_t i) noexcept nogil:
        """The fragment owner of later fragment i (several workers): every later fragment
        of a datagram goes there, whichever queue it lands on. One whose fragment header
        cannot be read stays, to be dropped where it landed."""
        cdef frag_info_t fi
        if not frag_info_from(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i], &fi):
            return p.worker
        return fragment_owner_of(&fi.key, p.n_workers)

    cdef void later_fragment(self, Pipeline p, Burst b, uint32_t i, uint32_t ingress,
                             SessionTable t) noexcept nogil:
        """Give a later fragment its first fragment's decision, hold it, or drop it."""
        cdef pkt_ctx_t* c = &p.ctx[i]
        cdef frag_info_t fi
        cdef int64_t h
        cdef srec_t* r
        if not frag_info_from(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i], &fi):
            drop_packet(b, i, DROP_PARSE + PARSE_NONFIRST_FRAG)
            self.c_drops += 1
            return
        h = frag_later(&p.fragments.t, &fi, b.d[i].addr, b.d[i].len, <uint16_t>ingress,
                       p.now_ns, &c.dec)
        if h == FRAG_HELD:
            b.v[i] = VERDICT_QUEUED   # the fragment table holds the frame now
            return
        if h == FRAG_NOTED:   # recorded from another worker's note: c.dec holds the decision
            c.flags |= CTX_HAS_DEC
            return
        if h < 0:
            drop_packet(b, i, self.why_frag_limit)
            self.c_drops += 1
            return
        r = t.record_c(h)
        if r == NULL:
            drop_packet(b, i, self.why_frag_session_gone)
            self.c_drops += 1
            return
        c.handle = h
        t.decision_c(r, &c.dec)
        c.flags |= CTX_HAS_DEC

    cdef void record_first_fragments(self, Pipeline p, Burst b) noexcept nogil:
        """Record the session of every first fragment that got one in this burst (a full
        table drops the fragment: its datagram could not be completed anyway). With
        several workers, a datagram whose fragment owner is another worker is recorded
        there instead: a note with the decision goes to it (a full ring drops the fragment
        as frag_note_ring_full, for the same reason)."""
        cdef uint32_t i, owner
        cdef frag_info_t fi
        for i in range(b.n):
            if verdict_settled(b.v[i]) or not (b.m[i].flags & META_FIRST_FRAGMENT) or not (
                    p.ctx[i].flags & CTX_HAS_DEC):
                continue
            if not frag_info_from(b.umem.area + b.d[i].addr, b.d[i].len, &b.m[i], &fi):
                continue
            if p.n_workers > 1:
                owner = fragment_owner_of(&fi.key, p.n_workers)
                if owner != p.worker:
                    if not p.send_frag_note(owner, &fi, &p.ctx[i].dec):
                        drop_packet(b, i, self.why_frag_note_ring_full)
                        self.c_drops += 1
                    continue
            if frag_first(&p.fragments.t, &fi, p.ctx[i].handle, p.now_ns) != 0:
                drop_packet(b, i, self.why_frag_limit)
                self.c_drops += 1

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
        cdef bint first_fragments = False, later_fragments = False
        cdef uint32_t owner
        # Pass 1: keys, and the flow cache sets prefetched while the next keys are built.
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            c = &p.ctx[i]
            m = &b.m[i]
            if not flowkey_from_meta(m, &c.key):
                if m.status == PARSE_NONFIRST_FRAG:
                    if p.n_workers > 1 and not p.handing_in:
                        owner = self.later_fragment_owner(p, b, i)
                        if owner != p.worker:   # settle hands it to its fragment owner
                            b.v[i] = VERDICT_HANDOFF
                            c.nh = <int32_t>owner
                            continue
                    c.flags |= CTX_LATER_FRAG
                    later_fragments = True
                elif not (self.new_flow_mask >> ingress) & 1:
                    drop_packet(b, i, DROP_POLICY_DENIED)
                    self.c_drops += 1
                elif self.leaves_snat(p, m):
                    drop_packet(b, i, self.why_untranslatable)
                    self.c_drops += 1
                continue
            if ((m.protocol == PROTO_ICMP or m.protocol == PROTO_ICMPV6)
                    and not is_icmp_echo(m.protocol, m.icmp_type)):
                # Errors follow the session of the packet they quote; other ICMP opens none.
                if p.n_workers > 1 and not p.handing_in and meta_is_icmp_error(m):
                    owner = self.error_owner(ingress, b.umem.area + b.d[i].addr, b.d[i].len,
                                             m, p.worker, p.n_workers)
                    if owner != p.worker:   # settle hands it to its session's worker
                        b.v[i] = VERDICT_HANDOFF
                        c.nh = <int32_t>owner
                        continue
                rc = icmp_error_translate(p, b.umem.area + b.d[i].addr, b.d[i].len, m, t) \
                    if meta_is_icmp_error(m) else ICMP_NOT_ERROR
                if rc != ICMP_TRANSLATED:
                    drop_packet(b, i, self.why_icmp[rc])
                    self.c_drops += 1
                else:
                    self.icmp_errors_translated += 1
                continue
            c.flags |= CTX_HAS_KEY
            if p.n_workers > 1 and not p.handing_in:
                owner = self.owner_of(ingress, m.icmp_type, &c.key, p.worker, p.n_workers)
                if owner != p.worker:   # settle hands it to its owner
                    b.v[i] = VERDICT_HANDOFF
                    c.nh = <int32_t>owner
                    continue
            first_fragments |= (b.m[i].flags & META_FIRST_FRAGMENT) != 0
            if p.fc is not None:
                c.fch = p.fc.hash_key(&c.key, <uint16_t>ingress)
        # Pass 2: flow cache, session table, new flows.
        for i in range(b.n):
            c = &p.ctx[i]
            if verdict_settled(b.v[i]) or not (c.flags & CTX_HAS_KEY):
                continue
            m = &b.m[i]
            if p.fc is not None and not (m.protocol == PROTO_TCP and m.tcp_flags & (TCP_FIN | TCP_RST)):
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
                drop_packet(b, i, DROP_POLICY_DENIED)
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
                drop_packet(b, i, DROP_NO_ROUTE)
                self.c_drops += 1
                continue
            e = <uint32_t>p.nh[nh].port
            c.dec.disposition = DISP_FORWARD_CANDIDATE
            c.dec.egress_port = <uint16_t>e
            if e < MAX_PORTS:
                rc = self.snat_pick(p, e, &c.key, &c.dec)
                if rc < 0:
                    drop_packet(b, i, DROP_NAT_PORTS_EXHAUSTED if rc == -1
                                else self.why_untranslatable)
                    self.c_drops += 1
                    continue
            memset(&sm, 0, sizeof(smeta_t))
            sm.ingress_zone = <uint16_t>ingress
            sm.egress_zone = <uint16_t>e
            if t.install_pair_c(&c.key, &c.dec, &sm, p.now_ns, m.tcp_flags,
                                <uint16_t>ingress, &hf, &hr) == 0 or hf < 0:
                drop_packet(b, i, DROP_SESSION_TABLE_FULL)
                self.c_drops += 1
                continue
            p.sessions_created += 1
            c.handle = hf
            c.nh = nh   # the route stage reuses it: the table cannot change within a poll
            c.flags |= CTX_HAS_DEC | CTX_FC_INSERT | CTX_ROUTED
        # Fragments last, so a later fragment finds a first one from the same burst.
        if first_fragments:
            self.record_first_fragments(p, b)
        if later_fragments:
            for i in range(b.n):
                if p.ctx[i].flags & CTX_LATER_FRAG and not verdict_settled(b.v[i]):
                    self.later_fragment(p, b, i, ingress, t)
        return 0
