"""Forwarder: worker threads over MemPort pipelines, errors surfaced, signals, teardown."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from scapy.all import IP, TCP, Ether

from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import (
    FlowCache,
    Forwarder,
    Pipeline,
    PyStage,
    firewall_stages,
    merge_stats,
)
from xpfdp.ports import MemPort, Umem
from xpfdp.route import RouteTable
from xpfdp.session import SessionTable

HOPS = [
    (0, "02:00:00:00:00:aa", "02:00:00:00:00:01"),
    (1, "02:00:00:00:00:bb", "02:00:00:00:00:02"),
]


def worker(extra_stages=()):
    """One worker as the firewall would build it per queue: own UMEM, ports, tables."""
    umem = Umem(2048)
    src = FrameBatch.from_frames(
        [
            bytes(Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / TCP(sport=1000 + i, dport=80))
            for i in range(32)
        ]
    )
    lan = MemPort(umem, src, loop=True, ring_size=256)
    wan = MemPort(umem, None, ring_size=256)
    rt = RouteTable()
    rt.add("10.0.0.0/24", 0)
    rt.add("0.0.0.0/0", 1)
    pipe = Pipeline(
        [lan, wan],
        firewall_stages(0, 1, snat="198.51.100.1", mss=1400) + list(extra_stages),
        routes=rt,
        next_hops=HOPS,
        sessions=SessionTable(1000),
        flow_cache=FlowCache(),
        names=["lan", "wan"],
    )
    return pipe


def test_workers_forward_in_threads_and_tear_down_in_order():
    pipes = [worker(), worker()]
    umems = [p.ports[0].umem for p in pipes]
    with Forwarder(pipes, handle_signals=False) as fw:
        stats = fw.run(0.3)
        assert not fw.running
    assert len(stats["workers"]) == 2
    for w in stats["workers"]:
        assert w["rx_packets"] > 0 and w["tx_packets"] > 0
        assert w["drops_total"] == 0
        assert w["sessions"]["created"] == 32
        assert w["flow_cache"]["hits"] > 0
    total = stats["total"]
    assert total["rx_packets"] == sum(w["rx_packets"] for w in stats["workers"])
    assert total["sessions"]["created"] == 64
    assert stats["errors"] == []
    for p, u in zip(pipes, umems, strict=False):
        assert p.closed and all(port.closed for port in p.ports)
        assert u.closed


def test_frames_are_conserved_after_stop():
    pipes = [worker()]
    fw = Forwarder(pipes, handle_signals=False)
    fw.start()
    threading.Event().wait(0.1)
    fw.stop()
    assert fw.stats()["total"]["rx_packets"] > 0  # the worker really moved frames
    pipes[0].close()
    pipes[0].ports[0].umem.check_frames()
    fw.close()


def test_a_dying_worker_is_reported():
    def bad(burst):
        raise ValueError("stage exploded")

    pipes = [worker(), worker([PyStage(bad)])]
    fw = Forwarder(pipes, handle_signals=False)
    with pytest.raises(RuntimeError, match="worker 1 failed"):
        fw.run(2.0)
    assert len(fw.errors) == 1 and fw.errors[0][0] == 1
    assert "stage exploded" in fw.stats()["errors"][0]
    assert fw.stats()["workers"][1]["drops"]["user_error"] > 0
    fw.close()
    assert all(p.closed for p in pipes)


def test_sigterm_stops_the_forwarder_and_restores_handlers():
    previous = signal.getsignal(signal.SIGTERM)
    pipes = [worker()]
    fw = Forwarder(pipes)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with fw:
        stats = fw.run(5.0)
    timer.join()
    assert fw.signalled == signal.SIGTERM
    assert stats["uptime_s"] < 4.0
    assert signal.getsignal(signal.SIGTERM) is previous
    assert pipes[0].closed


def test_teardown_on_exception_in_the_with_block():
    pipes = [worker()]
    with pytest.raises(KeyError), Forwarder(pipes, handle_signals=False) as fw:
        fw.start()
        raise KeyError("boom")
    assert not fw.running
    assert pipes[0].closed and pipes[0].ports[0].umem.closed


def test_forwarder_rejects_bad_input():
    with pytest.raises(ValueError):
        Forwarder([])
    with pytest.raises(TypeError):
        Forwarder([object()])


def test_merge_stats_sums_drops_and_latency():
    a = {
        "rx_packets": 1,
        "tx_packets": 1,
        "drops_total": 2,
        "polls": 1,
        "idle_polls": 0,
        "pending_tx": 0,
        "neighbour_requests_lost": 3,
        "drops": {"no_route": 2},
        "tx_latency": {"counts": [1] + [0] * 15},
        "flow_cache": None,
        "sessions": {"active": 1, "created": 1, "expired": 0},
    }
    b = dict(a, drops={"no_route": 1, "ttl_expired": 4})
    m = merge_stats([a, b])
    assert m["drops"] == {"no_route": 3, "ttl_expired": 4}
    assert m["tx_latency"]["counts"][0] == 2 and m["rx_packets"] == 2
    assert m["sessions"]["created"] == 2 and m["neighbour_requests_lost"] == 6


def test_workers_may_not_share_state():
    a, b = worker(), worker()
    shared = Pipeline(
        [MemPort(a.ports[0].umem, None)], [], sessions=a.sessions, routes=RouteTable()
    )
    with pytest.raises(ValueError, match="share"):
        Forwarder([a, shared])
    shared.close(close_ports=True)
    Forwarder([a, b]).close()


def test_update_runs_in_each_worker_between_polls():
    pipes = [worker(), worker()]
    with Forwarder(pipes, handle_signals=False) as fw:
        fw.start()
        threads = []

        def reroute(pipe):
            threads.append(threading.current_thread().name)
            pipe.routes.add("192.0.2.0/24", 0)  # send the flows back to the LAN port
            pipe.set_next_hops([*HOPS])

        fw.update(reroute)
        assert sorted(threads) == ["xpfdp-worker-0", "xpfdp-worker-1"]
        before = [p.ports[0].stats()["tx_packets"] for p in pipes]
        threading.Event().wait(0.2)
        after = [p.ports[0].stats()["tx_packets"] for p in pipes]
        assert all(b > a for a, b in zip(before, after, strict=True))  # hairpinned to the LAN

        def broken(pipe):
            raise OSError("nope")

        with pytest.raises(RuntimeError, match="update failed"):
            fw.update(broken)
        fw.stop()
    assert all(p.closed for p in pipes)
