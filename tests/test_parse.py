"""xpfdp.parse: vectors X1-X3, every status code, differential tests against the pure-Python
reference parser and scapy, truncation at every offset, garbage, and out-of-bounds reads
caught by a guard page."""

import ipaddress
import signal
import struct
import subprocess
import sys

import csum_reference as ref
import numpy as np
import pytest
from guard_pages import GuardedPages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xpfdp import parse
from xpfdp._fast.meta import PKT_META as SHARED_PKT_META

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
V6A, V6B = bytes(range(16)), bytes(range(16, 32))


def as_reference(record) -> dict:
    """A PKT_META record in the reference parser's dict form."""
    d = {name: record[name] for name in PKT_META_NAMES}
    d = {k: (bytes(v) if k in ("src", "dst") else int(v)) for k, v in d.items()}
    d["status"] = parse.PARSE_STATUS_NAMES[d["status"]]
    d["flags"] = {name for name, bit in parse.META_FLAG_NAMES.items() if d["flags"] & bit}
    return d


PKT_META_NAMES = parse.PKT_META.names


def agree(frame) -> dict:
    expected = ref.parse(bytes(frame))
    got = as_reference(parse.parse_frame(bytes(frame)))
    assert got == expected
    return got


def tcp_v4(**kw):
    return ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), ref.tcp(1, 2), **kw))


def test_pkt_meta_is_the_shared_dtype():
    assert parse.PKT_META is SHARED_PKT_META
    assert parse.status_name(parse.NONFIRST_FRAG) == "nonfirst_frag"


# ---- X1-X3: the IPv6 extension-header walk --------------------------------------------------


def test_x1_hop_by_hop_then_fragment_then_tcp():
    ext = bytes([44, 0]) + bytes(6) + struct.pack(">BBHI", 6, 0, 0, 7)
    frame = ref.ethernet(0x86DD, ref.ipv6(0, V6A, V6B, ext + ref.tcp(80, 443)))
    m = agree(frame)
    assert m["l4_off"] == 14 + 56 and m["protocol"] == 6 and m["status"] == "ok"
    assert (m["sport"], m["dport"]) == (80, 443)
    assert "fragment" not in m["flags"]  # offset 0 without M: an atomic fragment


def test_x2_ah_length_counts_four_byte_units_plus_two():
    ext = bytes([17, 4]) + bytes(22)
    frame = ref.ethernet(0x86DD, ref.ipv6(51, V6A, V6B, ext + ref.udp(5, 6)))
    m = agree(frame)
    assert m["l4_off"] == 14 + 40 + 24 and m["protocol"] == 17


def test_x3_no_next_header_has_no_l4():
    frame = ref.ethernet(0x86DD, ref.ipv6(59, V6A, V6B, b"xyz"))
    m = agree(frame)
    assert m["status"] == "ok" and m["protocol"] == 59 and "l4_valid" not in m["flags"]


# ---- each status code ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        (b"\x00" * 13, "trunc_l2"),
        (ref.ethernet(0x8100, b"")[:16], "trunc_l2"),
        (ref.ethernet(0x0806, bytes(28)), "non_ip"),
        (ref.ethernet(0x8100, struct.pack(">HH", 5, 0x8100) + bytes(40)), "non_ip"),
        (tcp_v4()[:30], "trunc_l3"),
        (ref.ethernet(0x0800, b"\x65" + bytes(39)), "bad_version"),
        (ref.ethernet(0x0800, b"\x44" + bytes(39)), "bad_ihl"),
        (ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), ref.tcp(1, 2))[:38]), "trunc_l3"),
        (ref.ethernet(0x0800, b"\x45\x00\x00\x10" + bytes(36)), "bad_totlen"),
        (ref.ethernet(0x86DD, ref.ipv6(0, V6A, V6B, b"\x06")), "trunc_exthdr"),
        (ref.ethernet(0x86DD, ref.ipv6(0, V6A, V6B, b"\x06\x05" + bytes(6))), "trunc_exthdr"),
        (
            ref.ethernet(0x86DD, ref.ipv6(0, V6A, V6B, (b"\x00\x00" + bytes(6)) * 7)),
            "too_many_exthdr",
        ),
        (ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), bytes(19))), "trunc_l4"),
        (ref.ethernet(0x0800, ref.ipv4(17, bytes(4), bytes(4), bytes(7))), "trunc_l4"),
        (ref.ethernet(0x0800, ref.ipv4(1, bytes(4), bytes(4), bytes(4))), "trunc_l4"),
        (
            ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), bytes(12) + b"\x40" + bytes(7))),
            "bad_doff",
        ),
        (
            ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), bytes(12) + b"\x60" + bytes(7))),
            "bad_doff",
        ),
        (tcp_v4(frag=0x0010), "nonfirst_frag"),
    ],
)
def test_status_codes(frame, status):
    m = agree(frame)
    assert m["status"] == status


