"""Prometheus exposition and the status line (no root): values survive a round trip
through the Prometheus text parser, labels separate workers/ports/reasons, the histogram
is cumulative, the endpoint serves live snapshots, and rates come from deltas."""

from __future__ import annotations

import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scapy.all import IP, UDP, Ether

from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import CountStage, ParseStage, Pipeline, RouteStage
from xpfdp.ports import MemPort
from xpfdp.route import RouteTable
from xpfdp.stats import (
    METRICS_MISSING,
    StatusLine,
    format_status,
    metric_families,
    render_prometheus,
    serve_prometheus,
    totals,
)

LAT = {"bucket_upper_ns": [1024, 2048, 4096, None], "counts": [1, 0, 2, 3]}


def worker(rx=100, tx=90, drops=None, lan_tx_bytes=0, wan_tx_bytes=0, active=4):
    drops = {"no_route": 4, "parse_error:trunc_l4": 6} if drops is None else drops
    return {
        "rx_packets": rx,
        "tx_packets": tx,
        "drops": drops,
        "drops_total": sum(drops.values()),
        "polls": 50,
        "idle_polls": 10,
        "pending_tx": 2,
        "ports": {
            "lan": {
                "rx_packets": rx,
                "rx_bytes": rx * 100,
                "tx_bytes": lan_tx_bytes,
                "frames_fill_ring": 64,
            },
            "wan": {"rx_packets": 0, "rx_bytes": 0, "tx_bytes": wan_tx_bytes},
        },
        "stages": {"parse": {"packets": rx, "drops": 6}, "count": {"packets": tx, "bytes": 7}},
        "tx_latency": LAT,
        "sessions": {"active": active, "created": 5, "expired": 1},
        "flow_cache": {"hits": 70, "misses": 30, "entries": 12, "capacity": 4096},
    }


