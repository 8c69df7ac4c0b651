# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).
#
# ICMP on the forwarding path: errors in transit are matched to their session through the
# packet they quote and translated (used by SessionStage), and errors the forwarder itself
# sends (Time Exceeded from TtlStage, Fragmentation Needed / Packet Too Big from MtuStage)
# are built in the frame of the packet that caused them and leave through its ingress port.

cdef enum:
    ICMP_PEER_SLOTS = 256          # per-destination buckets (hashed; a collision shares one)

# icmp_error_translate results (SessionStage maps the failures to drop reasons).
cdef enum:
    ICMP_TRANSLATED = 0
    ICMP_MALFORMED = 1             # quote unreadable or the error's checksum is wrong
    ICMP_NO_SESSION = 2            # the quoted packet belongs to no session
    ICMP_NOT_ERROR = 3             # not an error at all (informational, non-echo ICMP)


cdef inline int icmp_error_translate(Pipeline p, uint8_t* f, uint32_t frame_len,
                                         pkt_meta_t* m, SessionTable t) noexcept nogil:
    """Translate an ICMP error in transit through the session of the packet it quotes.

    The quoted packet travelled the other way, so the lookup key is its tuple reversed (how
    a packet of the flow in the error's own direction arrives). The session's decision then
    applies to the outer header as to any packet of that direction, and in mirror image to
    the quote (its source takes the decision's destination, and so on). Returns an ICMP_*
    result.
    """
    cdef icmp_quote_t q
    cdef skey_t k
    cdef sdecision_t d
    cdef bint alias
    cdef int64_t h
    cdef uint8_t f_
    if icmp_quote_parse(f, frame_len, m, &q) != QUOTE_OK:
        return ICMP_MALFORMED
    if not icmp_checksum_ok(f, frame_len, m):
        return ICMP_MALFORMED
    icmp_quote_reply_key(&q, m.ip_version, &k)
    h = t.lookup_c(&k, p.now_ns, 0, False, &alias)
    if h < 0 or alias:   # an alias hit is a quote already translated: not ours to touch
        return ICMP_NO_SESSION
    t.decision_c(t.record_c(h), &d)
    f_ = d.nat_flags
    icmp_quote_translate(f, m, &q,
                         d.rs if f_ & NAT_RS else NULL,
                         d.rd if f_ & NAT_RD else NULL,
                         d.rd if f_ & NAT_RD else NULL,
                         d.rs if f_ & NAT_RS else NULL,
                         d.rdp if f_ & NAT_RDP else -1,
                         d.rsp if f_ & NAT_RSP else -1)
    return ICMP_TRANSLATED


