"""Admission (buffer limit, flow share, drop before enqueue) and ECN CE marking
(docs/cos.md, Admission and ECN)."""

import ipaddress
import struct

import numpy as np
import pytest

from xpfdp._fast.meta import PKT_META
from xpfdp.cos import (
    ADMIT,
    ADMIT_MARKED,
    DROP_BAD_DESC,
    DROP_BUFFER,
    DROP_CAPACITY,
    DROP_FLOW_SHARE,
    XDP_DESC,
    FifoQueue,
    FlowFairQueue,
    admission_limits_for,
    flow_bucket,
)

GBPS = 125_000_000  # bytes/s
META_L4_VALID = 0x08


def key(i):
    return (17, f"10.9.{i // 250}.{i % 250}", "198.51.100.7", 20000 + i, 4789)


# ---------------------------------------------------------------- limits (the docs/cos.md table)


@pytest.mark.parametrize(
    ("shared", "buffer", "rate", "flows", "expected"),
    [
        (False, 125_000, GBPS, 16, (384_000, 24_000)),
        (False, 125_000, GBPS, 4096, (625_000, 24_000)),
        (False, 4_000_000, GBPS, 12, (4_000_000, 333_334)),
        (False, 131_072, GBPS, 1, (131_072, 131_072)),
        (False, 131_072, GBPS, 2, (131_072, 65_536)),
        (True, 0, 10 * GBPS, 128, (3_072_000, 97_656)),
        (True, 0, 10 * GBPS, 8, (192_000, 192_000)),
        (True, 0, 10 * GBPS, 1, (96_000, 96_000)),
    ],
)
def test_admission_limit_vectors(shared, buffer, rate, flows, expected):
    """Bugs 17 (24 KB floor), 18 (5 ms clamp, operator base honoured), 20 (rate-aware)."""
    assert admission_limits_for(True, shared, buffer, rate, flows) == expected


def test_delay_cap_vectors_and_fifo_limits():
    assert admission_limits_for(True, False, 0, GBPS, 10**6)[0] == 625_000
    assert admission_limits_for(True, True, 0, 10 * GBPS, 10**6)[0] == 6_250_000
    assert admission_limits_for(False, False, 1000, GBPS, 50) == (96_000, 96_000)
    assert admission_limits_for(False, False, 500_000, 0, 1) == (500_000, 500_000)


def test_shared_exact_threshold():
    assert not FlowFairQueue(transmit_rate_bytes_per_s=312_499_999).shared_exact
    assert FlowFairQueue(transmit_rate_bytes_per_s=312_500_000).shared_exact


def test_queue_limits_follow_active_flows_and_4096_clamp():
    q = FlowFairQueue(seed=0, buffer_bytes=125_000, transmit_rate_bytes_per_s=GBPS)
    seen, i = set(), 0
    while len(seen) < 4096:
        b = flow_bucket(0, key(i))
        if b not in seen:
            seen.add(b)
            q.push(100, key(i))
        i += 1
    assert q.active_buckets == 4096
    assert q.limits(0) == (625_000, 24_000)


# ---------------------------------------------------------------- enqueue decisions


def test_bug16_new_flow_admitted_when_15_flows_hold_24kb():
    q = FlowFairQueue(seed=0, buffer_bytes=125_000, transmit_rate_bytes_per_s=GBPS)
    flows, i = [], 0
    while len(flows) < 16:
        if all(q.bucket_of(key(i)) != q.bucket_of(key(f)) for f in flows):
            flows.append(i)
        i += 1
    for f in flows[:15]:
        for _ in range(16):
            assert q.enqueue(1500, key(f)) == ADMIT
    assert q.queued_bytes == 360_000 and q.active_buckets == 15
    assert q.enqueue(1500, key(flows[15])) == ADMIT
    assert q.limits(q.bucket_of(key(flows[15]))) == (384_000, 24_000)


def test_flow_share_and_buffer_drops_counted_before_enqueue():
    q = FlowFairQueue(seed=0, buffer_bytes=131_072, transmit_rate_bytes_per_s=GBPS)
    verdicts = [q.enqueue(1500, key(1)) for _ in range(100)]
    assert verdicts.count(ADMIT) == 87  # 87 x 1500 = 130_500 <= 131_072 share
    assert verdicts[87:] == [DROP_FLOW_SHARE] * 13
    assert q.queued_bytes == 130_500 and q.n_items == 87
    f = FifoQueue(buffer_bytes=3000)
    assert [f.enqueue(1500) for _ in range(65)].count(DROP_BUFFER) == 1  # floor 96_000
    assert q.counters["drops_flow_share"] == 13 and f.counters["drops_buffer"] == 1
    q.check_invariants()


