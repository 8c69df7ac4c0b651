"""Property tests for xpfdp.csum: random valid frames (v4/v6, TCP/UDP/ICMP, VLAN, options,
extension headers, padding) and random rewrites. Every rewrite must equal the pure-Python
reference (byte edit + full recompute) byte for byte, verify by the docs/checksums.md oracle and by
scapy's checksum code, and leave no-op inputs untouched; malformed frames never crash."""

import ipaddress

import csum_reference as ref
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from xpfdp import csum

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scapy_says_valid(frame) -> bool:
    """Independent oracle: scapy's pseudo-header and checksum code over the parsed regions."""
    m = ref.parse(bytes(frame))
    l3 = m["l3_off"]
    if m["ip_version"] == 4 and scapy_checksum(bytes(frame[l3 : l3 + (frame[l3] & 15) * 4])):
        return False
    if not ref.l4_checksummable(bytes(frame), m):
        return True
    seg = bytes(frame[m["l4_off"] : l3 + m["l3_len"]])
    proto = m["protocol"]
    if proto == ref.PROTO_UDP and m["ip_version"] == 4 and seg[6:8] == b"\0\0":
        return True
    if proto == ref.PROTO_ICMP:
        return scapy_checksum(seg) == 0
    src, dst = (
        str(ipaddress.ip_address(a[: 4 if m["ip_version"] == 4 else 16]))
        for a in (m["src"], m["dst"])
    )
    if m["ip_version"] == 4:
        return in4_chksum(proto, IP(src=src, dst=dst), seg) == 0
    upper = (IPv6(src=src, dst=dst) / Raw(seg))[Raw]
    return in6_chksum(proto, upper, seg) == 0


def residual(frame) -> int:
    """Folded pseudo-header + segment sum, stored checksum included (0xFFFF when valid)."""
    return ref.fold(ref.l4_segment_sum(bytes(frame), ref.parse(bytes(frame)), False))


def same_family_address(family):
    return st.binary(min_size=4 if family == 4 else 16, max_size=4 if family == 4 else 16)


# ---- partial sums (contract: folded 16-bit big-endian) ---------------------------------

