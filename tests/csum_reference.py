"""Pure-Python oracle for xpfdp.csum and xpfdp.parse: slow, obviously correct, independent.

Sums are big-endian 16-bit words in an unbounded int, folded at the end; complements use
`x ^ 0xFFFF` (never `~x`, which is negative in Python). Rewrites change the bytes and then
recompute every checksum from scratch, so they check the incremental kernels rather than
repeat them.
"""

from __future__ import annotations

import struct

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
EXT_HEADERS = (0, 43, 44, 51, 60)
STATUS = (
    "ok",
    "trunc_l2",
    "non_ip",
    "trunc_l3",
    "bad_version",
    "bad_ihl",
    "bad_totlen",
    "trunc_exthdr",
    "too_many_exthdr",
    "trunc_l4",
    "bad_doff",
    "nonfirst_frag",
)


def fold(total: int) -> int:
    """End-around-carry reduction of a non-negative sum to 16 bits."""
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def word_sum(data: bytes, seed: int = 0) -> int:
    """Unfolded sum of big-endian 16-bit words (odd tail = high half of a word) plus seed."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    return seed + sum(struct.unpack(f">{len(data) // 2}H", data))


def partial(data: bytes, seed: int = 0) -> int:
    """Folded 16-bit partial sum (xpfdp's partial-sum representation)."""
    return fold(word_sum(data, seed))


def checksum(data: bytes, seed: int = 0) -> int:
    """RFC 1071 checksum: complement of the folded sum."""
    return partial(data, seed) ^ 0xFFFF


def eqn3(hc: int, old_words, new_words) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + sum(~m) + sum(m'))."""
    total = hc ^ 0xFFFF
    total += sum(w ^ 0xFFFF for w in old_words) + sum(new_words)
    return fold(total) ^ 0xFFFF


def add_form(hc: int, old_words, new_words) -> int:
    """RFC 1141-style update HC' = HC + sum(m) + sum(~m'): equal to eqn. 3 up to +-0."""
    return fold(hc + sum(old_words) + sum(w ^ 0xFFFF for w in new_words))


def words(field: bytes) -> list[int]:
    return list(struct.unpack(f">{len(field) // 2}H", field))


def pseudo_sum(family: int, src: bytes, dst: bytes, proto: int, l4_len: int) -> int:
    """Unfolded pseudo-header sum (IPv4: u16 length; IPv6: u32 length and next header)."""
    if family == 4:
        return word_sum(src + dst) + proto + l4_len
    return word_sum(src + dst + struct.pack(">IxxxB", l4_len, proto))


# ---- parser -------------------------------------------------------------------------------


def parse(frame: bytes) -> dict:
    """Parse an Ethernet frame like xpfdp.parse (docs/checksums.md); returns a dict of PKT_META
    fields."""
    m = {
        "status": "ok",
        "ip_version": 0,
        "protocol": 0,
        "tcp_flags": 0,
        "ethertype": 0,
        "vlan_tci": 0,
        "l3_off": 0,
        "l4_off": 0,
        "payload_off": 0,
        "l3_len": 0,
        "sport": 0,
        "dport": 0,
        "flags": set(),
        "ttl": 0,
        "tos": 0,
        "icmp_type": 0,
        "src": bytes(16),
        "dst": bytes(16),
    }
    n = len(frame)
    if n < 14:
        m["status"] = "trunc_l2"
        return m
    ethertype = int.from_bytes(frame[12:14], "big")
    l3 = 14
    if ethertype in (0x8100, 0x88A8):
        if n < 18:
            m["status"] = "trunc_l2"
            return m
        m["flags"].add("vlan")
        m["vlan_tci"] = int.from_bytes(frame[14:16], "big")
        ethertype = int.from_bytes(frame[16:18], "big")
        l3 = 18
    m["ethertype"], m["l3_off"] = ethertype, l3
    if ethertype == 0x0800:
        m["status"] = _parse_v4(frame, l3, m)
    elif ethertype == 0x86DD:
        m["status"] = _parse_v6(frame, l3, m)
    else:
        m["status"] = "non_ip"
    return m


def _parse_v4(f: bytes, l3: int, m: dict) -> str:
    avail = len(f) - l3
    if avail < 20:
        return "trunc_l3"
    if f[l3] >> 4 != 4:
        return "bad_version"
    m["ip_version"] = 4
    ihl = (f[l3] & 15) * 4
    if ihl < 20:
        return "bad_ihl"
    if ihl > avail:
        return "trunc_l3"
    tot_len = int.from_bytes(f[l3 + 2 : l3 + 4], "big")
    if tot_len < ihl:
        return "bad_totlen"
    if tot_len > avail:
        return "trunc_l3"
    m.update(
        l3_len=tot_len,
        tos=f[l3 + 1],
        ttl=f[l3 + 8],
        protocol=f[l3 + 9],
        src=f[l3 + 12 : l3 + 16] + bytes(12),
        dst=f[l3 + 16 : l3 + 20] + bytes(12),
    )
    if ihl > 20:
        m["flags"].add("ipv4_options")
    frag = int.from_bytes(f[l3 + 6 : l3 + 8], "big")
    more, offset = frag & 0x2000, frag & 0x1FFF
    if more or offset:
        m["flags"].add("fragment")
        if offset:
            m["l4_off"] = l3 + ihl
            return "nonfirst_frag"
        m["flags"].add("first_fragment")
    return _parse_l4(f, l3 + ihl, l3 + tot_len, m)


def _parse_v6(f: bytes, l3: int, m: dict) -> str:
    if len(f) - l3 < 40:
        return "trunc_l3"
    if f[l3] >> 4 != 6:
        return "bad_version"
    m["ip_version"] = 6
    end = l3 + 40 + int.from_bytes(f[l3 + 4 : l3 + 6], "big")
    if end > len(f):
        return "trunc_l3"
    m.update(
        l3_len=end - l3,
        tos=((f[l3] & 15) << 4) | (f[l3 + 1] >> 4),
        ttl=f[l3 + 7],
        src=f[l3 + 8 : l3 + 24],
        dst=f[l3 + 24 : l3 + 40],
    )
    nh, pos, hops = f[l3 + 6], l3 + 40, 0
    while nh in EXT_HEADERS:
        if hops == 6:
            m["protocol"] = nh
            return "too_many_exthdr"
        hops += 1
        if nh == 44:
            if pos + 8 > end:
                return "trunc_exthdr"
            frag = int.from_bytes(f[pos + 2 : pos + 4], "big")
            nh, pos = f[pos], pos + 8
            if frag & 0xFFF8:
                m["flags"].add("fragment")
                m["protocol"], m["l4_off"] = nh, pos
                return "nonfirst_frag"
            if frag & 1:
                m["flags"] |= {"fragment", "first_fragment"}
            continue
        if pos + 2 > end:
            return "trunc_exthdr"
        length = (f[pos + 1] + 2) * 4 if nh == 51 else (f[pos + 1] + 1) * 8
        nh, pos = f[pos], pos + length
        if pos > end:
            return "trunc_exthdr"
    m["protocol"] = nh
    if nh == 59:
        m["l4_off"] = pos
        return "ok"
    return _parse_l4(f, pos, end, m)


def _parse_l4(f: bytes, l4: int, end: int, m: dict) -> str:
    seg = end - l4
    proto = m["protocol"]
    m["l4_off"] = l4
    if proto == PROTO_TCP:
        if seg < 20:
            return "trunc_l4"
        doff = (f[l4 + 12] >> 4) * 4
        if doff < 20 or doff > seg:
            return "bad_doff"
        m["sport"], m["dport"] = struct.unpack(">HH", f[l4 : l4 + 4])
        m["tcp_flags"], m["payload_off"] = f[l4 + 13], l4 + doff
    elif proto == PROTO_UDP:
        if seg < 8:
            return "trunc_l4"
        m["sport"], m["dport"] = struct.unpack(">HH", f[l4 : l4 + 4])
        m["payload_off"] = l4 + 8
    elif (proto, m["ip_version"]) in ((PROTO_ICMP, 4), (PROTO_ICMPV6, 6)):
        if seg < 8:
            return "trunc_l4"
        m["icmp_type"] = f[l4]
        if f[l4] in ((8, 0) if proto == PROTO_ICMP else (128, 129)):
            ident = int.from_bytes(f[l4 + 4 : l4 + 6], "big")
            m["sport"] = m["dport"] = ident
        m["payload_off"] = l4 + 8
    else:
        m["payload_off"] = l4
    m["flags"].add("l4_valid")
    return "ok"


def is_echo(m: dict) -> bool:
    """ICMP echo request/reply of the right family (its identifier acts as the port)."""
    if m["protocol"] == PROTO_ICMP and m["ip_version"] == 4:
        return m["icmp_type"] in (0, 8)
    return m["protocol"] == PROTO_ICMPV6 and m["ip_version"] == 6 and m["icmp_type"] in (128, 129)


# ---- checksums on a parsed frame -------------------------------------------------------------

CSUM_OFFSET = {PROTO_TCP: 16, PROTO_UDP: 6, PROTO_ICMP: 2, PROTO_ICMPV6: 2}


def _addresses(f: bytes, m: dict) -> tuple[bytes, bytes]:
    n = 4 if m["ip_version"] == 4 else 16
    return m["src"][:n], m["dst"][:n]


def l4_checksummable(f: bytes, m: dict) -> bool:
    return (
        m["status"] == "ok"
        and "l4_valid" in m["flags"]
        and "fragment" not in m["flags"]
        and m["protocol"] in CSUM_OFFSET
        and not (m["protocol"] == PROTO_ICMP and m["ip_version"] != 4)
    )


def l4_segment_sum(f: bytes, m: dict, zero_field: bool) -> int:
    """Unfolded pseudo-header + segment sum (checksum field as stored, or zeroed)."""
    seg = bytearray(f[m["l4_off"] : m["l3_off"] + m["l3_len"]])
    if zero_field:
        off = CSUM_OFFSET[m["protocol"]]
        seg[off : off + 2] = b"\x00\x00"
    seed = 0
    if m["protocol"] != PROTO_ICMP:
        src, dst = _addresses(f, m)
        seed = pseudo_sum(m["ip_version"], src, dst, m["protocol"], len(seg))
    return word_sum(bytes(seg), seed)


def fix_checksums(frame: bytearray) -> None:
    """Recompute the IPv4 header and L4 checksums from scratch (UDP 0 -> 0xFFFF)."""
    m = parse(bytes(frame))
    if m["status"] not in ("ok", "nonfirst_frag"):
        raise ValueError(m["status"])
    l3 = m["l3_off"]
    if m["ip_version"] == 4:
        ihl = (frame[l3] & 15) * 4
        frame[l3 + 10 : l3 + 12] = b"\x00\x00"
        frame[l3 + 10 : l3 + 12] = checksum(bytes(frame[l3 : l3 + ihl])).to_bytes(2, "big")
    if l4_checksummable(bytes(frame), m):
        c = fold(l4_segment_sum(bytes(frame), m, zero_field=True)) ^ 0xFFFF
        if m["protocol"] == PROTO_UDP and c == 0:
            c = 0xFFFF
        at = m["l4_off"] + CSUM_OFFSET[m["protocol"]]
        frame[at : at + 2] = c.to_bytes(2, "big")


def checksums_ok(frame: bytes) -> bool:
    """The docs/checksums.md oracle: every covered sum, stored checksum included, is 0xFFFF."""
    frame = bytes(frame)
    m = parse(frame)
    if m["status"] not in ("ok", "nonfirst_frag"):
        raise ValueError(m["status"])
    l3 = m["l3_off"]
    if m["ip_version"] == 4 and partial(frame[l3 : l3 + (frame[l3] & 15) * 4]) != 0xFFFF:
        return False
    if not l4_checksummable(frame, m):
        return True
    at = m["l4_off"] + CSUM_OFFSET[m["protocol"]]
    if m["protocol"] == PROTO_UDP and m["ip_version"] == 4 and frame[at : at + 2] == b"\0\0":
        return True
    return fold(l4_segment_sum(frame, m, zero_field=False)) == 0xFFFF


def stored_l4_checksum(frame: bytes) -> int | None:
    m = parse(bytes(frame))
    if not l4_checksummable(bytes(frame), m):
        return None
    at = m["l4_off"] + CSUM_OFFSET[m["protocol"]]
    return int.from_bytes(frame[at : at + 2], "big")


# ---- reference rewrites (byte edit + full recompute) ------------------------------------------


def _refresh(frame: bytearray, m: dict, l4_was_zero_udp_v4: bool) -> None:
    fix_checksums(frame)
    if l4_was_zero_udp_v4:
        at = m["l4_off"] + 6
        frame[at : at + 2] = b"\x00\x00"


def _zero_udp_v4(frame: bytes, m: dict) -> bool:
    if m["protocol"] != PROTO_UDP or m["ip_version"] != 4 or "l4_valid" not in m["flags"]:
        return False
    at = m["l4_off"] + 6
    return frame[at : at + 2] == b"\x00\x00"


def mss_option_at(frame: bytes) -> int | None:
    """Frame offset of the first MSS option value of a parsed TCP SYN (the option walk), or None."""
    m = parse(bytes(frame))
    if m["status"] != "ok" or "l4_valid" not in m["flags"] or m["protocol"] != PROTO_TCP:
        return None
    tcp = m["l4_off"]
    if not frame[tcp + 13] & 0x02:
        return None
    doff = (frame[tcp + 12] >> 4) * 4
    pos = 20
    while pos + 4 <= doff:
        kind = frame[tcp + pos]
        if kind == 0:
            return None
        if kind == 1:
            pos += 1
            continue
        length = frame[tcp + pos + 1]
        if length < 2 or pos + length > doff:
            return None
        if kind == 2 and length == 4:
            return tcp + pos + 2
        pos += length
    return None


def clamp_mss(frame: bytearray, mss: int) -> bool:
    """Lower the first MSS option of a TCP SYN to `mss`, then recompute the L4 checksum."""
    at = mss_option_at(frame)
    if at is None or int.from_bytes(frame[at : at + 2], "big") <= mss:
        return False
    frame[at : at + 2] = mss.to_bytes(2, "big")
    _refresh_l4_only(frame)
    return True


def _refresh_l4_only(frame: bytearray) -> None:
    """Recompute only the L4 checksum (the IP header is untouched by an MSS clamp)."""
    m = parse(bytes(frame))
    c = fold(l4_segment_sum(bytes(frame), m, zero_field=True)) ^ 0xFFFF
    at = m["l4_off"] + CSUM_OFFSET[m["protocol"]]
    frame[at : at + 2] = c.to_bytes(2, "big")


IP_HEADER_OK = ("ok", "trunc_exthdr", "too_many_exthdr", "trunc_l4", "bad_doff", "nonfirst_frag")


def decrement_ttl(frame: bytearray) -> int:
    m = parse(bytes(frame))
    if m["status"] not in IP_HEADER_OK:
        raise ValueError(m["status"])
    at = m["l3_off"] + (8 if m["ip_version"] == 4 else 7)
    if frame[at] <= 1:
        return -1
    frame[at] -= 1
    if m["ip_version"] == 4:
        ipv4_header_fixed(frame)
    return frame[at]


def ipv4_header_fixed(frame: bytearray) -> bytearray:
    """Fill only the IPv4 header checksum (for frames whose L4 does not parse)."""
    l3 = parse(bytes(frame))["l3_off"]
    ihl = (frame[l3] & 15) * 4
    frame[l3 + 10 : l3 + 12] = b"\x00\x00"
    frame[l3 + 10 : l3 + 12] = checksum(bytes(frame[l3 : l3 + ihl])).to_bytes(2, "big")
    return frame


def rewrite_nat(frame: bytearray, src=None, dst=None, sport=None, dport=None) -> None:
    """Write the new addresses/ports (packed bytes, ints), then recompute every checksum."""
    m = parse(bytes(frame))
    l3, l4 = m["l3_off"], m["l4_off"]
    zero_udp = _zero_udp_v4(bytes(frame), m)
    src_at = l3 + (12 if m["ip_version"] == 4 else 8)
    n = 4 if m["ip_version"] == 4 else 16
    if src is not None:
        frame[src_at : src_at + n] = src
    if dst is not None:
        frame[src_at + n : src_at + 2 * n] = dst
    if m["status"] == "ok" and "l4_valid" in m["flags"]:
        if m["protocol"] in (PROTO_TCP, PROTO_UDP):
            if sport is not None:
                frame[l4 : l4 + 2] = sport.to_bytes(2, "big")
            if dport is not None:
                frame[l4 + 2 : l4 + 4] = dport.to_bytes(2, "big")
        elif is_echo(m):
            ident = sport if sport is not None else dport
            if ident is not None:
                frame[l4 + 4 : l4 + 6] = ident.to_bytes(2, "big")
    _refresh(frame, m, zero_udp)


def mark_ecn_ce(frame: bytearray) -> bool:
    m = parse(bytes(frame))
    if m["status"] not in IP_HEADER_OK:
        return False
    l3 = m["l3_off"]
    if m["ip_version"] == 4:
        if frame[l3 + 1] & 3 in (0, 3):
            return False
        frame[l3 + 1] |= 3
        ipv4_header_fixed(frame)
        return True
    if (frame[l3 + 1] >> 4) & 3 in (0, 3):
        return False
    frame[l3 + 1] |= 0x30
    return True


# ---- frame builders (checksum fields left as given; use fix_checksums to fill them) --------

ETH_SRC, ETH_DST = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ethernet(ethertype: int, payload: bytes, vlan: tuple[int, int] | None = None) -> bytearray:
    """Ethernet header (+ one VLAN tag given as (tpid, tci)) in front of `payload`."""
    head = ETH_DST + ETH_SRC
    if vlan is not None:
        head += struct.pack(">HH", *vlan)
    return bytearray(head + struct.pack(">H", ethertype) + payload)


def ipv4(
    proto: int,
    src: bytes,
    dst: bytes,
    l4: bytes,
    *,
    tos=0,
    ident=0,
    ttl=64,
    frag=0,
    options=b"",
    csum=0,
) -> bytes:
    ihl = 5 + len(options) // 4
    total = 4 * ihl + len(l4)
    head = struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ihl, tos, total, ident, frag, ttl, proto, csum, src, dst
    )
    return head + options + l4


def ipv6(nh: int, src: bytes, dst: bytes, payload: bytes, *, tc=0, hlim=64, flow=0) -> bytes:
    first = (6 << 28) | (tc << 20) | flow
    return struct.pack(">IHBB16s16s", first, len(payload), nh, hlim, src, dst) + payload


def tcp(sport, dport, *, seq=0, ack=0, flags=0x02, window=65535, options=b"", payload=b"", csum=0):
    doff = 5 + len(options) // 4
    head = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, csum, 0)
    return head + options + payload


