"""The named vectors of docs/checksums.md, re-derived: each input is built from its
description, the expected value is computed by the pure-Python reference (and scapy where
it applies), and the kernel must agree with both and with the number in the docs."""

import ipaddress
import struct

import csum_reference as ref
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from xpfdp import csum

A1, A2 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
V6_1, V6_2 = ipaddress.ip_address("fe00::1").packed, ipaddress.ip_address("fe00::2").packed
MSS_1460 = bytes.fromhex("020405b4")


def be16(frame, at):
    return int.from_bytes(frame[at : at + 2], "big")


def filled(frame):
    """The frame with checksums computed by the reference (not by the code under test)."""
    ref.fix_checksums(frame)
    return frame


def m1_frame(window=65535, options=MSS_1460):
    seg = ref.tcp(12345, 80, seq=1, window=window, options=options)
    return filled(ref.ethernet(0x0800, ref.ipv4(6, A1, A2, seg)))


def m1_v6_frame():
    seg = ref.tcp(12345, 80, seq=1, options=MSS_1460)
    return filled(ref.ethernet(0x86DD, ref.ipv6(6, V6_1, V6_2, seg)))


TCP4, TCP6 = 14 + 20, 14 + 40


# ---- C: full sums --------------------------------------------------------------------------


def test_c1_rfc1071_example():
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ref.partial(data) == 0xDDF2 == csum.checksum_partial(data)
    assert ref.checksum(data) == 0x220D == csum.internet_checksum(data)


def test_c2_odd_length_pads_a_zero_low_byte():
    assert ref.checksum(b"\x01\x02\x03") == 0xFBFD == csum.internet_checksum(b"\x01\x02\x03")
    assert csum.internet_checksum(b"\x01\x02\x03\x00") == 0xFBFD


def test_c3_empty_and_zero_inputs():
    assert csum.internet_checksum(b"") == ref.checksum(b"") == 0xFFFF
    assert csum.internet_checksum(bytes(20)) == ref.checksum(bytes(20)) == 0xFFFF


# ---- R1: RFC 1624 §4 -----------------------------------------------------------------------


def test_r1_rfc1624_example_eqn3_gives_zero_add_form_gives_ffff():
    assert ref.eqn3(0xDD2F, [0x5555], [0x3285]) == 0x0000
    assert ref.add_form(0xDD2F, [0x5555], [0x3285]) == 0xFFFF
    assert csum.incremental_update(0xDD2F, 0x5555, 0x3285) == 0x0000


# ---- M: MSS clamp --------------------------------------------------------------------------


def test_m1_syn_fixture_checksums():
    frame = m1_frame()
    assert frame[TCP4:].hex() == "303900500000000100000000600" + "2ffff539a0000020405b4"
    assert be16(frame, TCP4 + 16) == 0x539A
    assert be16(frame, 14 + 10) == 0x66CA
    scapy_frame = Ether(bytes(frame))
    del scapy_frame[IP].chksum, scapy_frame[TCP].chksum
    assert bytes(Ether(bytes(scapy_frame))) == bytes(frame)
    mine = bytearray(frame)
    mine[14 + 10 : 14 + 12] = mine[TCP4 + 16 : TCP4 + 18] = b"\0\0"
    csum.fix_checksums(mine)
    assert mine == frame


def test_m2_clamp_to_1200_equals_recompute():
    frame, expected = m1_frame(), m1_frame()
    assert ref.clamp_mss(expected, 1200)
    assert csum.clamp_mss(frame, 1200)
    assert be16(frame, TCP4 + 16) == 0x549E == be16(expected, TCP4 + 16)
    assert frame == expected
    assert ref.checksums_ok(frame) and csum.checksums_ok(frame)


def test_m3_the_sign_bug_fails_the_oracle():
    frame = m1_frame()
    # The pre-#1141 formula: ~(~HC + m + ~m'), i.e. old and new swapped.
    buggy = ref.fold((0x539A ^ 0xFFFF) + 1460 + (1200 ^ 0xFFFF)) ^ 0xFFFF
    assert buggy == 0x5296
    frame[TCP4 + 22 : TCP4 + 24] = (1200).to_bytes(2, "big")
    frame[TCP4 + 16 : TCP4 + 18] = buggy.to_bytes(2, "big")
    assert ref.fold(ref.l4_segment_sum(bytes(frame), ref.parse(bytes(frame)), False)) == 0xFDF7
    assert not csum.checksums_ok(frame)


