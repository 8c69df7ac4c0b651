"""Cost of handing a packet to the worker that owns its flow, on MemPort (no root).

Two firewall workers (`xpfdp.firewall.build_pipeline`, flow cache on) joined by a
`Handoff`, 64-byte TCP packets of established LAN->WAN flows that worker 0 owns:

* `local`   -- the packets arrive at worker 0: RX, parse, session (flow cache hit), NAT,
  route, TTL, L2, count, TX.
* `handoff` -- the same packets arrive at worker 1: RX, parse, ownership, copy into the
  ring and frame recycled there; then worker 0 copies each into a TX frame and runs the
  rest of the pipeline.

Both in the same session; the difference of the two rows is what a handed-off packet
costs more than a local one (goal: <= 30 ns). Both workers run in this one thread, one
after the other, so the number is CPU work per packet, not cross-core latency.

Run: `.venv/bin/python -m pytest benches/bench_handoff.py --benchmark-only`.
"""

from __future__ import annotations

import pytest
from scapy.all import IP, TCP, Ether

from xpfdp.firewall import build_pipeline, parse_config
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import Handoff
from xpfdp.ports import MemPort, Umem

FLOWS = 1024
PACKETS = 1024  # per round: fits the ring (and L2), so worker 1 runs a whole round first
LAN_MAC, LAN_PEER = "02:00:00:00:01:01", "02:00:00:00:01:02"
CONFIG = parse_config(
    {
        "lan": {"interface": "lan0", "addresses": ["10.10.1.1/24"], "mac": LAN_MAC},
        "wan": {"interface": "wan0", "addresses": ["10.10.2.1/24"], "mac": "02:00:00:00:02:01"},
        "neighbours": [
            {"interface": "lan", "address": "10.10.1.2", "mac": LAN_PEER},
            {"interface": "wan", "address": "10.10.2.2", "mac": "02:00:00:00:02:02"},
        ],
        "routes": [{"destination": "0.0.0.0/0", "interface": "wan", "gateway": "10.10.2.2"}],
    }
)


def flow_frame(i: int) -> bytes:
    """Flow i: source port 10000 + i, TCP sequence number i (NAT leaves it alone)."""
    return bytes(
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.10.1.2", dst="10.10.2.2", ttl=64)
        / TCP(sport=10000 + i, dport=443, flags="A", seq=i)
    )


class Pair:
    """Workers 0 and 1 with every flow established; `owned` are worker 0's flows."""

    def __init__(self):
        self.handoff = Handoff(2, slots=PACKETS, frame_bytes=128)
        self.umems = [Umem(16384, tx_frames=8192) for _ in range(2)]
        self.lan = [MemPort(u, None, ring_size=1024, loop=True) for u in self.umems]
        self.wan = [MemPort(u, None, ring_size=1024, capture=FLOWS) for u in self.umems]
        self.pipes = [
            build_pipeline(CONFIG, self.lan[w], self.wan[w], handoff=self.handoff, worker=w)
            for w in range(2)
        ]
        self.lan[1].set_source(FrameBatch.from_frames([flow_frame(i) for i in range(FLOWS)]))
        self.pipes[1].run(max_packets=FLOWS)  # one packet per flow; the owner opens it
        self.lan[1].set_source(None)
        self.pipes[0].run(until_idle=True)
        self.pipes[1].run(until_idle=True)
        self.owned = sorted(int(Ether(f)[TCP].seq) for f in self.wan[0].captured())
        for port in self.wan:
            port.clear_capture()
        assert 0 < len(self.owned) < FLOWS

    def arrive_at(self, worker: int):
        frames = [flow_frame(i) for i in self.owned]
        self.lan[worker].set_source(FrameBatch.from_frames(frames))

    def close(self):
        for p in self.pipes:
            p.close(close_ports=True)
        for u in self.umems:
            u.check_frames()
            u.close()


def _handed_round(pair: Pair) -> None:
    pair.pipes[1].run(max_packets=PACKETS)
    pair.pipes[0].run(until_idle=True)


@pytest.mark.parametrize("where", ["local", "handoff"])
def test_handoff_cost(benchmark, where):
    pair = Pair()
    benchmark.group = "firewall packet, owner vs other worker, ns/packet"
    if where == "local":
        pair.arrive_at(0)
        fn, kwargs = pair.pipes[0].run, {"max_packets": PACKETS}
    else:
        pair.arrive_at(1)
        fn, kwargs = _handed_round, {"pair": pair}
    before = [p.stats() for p in pair.pipes]
    benchmark.pedantic(fn, kwargs=kwargs, rounds=200, warmup_rounds=20)
    after = [p.stats() for p in pair.pipes]
    moved = after[0]["tx_packets"] - before[0]["tx_packets"]
    handed = after[0]["handoff"]["in"] - before[0]["handoff"]["in"]
    assert moved >= 220 * PACKETS
    assert handed == (moved if where == "handoff" else 0)
    assert not after[0]["drops"] and not after[1]["drops"]
    assert after[0]["sessions"]["created"] == before[0]["sessions"]["created"]
    ns = benchmark.stats.stats.median * 1e9 / PACKETS
    benchmark.extra_info["ns_per_packet"] = round(ns, 2)
    pair.close()