def udp(sport, dport, payload=b"", csum=0) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), csum) + payload


def icmp_echo(icmp_type, ident, seq, payload=b"", csum=0) -> bytes:
    return struct.pack(">BBHHH", icmp_type, 0, csum, ident, seq) + payload


# ---- hypothesis strategies: random valid frames --------------------------------------------

try:
    from hypothesis import strategies as st
except ImportError:  # the oracle itself has no dependency on hypothesis
    st = None

if st is not None:
    _TCP_OPTION = st.one_of(
        st.just(b"\x01"),
        st.integers(0, 0xFFFF).map(lambda v: b"\x02\x04" + v.to_bytes(2, "big")),
        st.integers(0, 14).map(lambda v: bytes([3, 3, v])),
        st.just(b"\x04\x02"),
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(
            lambda t: b"\x08\x0a" + struct.pack(">II", *t)
        ),
        st.binary(min_size=0, max_size=6).map(lambda b: bytes([0xFD, len(b) + 2]) + b),
    )

    _MSS_OPTION = st.integers(0, 0xFFFF).map(lambda v: b"\x02\x04" + v.to_bytes(2, "big"))

    @st.composite
    def tcp_options(draw, with_mss: bool = False) -> bytes:
        """Well-formed or hostile option bytes, padded with zeros (EOL) to a 4-byte multiple.

        `with_mss` puts one MSS option at a random place (odd offsets included) among
        well-formed options.
        """
        if not with_mss and draw(st.integers(0, 4)) == 0:
            raw = draw(st.binary(max_size=40))
        else:
            options = draw(st.lists(_TCP_OPTION, max_size=6))
            if with_mss:
                options.insert(draw(st.integers(0, len(options))), draw(_MSS_OPTION))
            raw = b"".join(options)
            if draw(st.booleans()) and len(raw) < 40:
                raw += b"\x00"
        raw = raw[:40]
        return raw + bytes(-len(raw) % 4)

    @st.composite
    def l4_segment(draw, family: int, kinds=("tcp", "udp", "icmp"), syn: bool = False):
        """(protocol, segment bytes, zero-UDP-checksum wanted)."""
        kind = draw(st.sampled_from(kinds))
        payload = draw(st.binary(max_size=64))
        ports = draw(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)))
        if kind == "tcp":
            seg = tcp(
                *ports,
                seq=draw(st.integers(0, 2**32 - 1)),
                flags=draw(st.integers(0, 255)) | (0x02 if syn else 0),
                window=draw(st.integers(0, 0xFFFF)),
                options=draw(tcp_options(with_mss=syn)),
                payload=payload,
            )
            return PROTO_TCP, seg, False
        if kind == "udp":
            return PROTO_UDP, udp(*ports, payload), family == 4 and draw(st.booleans())
        echo = draw(st.sampled_from((8, 0) if family == 4 else (128, 129)))
        if draw(st.integers(0, 3)) == 0:  # a non-echo type: no identifier
            echo = draw(st.sampled_from((3, 11, 5) if family == 4 else (1, 2, 3, 135, 136)))
        seg = icmp_echo(echo, ports[0], ports[1], payload)
        return (PROTO_ICMP if family == 4 else PROTO_ICMPV6), seg, False

    @st.composite
    def ipv6_ext_headers(draw, final_nh: int) -> tuple[int, bytes]:
        """A chain of 0..4 extension headers (HBH, Routing, DestOpts, AH, atomic Fragment)."""
        kinds = draw(st.lists(st.sampled_from([0, 43, 60, 51, 44]), max_size=4))
        body, nh = b"", final_nh
        for kind in reversed(kinds):
            if kind == 44:
                hdr = struct.pack(">BBHI", nh, 0, 0, draw(st.integers(0, 2**32 - 1)))
            elif kind == 51:
                units = draw(st.integers(1, 3))  # (len + 2) * 4 bytes, 8-byte aligned for v6
                hdr = bytes([nh, 2 * units]) + draw(
                    st.binary(min_size=(2 * units + 2) * 4 - 2, max_size=(2 * units + 2) * 4 - 2)
                )
            elif kind == 43:
                hdr = bytes([nh, 0, 0, 0]) + bytes(4)  # routing type 0, segments left 0
            else:
                units = draw(st.integers(0, 2))
                hdr = bytes([nh, units, 1, 4 + units * 8]) + bytes(4 + units * 8)
            body, nh = hdr + body, kind
        return nh, body

    @st.composite
    def frames(draw, families=(4, 6), kinds=("tcp", "udp", "icmp"), syn=False) -> bytearray:
        """A valid Ethernet frame with correct checksums, maybe VLAN-tagged and padded.

        `syn=True` makes TCP SYNs carrying an MSS option (for the clamp).
        """
        family = draw(st.sampled_from(families))
        proto, seg, zero_udp = draw(l4_segment(family, kinds, syn))
        vlan = draw(
            st.none() | st.tuples(st.sampled_from([0x8100, 0x88A8]), st.integers(0, 0xFFFF))
        )
        if family == 4:
            opts = draw(st.binary(max_size=40))
            opts += bytes(-len(opts) % 4)
            src, dst = (
                draw(st.binary(min_size=4, max_size=4)),
                draw(st.binary(min_size=4, max_size=4)),
            )
            l3 = ipv4(
                proto,
                src,
                dst,
                seg,
                tos=draw(st.integers(0, 255)),
                ident=draw(st.integers(0, 0xFFFF)),
                ttl=draw(st.integers(0, 255)),
                frag=draw(st.sampled_from([0, 0x4000])),
                options=opts,
            )
            frame = ethernet(0x0800, l3, vlan)
        else:
            nh, ext = draw(ipv6_ext_headers(proto))
            src, dst = (
                draw(st.binary(min_size=16, max_size=16)),
                draw(st.binary(min_size=16, max_size=16)),
            )
            l3 = ipv6(
                nh,
                src,
                dst,
                ext + seg,
                tc=draw(st.integers(0, 255)),
                hlim=draw(st.integers(0, 255)),
            )
            frame = ethernet(0x86DD, l3, vlan)
        frame += draw(st.binary(max_size=16))  # Ethernet padding: never summed
        fix_checksums(frame)
        if zero_udp:
            at = parse(bytes(frame))["l4_off"] + 6
            frame[at : at + 2] = b"\x00\x00"
        return frame