def test_m4_ipv6_clamp_uses_the_v6_pseudo_header():
    frame, expected = m1_v6_frame(), m1_v6_frame()
    assert be16(frame, TCP6 + 16) == 0x6B98
    assert csum.clamp_mss(frame, 1200) and ref.clamp_mss(expected, 1200)
    assert be16(frame, TCP6 + 16) == 0x6C9C
    assert frame == expected


def test_m5_walks_past_nop_and_timestamp():
    opts = b"\x01\x01" + bytes([8, 10]) + struct.pack(">II", 1, 0) + MSS_1460
    frame = m1_frame(options=opts)
    assert be16(frame, TCP4 + 16) == 0x1A82
    assert csum.clamp_mss(frame, 1300)
    assert be16(frame, TCP4 + 34) == 1300
    assert be16(frame, TCP4 + 16) == 0x1B22
    assert ref.checksums_ok(frame)


@pytest.mark.parametrize("nops", [1, 3])
def test_mss_at_an_odd_offset_straddles_two_words(nops):
    opts = b"\x01" * nops + MSS_1460 + bytes(4 - nops)
    frame, expected = m1_frame(options=opts), m1_frame(options=opts)
    assert csum.clamp_mss(frame, 1200) and ref.clamp_mss(expected, 1200)
    assert be16(frame, TCP4 + 20 + nops + 2) == 1200
    assert frame == expected


def test_m6_negative_zero_eqn3_matches_recompute():
    frame, expected = m1_frame(window=0x549E), m1_frame(window=0x549E)
    assert be16(frame, TCP4 + 16) == 0xFEFB
    assert ref.add_form(0xFEFB, [1460], [1200]) == 0xFFFF
    assert csum.clamp_mss(frame, 1200) and ref.clamp_mss(expected, 1200)
    assert be16(frame, TCP4 + 16) == 0x0000 == be16(expected, TCP4 + 16)
    assert ref.checksums_ok(frame)


# ---- T1: TTL --------------------------------------------------------------------------------


def test_t1_ttl_decrement_uses_feff():
    frame = m1_frame()
    assert ref.fold((0x66CA ^ 0xFFFF) + 0xFEFF) ^ 0xFFFF == 0x67CA
    assert csum.decrement_ttl(frame) == 63
    assert be16(frame, 14 + 10) == 0x67CA
    assert csum.checksums_ok(frame) and ref.checksums_ok(frame)


# ---- N: NAT ---------------------------------------------------------------------------------

N_SRC, N_DST, N_SNAT = (
    bytes([10, 0, 61, 102]),
    bytes([172, 16, 80, 200]),
    bytes([172, 16, 80, 8]),
)


def n1_frame():
    seg = ref.tcp(40000, 5201, seq=1, ack=1, flags=0x18, window=0x2000, payload=b"testdata")
    return filled(ref.ethernet(0x0800, ref.ipv4(6, N_SRC, N_DST, seg, ident=1)))


def test_n1_fixture():
    frame = n1_frame()
    assert be16(frame, 14 + 10) == 0x3689
    assert be16(frame, TCP4 + 16) == 0xDA55
    pkt = IP(src="10.0.61.102", dst="172.16.80.200", id=1, flags=0, ttl=64) / TCP(
        sport=40000, dport=5201, seq=1, ack=1, flags=0x18, window=0x2000
    )
    assert bytes(pkt / b"testdata") == bytes(frame[14:])


def test_n2_snat_then_ttl():
    frame = n1_frame()
    csum.rewrite_nat(frame, src="172.16.80.8")
    assert be16(frame, TCP4 + 16) == 0x25A3
    assert be16(frame, 14 + 10) == 0x81D6
    assert csum.decrement_ttl(frame) == 63
    assert be16(frame, 14 + 10) == 0x82D6
    expected = n1_frame()
    ref.rewrite_nat(expected, src=N_SNAT)
    ref.decrement_ttl(expected)
    assert frame == expected


