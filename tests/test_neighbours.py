"""Next hops resolved through a NeighbourTable (no root): unresolved neighbours drop with a
reason and queue a request, MACs are followed when they change, and a MAC is never torn
while a control thread rewrites it. Frames are conserved after every test (umem_factory)."""

from __future__ import annotations

import ipaddress
import threading

import pytest
from scapy.all import IP, UDP, Ether, IPv6

from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import (
    CONNECTED,
    L2Stage,
    NeighbourTable,
    ParseStage,
    Pipeline,
    RouteStage,
    TtlStage,
)
from xpfdp.ports import MemPort
from xpfdp.route import RouteTable

LAN_MAC, WAN_MAC = "02:00:00:00:00:aa", "02:00:00:00:00:bb"
GW4, GW6 = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")
MAC_A, MAC_B = "02:aa:aa:aa:aa:01", "02:bb:bb:bb:bb:02"


class Router:
    """LAN (port 0, connected 10.0.0.0/24 and fd00::/64) and WAN (port 1, default routes
    via gateways), every destination MAC from the NeighbourTable."""

    def __init__(self, umem, hold=0):
        self.lan = MemPort(umem, None, capture=512)
        self.wan = MemPort(umem, None, capture=512)
        routes = RouteTable()
        routes.add("10.0.0.0/24", 0)
        routes.add("fd00::/64", 0)
        routes.add("0.0.0.0/0", 1)
        routes.add("::/0", 2)
        self.neighbours = NeighbourTable(64)
        self.pipe = Pipeline(
            [self.lan, self.wan],
            [ParseStage(), RouteStage(), TtlStage(), L2Stage()],
            routes=routes,
            next_hops=[(0, LAN_MAC, CONNECTED), (1, WAN_MAC, GW4), (1, WAN_MAC, GW6)],
            neighbours=self.neighbours,
            neighbour_hold=hold,
        )

    def send(self, lan=(), wan=(), now_ns=None):
        self.lan.clear_capture()
        self.wan.clear_capture()
        self.lan.set_source(FrameBatch.from_frames([bytes(f) for f in lan]) if lan else None)
        self.wan.set_source(FrameBatch.from_frames([bytes(f) for f in wan]) if wan else None)
        if now_ns is None:
            self.pipe.run(until_idle=True)
        else:
            while self.pipe.poll(now_ns=now_ns):
                pass
        return self.captured()

    def captured(self):
        return [Ether(f) for f in self.wan.captured()], [Ether(f) for f in self.lan.captured()]

    def unresolved(self):
        return self.pipe.stats()["drops"].get("neighbour_unresolved", 0)


def out4(dst="198.51.100.7"):
    return Ether(dst=LAN_MAC) / IP(src="10.0.0.2", dst=dst) / UDP(sport=1000, dport=53)


def out6(dst="2001:db8:5::7"):
    return Ether(dst=LAN_MAC) / IPv6(src="fd00::2", dst=dst) / UDP(sport=1000, dport=53)


def back4(dst="10.0.0.2"):
    return Ether(dst=WAN_MAC) / IP(src="198.51.100.7", dst=dst) / UDP(sport=53, dport=1000)


@pytest.fixture
def router(umem_factory):
    """A router that drops at once (no hold) when a neighbour is unresolved."""
    r = Router(umem_factory(4096))
    yield r
    r.pipe.close()


@pytest.fixture
def holding(umem_factory):
    """A router that holds up to 4 frames for 1 s while their neighbour resolves."""
    r = Router(umem_factory(4096), hold=4)
    yield r
    r.pipe.close()


S = 1_000_000_000


def test_held_frames_leave_with_the_mac_once_the_neighbour_resolves(holding):
    to_wan, _ = holding.send(lan=[out4(), out6(), out4()], now_ns=1 * S)
    assert to_wan == [] and holding.pipe.stats()["neighbour_held"] == 3
    assert set(holding.pipe.take_neighbour_requests()) == {(1, GW4), (1, GW6)}
    holding.neighbours.set(1, GW4, MAC_A)
    holding.wan.clear_capture()
    holding.pipe.poll(now_ns=1 * S + 1000)
    to_wan, _ = holding.captured()
    assert [(f.src, f.dst) for f in to_wan] == [(WAN_MAC, MAC_A)] * 2  # in arrival order
    assert holding.pipe.stats()["neighbour_held"] == 1  # the IPv6 one still waits
    holding.neighbours.set(1, GW6, MAC_B)
    holding.wan.clear_capture()
    holding.pipe.poll(now_ns=1 * S + 2000)
    to_wan, _ = holding.captured()
    assert [f.dst for f in to_wan] == [MAC_B]
    assert "neighbour_unresolved" not in holding.pipe.stats()["drops"]


