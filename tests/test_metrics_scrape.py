"""Scrape a running forwarder's Prometheus endpoint and check it against the conventions.

Two MemPort workers run the firewall stages in threads under `Forwarder` while the
endpoint is scraped over HTTP; the text is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from scapy.all import IP, TCP, Ether

from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import (
    DROP_REASONS,
    FlowCache,
    Forwarder,
    Pipeline,
    firewall_stages,
)
from xpfdp.ports import MemPort, Umem
from xpfdp.route import RouteTable
from xpfdp.session import SessionTable
from xpfdp.stats import serve_prometheus

HOPS = [
    (0, "02:00:00:00:00:aa", "02:00:00:00:00:01"),
    (1, "02:00:00:00:00:bb", "02:00:00:00:00:02"),
]


def _worker() -> Pipeline:
    umem = Umem(2048)
    frames = [
        bytes(Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / TCP(sport=1000 + i, dport=80))
        for i in range(32)
    ]
    lan = MemPort(umem, FrameBatch.from_frames(frames), loop=True, ring_size=256)
    wan = MemPort(umem, None, ring_size=256)
    routes = RouteTable()
    routes.add("10.0.0.0/24", 0)
    routes.add("0.0.0.0/0", 1)
    return Pipeline(
        [lan, wan],
        firewall_stages(0, 1, snat="198.51.100.1", mss=1400),
        routes=routes,
        next_hops=HOPS,
        sessions=SessionTable(1000),
        flow_cache=FlowCache(),
        names=["lan", "wan"],
    )


def _scrape(url: str) -> dict:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {fam.name: fam for fam in text_string_to_metric_families(text)}


def test_scraped_metrics_follow_prometheus_conventions():
    pipes = [_worker(), _worker()]
    umems = [p.ports[0].umem for p in pipes]
    with Forwarder(pipes, handle_signals=False) as fw, serve_prometheus(fw.stats, 0) as server:
        fw.start()
        deadline = time.monotonic() + 10
        while fw.stats()["total"]["tx_packets"] < 10_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        fams = _scrape(f"http://127.0.0.1:{server.port}/metrics")
        fw.stop()
    for umem in umems:
        umem.check_frames()
        umem.close()

    # Counters are typed as counters (the parser strips `_total` from the family name).
    for name in ("rx_packets", "tx_packets", "drops", "port_tx_packets", "port_rx_bytes",
                 "stage_packets", "sessions_created", "flow_cache_hits"):  # fmt: skip
        fam = fams[f"xpfdp_{name}"]
        assert fam.type == "counter", (name, fam.type)
        assert all(s.name == f"xpfdp_{name}_total" for s in fam.samples), name
    for name in ("sessions_active", "flow_cache_entries", "pending_tx_frames", "uptime_seconds"):
        assert fams[f"xpfdp_{name}"].type == "gauge", name
    assert fams["xpfdp_uptime_seconds"].samples[0].value > 0

    # Every drop reason is there for every worker, zero or not.
    drops = fams["xpfdp_drops"].samples
    for worker in ("0", "1"):
        reasons = {s.labels["reason"] for s in drops if s.labels["worker"] == worker}
        assert reasons >= set(DROP_REASONS)

    # The latency histogram is in seconds, cumulative, with _sum and _count.
    hist = fams["xpfdp_tx_latency_seconds"]
    assert hist.type == "histogram"
    by_worker: dict[str, dict[str, dict]] = {}
    for s in hist.samples:
        suffix = s.name.rsplit("_", 1)[1]
        by_worker.setdefault(s.labels["worker"], {}).setdefault(suffix, {})[
            s.labels.get("le", "")
        ] = s.value
    for worker, parts in by_worker.items():
        buckets = sorted((float(le), v) for le, v in parts["bucket"].items())
        assert buckets[-1][0] == float("inf") and buckets[0][0] < 1e-5, worker
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and counts[-1] == parts["count"][""] > 0
        mean_s = parts["sum"][""] / parts["count"][""]
        assert 0 < mean_s < 1.0, mean_s  # seconds, not nanoseconds

    # HELP says what is counted, not just the name again.
    for fam in fams.values():
        if fam.name.startswith("xpfdp_"):
            words = set(fam.documentation.lower().replace(",", " ").split())
            assert words - set(fam.name.split("_")), (fam.name, fam.documentation)