def test_n3_flow_delta():
    ip_delta = ref.fold(sum(w ^ 0xFFFF for w in ref.words(N_SRC)) + sum(ref.words(N_SNAT)))
    assert ip_delta == 0xB4B2
    assert ref.fold((0x3689 ^ 0xFFFF) + ip_delta + 0xFEFF) ^ 0xFFFF == 0x82D6
    step = csum.incremental_update32(0x3689, int.from_bytes(N_SRC, "big"), 0xAC105008)
    assert csum.incremental_update(step, 0x4006, 0x3F06) == 0x82D6


def test_n4_snat_and_port():
    l4_delta = ref.fold(
        sum(w ^ 0xFFFF for w in [*ref.words(N_SRC), 40000]) + sum([*ref.words(N_SNAT), 1024])
    )
    assert l4_delta == 0x1C72
    frame = n1_frame()
    csum.rewrite_nat(frame, src=ipaddress.IPv4Address("172.16.80.8"), sport=1024)
    assert be16(frame, TCP4 + 16) == 0xBDE3 == ref.fold((0xDA55 ^ 0xFFFF) + l4_delta) ^ 0xFFFF
    expected = n1_frame()
    ref.rewrite_nat(expected, src=N_SNAT, sport=1024)
    assert frame == expected


def test_n5_identity_rewrite_is_a_no_op():
    assert ref.fold(sum(w ^ 0xFFFF for w in ref.words(N_SRC)) + sum(ref.words(N_SRC))) == 0xFFFF
    assert csum.incremental_update(0xDA55, 0x1234, 0x1234) == 0xDA55
    frame = n1_frame()
    csum.rewrite_nat(frame, src="10.0.61.102", dst="172.16.80.200", sport=40000, dport=5201)
    assert frame == n1_frame()


# ---- I: ICMP echo ---------------------------------------------------------------------------


def test_i1_icmp_echo_identifier():
    frame = filled(ref.ethernet(0x0800, ref.ipv4(1, N_SRC, N_DST, ref.icmp_echo(8, 0x1234, 1))))
    assert be16(frame, TCP4 + 2) == 0xE5CA == ref.checksum(bytes.fromhex("0800000012340001"))
    csum.rewrite_nat(frame, sport=0xABCD)
    assert be16(frame, TCP4 + 4) == 0xABCD
    assert be16(frame, TCP4 + 2) == 0x4C31
    assert csum.checksums_ok(frame) and ref.checksums_ok(frame)


def test_i2_icmpv6_echo_snat():
    src = ipaddress.ip_address("2001:559:8585:ef00::100").packed
    dst = ipaddress.ip_address("2001:559:8585:80::200").packed
    frame = filled(ref.ethernet(0x86DD, ref.ipv6(58, src, dst, ref.icmp_echo(128, 0x1234, 1))))
    pkt = IPv6(src="2001:559:8585:ef00::100", dst="2001:559:8585:80::200") / ICMPv6EchoRequest(
        id=0x1234, seq=1
    )
    assert bytes(pkt) == bytes(frame[14:])
    assert be16(frame, TCP6 + 2) == 0x2548
    csum.rewrite_nat(frame, src="2001:559:8585:80::8")
    assert be16(frame, TCP6 + 2) == 0x14C1
    assert be16(frame, TCP6 + 4) == 0x1234 and be16(frame, TCP6 + 6) == 1
    assert ref.checksums_ok(frame)


# ---- U: UDP zero rules ----------------------------------------------------------------------

U_SRC, U_DST = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])


def udp_frame(payload, csum_value=0):
    return ref.ethernet(0x0800, ref.ipv4(17, U_SRC, U_DST, ref.udp(1000, 53, payload, csum_value)))


def test_u1_computed_zero_is_sent_as_ffff():
    frame = udp_frame(b"\x0f\x87")
    m = ref.parse(bytes(frame))
    assert ref.fold(ref.l4_segment_sum(bytes(frame), m, True)) ^ 0xFFFF == 0
    csum.fix_checksums(frame)
    assert be16(frame, TCP4 + 6) == 0xFFFF
    scapy_udp = IP(src="192.0.2.1", dst="198.51.100.1") / UDP(sport=1000, dport=53) / b"\x0f\x87"
    assert IP(bytes(scapy_udp))[UDP].chksum == 0xFFFF
    assert ref.checksums_ok(frame)


