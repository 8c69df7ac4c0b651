"""Egress paths of the pipeline on MemPort: CoS shaping with exact rollback, copies to a
port on another UMEM, and the TX latency histogram."""

from __future__ import annotations

import pytest
from scapy.all import ICMP, IP, TCP, Ether, Raw

from xpfdp.cos import Scheduler
from xpfdp.csum import checksums_ok
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import CosStage, ParseStage, Pipeline, RouteStage, TtlStage
from xpfdp.ports import MemPort
from xpfdp.route import RouteTable

RATE_BPS = 1_000_000  # bytes per second


def frames(n, size=1000, icmp_every=0):
    out = []
    for i in range(n):
        if icmp_every and i % icmp_every == 0:
            f = Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / ICMP(id=i)
        else:
            f = Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / TCP(sport=1000 + i % 4, dport=80)
        pad = size - len(f)
        out.append(bytes(f / Raw(b"\0" * max(pad, 0))))
    return FrameBatch.from_frames(out)


def shaped_pipeline(umem, source, *, capture=0):
    sch = Scheduler(RATE_BPS, burst_bytes=10_000)
    sch.add_queue(
        0, priority=5, transmit_rate_bytes_per_s=RATE_BPS, exact=True, buffer_bytes=2_000_000
    )
    sch.add_queue(1, priority=0, buffer_bytes=200_000)
    a = MemPort(umem, source)
    b = MemPort(umem, None, capture=capture)
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    cos = CosStage({1: sch}, rules=[{"queue": 1, "proto": "icmp"}], default_queue=0)
    pipe = Pipeline(
        [a, b], [ParseStage(), RouteStage(), cos], routes=rt, next_hops=[(1, None, None)]
    )
    return pipe, sch, a, b


def test_cos_shapes_to_the_configured_rate_and_conserves_frames(umem_factory):
    u = umem_factory(4096)
    pipe, _sch, _a, b = shaped_pipeline(u, frames(800))
    t0 = 10**15
    step_ns = 1_000_000
    for k in range(100):  # past the initial burst
        pipe.poll(now_ns=t0 + k * step_ns)
    sent_100ms = b.stats()["tx_bytes"]
    for k in range(100, 600):
        pipe.poll(now_ns=t0 + k * step_ns)
    sent = b.stats()["tx_bytes"] - sent_100ms
    expected = RATE_BPS * 0.5
    assert abs(sent - expected) <= 0.02 * expected + 1000  # within 2% (+ one frame)
    st = pipe.stats()
    cos_drops = sum(n for r, n in st["drops"].items() if r.startswith("cos_drop:"))
    assert st["stages"]["cos"]["admitted"] + cos_drops == 800
    assert st["tx_packets"] * 1000 == b.stats()["tx_bytes"]
    u.check_frames()  # the unsent rest is held by the CoS queues, accounted as held
    held = st["stages"]["cos"]["admitted"] - st["tx_packets"]
    assert held > 0
    pipe.close()
    assert pipe.stats()["drops"]["shutdown"] == held
    u.check_frames()


def test_cos_rules_classify_icmp_into_its_queue(umem_factory):
    u = umem_factory(4096)
    pipe, sch, _a, b = shaped_pipeline(u, frames(100, icmp_every=10), capture=100)
    for _ in range(3):
        pipe.poll(now_ns=10**15)  # no time passes: one burst of tokens, the rest queued
    assert pipe.stats()["rx_packets"] == 100
    sent = [Ether(f) for f in b.captured()]
    n_icmp_sent = sum(p.haslayer(ICMP) for p in sent)
    assert sch.queue(1).n_items + n_icmp_sent == 10  # every ICMP packet went to queue 1
    assert sch.queue(0).n_items + len(sent) - n_icmp_sent == 90
    pipe.close()
    u.check_frames()