def test_held_frames_are_dropped_after_the_hold_time_or_beyond_the_bound(holding):
    holding.send(lan=[out4()] * 6, now_ns=1 * S)  # 4 held, 2 beyond the bound
    assert holding.unresolved() == 2 and holding.pipe.stats()["neighbour_held"] == 4
    holding.pipe.poll(now_ns=1 * S + S // 2)
    assert holding.pipe.stats()["neighbour_held"] == 4  # still within 1 s
    holding.pipe.poll(now_ns=2 * S)
    assert holding.unresolved() == 6 and holding.pipe.stats()["neighbour_held"] == 0
    holding.neighbours.set(1, GW4, MAC_A)  # too late: nothing is sent to it
    holding.pipe.poll(now_ns=2 * S + 1)
    assert holding.captured() == ([], [])


def test_held_frames_are_returned_at_close(holding):
    holding.send(lan=[out4()] * 3, now_ns=1 * S)
    holding.pipe.close()
    assert holding.pipe.stats()["drops"]["shutdown"] == 3  # umem_factory checks the frames


def test_gateways_are_registered_unresolved_and_drop_with_a_request(router):
    assert router.neighbours.entries() == {(1, GW4): None, (1, GW6): None}
    to_wan, _ = router.send(lan=[out4(), out4(), out6()])
    assert to_wan == []
    assert router.unresolved() == 3
    assert router.pipe.stats()["stages"]["l2"]["drops"] == 3
    assert set(router.pipe.take_neighbour_requests()) == {(1, GW4), (1, GW6)}
    assert router.pipe.take_neighbour_requests() == []  # drained


def test_resolved_gateway_mac_is_written_and_changes_are_followed(router):
    router.neighbours.set(1, GW4, MAC_A)
    router.neighbours.set(1, GW6, MAC_A)
    to_wan, _ = router.send(lan=[out4(), out6()])
    assert [(f.src, f.dst) for f in to_wan] == [(WAN_MAC, MAC_A)] * 2
    router.neighbours.set(1, GW4, MAC_B)  # e.g. `ip neigh replace` on the host
    to_wan, _ = router.send(lan=[out4(), out6()])
    assert [f.dst for f in to_wan] == [MAC_B, MAC_A]
    router.neighbours.set(1, GW4, None)  # the kernel lost it: drop, never a stale MAC
    to_wan, _ = router.send(lan=[out4()])
    assert to_wan == [] and router.unresolved() == 1
    assert router.pipe.take_neighbour_requests() == [(1, GW4)]


def test_connected_destinations_resolve_per_address(router):
    router.neighbours.set(0, "10.0.0.2", MAC_A)
    _, to_lan = router.send(wan=[back4("10.0.0.2"), back4("10.0.0.3")])
    assert [(f[IP].dst, f.dst, f.src) for f in to_lan] == [("10.0.0.2", MAC_A, LAN_MAC)]
    assert router.unresolved() == 1
    assert router.pipe.take_neighbour_requests() == [(0, ipaddress.ip_address("10.0.0.3"))]
    # The same address on another port is another neighbour.
    assert router.neighbours.get(1, "10.0.0.2") is None
    assert router.neighbours.get(0, "10.0.0.2") == MAC_A


def test_request_ring_overflow_is_counted_not_blocking(router):
    frames = [back4(f"10.0.0.{i}") for i in range(2, 202)]
    _, to_lan = router.send(wan=frames)
    assert to_lan == [] and router.unresolved() == 200
    requests = router.pipe.take_neighbour_requests()
    lost = router.pipe.stats()["neighbour_requests_lost"]
    assert len(requests) + lost == 200 and len(requests) == 64


def test_table_validates_and_fills_up(umem_factory):
    with pytest.raises(ValueError, match="power of two"):
        NeighbourTable(100)
    table = NeighbourTable(8)
    for i in range(6):
        table.set(0, f"10.0.0.{i}", None)
    with pytest.raises(MemoryError, match="full"):
        table.set(0, "10.0.0.99", MAC_A)
    table.set(0, "10.0.0.5", MAC_A)  # an existing key still updates
    assert table.get(0, "10.0.0.5") == MAC_A and len(table) == 6
    with pytest.raises(ValueError, match="not 6 bytes"):
        table.set(0, "10.0.0.1", "02:00")
    umem = umem_factory(64)
    with pytest.raises(ValueError, match="no NeighbourTable"):
        Pipeline([MemPort(umem, None)], [], next_hops=[(0, LAN_MAC, GW4)])


def test_a_mac_rewritten_while_forwarding_is_never_torn(router):
    router.neighbours.set(1, GW4, MAC_A)
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            for mac in (MAC_B, MAC_A):
                router.neighbours.set(1, GW4, mac)

    t = threading.Thread(target=flip)
    t.start()
    seen = set()
    try:
        for _ in range(20):
            to_wan, _ = router.send(lan=[out4()] * 64)
            seen |= {f.dst for f in to_wan}
            assert len(to_wan) == 64
    finally:
        stop.set()
        t.join()
    assert seen <= {MAC_A, MAC_B}