def test_capacity_drop():
    q = FifoQueue(capacity_items=2)
    assert [q.enqueue(100) for _ in range(3)] == [ADMIT, ADMIT, DROP_CAPACITY]
    assert q.counters["drops_capacity"] == 1


# ---------------------------------------------------------------- ECN


def ipv4_frame(length=200, tos=0x02, vlan=None, qinq=False, ethertype=0x0800):
    l2 = b"\x02" * 6 + b"\x04" * 6
    if qinq:
        l2 += struct.pack("!HH", 0x88A8, 10) + struct.pack("!HH", 0x8100, 20)
    elif vlan is not None:
        l2 += struct.pack("!HH", 0x8100, vlan)
    l2 += struct.pack("!H", ethertype)
    ip_len = length - len(l2)
    hdr = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, tos, ip_len, 1, 0, 64, 17, 0,
                    bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    )  # fmt: skip
    struct.pack_into("!H", hdr, 10, ipv4_checksum(hdr))
    return bytearray(l2 + hdr + bytes(ip_len - 20))


def ipv6_frame(length=200, tclass=0x01):
    l2 = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd"
    first = (6 << 28) | (tclass << 20)
    hdr = struct.pack("!IHBB16s16s", first, length - 54, 17, 64, bytes(16), bytes(16))
    return bytearray(l2 + hdr + bytes(length - 54))


def ipv4_checksum(hdr):
    total = sum(struct.unpack(f"!{len(hdr) // 2}H", bytes(hdr[:10]) + b"\0\0" + bytes(hdr[12:])))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def marking_queue():
    """Flow-fair queue (131_072 B buffer) where flow 1 is above its per-flow ECN threshold."""
    q = FlowFairQueue(seed=0, buffer_bytes=131_072, transmit_rate_bytes_per_s=GBPS)
    for _ in range(40):
        q.enqueue(1500, key(1))  # 60_000 > 131_072 / 3
    return q


@pytest.mark.parametrize(("tos", "after", "verdict", "counter"), [
    (0x02, 0x03, ADMIT_MARKED, "ecn_marked"),      # ECT(0)
    (0x01, 0x03, ADMIT_MARKED, "ecn_marked"),      # ECT(1)
    (0x00, 0x00, ADMIT, "ecn_not_ect"),            # Not-ECT: untouched
    (0xB3, 0xB3, ADMIT, "ecn_already_ce"),         # CE: untouched
])  # fmt: skip
def test_ecn_marks_only_ect_and_fixes_checksum(tos, after, verdict, counter):
    q = marking_queue()
    frame = ipv4_frame(tos=tos)
    assert q.enqueue(len(frame), key(1), frame=frame) == verdict
    assert frame[15] == after
    assert struct.unpack_from("!H", frame, 24)[0] == ipv4_checksum(frame[14:34])
    assert q.counters[counter] == 1


def test_bug21_vlan_marked_at_19_qinq_and_arp_untouched():
    q = marking_queue()
    frame = ipv4_frame(vlan=100, tos=0x02)
    assert q.enqueue(len(frame), key(1), frame=frame) == ADMIT_MARKED
    assert frame[19] == 0x03
    assert struct.unpack_from("!H", frame, 28)[0] == ipv4_checksum(frame[18:38])
    for bad in (ipv4_frame(qinq=True, tos=0x02), ipv4_frame(vlan=5, ethertype=0x0806, tos=0x02)):
        before = bytes(bad)
        assert q.enqueue(len(bad), key(1), frame=bad) == ADMIT
        assert bytes(bad) == before
    truncated = ipv4_frame(tos=0x02)[:30]
    assert q.enqueue(len(truncated), key(1), frame=truncated) == ADMIT
    assert truncated[15] == 0x02


def test_ipv6_marked_without_checksum():
    q = marking_queue()
    frame = ipv6_frame(tclass=0x02)
    assert q.enqueue(len(frame), key(1), frame=frame) == ADMIT_MARKED
    assert (struct.unpack_from("!I", frame, 14)[0] >> 20) & 0xFF == 0x03


def test_bug19_aggregate_arm_does_not_mark_flow_fair_queue():
    q = marking_queue()  # aggregate 60_000 > buffer_limit / 3 = 43_690
    other = ipv4_frame(tos=0x02)
    assert q.enqueue(len(other), key(2), frame=other) == ADMIT
    assert other[15] == 0x02
    fifo = FifoQueue(buffer_bytes=131_072)
    for _ in range(40):
        fifo.enqueue(1500)
    frame = ipv4_frame(tos=0x02)
    assert fifo.enqueue(len(frame), frame=frame) == ADMIT_MARKED  # FIFO: aggregate arm


