"""Batch calls take a FrameBatch or a Burst as well as (buf, addrs, lens, meta); mixed
IPv4/IPv6 NAT in one call; lossless integer casts; FrameBatch.select; result enums."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xpfdp import cos, csum, parse
from xpfdp.pcap import FrameBatch
from xpfdp.ports import Burst, MemPort

SYN4 = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", ttl=9)
             / TCP(sport=4000, dport=443, flags="S", options=[("MSS", 1460)]))  # fmt: skip
SYN6 = bytes(Ether() / IPv6(src="fd00::1", dst="fd00::2", hlim=9)
             / TCP(sport=4001, dport=443, flags="S", options=[("MSS", 1440)]))  # fmt: skip
UDP4 = bytes(Ether() / IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=53, dport=5353) / b"x")


def parsed(frames) -> FrameBatch:
    batch = FrameBatch.from_frames(frames)
    counts = parse.parse_batch(batch)
    assert counts[parse.ParseStatus.OK] == len(frames) and batch.meta is not None
    return batch


def as_tuple(batch: FrameBatch):
    return batch.buf, batch.offsets, batch.lengths, batch.meta


def test_frame_batch_form_equals_the_four_array_form():
    frames = [SYN4, SYN6, UDP4] * 5
    a, b = parsed(frames), parsed(frames)
    assert (csum.clamp_mss_batch(a, 1200) == csum.clamp_mss_batch(*as_tuple(b), 1200)).all()
    assert (csum.decrement_ttl_batch(a) == csum.decrement_ttl_batch(*as_tuple(b))).all()
    nat = {"src": ("203.0.113.9", "2001:db8::9"), "sport": 1024}
    assert (csum.rewrite_nat_batch(a, **nat) == csum.rewrite_nat_batch(*as_tuple(b), **nat)).all()
    assert (csum.mss_batch(a) == csum.mss_batch(*as_tuple(b))).all()
    assert (a.buf == b.buf).all() and (a.meta == b.meta).all()
    assert csum.checksums_ok_batch(a).all()
    assert (csum.checksum_batch(a) == csum.checksum_batch(a.buf, a.offsets, a.lengths)).all()


def test_burst_form_rewrites_frames_in_the_umem(umem_factory):
    umem = umem_factory(256)
    port = MemPort(umem, FrameBatch.from_frames([SYN4, SYN6, UDP4]), capture=8)
    burst = Burst(64)
    assert port.rx_burst(burst) == 3
    assert parse.parse_batch(burst)[parse.OK] == 3
    results = csum.clamp_mss_batch(burst, 1300)
    assert list(results) == [csum.Rewrite.DONE, csum.Rewrite.DONE, csum.Rewrite.SKIPPED]
    assert list(csum.mss_batch(burst)) == [1300, 1300, -1]
    assert list(csum.decrement_ttl_batch(burst)[:2]) == [8, 8]
    assert csum.checksums_ok_batch(burst).all()
    assert Ether(bytes(burst.frame(0)))[IP].ttl == 8
    assert port.tx_burst(burst) == 3
    burst.n = 0
    out = [Ether(f) for f in port.captured()]
    assert dict(out[1][TCP].options)["MSS"] == 1300 and out[1][IPv6].hlim == 8


def test_mixed_family_nat_in_one_call_equals_one_call_per_family():
    frames = [SYN4, SYN6, UDP4, SYN6]
    mixed, v4, v6 = parsed(frames), parsed(frames), parsed(frames)
    got = csum.rewrite_nat_batch(mixed, src=("2001:db8::7", "198.51.100.7"), dport=8443)
    only4 = csum.rewrite_nat_batch(v4, src="198.51.100.7", dport=8443)
    only6 = csum.rewrite_nat_batch(v6, src="2001:db8::7", dport=8443)
    assert list(got) == [csum.DONE] * 4
    assert list(only4) == [csum.DONE, csum.SKIPPED, csum.DONE, csum.SKIPPED]
    assert list(only6) == [csum.SKIPPED, csum.DONE, csum.SKIPPED, csum.DONE]
    for i, frame in enumerate(frames):
        expected = v4 if frame is not SYN6 else v6
        assert (mixed.frame(i) == expected.frame(i)).all(), i
    assert csum.checksums_ok_batch(mixed).all()
    sources = [Ether(bytes(mixed.frame(i)))[1].src for i in range(4)]
    assert sources == ["198.51.100.7", "2001:db8::7", "198.51.100.7", "2001:db8::7"]


def test_an_address_pair_needs_one_of_each_family():
    batch = parsed([SYN4])
    with pytest.raises(ValueError, match="one IPv4 and one IPv6"):
        csum.rewrite_nat_batch(batch, src=("192.0.2.1", "192.0.2.2"))
    with pytest.raises(ValueError, match=r"\(IPv4, IPv6\)"):
        csum.rewrite_nat_batch(batch, dst=("192.0.2.1",))


def test_integer_arrays_are_cast_when_nothing_changes():
    ref = parsed([SYN4, SYN6])
    expected = csum.clamp_mss_batch(*as_tuple(parsed([SYN4, SYN6])), 1000)
    for addrs, lens in [
        (ref.offsets.astype(np.int64), ref.lengths.astype(np.int64)),
        (ref.offsets.astype(np.uint32), ref.lengths.astype(np.uint16)),
        (ref.offsets.tolist(), ref.lengths.tolist()),
    ]:
        batch = parsed([SYN4, SYN6])
        assert (csum.clamp_mss_batch(batch.buf, addrs, lens, batch.meta, 1000) == expected).all()
    per_frame = np.array([1100, 0], dtype=np.int64)  # int64 values that fit uint16
    batch = parsed([SYN4, SYN6])
    assert list(csum.clamp_mss_batch(batch, per_frame)) == [csum.DONE, csum.SKIPPED]  # 0: off


def test_lossy_or_non_integer_arrays_are_refused_by_name():
    batch = parsed([SYN4])
    with pytest.raises(ValueError, match=r"addrs has values -1\.\.-1, outside uint64"):
        csum.decrement_ttl_batch(batch.buf, np.array([-1]), batch.lengths, batch.meta)
    with pytest.raises(ValueError, match=r"lens has values .* outside uint32"):
        csum.decrement_ttl_batch(batch.buf, batch.offsets, np.array([1 << 40]), batch.meta)
    with pytest.raises(TypeError, match=r"addrs must be an integer array \(uint64\), not float64"):
        csum.decrement_ttl_batch(batch.buf, np.array([0.0]), batch.lengths, batch.meta)
    with pytest.raises(ValueError, match=r"per-frame mss has values 70000\.\.70000"):
        csum.clamp_mss_batch(batch, np.array([70000]))


def test_wrong_forms_are_clear_errors():
    batch = FrameBatch.from_frames([SYN4])
    with pytest.raises(ValueError, match=r"not parsed; call xpfdp.parse.parse_batch\(batch\)"):
        csum.clamp_mss_batch(batch, 1200)
    with pytest.raises(TypeError, match="takes a FrameBatch or a Burst, not int"):
        csum.decrement_ttl_batch(7)
    with pytest.raises(TypeError, match=r"takes a FrameBatch or a Burst, or \(buf, addrs"):
        csum.decrement_ttl_batch(batch.buf, batch.offsets)
    with pytest.raises(ValueError, match="no frames"):
        csum.decrement_ttl_batch(Burst(4))


def test_select_is_a_view_of_the_same_frames():
    batch = parsed([SYN4, SYN6, UDP4, SYN4])
    syns = batch.select(batch.meta["protocol"] == 6)
    assert len(syns) == 3 and syns.buf is batch.buf
    assert list(csum.clamp_mss_batch(syns, 1000)) == [csum.DONE] * 3
    assert list(csum.mss_batch(batch)) == [1000, 1000, -1, 1000]  # seen through the parent
    picked = batch.select([3, 0])
    assert list(picked.lengths) == [len(SYN4)] * 2 and picked.meta is not None
    assert len(batch.select(np.zeros(4, dtype=bool))) == 0
    with pytest.raises(ValueError, match="needs 4 entries"):
        batch.select(np.ones(3, dtype=bool))
    with pytest.raises(IndexError):
        batch.select([4])


def test_result_codes_are_int_enums_equal_to_the_arrays_values():
    assert [int(m) for m in csum.Rewrite] == [0, 1, 2, 3]
    assert csum.RESULT_NAMES[csum.Rewrite.SKIPPED] == "skipped"
    assert (csum.Ttl.EXPIRED, csum.Ttl.SKIPPED) == (-1, -2)
    assert csum.ECN_RESULT_NAMES[csum.Ecn.ALREADY_CE] == "already_ce"
    assert parse.PARSE_STATUS_NAMES[parse.ParseStatus.TRUNC_L4] == "trunc_l4"
    q = cos.FifoQueue(capacity_items=1)
    assert q.enqueue(60) == cos.Admission.ADMIT
    assert q.enqueue(60) == cos.Admission.DROP_CAPACITY
    assert cos.VERDICT_NAMES[cos.Admission.DROP_BUFFER] == "drop_buffer"