def test_six_extension_headers_are_allowed_seven_are_not():
    six = (b"\x00\x00" + bytes(6)) * 5 + b"\x11\x00" + bytes(6)
    m = agree(ref.ethernet(0x86DD, ref.ipv6(0, V6A, V6B, six + ref.udp(1, 2))))
    assert m["status"] == "ok" and m["l4_off"] == 14 + 40 + 48


def test_ipv4_fragments():
    first = agree(tcp_v4(frag=0x2000))
    assert first["status"] == "ok" and {"fragment", "first_fragment", "l4_valid"} <= first["flags"]
    later = agree(tcp_v4(frag=0x2003))
    assert later["status"] == "nonfirst_frag" and (later["sport"], later["dport"]) == (0, 0)
    assert "l4_valid" not in later["flags"]


def test_ipv6_nonfirst_fragment_gets_no_ports():
    ext = struct.pack(">BBHI", 6, 0, 0x0009, 1)  # offset 1 (8 bytes), M set
    m = agree(ref.ethernet(0x86DD, ref.ipv6(44, V6A, V6B, ext + ref.tcp(1, 2))))
    assert m["status"] == "nonfirst_frag" and m["sport"] == 0 and "l4_valid" not in m["flags"]


def test_vlan_tags_and_padding():
    inner = ref.ipv4(17, bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8]), ref.udp(53, 99, b"q"))
    for tpid in (0x8100, 0x88A8):
        m = agree(ref.ethernet(0x0800, inner, (tpid, 0xA00B)) + bytes(20))
        assert m["vlan_tci"] == 0xA00B and m["l3_off"] == 18 and "vlan" in m["flags"]
        assert m["l3_len"] == len(inner) and m["payload_off"] == 18 + 28


def test_icmp_echo_identifier_is_both_ports_and_errors_have_none():
    echo = agree(ref.ethernet(0x0800, ref.ipv4(1, bytes(4), bytes(4), ref.icmp_echo(8, 77, 1))))
    assert echo["sport"] == echo["dport"] == 77 and echo["icmp_type"] == 8
    err = agree(ref.ethernet(0x0800, ref.ipv4(1, bytes(4), bytes(4), bytes([3, 1]) + bytes(6))))
    assert err["sport"] == err["dport"] == 0 and err["icmp_type"] == 3


# ---- differential: reference and scapy ------------------------------------------------------


@SETTINGS
@given(ref.frames())
def test_valid_frames_match_reference_and_scapy(frame):
    m = agree(frame)
    assert m["status"] == "ok"
    pkt = Ether(bytes(frame))
    layer = pkt[IP] if m["ip_version"] == 4 else pkt[IPv6]
    n = 4 if m["ip_version"] == 4 else 16
    assert m["src"][:n] == ipaddress.ip_address(layer.src).packed
    l4 = next((pkt[c] for c in (TCP, UDP) if c in pkt), None)
    if l4 is not None:
        assert (m["sport"], m["dport"]) == (l4.sport, l4.dport)
        assert m["l4_off"] == len(frame) - len(bytes(l4))  # bytes(l4) runs to the frame end
    if ICMP in pkt and m["ip_version"] == 4:  # scapy also decodes protocol 1 inside IPv6,
        assert m["icmp_type"] == pkt[ICMP].type  # which is not ICMP to an IPv6 stack


@SETTINGS
@given(ref.frames(), st.data())
def test_truncated_frames_match_reference(frame, data):
    cut = data.draw(st.integers(0, len(frame)))
    agree(frame[:cut])


def test_truncation_at_every_offset_of_a_few_frames():
    frames = [
        tcp_v4(options=b"\x01" * 4),
        ref.ethernet(
            0x86DD, ref.ipv6(0, V6A, V6B, b"\x06\x00" + bytes(6) + ref.tcp(1, 2)), (0x8100, 9)
        ),
        ref.ethernet(0x0800, ref.ipv4(1, bytes(4), bytes(4), ref.icmp_echo(0, 5, 6))),
    ]
    for frame in frames:
        for cut in range(len(frame) + 1):
            agree(frame[:cut])