def test_u2_incremental_zero_is_stored_as_ffff():
    frame = udp_frame(b"\x95\x82")
    csum.fix_checksums(frame)
    assert be16(frame, TCP4 + 6) == 0x7A04
    new_src = bytes([203, 0, 113, 5])
    assert ref.eqn3(0x7A04, ref.words(U_SRC), ref.words(new_src)) == 0
    csum.rewrite_nat(frame, src="203.0.113.5")
    assert be16(frame, TCP4 + 6) == 0xFFFF
    scapy_udp = IP(src="203.0.113.5", dst="198.51.100.1") / UDP(sport=1000, dport=53) / b"\x95\x82"
    assert IP(bytes(scapy_udp))[UDP].chksum == 0xFFFF


def test_u3_stored_zero_stays_zero_under_nat():
    frame = udp_frame(b"\x95\x82")
    frame[14 + 10 : 14 + 12] = ref.checksum(bytes(frame[14:34])).to_bytes(2, "big")
    csum.rewrite_nat(frame, src="203.0.113.5", sport=2000)
    assert be16(frame, TCP4 + 6) == 0
    assert be16(frame, TCP4) == 2000
    assert csum.checksums_ok(frame) and ref.checksums_ok(frame)


# ---- E: ECN ---------------------------------------------------------------------------------


def ecn_frame(tos):
    return ref.ipv4_header_fixed(ref.ethernet(0x0800, ref.ipv4(6, A1, A2, b"", tos=tos)))


@pytest.mark.parametrize(
    ("tos", "before", "after"), [(0xA2, 0x6640, 0x663F), (0x01, 0x66E1, 0x66DF)]
)
def test_e1_e2_ect_becomes_ce(tos, before, after):
    frame = ecn_frame(tos)
    assert be16(frame, 24) == before
    assert csum.mark_ecn_ce(frame)
    assert frame[15] == tos | 3
    assert be16(frame, 24) == after
    expected = ecn_frame(tos)
    assert ref.mark_ecn_ce(expected) and frame == expected


@pytest.mark.parametrize("tos", [0xB8, 0xBB])
def test_e3_not_ect_and_ce_are_untouched(tos):
    frame = ecn_frame(tos)
    assert not csum.mark_ecn_ce(frame)
    assert frame == ecn_frame(tos)


# ---- D1, P1: the word-update and partial-sum primitives ------------------------------------


def test_d1_dscp_word_update():
    frame = filled(ref.ethernet(0x0800, ref.ipv4(1, N_SRC, N_DST, bytes(8), ident=1)))
    assert be16(frame, 24) == 0x36A2
    assert csum.incremental_update(0x36A2, 0x4500, 0x45B8) == 0x35EA
    frame[15] = 0xB8
    assert ref.checksum(bytes(frame[14:24]) + b"\0\0" + bytes(frame[26:34])) == 0x35EA


def test_p1_nptv6_adjustment_preserves_the_word_sum():
    internal = ipaddress.ip_address("fd01:203:405::").packed[:6]
    external = ipaddress.ip_address("2001:db8:1::").packed[:6]
    adj = ref.fold(csum.checksum_partial(internal) + (csum.checksum_partial(external) ^ 0xFFFF))
    assert adj == 0xD54F
    before = ipaddress.ip_address("fd01:203:405:1::1234").packed
    word3 = ref.fold(0x0001 + adj)
    after = external + word3.to_bytes(2, "big") + before[8:]
    assert ipaddress.IPv6Address(after) == ipaddress.ip_address("2001:db8:1:d550::1234")
    assert csum.checksum_partial(before) == csum.checksum_partial(after) == 0x153F


