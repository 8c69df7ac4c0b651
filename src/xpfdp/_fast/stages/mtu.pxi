# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).
#
# The egress MTU, in Linux's order: after the TTL check, a packet longer than its egress
# port's MTU gets Fragmentation Needed / Packet Too Big (IPv4 with DF, IPv6) or, IPv4 without
# DF, is marked and split into fragments once its headers are final (FragmentStage, after the
# TTL decrement and the L2 rewrite, so every fragment carries them).


@cython.final
cdef class MtuStage(Stage):
    """MtuStage(icmp=None)\n--\n
    Packets longer than their egress port's MTU (`Port.mtu`, 0 = unchecked): IPv6 and
    IPv4 with DF are answered through `icmp` (Packet Too Big / Fragmentation Needed with the
    MTU) and dropped as mtu_exceeded when no error may be sent; IPv4 without DF is marked for
    FragmentStage. Packets at TTL <= 1 are left to TtlStage."""

    cdef readonly IcmpErrors icmp
    cdef readonly uint64_t too_big
    cdef uint8_t why_exceeded

    def __init__(self, IcmpErrors icmp=None):
        self.name = "mtu"
        self.needs = ("parsed", "routed")
        self.provides = ()
        self.icmp = icmp
        self.why_exceeded = drop_reason("mtu_exceeded")

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i, mtu
        cdef int16_t v
        cdef pkt_meta_t* m
        cdef bint v4
        for i in range(b.n):
            v = b.v[i]
            if verdict_settled(v):
                continue
            self.c_packets += 1
            if v < 0 or <uint32_t>v >= p.n_ports:
                continue
            mtu = (<Port>p.ports[v]).mtu
            m = &b.m[i]
            if mtu == 0 or m.l3_len <= mtu or m.ttl <= 1 or not meta_l3_ok(m, b.d[i].len):
                continue                  # (a record that disagrees with its frame: unchecked)
            self.too_big += 1
            v4 = m.ip_version == 4
            if v4 and not (b.umem.area[b.d[i].addr + m.l3_off + 6] & 0x40):
                p.ctx[i].flags |= CTX_FRAGMENT
                p.fragment_marks += 1
                continue
            if self.icmp is not None and self.icmp.reply(
                    p, b, i, ingress, ICMP4_DEST_UNREACH if v4 else ICMP6_PACKET_TOO_BIG,
                    ICMP4_FRAG_NEEDED if v4 else 0, mtu, False):
                continue
            drop_packet(b, i, self.why_exceeded)
            self.c_drops += 1
        return 0

    def stats(self):
        out = Stage.stats(self)
        out["too_big"] = self.too_big
        return out


cdef inline uint32_t copied_options(const uint8_t* h, uint32_t ihl, uint8_t* out) noexcept nogil:
    """The options of IPv4 header `h` with the copy flag (RFC 791), padded with EOL to a
    multiple of 4; returns the later fragments' header length (20 + that)."""
    cdef uint32_t pos = 20, n = 0, olen
    cdef uint8_t t
    while pos < ihl:
        t = h[pos]
        if t == 0:
            break
        if t == 1:
            olen = 1
        else:
            if pos + 1 >= ihl or h[pos + 1] < 2 or pos + h[pos + 1] > ihl:
                break
            olen = h[pos + 1]
        if t & 0x80:
            memcpy(out + n, h + pos, olen)
            n += olen
        pos += olen
    while n & 3:
        out[n] = 0
        n += 1
    return 20 + n


