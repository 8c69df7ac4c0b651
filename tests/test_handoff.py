"""Flow ownership and the handoff rings between workers, on in-memory ports (no root).

Several firewall pipelines share one `Handoff`; packets of a flow arrive at arbitrary
workers and must all be forwarded by the flow's owner, replies through SNAT included."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from xpfdp.firewall import PORT_LAN, PORT_WAN, build_pipeline, parse_config, routing
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import (
    Forwarder,
    Handoff,
    NeighbourTable,
    Pipeline,
    PyStage,
    firewall_stages,
    snat_port_owner,
    snat_slice,
)
from xpfdp.ports import MemPort, Umem
from xpfdp.route import RouteTable
from xpfdp.session import SessionTable

LAN_MAC, LAN_PEER = "02:00:00:00:01:01", "02:00:00:00:01:02"
WAN_MAC, WAN_PEER = "02:00:00:00:02:01", "02:00:00:00:02:02"
SNAT_PORTS = (20000, 20999)
CONFIG = parse_config(
    {
        "lan": {"interface": "lan0", "addresses": ["10.10.1.1/24"], "mac": LAN_MAC},
        "wan": {"interface": "wan0", "addresses": ["10.10.2.1/24"], "mac": WAN_MAC},
        "neighbours": [
            {"interface": "lan", "address": "10.10.1.2", "mac": LAN_PEER},
            {"interface": "wan", "address": "10.10.2.2", "mac": WAN_PEER},
        ],
        "routes": [{"destination": "0.0.0.0/0", "interface": "wan", "gateway": "10.10.2.2"}],
        "nat": {"snat_ports": list(SNAT_PORTS)},
    }
)


class Workers:
    """`n` firewall pipelines on MemPorts joined by one Handoff, polled in turn."""

    def __init__(self, n: int, *, slots: int = 512):
        self.handoff = Handoff(n, slots=slots)
        self.umems = [Umem(2048, tx_frames=512) for _ in range(n)]
        self.lan = [MemPort(u, None, capture=4096, ring_size=256) for u in self.umems]
        self.wan = [MemPort(u, None, capture=4096, ring_size=256) for u in self.umems]
        self.pipes = [
            build_pipeline(CONFIG, self.lan[w], self.wan[w], handoff=self.handoff, worker=w)
            for w in range(n)
        ]

    def inject(self, side: str, worker: int, frames: list[bytes]) -> None:
        port = (self.lan if side == "lan" else self.wan)[worker]
        port.set_source(FrameBatch.from_frames(frames))

    def run(self) -> None:
        """Poll every worker until none receives or is handed anything."""
        idle_rounds = 0
        while idle_rounds < 3:
            moved = sum(p.poll() for p in self.pipes)
            idle_rounds = 0 if moved else idle_rounds + 1

    def out(self, side: str) -> list[tuple[int, bytes]]:
        """(worker, frame) for every frame transmitted on `side`, then clear the capture."""
        ports = self.lan if side == "lan" else self.wan
        frames = [(w, f) for w, p in enumerate(ports) for f in p.captured()]
        for p in ports:
            p.clear_capture()
        return frames

    def close(self) -> None:
        for p in self.pipes:
            p.close(close_ports=True)
        for u in self.umems:
            u.check_frames()
            u.close()


def udp_out(sport: int, seq: int) -> bytes:
    return bytes(
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.10.1.2", dst="10.10.2.2")
        / UDP(sport=sport, dport=5000)
        / seq.to_bytes(4, "big")
    )


def udp_reply(nat_port: int, seq: int) -> bytes:
    return bytes(
        Ether(src=WAN_PEER, dst=WAN_MAC)
        / IP(src="10.10.2.2", dst="10.10.2.1")
        / UDP(sport=5000, dport=nat_port)
        / seq.to_bytes(4, "big")
    )


def total(ws: Workers, key: str) -> int:
    return sum(p.stats()["handoff"][key] for p in ws.pipes)


def test_snat_slices_partition_the_range_and_name_their_owner():
    for workers in (1, 2, 3, 4, 7):
        lo, hi = 1000, 1000 + 3 * workers + 5
        slices = [snat_slice(lo, hi, w, workers) for w in range(workers)]
        assert slices[0][0] == lo and slices[-1][1] == hi
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(slices))
        for w, (first, last) in enumerate(slices):
            assert all(snat_port_owner(lo, hi, p, workers) == w for p in range(first, last + 1))
    with pytest.raises(ValueError, match="slice"):
        snat_slice(10, 11, 0, 3)


def test_reply_on_another_worker_reaches_the_flow_owner():
    ws = Workers(2)
    try:
        clients = range(30000, 30040)
        ws.inject("lan", 0, [udp_out(sp, 1) for sp in clients])
        ws.run()
        out = ws.out("wan")
        assert len(out) == len(clients)
        by_worker = {w for w, _ in out}
        assert by_worker == {0, 1}, "flows should be spread over both owners"
        for w, frame in out:  # each owner allocated from its own slice
            port = Ether(frame)[UDP].sport
            assert snat_port_owner(*SNAT_PORTS, port, 2) == w
        # Every reply arrives at worker 1, whoever owns it.
        ws.inject("wan", 1, [udp_reply(Ether(f)[UDP].sport, 2) for _, f in out])
        ws.run()
        back = ws.out("lan")
        assert len(back) == len(clients)
        assert {Ether(f)[IP].dst for _, f in back} == {"10.10.1.2"}
        assert sorted(Ether(f)[UDP].dport for _, f in back) == list(clients)
        stats = [p.stats() for p in ws.pipes]
        assert not any(s["drops"] for s in stats), [s["drops"] for s in stats]
        assert total(ws, "out") == total(ws, "in") > 0
    finally:
        ws.close()


flows_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 4)), min_size=1, max_size=40
)


@settings(max_examples=25, deadline=None)
@given(workers=st.integers(2, 4), flows=flows_strategy)
def test_every_packet_reaches_its_owner_once_and_in_order(workers, flows):
    """Flow i (source port 31000 + i) arrives at worker `out_at` and its replies at
    `back_at`: each packet leaves exactly once, per flow in order, from one owner."""
    ws = Workers(workers)
    try:
        per_worker: dict[int, list[bytes]] = {}
        for i, (out_at, _, n) in enumerate(flows):
            for seq in range(n):
                per_worker.setdefault(out_at % workers, []).append(udp_out(31000 + i, seq))
        for w, frames in per_worker.items():
            ws.inject("lan", w, frames)
        ws.run()
        nat_port, owner, seqs = {}, {}, {}
        for w, f in ws.out("wan"):
            pkt = Ether(f)
            flow = nat_port.setdefault(pkt[UDP].sport, len(nat_port))
            owner.setdefault(flow, set()).add(w)
            seqs.setdefault(pkt[UDP].sport, []).append(int.from_bytes(bytes(pkt[UDP].payload)))
        assert len(nat_port) == len(flows)
        assert all(len(ws_) == 1 for ws_ in owner.values()), "a flow left from two workers"
        assert sorted(seqs.values()) == sorted(list(range(n)) for _, _, n in flows)

        # One reply per packet; the replies of the j-th NAT port arrive at worker back_at[j].
        per_worker = {}
        for j, (port, sent) in enumerate(sorted(seqs.items())):
            back_at = flows[j][1] % workers
            per_worker.setdefault(back_at, []).extend(udp_reply(port, q) for q in sent)
        for w, frames in per_worker.items():
            ws.inject("wan", w, frames)
        ws.run()
        back: dict[int, list[int]] = {}
        for _, f in ws.out("lan"):
            pkt = Ether(f)
            back.setdefault(pkt[UDP].dport, []).append(int.from_bytes(bytes(pkt[UDP].payload)))
        assert sorted(back) == [31000 + i for i in range(len(flows))]
        assert all(s == list(range(len(s))) for s in back.values())
        assert not any(p.stats()["drops"] for p in ws.pipes)
        assert total(ws, "out") == total(ws, "in")
    finally:
        ws.close()


def test_full_ring_drops_are_counted_and_frames_conserved():
    ws = Workers(2, slots=4)
    try:
        # 64 flows all arrive at worker 0 and worker 1 is not polled: its ring holds 4.
        ws.inject("lan", 0, [udp_out(32000 + i, 0) for i in range(64)])
        ws.pipes[0].poll()
        s0 = ws.pipes[0].stats()
        handed = s0["handoff"]["out"]
        full = s0["drops"].get("handoff_ring_full", 0)
        assert handed == 4 and full > 0
        assert s0["tx_packets"] + handed + full == 64
        assert ws.handoff.ready(0, 1) == 4
        for u in ws.umems:
            u.check_frames()
        # The consumer stops without polling: what waits in its ring is counted, not lost.
        assert ws.pipes[1].discard_handed_in() == 4
        assert ws.pipes[1].stats()["drops"] == {"shutdown": 4}
    finally:
        ws.close()


def test_handoff_validation():
    u = Umem(256, tx_frames=0)
    lan, wan = MemPort(u, None, ring_size=64), MemPort(u, None, ring_size=64)
    h = Handoff(2)
    with pytest.raises(ValueError, match="TX frames"):
        build_pipeline(CONFIG, lan, wan, handoff=h, worker=0)
    with pytest.raises(ValueError, match=r"2\.\.64 workers"):
        Handoff(1)
    with pytest.raises(ValueError, match="power of two"):
        Handoff(2, slots=3)
    u2 = Umem(256, tx_frames=64)
    a, b = MemPort(u2, None, ring_size=64), MemPort(u2, None, ring_size=64)
    p = build_pipeline(CONFIG, a, b, handoff=h, worker=1)
    with pytest.raises(ValueError, match="already taken"):
        build_pipeline(
            CONFIG,
            MemPort(u2, None, ring_size=64),
            MemPort(u2, None, ring_size=64),
            handoff=h,
            worker=1,
        )
    p.close(close_ports=True)
    u.close()
    u2.close()


def test_a_dead_worker_leaks_no_frames_and_its_ring_fills_with_counted_drops():
    """Worker 1 dies (its user stage raises) while worker 0 keeps handing it flows."""
    handoff = Handoff(2, slots=64)
    prefixes, hops = routing(CONFIG)
    routes = RouteTable()
    for prefix, hop in prefixes:
        routes.add(prefix, hop)
    calls = []

    def dies_after_20_bursts(burst):
        calls.append(burst.n)
        if len(calls) > 20:
            raise RuntimeError("worker 1 is gone")

    umems, pipes = [], []
    for w in range(2):
        u = Umem(2048, tx_frames=512)
        lan = MemPort(u, FrameBatch.from_frames([udp_out(33000 + i, 0) for i in range(64)]),
                      loop=True, ring_size=256)  # fmt: skip
        wan = MemPort(u, None, ring_size=256)
        stages = firewall_stages(PORT_LAN, PORT_WAN, snat="10.10.2.1", snat_ports=SNAT_PORTS)
        if w == 1:
            stages.append(PyStage(dies_after_20_bursts))
        umems.append(u)
        pipes.append(Pipeline([lan, wan], stages, routes=routes, next_hops=hops,
                              sessions=SessionTable(4096), neighbours=NeighbourTable(),
                              handoff=handoff, worker=w))  # fmt: skip
    fw = Forwarder(pipes, handle_signals=False)
    try:
        fw.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            fw.errors and pipes[0].stats()["drops"].get("handoff_ring_full", 0) > 1000
        ):
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="worker 1 failed"):
            fw.stop()
        s0 = pipes[0].stats()
        assert s0["handoff"]["out"] > 0 and s0["drops"]["handoff_ring_full"] > 1000
        for p, u in zip(pipes, umems, strict=True):
            p.close()
            u.check_frames()
    finally:
        fw.close()