@cython.final
cdef class IcmpErrors:
    """IcmpErrors(sources, *, rate_per_s=1000, burst=50, peer_interval_ms=1000, peer_burst=6)\n--\n
    Where and how often the forwarder may send ICMP errors of its own.

    `sources` maps a port index to its addresses (one IPv4 and/or one IPv6, str): an error
    about a packet that arrived on that port is sent from that port's address of the
    packet's family, back out of the same port. Time Exceeded (and any other limited type)
    is rate-limited as Linux does: a global token bucket (`rate_per_s`, `burst`) and one per
    destination (`peer_interval_ms`, `peer_burst`, hashed into 256 slots); Fragmentation
    Needed / Packet Too Big are exempt, as in Linux, so path-MTU discovery is never starved.
    """

    cdef uint8_t v4[MAX_PORTS][16]
    cdef uint8_t v6[MAX_PORTS][16]
    cdef uint8_t has[MAX_PORTS]          # bit 0: IPv4 source, bit 1: IPv6 source
    cdef icmp_bucket_t global_bucket
    cdef icmp_bucket_t peers[ICMP_PEER_SLOTS]
    cdef uint64_t seed
    cdef readonly uint64_t sent
    cdef readonly uint64_t rate_limited
    cdef readonly uint64_t not_allowed

    def __init__(self, sources, *, int rate_per_s=1000, int burst=50,
                 int peer_interval_ms=1000, int peer_burst=6):
        if rate_per_s <= 0 or burst <= 0 or peer_interval_ms <= 0 or peer_burst <= 0:
            raise ValueError("ICMP rate limits must be positive")
        for port, addresses in dict(sources).items():
            if not 0 <= int(port) < MAX_PORTS:
                raise ValueError(f"icmp: port index {port} out of range")
            if isinstance(addresses, str):
                addresses = [addresses]
            for a in addresses:
                ip = ipaddress.ip_address(a)
                bit = 1 if ip.version == 4 else 2
                if self.has[port] & bit:
                    raise ValueError(f"icmp: at most one IPv{ip.version} source per port")
                self.has[port] |= bit
                raw = ip.packed
                if bit == 1:
                    memcpy(self.v4[port], <const char*>raw, 4)
                else:
                    memcpy(self.v6[port], <const char*>raw, 16)
        icmp_bucket_init(&self.global_bucket, 1000000000 // rate_per_s, burst)
        for k in range(ICMP_PEER_SLOTS):
            icmp_bucket_init(&self.peers[k], <uint64_t>peer_interval_ms * 1000000, peer_burst)
        self.seed = 0x6A09E667F3BCC909ULL

    cdef bint allow(self, const pkt_meta_t* m, bint limited, uint64_t now_ns) noexcept nogil:
        """Rate limits for an error to m.src: the peer's bucket, then the global one."""
        cdef const uint64_t* a = <const uint64_t*>m.src
        cdef uint32_t slot
        if not limited:
            return True
        slot = <uint32_t>(mix64((a[0] ^ self.seed) + a[1] * 0x9E3779B97F4A7C15ULL)
                          & (ICMP_PEER_SLOTS - 1))
        if not icmp_bucket_take(&self.peers[slot], now_ns):
            return False
        return icmp_bucket_take(&self.global_bucket, now_ns)

    cdef bint reply(self, Pipeline p, Burst b, uint32_t i, uint32_t ingress, uint8_t icmp_type,
                    uint8_t code, uint32_t info, bint limited) noexcept nogil:
        """Turn packet i into the error it causes, queued back out of its ingress port (its
        NAT undone first, so the quote is the packet as it arrived). False: not sent (the
        caller drops the packet)."""
        cdef pkt_meta_t* m = &b.m[i]
        cdef pkt_ctx_t* c = &p.ctx[i]
        cdef uint8_t* f = b.umem.area + b.d[i].addr
        cdef uint32_t room, n
        cdef uint8_t bit = 1 if m.ip_version == 4 else 2
        if ingress >= MAX_PORTS or not (self.has[ingress] & bit) or not icmp_error_allowed(f, m):
            self.not_allowed += 1
            return False
        if (c.flags & CTX_HAS_DEC) and (c.flags & CTX_HAS_KEY) and (
                c.dec.nat_flags & (NAT_RS | NAT_RD | NAT_RSP | NAT_RDP)):
            nat_rewrite(f, b.d[i].len, m, c.key.src, c.key.dst,
                        c.key.sport if c.dec.nat_flags & (NAT_RSP | NAT_RDP) else -1,
                        c.key.dport if c.dec.nat_flags & (NAT_RSP | NAT_RDP) else -1)
        if not self.allow(m, limited, p.now_ns):
            self.rate_limited += 1
            return False
        room = b.umem.frame_size - <uint32_t>(b.d[i].addr & (b.umem.frame_size - 1))
        n = icmp_error_build(f, b.d[i].len, room, m, icmp_type, code, info,
                             &self.v4[ingress][0] if bit == 1 else &self.v6[ingress][0])
        if n == 0:
            self.not_allowed += 1
            return False
        b.d[i].len = n
        parse_one(f, n, m)
        b.v[i] = <int16_t>ingress
        c.nh = -1                    # L2 is already turned around: no next-hop MACs
        c.flags = 0
        self.sent += 1
        return True

    def stats(self):
        """Errors sent, refused by the rate limits, and not allowed (no source address for
        the family on that port, or a packet no error may be sent about)."""
        return {"sent": self.sent, "rate_limited": self.rate_limited,
                "not_allowed": self.not_allowed}