# ---- MSS clamp regression pins ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "flags"),
    [
        (b"\x00" + MSS_1460 + bytes(3), 0x02),  # EOL before MSS stops the walk
        (b"\x05\x00" + MSS_1460 + bytes(2), 0x02),  # option length 0: bail, no loop
        (b"\x05\x01" + MSS_1460 + bytes(2), 0x02),  # option length 1: bail
        (b"\x05\x0a" + MSS_1460 + bytes(2), 0x02),  # option runs past the data offset
        (MSS_1460, 0x10),  # not a SYN
        (bytes.fromhex("020404b0"), 0x02),  # 1200 already below the clamp
        (b"\x02\x05\x05\xb4\x00" + bytes(3), 0x02),  # kind 2 with length 5 is not an MSS
    ],
)
def test_mss_clamp_no_op_cases_leave_the_frame_byte_identical(options, flags):
    frame = filled(
        ref.ethernet(0x0800, ref.ipv4(6, A1, A2, ref.tcp(1, 2, flags=flags, options=options)))
    )
    before = bytes(frame)
    assert not csum.clamp_mss(frame, 1300)
    assert bytes(frame) == before


def test_mss_clamp_rewrites_only_the_first_mss_option():
    frame = m1_frame(options=bytes.fromhex("020405dc") + MSS_1460)
    assert csum.clamp_mss(frame, 1200)
    assert be16(frame, TCP4 + 22) == 1200 and be16(frame, TCP4 + 26) == 1460
    assert ref.checksums_ok(frame)


def test_mss_clamp_syn_ack_and_vlan_frames():
    seg = ref.tcp(80, 12345, flags=0x12, options=MSS_1460)
    frame = filled(ref.ethernet(0x86DD, ref.ipv6(6, V6_1, V6_2, seg), (0x88A8, 80)))
    assert csum.clamp_mss(frame, 1200)
    assert be16(frame, 18 + 40 + 22) == 1200 and ref.checksums_ok(frame)
    assert be16(frame, 14) == 80  # the VLAN TCI is untouched


def test_mss_clamp_skips_non_first_fragments():
    seg = ref.tcp(1, 2, options=MSS_1460)
    frame = filled(ref.ethernet(0x0800, ref.ipv4(6, A1, A2, seg, frag=0x0004)))
    before = bytes(frame)
    assert not csum.clamp_mss(frame, 1200)
    assert bytes(frame) == before


# ---- fragments: NAT keeps the reassembled datagram's checksum right --------------------------


def fragments(family, l4: bytes, split: int):
    """Two frames carrying l4[:split] (first, M set) and l4[split:] (offset split/8)."""
    out = []
    for offset, more, part in ((0, 1, l4[:split]), (split // 8, 0, l4[split:])):
        if family == 4:
            l3 = ref.ipv4(17, A1, A2, part, frag=(more << 13) | offset)
            out.append(ref.ipv4_header_fixed(ref.ethernet(0x0800, l3)))
        else:
            frag = struct.pack(">BBHI", 17, 0, (offset << 3) | more, 99)
            out.append(ref.ethernet(0x86DD, ref.ipv6(44, V6_1, V6_2, frag + part)))
    return out


@pytest.mark.parametrize("family", [4, 6])
def test_nat_of_fragments_keeps_the_datagram_checksum(family):
    payload = bytes(range(40))
    l4 = bytearray(ref.udp(1000, 53, payload))
    src, dst = (A1, A2) if family == 4 else (V6_1, V6_2)
    seed = ref.pseudo_sum(family, src, dst, 17, len(l4))
    l4[6:8] = (ref.checksum(bytes(l4), seed) or 0xFFFF).to_bytes(2, "big")
    first, second = fragments(family, bytes(l4), 24)
    new_src = "192.0.2.99" if family == 4 else "2001:db8::99"
    for frame in (first, second):
        csum.rewrite_nat(frame, src=new_src, sport=2000)
        assert csum.checksums_ok(frame)  # the IPv4 header (fragments: no L4 check)
    l3 = 14 + (20 if family == 4 else 48)
    datagram = bytes(first[l3:]) + bytes(second[l3:])
    assert datagram[:2] == (2000).to_bytes(2, "big")  # the port lives in the first fragment
    new_seed = ref.pseudo_sum(family, ipaddress.ip_address(new_src).packed, dst, 17, len(datagram))
    assert ref.partial(datagram, new_seed) == 0xFFFF