@cython.final
cdef class FragmentStage(Stage):
    """FragmentStage()\n--\n
    Split the IPv4 packets MtuStage marked into fragments of at most the egress MTU
    (RFC 791: 8-byte multiples, options copied by their copy flag, header checksums
    recomputed); a burst with no mark costs no pass. Its `packets` counts marked packets. The first fragment stays in the packet's frame; the others take TX frames
    of the egress port's UMEM and go straight onto its TX queue. When frames or queue room
    are short the packet is dropped as fragment_no_tx_frame."""

    cdef readonly uint64_t fragmented
    cdef readonly uint64_t fragments
    cdef uint8_t why_no_frame

    def __init__(self):
        self.name = "fragment"
        self.needs = ("parsed", "routed")
        self.provides = ()
        self.why_no_frame = drop_reason("fragment_no_tx_frame")

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i, n
        cdef int16_t v
        if p.fragment_marks == 0:   # the common burst: nothing to split, no pass over it
            return 0
        for i in range(b.n):
            v = b.v[i]
            if (verdict_settled(v) or not (p.ctx[i].flags & CTX_FRAGMENT) or v < 0
                    or <uint32_t>v >= p.n_ports):
                continue
            self.c_packets += 1
            n = self.split(b, i, <Port>p.ports[v], <Burst>p.txq[v], <Burst>p.cpb[v])
            if n == 0:
                drop_packet(b, i, self.why_no_frame)
                self.c_drops += 1
                continue
            self.fragmented += 1
            self.fragments += n
        return 0

    cdef uint32_t split(self, Burst b, uint32_t i, Port port, Burst q,
                        Burst cp) noexcept nogil:
        """Fragment packet i for `port` (its TX queue `q`, one-frame scratch `cp`); returns
        the number of fragments, 0 if impossible (then nothing changed)."""
        cdef pkt_meta_t* m = &b.m[i]
        cdef uint8_t* f = b.umem.area + b.d[i].addr
        cdef uint32_t l3 = m.l3_off
        cdef uint8_t* h = f + l3
        cdef uint32_t ihl
        cdef uint32_t payload, first, chunk, ihl2, off, n_extra, base_off
        cdef uint16_t frag_word, last_mf
        cdef uint8_t opts[40]
        cdef uint8_t* g
        cdef uint32_t mtu = port.mtu
        if m.l3_len <= mtu or l3 + m.l3_len > b.d[i].len or m.l3_len < 20 or mtu < 68:
            return 0
        ihl = (h[0] & 0x0F) * 4
        if ihl < 20 or ihl > m.l3_len:
            return 0
        payload = m.l3_len - ihl
        ihl2 = copied_options(h, ihl, opts)
        first = ((mtu - ihl) // 8) * 8
        chunk = ((mtu - ihl2) // 8) * 8
        if first == 0 or first >= payload:
            return 0
        n_extra = (payload - first + chunk - 1) // chunk
        if (q.capacity - q.n < n_extra or port.umem.n_free_tx < n_extra
                or l3 + ihl2 + chunk > port.umem.frame_size):
            return 0
        frag_word = load_be16(h + 6)
        base_off = <uint32_t>(frag_word & 0x1FFF) * 8
        last_mf = frag_word & 0x2000
        off = first
        while off < payload:
            if chunk > payload - off:
                chunk = payload - off
            port.c_alloc_tx(cp, 1)
            g = port.umem.area + cp.d[0].addr
            memcpy(g, f, l3 + 20)
            memcpy(g + l3 + 20, opts, ihl2 - 20)
            memcpy(g + l3 + ihl2, h + ihl + off, chunk)
            g[l3] = <uint8_t>(0x40 | (ihl2 >> 2))
            store_be16(g + l3 + 2, <uint16_t>(ihl2 + chunk))
            store_be16(g + l3 + 6, <uint16_t>(
                (last_mf if off + chunk == payload else 0x2000) | ((base_off + off) >> 3)))
            store_be16(g + l3 + 10, 0)
            store_be16(g + l3 + 10, ipv4_header_checksum(g + l3, ihl2))
            cp.d[0].len = l3 + ihl2 + chunk
            enqueue(q, &cp.d[0])
            cp.n = 0
            off += chunk
        store_be16(h + 2, <uint16_t>(ihl + first))
        store_be16(h + 6, <uint16_t>(0x2000 | (base_off >> 3)))
        store_be16(h + 10, 0)
        store_be16(h + 10, ipv4_header_checksum(h, ihl))
        b.d[i].len = l3 + ihl + first
        m.l3_len = <uint16_t>(ihl + first)
        m.flags |= META_FRAGMENT
        return n_extra + 1

    def stats(self):
        out = Stage.stats(self)
        out["fragmented"] = self.fragmented
        out["fragments"] = self.fragments
        return out
