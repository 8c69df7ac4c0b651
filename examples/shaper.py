#!/usr/bin/env python3
"""The CoS shaper alone on an L2 bridge: port A -> port B shaped, B -> A unshaped.

Frames pass unchanged (no MAC rewrite); host routes pick the egress port. Traffic leaving
on B goes through one exact MQFQ class capped at --rate-mbps, so flows share it fairly.
As root, on your interfaces:
  examples/shaper.py --a eth1 --b eth2 --a-host 10.20.0.1/32 --b-host 10.20.0.2/32 \\
      --rate-mbps 100 --duration 30
or self-contained (two hosts in namespaces bridged through a third, TCP flows, report):
  examples/shaper.py --demo --rate-mbps 100 --flows 4
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time

from xpfdp.cos import Scheduler
from xpfdp.cos.fairness import jain_index
from xpfdp.demo import traffic
from xpfdp.demo.report import steady_rate_bps
from xpfdp.netns import inside
from xpfdp.pipeline import (
    CosStage,
    CountStage,
    Forwarder,
    ParseStage,
    Pipeline,
    RouteStage,
    xsk_workers,
)
from xpfdp.route import RouteTable
from xpfdp.stats import StatusLine
from xpfdp.topology import Namespace, VethPair

RING = 2048
SHAPED_QUEUE = 0


def shaper_pipeline(a, b, a_hosts, b_hosts, rate_bps: int) -> Pipeline:
    """parse -> route (host routes, no MAC rewrite) -> CoS on B (one exact class) -> count."""
    routes = RouteTable()
    for prefix in a_hosts:
        routes.add(prefix, 0)
    for prefix in b_hosts:
        routes.add(prefix, 1)
    sch = Scheduler(rate_bps // 8)
    sch.add_queue(SHAPED_QUEUE, exact=True, transmit_rate_bytes_per_s=rate_bps // 8)
    stages = [ParseStage(), RouteStage(), CosStage({1: sch}, default_queue=SHAPED_QUEUE),
              CountStage()]  # fmt: skip
    return Pipeline([a, b], stages, routes=routes, next_hops=[(0, None, None), (1, None, None)],
                    names=["a", "b"])  # fmt: skip


def open_shaper(a_if, b_if, a_hosts, b_hosts, rate_bps, netns=None) -> Forwarder:
    """A forwarder (one worker, queue 0) running the shaper bridge in `netns`."""
    with inside(netns):
        pipelines = xsk_workers(
            [a_if, b_if],
            lambda _queue, ports: shaper_pipeline(*ports, a_hosts, b_hosts, rate_bps),
            frames=6 * RING + 512,
            tx_frames=0,
            ring_size=RING,
            fill_target=2 * RING,
        )
    return Forwarder(pipelines)


def run(fw: Forwarder, duration_s: float | None) -> None:
    """Forward (the forwarder is started) with one status line per second until the
    duration ends or ^C."""
    status = StatusLine()
    status.update(fw.stats())
    start = time.monotonic()
    while fw.running and fw.signalled is None:
        if duration_s and time.monotonic() - start >= duration_s:
            break
        time.sleep(1.0)
        print(status.update(fw.stats()), flush=True)


def demo(rate_bps: int, flows: int, duration_s: float) -> int:
    """Two hosts bridged through a shaper namespace; TCP flows from A to B; the report."""
    with contextlib.ExitStack() as stack:
        host_a, bridge, host_b = (stack.enter_context(Namespace(prefix="xs")) for _ in range(3))
        va = stack.enter_context(VethPair(bridge, host_a))
        vb = stack.enter_context(VethPair(bridge, host_b))
        for ns, ifname, addr in ((host_a, va.b, "10.20.0.1"), (host_b, vb.b, "10.20.0.2")):
            ns.disable_offloads(ifname)
            ns.add_address(ifname, addr, 24)
        host_a.add_neighbour(va.b, "10.20.0.2", vb.mac_b)
        host_b.add_neighbour(vb.b, "10.20.0.1", va.mac_b)
        fw = stack.enter_context(
            open_shaper(va.a, vb.a, ["10.20.0.1/32"], ["10.20.0.2/32"], rate_bps, bridge.name)
        )
        t0 = time.monotonic()
        sink = traffic.BulkSink(host_b, t0, ("10.20.0.2",))
        stack.callback(sink.close)
        results = [traffic.SendResult(i) for i in range(flows)]
        senders = [threading.Thread(target=traffic.bulk_send, daemon=True,
                                    args=(host_a, "10.20.0.2", i, duration_s, None, results[i]))
                   for i in range(flows)]  # fmt: skip
        fw.start()
        start = time.monotonic() - t0
        for t in senders:
            t.start()
        run(fw, duration_s)
        for t in senders:
            t.join(timeout=10)
        time.sleep(0.2)
        sink.close()
        fw.stop()
        window = (start + 1.0, start + duration_s - 0.2)
        rates = [steady_rate_bps(sink.flows[r.flow_id].bins, *window) for r in results]
        for r, rate in zip(results, rates, strict=True):
            ok = sink.flows[r.flow_id].sha256 == r.sha256
            print(f"flow {r.flow_id}: {rate / 1e6:8.1f} Mbit/s {'intact' if ok else 'CORRUPT'}")
        wire = sum(rates) * 1514 / 1448  # goodput -> frame bytes (MSS 1448 with timestamps)
        print(
            f"aggregate goodput {sum(rates) / 1e6:.1f} Mbit/s (~{wire / 1e6:.1f} on the wire) "
            f"vs configured {rate_bps / 1e6:.1f}; Jain's index {jain_index(rates):.3f}"
        )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", help="port A (unshaped ingress)")
    p.add_argument("--b", help="port B (shaped egress)")
    p.add_argument("--a-host", action="append", default=[], help="prefix behind A (repeat)")
    p.add_argument("--b-host", action="append", default=[], help="prefix behind B (repeat)")
    p.add_argument("--netns", help="network namespace of the ports")
    p.add_argument("--rate-mbps", type=float, default=100.0)
    p.add_argument("--duration", type=float, help="seconds (default: until ^C; demo: 5)")
    p.add_argument("--demo", action="store_true", help="self-contained run in namespaces")
    p.add_argument("--flows", type=int, default=4, help="TCP flows in --demo")
    args = p.parse_args(argv)
    rate_bps = int(args.rate_mbps * 1e6)
    if args.demo:
        return demo(rate_bps, args.flows, args.duration or 5.0)
    if not (args.a and args.b and args.a_host and args.b_host):
        p.error("give --a, --b, --a-host and --b-host (or --demo)")
    with open_shaper(args.a, args.b, args.a_host, args.b_host, rate_bps, args.netns) as fw:
        fw.start()
        run(fw, args.duration)
        fw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