def parsed(text):
    """{(sample name, frozenset(labels)): value} from Prometheus text."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_pipeline_snapshot_round_trips_through_the_prometheus_parser():
    samples = parsed(render_prometheus(worker()))
    assert samples[("xpfdp_rx_packets_total", frozenset())] == 100
    assert samples[("xpfdp_drops_total", frozenset({("reason", "no_route")}))] == 4
    assert samples[("xpfdp_drops_total", frozenset({("reason", "parse_error:trunc_l4")}))] == 6
    assert samples[("xpfdp_port_rx_bytes_total", frozenset({("port", "lan")}))] == 10_000
    assert samples[("xpfdp_port_frames_fill_ring", frozenset({("port", "lan")}))] == 64
    assert samples[("xpfdp_stage_drops_total", frozenset({("stage", "parse")}))] == 6
    assert samples[("xpfdp_sessions_active", frozenset())] == 4
    assert samples[("xpfdp_sessions_created_total", frozenset())] == 5
    assert samples[("xpfdp_flow_cache_hits_total", frozenset())] == 70
    assert samples[("xpfdp_flow_cache_capacity", frozenset())] == 4096
    assert samples[("xpfdp_pending_tx_frames", frozenset())] == 2
    # cumulative buckets; the open last bucket is +Inf
    buckets = {dict(k[1])["le"]: v for k, v in samples.items() if k[0].endswith("_bucket")}
    assert buckets == {"1024": 1, "2048": 1, "4096": 3, "+Inf": 6}


def test_counters_and_gauges_have_the_right_types():
    kinds = {f.name: f.kind for f in metric_families(worker())}
    assert kinds["rx_packets"] == kinds["drops"] == kinds["port_rx_bytes"] == "counter"
    assert kinds["port_frames_fill_ring"] == kinds["sessions_active"] == "gauge"
    assert kinds["flow_cache_entries"] == "gauge" and kinds["tx_latency_ns"] == "histogram"


def test_forwarder_snapshot_labels_each_worker_and_skips_the_merged_total():
    snap = {"workers": [worker(rx=1), worker(rx=2)], "total": worker(rx=3), "uptime_s": 1.5,
            "errors": []}  # fmt: skip
    samples = parsed(render_prometheus(snap))
    rx = {k: v for k, v in samples.items() if k[0] == "xpfdp_rx_packets_total"}
    assert rx == {
        ("xpfdp_rx_packets_total", frozenset({("worker", "0")})): 1,
        ("xpfdp_rx_packets_total", frozenset({("worker", "1")})): 2,
    }
    assert samples[("xpfdp_uptime_s", frozenset())] == 1.5
    key = ("xpfdp_drops_total", frozenset({("worker", "1"), ("reason", "no_route")}))
    assert samples[key] == 4


def test_label_values_are_escaped():
    snap = worker(drops={'weird"reason\\x': 1})
    samples = parsed(render_prometheus(snap))
    assert samples[("xpfdp_drops_total", frozenset({("reason", 'weird"reason\\x')}))] == 1


def test_not_a_dict_is_a_type_error():
    with pytest.raises(TypeError, match="snapshot is a dict"):
        metric_families([1, 2])


def test_missing_prometheus_client_gives_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(RuntimeError, match="prometheus-client") as info:
        render_prometheus(worker())
    assert str(info.value) == METRICS_MISSING


def test_endpoint_serves_the_current_snapshot_on_localhost():
    state = {"rx": 1}
    with serve_prometheus(lambda: worker(rx=state["rx"]), 0) as server:
        assert server.address == "127.0.0.1" and server.port > 0
        url = f"http://127.0.0.1:{server.port}/metrics"
        first = urllib.request.urlopen(url, timeout=5).read().decode()
        state["rx"] = 12345
        second = urllib.request.urlopen(url, timeout=5).read().decode()
    assert parsed(first)[("xpfdp_rx_packets_total", frozenset())] == 1
    assert parsed(second)[("xpfdp_rx_packets_total", frozenset())] == 12345


def test_real_pipeline_snapshot_renders(umem_factory):
    umem = umem_factory(1024)
    frames = [bytes(Ether() / IP(dst="192.0.2.1") / UDP()) for _ in range(10)]
    frames += [bytes(Ether() / IP(dst="198.51.100.1") / UDP()) for _ in range(3)]
    a = MemPort(umem, FrameBatch.from_frames(frames))
    b = MemPort(umem, None)
    routes = RouteTable()
    routes.add("192.0.2.0/24", 0)
    pipe = Pipeline([a, b], [ParseStage(), RouteStage(), CountStage()], routes=routes,
                    next_hops=[(1, None, None)], names=["in", "out"])  # fmt: skip
    pipe.run(until_idle=True)
    samples = parsed(render_prometheus(pipe.stats()))
    pipe.close()
    assert samples[("xpfdp_rx_packets_total", frozenset())] == 13
    assert samples[("xpfdp_drops_total", frozenset({("reason", "no_route")}))] == 3
    assert samples[("xpfdp_port_tx_packets_total", frozenset({("port", "out")}))] == 10
    assert samples[("xpfdp_stage_packets_total", frozenset({("stage", "count")}))] == 10


def test_totals_sum_workers_and_ports():
    t = totals({"workers": [worker(lan_tx_bytes=10, wan_tx_bytes=5), worker(active=1)]})
    assert (t.rx_packets, t.tx_packets, t.drops, t.sessions) == (200, 180, 20, 5)
    assert (t.rx_bytes, t.tx_bytes) == (20_000, 15)


def test_status_line_rates_from_successive_snapshots():
    line = StatusLine()
    assert line.update(worker(rx=0, tx=0, drops={}), now_s=10.0) is None
    second = worker(rx=2_000_000, tx=1_000_000, drops={"no_route": 500},
                    wan_tx_bytes=250_000_000, active=7)  # fmt: skip
    text = line.update(second, now_s=12.0)
    assert text == format_status(elapsed_s=2.0, rx_pps=1e6, tx_pps=5e5, tx_mbps=1000.0,
                                 drops_per_s=250, drops_total=500, sessions=7)  # fmt: skip
    assert "1,000,000 pps" in text and "1,000.0 Mbps" in text and "sessions 7" in text
    assert "250/s (500 total)" in text
    with pytest.raises(ValueError, match="advance in time"):
        line.update(second, now_s=12.0)


def with_handoff(snap, worker_index, out, inn):
    return {**snap, "worker": worker_index, "handoff": {"out": out, "in": inn}}


def test_handoffs_per_worker_in_prometheus_and_the_status_line():
    def forwarder(rx0, rx1, out0, out1):
        workers = [with_handoff(worker(rx=rx0), 0, out0, out1),
                   with_handoff(worker(rx=rx1), 1, out1, out0)]  # fmt: skip
        return {"workers": workers, "total": {}}

    samples = parsed(render_prometheus(forwarder(100, 300, 7, 11)))
    key = "xpfdp_handoff_packets_total"
    assert samples[(key, frozenset({("worker", "0"), ("direction", "out")}))] == 7
    assert samples[(key, frozenset({("worker", "0"), ("direction", "in")}))] == 11
    assert samples[(key, frozenset({("worker", "1"), ("direction", "out")}))] == 11
    assert not any(name == "xpfdp_worker" for name, _ in samples)

    line = StatusLine()
    assert line.update(forwarder(0, 0, 0, 0), now_s=0.0) is None
    text = line.update(forwarder(1000, 3000, 500, 1500), now_s=1.0)
    assert "handoffs     2,000/s" in text and "rx% per worker 25/75" in text
    single = StatusLine()
    single.update(worker(rx=0), now_s=0.0)
    assert "handoffs" not in single.update(worker(rx=10), now_s=1.0)