def test_bug22_no_mark_on_a_packet_that_is_dropped():
    q = FlowFairQueue(seed=0, buffer_bytes=131_072, transmit_rate_bytes_per_s=GBPS)
    while q.enqueue(1500, key(1)) == ADMIT:
        pass
    frame = ipv4_frame(length=1500, tos=0x02)
    assert q.enqueue(1500, key(1), frame=frame) == DROP_FLOW_SHARE
    assert frame[15] == 0x02 and q.counters["ecn_marked"] == 0


def test_below_threshold_not_marked():
    q = FlowFairQueue(seed=0, buffer_bytes=131_072, transmit_rate_bytes_per_s=GBPS)
    frame = ipv4_frame(tos=0x02)
    assert q.enqueue(len(frame), key(1), frame=frame) == ADMIT and frame[15] == 0x02


# ---------------------------------------------------------------- batch enqueue from a burst


def burst(frames, keys):
    """UMEM holding `frames` at 2048-byte strides, their descriptors and parser metadata."""
    umem = np.zeros(2048 * len(frames), np.uint8)
    desc = np.zeros(len(frames), XDP_DESC)
    meta = np.zeros(len(frames), PKT_META)
    for i, (frame, k) in enumerate(zip(frames, keys, strict=True)):
        umem[2048 * i : 2048 * i + len(frame)] = np.frombuffer(bytes(frame), np.uint8)
        desc[i] = (2048 * i, len(frame), i)
        if k is None:
            continue
        proto, src, dst, sport, dport = k
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        meta[i]["ip_version"] = s.version
        meta[i]["protocol"] = proto
        meta[i]["flags"] = META_L4_VALID
        meta[i]["src"][: len(s.packed)] = np.frombuffer(s.packed, np.uint8)
        meta[i]["dst"][: len(d.packed)] = np.frombuffer(d.packed, np.uint8)
        meta[i]["sport"], meta[i]["dport"] = sport, dport
    return umem, desc, meta


def test_enqueue_batch_hashes_metadata_like_flow_bucket():
    keys = [key(i) for i in range(20)] + [(6, "2001:db8::5", "2001:db8::9", 1234, 80), None]
    umem, desc, meta = burst([ipv4_frame() for _ in keys], keys)
    q = FlowFairQueue(seed=0xA5A50000C3C3FFFF)
    verdicts = np.full(len(keys), 255, np.uint8)
    assert q.enqueue_batch(desc, meta, umem, verdicts) == len(keys)
    assert verdicts.tolist() == [ADMIT] * len(keys)
    expected = [flow_bucket(q.seed, k) for k in keys]
    got = {}
    for b in range(q.nbuckets):
        for p in q.bucket_packets(b):
            got[p.options] = b
    assert [got[i] for i in range(len(keys))] == expected
    assert expected[-1] == 0
    q.check_invariants()


def test_enqueue_batch_marks_in_umem_and_counts_bad_descriptors():
    frames = [ipv4_frame(length=1500, tos=0x02) for _ in range(60)]
    umem, desc, meta = burst(frames, [key(1)] * 60)
    desc[5]["len"] = 0
    desc[6]["addr"] = len(umem) - 10  # runs past the UMEM
    q = FlowFairQueue(seed=0, buffer_bytes=131_072, transmit_rate_bytes_per_s=GBPS)
    verdicts = np.zeros(60, np.uint8)
    admitted = q.enqueue_batch(desc, meta, umem, verdicts)
    assert verdicts[5] == verdicts[6] == DROP_BAD_DESC
    assert q.counters["drops_bad_desc"] == 2
    marked = np.flatnonzero(verdicts == ADMIT_MARKED)
    assert len(marked) > 0 and admitted == np.count_nonzero(verdicts <= ADMIT_MARKED)
    for i in marked:
        assert umem[2048 * i + 15] == 0x03
    for i in np.flatnonzero(verdicts == ADMIT):
        assert umem[2048 * i + 15] == 0x02
    assert np.count_nonzero(verdicts == DROP_FLOW_SHARE) == 60 - 2 - admitted


def test_enqueue_batch_rejects_bad_arrays():
    umem, desc, meta = burst([ipv4_frame()], [key(1)])
    q = FlowFairQueue(seed=0)
    with pytest.raises(TypeError, match="PKT_META"):
        q.enqueue_batch(desc, np.zeros(1, np.uint64), umem)
    with pytest.raises(ValueError, match="exceeds"):
        q.enqueue_batch(desc, meta, umem, n=2)
    with pytest.raises(ValueError, match="shorter"):
        q.enqueue_batch(desc, meta, umem, np.zeros(0, np.uint8))