def test_cos_rollback_when_the_tx_ring_is_short(umem_factory):
    """A 32-entry TX ring takes part of a 64-packet drain; the rest is settled back into
    the queue (not lost, not duplicated) and goes out on later polls."""
    u = umem_factory(4096)
    sch = Scheduler(0)
    sch.add_queue(0, priority=5, buffer_bytes=10_000_000, transmit_rate_bytes_per_s=10**9)
    a = MemPort(u, frames(300, size=200))
    b = MemPort(u, None, ring_size=32, capture=300)
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    pipe = Pipeline(
        [a, b],
        [ParseStage(), RouteStage(), CosStage({1: sch})],
        routes=rt,
        next_hops=[(1, None, None)],
    )
    pipe.run(until_idle=True)
    for _ in range(40):
        pipe.poll()
    out = b.captured()
    assert len(out) == 300 and pipe.stats()["drops"] == {}
    ids = [Ether(f)[TCP].sport for f in out]
    assert sorted(ids) == sorted(1000 + i % 4 for i in range(300))
    assert b.stats()["tx_ring_full"] > 0
    pipe.close()
    u.check_frames()


def test_cos_configuration_errors(umem_factory):
    sch = Scheduler(0)
    sch.add_queue(3)
    with pytest.raises(ValueError, match="default queue"):
        CosStage({1: sch})
    with pytest.raises(ValueError, match="needs 'queue'"):
        CosStage({1: sch}, rules=[{"proto": 6}], default_queue=3)
    with pytest.raises(ValueError, match="queue not in"):
        CosStage({1: sch}, rules=[{"queue": 9}], default_queue=3)
    with pytest.raises(TypeError, match="Scheduler"):
        CosStage({1: object()}, default_queue=3)


def test_egress_on_another_umem_is_copied(umem_factory):
    u1, u2 = umem_factory(1024), umem_factory(1024)
    src = [
        bytes(Ether() / IP(src="10.0.0.2", dst="192.0.2.1", ttl=9) / TCP(sport=i, dport=80))
        for i in range(100)
    ]
    a = MemPort(u1, FrameBatch.from_frames(src))
    b = MemPort(u2, None, capture=128)
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    pipe = Pipeline(
        [a, b], [ParseStage(), RouteStage(), TtlStage()], routes=rt, next_hops=[(1, None, None)]
    )
    pipe.run(until_idle=True)
    out = b.captured()
    assert len(out) == 100
    assert [Ether(f)[TCP].sport for f in out] == list(range(100))
    assert all(Ether(f)[IP].ttl == 8 and checksums_ok(f) for f in out)
    assert pipe.stats()["drops"] == {}
    pipe.close()
    u1.check_frames()
    u2.check_frames()


def test_copy_without_free_tx_frames_is_a_counted_drop(umem_factory):
    u1 = umem_factory(1024)
    u2 = umem_factory(64, tx_frames=2)
    src = [bytes(Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / TCP(sport=i)) for i in range(50)]
    a = MemPort(u1, FrameBatch.from_frames(src))
    b = MemPort(u2, None, ring_size=32, fill_target=8)
    holder = MemPort(u2, None, ring_size=32, fill_target=8)
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    pipe = Pipeline(
        [a, b, holder], [ParseStage(), RouteStage()], routes=rt, next_hops=[(1, None, None)]
    )
    pipe.run(until_idle=True)
    st = pipe.stats()
    assert st["tx_packets"] + st["drops"].get("copy_no_tx_frame", 0) == 50
    pipe.close()
    u1.check_frames()
    u2.check_frames()


def test_tx_latency_histogram_counts_every_accepted_descriptor(umem_factory):
    u = umem_factory(1024)
    src = FrameBatch.from_frames([bytes(Ether() / IP(dst="192.0.2.1") / TCP())] * 70)
    a, b = MemPort(u, src), MemPort(u, None)
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    pipe = Pipeline([a, b], [ParseStage(), RouteStage()], routes=rt, next_hops=[(1, None, None)])
    pipe.run(until_idle=True)
    st = pipe.stats()
    assert sum(st["tx_latency"]["counts"]) == st["tx_packets"] == 70
    assert len(st["tx_latency"]["counts"]) == 16
    pipe.close()