SIZES = [0, 1, 2, 16, 31, 32, 33, 63, 64, 65, 128, 129, 1500, 9000, 64000]
PATTERNS = [b"\x00", b"\xff", b"\xaa\x55", b"\xff\xff"]
SEEDS = [0, 0x1234, 0xFFFF, 0x1_0000, 0xFFFF_0000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_partial_sum_matches_reference_on_fixed_patterns(size, pattern):
    data = (pattern * size)[:size]
    for seed in SEEDS:
        assert csum.checksum_partial(data, seed) == ref.partial(data, seed)
    assert csum.internet_checksum(data) == ref.checksum(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from(SEEDS), st.integers(0, 7))
def test_partial_sum_matches_reference_at_any_alignment(data, seed, shift):
    backing = bytearray(shift) + bytearray(data)
    view = memoryview(backing)[shift:]
    assert csum.checksum_partial(view, seed) == ref.partial(data, seed)
    assert csum.internet_checksum(view) == ref.checksum(data)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_partial_sums_chain(a, b):
    a = a[: len(a) // 2 * 2]  # only the last buffer may be odd
    assert csum.checksum_partial(b, csum.checksum_partial(a)) == ref.partial(a + b)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
@example(0xDD2F, 0x5555, 0x3285)
def test_incremental_update_is_eqn3(hc, old, new):
    assert csum.incremental_update(hc, old, new) == ref.eqn3(hc, [old], [new])


@given(st.binary(min_size=60, max_size=60), st.integers(0, 29), st.binary(min_size=2, max_size=2))
def test_incremental_equals_recompute_for_any_word(data, word, new):
    """Canonical eqn. 3 reproduces a from-scratch checksum exactly (no +-0 mismatch)."""
    hc = ref.checksum(data)
    changed = data[: 2 * word] + new + data[2 * word + 2 :]
    old_w, new_w = int.from_bytes(data[2 * word : 2 * word + 2], "big"), int.from_bytes(new, "big")
    if any(changed):
        assert csum.incremental_update(hc, old_w, new_w) == ref.checksum(changed)


@given(st.integers(0, 0xFFFF), st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4))
def test_32_and_128_bit_helpers(hc, old, new):
    expected = ref.eqn3(hc, ref.words(old), ref.words(new))
    assert (
        csum.incremental_update32(hc, int.from_bytes(old, "big"), int.from_bytes(new, "big"))
        == expected
    )
    assert csum.incremental_update_bytes(hc, old, new) == expected
    assert csum.incremental_update_bytes(hc, old * 4, new * 4) == ref.eqn3(
        hc, ref.words(old * 4), ref.words(new * 4)
    )


# ---- frames: verification and full recompute ------------------------------------------------


@SETTINGS
@given(ref.frames())
def test_generated_frames_verify_everywhere(frame):
    assert csum.checksums_ok(frame)
    assert ref.checksums_ok(frame)
    assert scapy_says_valid(frame)


@SETTINGS
@given(ref.frames(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_fix_checksums_equals_reference(frame, ip_csum, l4_csum):
    m = ref.parse(bytes(frame))
    if m["ip_version"] == 4:
        frame[m["l3_off"] + 10 : m["l3_off"] + 12] = ip_csum.to_bytes(2, "big")
    at = m["l4_off"] + ref.CSUM_OFFSET[m["protocol"]]
    frame[at : at + 2] = l4_csum.to_bytes(2, "big")
    expected = bytearray(frame)
    ref.fix_checksums(expected)
    csum.fix_checksums(frame)
    assert frame == expected
    assert csum.checksums_ok(frame) and scapy_says_valid(frame)


@SETTINGS
@given(
    ref.frames(),
    st.lists(st.tuples(st.integers(0, 150), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_verification_agrees_with_reference_on_mutated_frames(frame, edits):
    for at, value in edits:
        if at < len(frame):
            frame[at] = value
    status = ref.parse(bytes(frame))["status"]
    if status in ("ok", "nonfirst_frag"):
        assert csum.checksums_ok(frame) == ref.checksums_ok(frame)
    else:
        with pytest.raises(ValueError, match=status):
            csum.checksums_ok(frame)


# ---- rewrites: equal to the reference, valid, no-ops untouched -----------------------------


@st.composite
def nat_case(draw):
    frame = draw(ref.frames())
    family = ref.parse(bytes(frame))["ip_version"]
    port = st.none() | st.integers(0, 0xFFFF)
    addr = st.none() | same_family_address(family)
    return frame, draw(addr), draw(addr), draw(port), draw(port)


@SETTINGS
@given(nat_case())
def test_nat_equals_reference_and_stays_valid(case):
    frame, src, dst, sport, dport = case
    expected = bytearray(frame)
    ref.rewrite_nat(expected, src, dst, sport, dport)
    csum.rewrite_nat(
        frame,
        src=None if src is None else ipaddress.ip_address(src),
        dst=None if dst is None else ipaddress.ip_address(dst),
        sport=sport,
        dport=dport,
    )
    assert frame == expected
    assert csum.checksums_ok(frame) and scapy_says_valid(frame)


@SETTINGS
@given(ref.frames())
def test_nat_to_the_current_values_is_byte_identical(frame):
    m = ref.parse(bytes(frame))
    n = 4 if m["ip_version"] == 4 else 16
    before = bytes(frame)
    csum.rewrite_nat(frame, src=m["src"][:n], dst=m["dst"][:n], sport=m["sport"], dport=m["dport"])
    assert bytes(frame) == before


@SETTINGS
@given(nat_case())
def test_nat_round_trip_restores_the_frame(case):
    frame, src, dst, sport, dport = case
    m = ref.parse(bytes(frame))
    n = 4 if m["ip_version"] == 4 else 16
    before = bytes(frame)
    csum.rewrite_nat(frame, src=src, dst=dst, sport=sport, dport=dport)
    csum.rewrite_nat(
        frame,
        src=None if src is None else m["src"][:n],
        dst=None if dst is None else m["dst"][:n],
        sport=None if sport is None else m["sport"],
        dport=None if dport is None else m["dport"],
    )
    assert bytes(frame) == before


ANY_OR_SYN = st.one_of(ref.frames(), ref.frames(kinds=("tcp",), syn=True))


@SETTINGS
@given(ANY_OR_SYN, st.integers(1, 0xFFFF))
def test_mss_clamp_equals_reference(frame, mss):
    expected = bytearray(frame)
    before = bytes(frame)
    clamped = ref.clamp_mss(expected, mss)
    assert csum.clamp_mss(frame, mss) == clamped
    assert frame == expected
    if not clamped:
        assert bytes(frame) == before
    assert csum.checksums_ok(frame) and scapy_says_valid(frame)


def assert_kernel_equals_reference(frame, kernel, reference, untouched_result):
    """`kernel(frame)` returns what `reference` does on a copy and leaves the same bytes
    (byte-identical when it returns `untouched_result`), with valid checksums."""
    expected = bytearray(frame)
    before = bytes(frame)
    result = reference(expected)
    assert kernel(frame) == result
    assert frame == expected
    if result == untouched_result:
        assert bytes(frame) == before
    assert csum.checksums_ok(frame)


@SETTINGS
@given(ref.frames())
def test_ttl_equals_reference(frame):
    assert_kernel_equals_reference(frame, csum.decrement_ttl, ref.decrement_ttl, -1)


@SETTINGS
@given(ref.frames())
def test_ecn_equals_reference(frame):
    assert_kernel_equals_reference(frame, csum.mark_ecn_ce, ref.mark_ecn_ce, False)


# ---- malformed frames: no crash, right result, incremental updates preserve the residual ----


@st.composite
def mutated(draw):
    frame = draw(ANY_OR_SYN)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(frame) - 1))
        frame[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        frame = frame[: draw(st.integers(0, len(frame)))]
    return frame


@SETTINGS
@given(mutated(), st.integers(1, 0xFFFF))
def test_mss_clamp_on_malformed_frames(frame, mss):
    expected = bytearray(frame)
    clamped = ref.clamp_mss(expected, mss)
    m = ref.parse(bytes(frame))
    before_residual = residual(frame) if clamped else None
    assert csum.clamp_mss(frame, mss) == clamped
    if clamped:
        assert frame[: m["l4_off"] + 16] == expected[: m["l4_off"] + 16]
        assert residual(frame) == before_residual  # a bad checksum stays exactly as bad
    else:
        assert frame == expected


@SETTINGS
@given(mutated())
def test_other_rewrites_on_malformed_frames(frame):
    status = ref.parse(bytes(frame))["status"]
    for rewrite in (csum.decrement_ttl, csum.mark_ecn_ce):
        expected = bytearray(frame)
        reference = getattr(ref, rewrite.__name__)
        try:
            want = reference(expected)
        except ValueError:
            with pytest.raises(ValueError):
                rewrite(frame)
            continue
        got = rewrite(frame)
        assert got == want
        if want in (-1, False):
            assert frame == expected
    if status not in ("ok", "nonfirst_frag"):
        with pytest.raises(ValueError, match="not a parseable IP packet"):
            csum.rewrite_nat(frame, sport=1)


# ---- input handling -------------------------------------------------------------------------


def test_scalar_functions_accept_bytearray_memoryview_and_numpy():
    import numpy as np

    frame = ref.ethernet(
        0x0800, ref.ipv4(6, bytes(4), bytes(4), ref.tcp(1, 2, options=b"\x02\x04\x05\xb4"))
    )
    ref.fix_checksums(frame)
    for wrap in (
        bytearray,
        lambda f: memoryview(bytearray(f)),
        lambda f: np.frombuffer(f, np.uint8).copy(),
    ):
        buf = wrap(bytes(frame))
        assert csum.clamp_mss(buf, 1000)
        assert csum.decrement_ttl(buf) == 63
        csum.rewrite_nat(buf, src="9.9.9.9")
        assert csum.checksums_ok(buf)


def test_bad_scalar_arguments_raise_clear_errors():
    frame = ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), ref.tcp(1, 2)))
    ref.fix_checksums(frame)
    with pytest.raises(TypeError, match="writable"):
        csum.clamp_mss(bytes(frame), 1000)
    with pytest.raises(ValueError, match="mss"):
        csum.clamp_mss(frame, 0)
    with pytest.raises(ValueError, match="family"):
        csum.rewrite_nat(frame, src="::1")
    with pytest.raises(ValueError, match="sport"):
        csum.rewrite_nat(frame, sport=70000)
    with pytest.raises(TypeError, match="address"):
        csum.rewrite_nat(frame, src=3.5)
    with pytest.raises(ValueError, match="non_ip"):
        csum.decrement_ttl(bytearray(60))
    with pytest.raises(ValueError, match=r"hc must be in 0\.\.65535, not 65536"):
        csum.incremental_update(0x10000, 0, 0)
    v6_udp = ref.ethernet(0x86DD, ref.ipv6(17, bytes(16), bytes(16), ref.udp(1, 2, b"x")))
    with pytest.raises(ValueError, match="zero checksum"):
        csum.rewrite_nat(v6_udp, sport=5)
    assert not csum.mark_ecn_ce(bytearray(60))
    assert not csum.clamp_mss(bytearray(60), 1000)