@SETTINGS
@given(
    ref.frames(),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_frames_match_reference(frame, edits):
    for at, value in edits:
        if at < len(frame):
            frame[at] = value
    agree(frame)


@SETTINGS
@given(st.binary(max_size=120), st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00"]))
def test_garbage_matches_reference(tail, ethertype):
    agree(bytes(12) + ethertype + tail)


# ---- batch ---------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(ref.frames(), min_size=1, max_size=8), st.data())
def test_batch_equals_scalar_and_counts(frames, data):
    frames = [
        f[: data.draw(st.integers(0, len(f)))] if data.draw(st.booleans()) else f for f in frames
    ]
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8).copy()
    lens = np.array([len(f) for f in frames], dtype=np.uint32)
    addrs = np.concatenate([[0], np.cumsum(lens[:-1])]).astype(np.uint64)
    out = np.zeros(len(frames), dtype=parse.PKT_META)
    counts = parse.parse_batch(buf, addrs, lens, out)
    for i, f in enumerate(frames):
        assert out[i].tobytes() == parse.parse_frame(bytes(f)).tobytes()
    assert counts.tolist() == np.bincount(out["status"], minlength=len(counts)).tolist()


def test_batch_rejects_bad_arguments():
    buf = np.zeros(100, dtype=np.uint8)
    out = np.zeros(2, dtype=parse.PKT_META)
    addrs, lens = np.array([0, 90], dtype=np.uint64), np.array([60, 20], dtype=np.uint32)
    with pytest.raises(ValueError, match=r"frame 1 .* runs past"):
        parse.parse_batch(buf, addrs, lens, out)
    with pytest.raises(ValueError, match="lens has"):
        parse.parse_batch(buf, addrs, lens[:1], out)
    with pytest.raises(TypeError, match="PKT_META"):
        parse.parse_batch(buf, addrs, np.array([1, 1], np.uint32), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="holds 1 records"):
        parse.parse_batch(buf, addrs, np.array([1, 1], np.uint32), out[:1])
    # Other integer types are converted when no value changes, refused by name otherwise.
    ok = parse.parse_batch(buf, addrs.astype(np.int64), np.array([1, 1], np.int8), out)
    assert ok.sum() == 2
    with pytest.raises(ValueError, match=r"addrs has values -1\.\.90, outside uint64"):
        parse.parse_batch(buf, np.array([-1, 90]), np.array([1, 1], np.uint32), out)
    with pytest.raises(TypeError, match=r"addrs must be an integer array \(uint64\)"):
        parse.parse_batch(buf, addrs.astype(np.float64), np.array([1, 1], np.uint32), out)


def test_strided_descriptor_arrays_are_accepted():
    desc = np.zeros(2, dtype=[("addr", "<u8"), ("len", "<u4"), ("options", "<u4")])
    frame = tcp_v4()
    buf = np.frombuffer(frame * 2, dtype=np.uint8).copy()
    desc["addr"], desc["len"] = [0, len(frame)], len(frame)
    out = np.zeros(2, dtype=parse.PKT_META)
    assert parse.parse_batch(buf, desc["addr"], desc["len"], out)[parse.OK] == 2


# ---- out-of-bounds reads: frames end right before an unreadable page -------------------------


@pytest.fixture(scope="module")
def guarded():
    return GuardedPages()


@SETTINGS
@given(ref.frames(), st.data())
def test_parser_never_reads_past_the_frame(guarded, frame, data):
    frame = frame[: data.draw(st.integers(0, len(frame)))]
    out = np.zeros(1, dtype=parse.PKT_META)
    addrs, lens = guarded.place(frame)
    parse.parse_batch(guarded.array, addrs, lens, out)
    assert out[0].tobytes() == parse.parse_frame(bytes(frame)).tobytes()


@pytest.mark.parametrize("offset", ["p.page", "-1"])
def test_the_guard_pages_really_fault(offset):
    """The out-of-bounds tests mean something only if an access on either side crashes."""
    code = (
        "import sys; sys.path.insert(0, 'tests'); import ctypes, guard_pages; "
        f"p = guard_pages.GuardedPages(); ctypes.string_at(p.first_readable + {offset}, 1)"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert result.returncode == -signal.SIGSEGV


def test_batch_accepts_any_buffer_and_rejects_wrong_kinds():
    frame = bytes(tcp_v4())
    out = np.zeros(1, dtype=parse.PKT_META)
    addrs, lens = np.zeros(1, np.uint64), np.array([len(frame)], np.uint32)
    for buf in (frame, bytearray(frame), memoryview(frame)):
        assert parse.parse_batch(buf, addrs, lens, out)[parse.OK] == 1
    assert parse.parse_batch(frame, [0], [len(frame)], out)[parse.OK] == 1  # lists of ints
    with pytest.raises(TypeError, match=r"addrs must be an integer array \(uint64\), not <U1"):
        parse.parse_batch(frame, ["0"], lens, out)
    with pytest.raises(TypeError, match="buf must be a 1-D uint8 array"):
        parse.parse_batch(np.zeros(64, np.uint16), addrs, lens, out)
    with pytest.raises(ValueError, match="must be 1-D"):
        parse.parse_batch(frame, addrs.reshape(1, 1), lens, out)
