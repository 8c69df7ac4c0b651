"""Pipeline unit tests on MemPort (no root): forwarding, NAT, state, drops, flow cache,
backpressure, user stages; frames are conserved after every test (umem_factory)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6, Raw

from xpfdp.csum import checksums_ok
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import (
    DROP_REASONS,
    CountStage,
    FlowCache,
    L2Stage,
    ParseStage,
    Pipeline,
    PyStage,
    RouteStage,
    TtlStage,
    firewall_stages,
)
from xpfdp.ports import MemPort
from xpfdp.route import RouteTable
from xpfdp.session import SessionTable, make_key

LAN_MAC, LAN_PEER = "02:00:00:00:00:aa", "02:00:00:00:00:01"
WAN_MAC, WAN_PEER = "02:00:00:00:00:bb", "02:00:00:00:00:02"
SNAT4, SNAT6 = "198.51.100.1", "2001:db8:ffff::1"
HOPS = [(0, LAN_MAC, LAN_PEER), (1, WAN_MAC, WAN_PEER)]


def batch(frames) -> FrameBatch:
    return FrameBatch.from_frames([bytes(f) for f in frames])


def lan_syn(i=0, dst="192.0.2.10", ttl=64, mss=1460):
    return (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.2", dst=dst, ttl=ttl)
        / TCP(sport=40000 + i, dport=80, flags="S", options=[("MSS", mss)])
    )


def wan_frame(l3):
    return Ether(src=WAN_PEER, dst=WAN_MAC) / l3


class Firewall:
    """LAN (port 0) / WAN (port 1) NAT firewall on two MemPorts of one UMEM."""

    def __init__(
        self,
        umem,
        *,
        mss=1400,
        flow_cache=True,
        capture=256,
        max_sessions=1000,
        snat_ports=(20000, 60000),
        tx_queue=0,
        burst_size=64,
        fragments=None,
        **kw,
    ):
        self.lan = MemPort(umem, None, capture=capture)
        self.wan = MemPort(umem, None, capture=capture)
        self.routes = RouteTable()
        self.routes.add("10.0.0.0/24", 0)
        self.routes.add("fd00::/64", 0)
        self.routes.add("0.0.0.0/0", 1)
        self.routes.add("::/0", 1)
        self.sessions = SessionTable(max_sessions, **kw)
        self.pipe = Pipeline(
            [self.lan, self.wan],
            firewall_stages(0, 1, snat=[SNAT4, SNAT6], snat_ports=snat_ports, mss=mss),
            routes=self.routes,
            next_hops=HOPS,
            sessions=self.sessions,
            flow_cache=FlowCache(64, 4) if flow_cache else None,
            names=["lan", "wan"],
            burst_size=burst_size,
            tx_queue=tx_queue,
            fragments=fragments,
        )

    def send(self, lan=(), wan=(), now_ns=None):
        """Feed frames on either side, poll until idle; return (to_wan, to_lan) as scapy."""
        self.lan.clear_capture()
        self.wan.clear_capture()
        self.lan.set_source(batch(lan) if lan else None)
        self.wan.set_source(batch(wan) if wan else None)
        if now_ns is None:
            self.pipe.run(until_idle=True)
        else:
            while self.pipe.poll(now_ns=now_ns):
                pass
        to_wan = [Ether(f) for f in self.wan.captured()]
        to_lan = [Ether(f) for f in self.lan.captured()]
        for f in to_wan + to_lan:
            assert checksums_ok(bytes(f)), f.summary()
        return to_wan, to_lan

    def drops(self):
        return self.pipe.stats()["drops"]

    def close(self):
        self.pipe.close()
        assert self.pipe.pending_tx() == [0, 0]


@pytest.fixture
def fw(umem_factory):
    made = []

    def make(**kw):
        f = Firewall(umem_factory(4096), **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def test_lan_to_wan_is_routed_natted_clamped_and_ttl_decremented(fw):
    f = fw()
    to_wan, to_lan = f.send(lan=[lan_syn(i) for i in range(8)])
    assert to_lan == []
    assert len(to_wan) == 8
    ports = set()
    for p in to_wan:
        assert (p.src, p.dst) == (WAN_MAC, WAN_PEER)
        assert p[IP].src == SNAT4 and p[IP].dst == "192.0.2.10"
        assert p[IP].ttl == 63
        assert dict(p[TCP].options)["MSS"] == 1400
        assert 20000 <= p[TCP].sport <= 60000
        ports.add(p[TCP].sport)
    assert len(ports) == 8  # one allocated port per flow
    st = f.pipe.stats()
    assert st["rx_packets"] == 8 and st["tx_packets"] == 8 and st["drops_total"] == 0
    assert st["sessions"]["created"] == 8 and st["sessions"]["active"] == 16
    assert st["stages"]["mss_clamp"]["packets"] == 8


def test_replies_are_matched_and_reverse_natted(fw):
    f = fw()
    to_wan, _ = f.send(lan=[lan_syn(i) for i in range(4)])
    replies = [
        wan_frame(
            IP(src="192.0.2.10", dst=SNAT4)
            / TCP(sport=80, dport=p[TCP].sport, flags="SA", options=[("MSS", 1460)])
        )
        for p in to_wan
    ]
    _, to_lan = f.send(wan=replies)
    assert len(to_lan) == 4
    assert sorted(p[TCP].dport for p in to_lan) == [40000, 40001, 40002, 40003]
    for p in to_lan:
        assert p[IP].dst == "10.0.0.2" and p[IP].src == "192.0.2.10"
        assert (p.src, p.dst) == (LAN_MAC, LAN_PEER)
        assert dict(p[TCP].options)["MSS"] == 1400  # SYN-ACK clamped too
    assert f.drops() == {}


def test_unsolicited_inbound_is_dropped_and_counted(fw):
    f = fw()
    unsolicited = [
        wan_frame(IP(src="192.0.2.10", dst=SNAT4) / TCP(sport=80, dport=30000 + i, flags="S"))
        for i in range(5)
    ]
    unsolicited.append(wan_frame(IP(src="192.0.2.10", dst="10.0.0.2") / UDP(sport=1, dport=2)))
    to_wan, to_lan = f.send(wan=unsolicited)
    assert to_wan == [] and to_lan == []
    assert f.drops() == {"policy_denied": 6}
    assert len(f.sessions) == 0


def test_udp_icmp_and_ipv6_through_nat(fw):
    f = fw()
    lan = [
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.3", dst="192.0.2.53")
        / UDP(sport=5353, dport=53)
        / Raw(b"q" * 20),
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.3", dst="192.0.2.1")
        / ICMP(id=77, seq=1)
        / Raw(b"ping"),
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IPv6(src="fd00::2", dst="2001:db8::80", hlim=5)
        / UDP(sport=999, dport=443)
        / Raw(b"v6"),
    ]
    to_wan, _ = f.send(lan=lan)
    assert len(to_wan) == 3
    udp4, icmp4, udp6 = to_wan
    assert udp4[IP].src == SNAT4 and udp4[UDP].dport == 53
    assert icmp4[IP].src == SNAT4 and icmp4[ICMP].id == 77
    assert udp6[IPv6].src == SNAT6 and udp6[IPv6].hlim == 4
    replies = [
        wan_frame(
            IP(src="192.0.2.53", dst=SNAT4) / UDP(sport=53, dport=udp4[UDP].sport) / Raw(b"a" * 30)
        ),
        wan_frame(IP(src="192.0.2.1", dst=SNAT4) / ICMP(type=0, id=77, seq=1) / Raw(b"ping")),
        wan_frame(IPv6(src="2001:db8::80", dst=SNAT6) / UDP(sport=443, dport=udp6[UDP].sport)),
    ]
    _, to_lan = f.send(wan=replies)
    assert len(to_lan) == 3
    assert to_lan[0][IP].dst == "10.0.0.3" and to_lan[0][UDP].dport == 5353
    assert to_lan[1][IP].dst == "10.0.0.3" and to_lan[1][ICMP].type == 0
    assert to_lan[2][IPv6].dst == "fd00::2" and to_lan[2][UDP].dport == 999
    assert f.drops() == {}


def test_ttl_expiry_is_counted(fw):
    f = fw()
    to_wan, _ = f.send(lan=[lan_syn(0, ttl=1), lan_syn(1, ttl=2), lan_syn(2, ttl=0)])
    assert len(to_wan) == 1 and to_wan[0][IP].ttl == 1
    assert f.drops() == {"ttl_expired": 2}


def test_malformed_frames_are_counted_by_reason_while_traffic_continues(fw):
    f = fw()
    good = bytes(lan_syn(0))
    bad = [
        good[:10],  # truncated Ethernet
        good[:20],  # truncated IPv4 header
        bytes(Ether() / Raw(b"\x08\x06" + b"x" * 40))[:14] + b"\x00" * 30,  # ARP-ish: non-IP
        good[:14] + b"\x46" + good[15:],  # IHL 6 → options beyond header: bad
        good[:14] + b"\x55" + good[15:],  # bad version
    ]
    frames = [bad[0], good, bad[1], bad[2], bad[3], bad[4]]
    to_wan, _ = f.send(lan=frames)
    assert len(to_wan) == 1
    drops = f.drops()
    assert sum(drops.values()) == 5
    assert all(k.startswith("parse_error:") for k in drops)
    assert drops["parse_error:trunc_l2"] == 1
    assert drops["parse_error:bad_version"] == 1
    assert f.pipe.stats()["stages"]["parse"]["drops"] == 5


def test_random_garbage_never_breaks_the_worker(fw):
    f = fw()
    rng = np.random.default_rng(7)
    good = bytes(lan_syn(0))
    frames = []
    for n in range(200):
        cut = int(rng.integers(1, len(good)))
        g = bytearray(good[:cut])
        if n % 2:
            g[int(rng.integers(0, cut))] ^= 0xFF
        frames.append(bytes(g))
    frames.append(good)
    f.lan.set_source(batch([]) if False else None)
    f.lan.clear_capture()
    f.lan.set_source(FrameBatch.from_frames(frames))
    f.pipe.run(until_idle=True)
    st = f.pipe.stats()
    assert st["rx_packets"] == 201
    assert st["tx_packets"] + st["drops_total"] == 201
    for out in f.wan.captured():
        assert checksums_ok(out)


def test_session_table_full_is_counted(fw):
    # without early eviction (tests/test_session_pressure.py covers it) new flows are refused
    f = fw(max_sessions=4, early_eviction=False)
    to_wan, _ = f.send(lan=[lan_syn(i) for i in range(5)])
    assert len(to_wan) == 2  # each flow takes a forward and a reverse entry
    assert f.drops() == {"session_table_full": 3}


def test_nat_port_allocation_never_reuses_a_port_in_use(fw):
    f = fw(snat_ports=(20000, 20003))
    to_wan, _ = f.send(lan=[lan_syn(i) for i in range(6)])
    assert sorted(p[TCP].sport for p in to_wan) == [20000, 20001, 20002, 20003]
    assert f.drops() == {"nat_ports_exhausted": 2}


def test_no_route_is_counted(umem_factory):
    u = umem_factory(1024)
    a, b = MemPort(u, None), MemPort(u, None, capture=8)
    rt = RouteTable()
    rt.add("10.1.0.0/16", 0)
    pipe = Pipeline(
        [a, b],
        [ParseStage(), RouteStage(), TtlStage(), L2Stage()],
        routes=rt,
        next_hops=[(1, None, None)],
    )
    a.set_source(batch([lan_syn(0, dst="10.1.2.3"), lan_syn(1, dst="10.2.0.1")]))
    pipe.run(until_idle=True)
    assert len(b.captured()) == 1
    assert pipe.stats()["drops"] == {"no_route": 1}
    pipe.close()


def test_flow_cache_hits_and_route_change_invalidates(fw):
    f = fw()
    f.pipe.set_next_hops([*HOPS, (1, WAN_MAC, "02:00:00:00:00:99")])
    to_wan, _ = f.send(lan=[lan_syn(0)])  # miss: new session, stored after routing
    more, _ = f.send(lan=[lan_syn(0)] * 5)  # the next burst hits
    assert len({p[TCP].sport for p in to_wan + more}) == 1
    fc = f.pipe.stats()["flow_cache"]
    assert fc["hits"] == 5 and fc["insertions"] == 1
    # A more specific route to another next hop (route generation changes): the cached
    # decision must not be used.
    f.routes.add("192.0.2.0/24", 2)
    to_wan, _ = f.send(lan=[lan_syn(0)] * 3)
    assert {p.dst for p in to_wan} == {"02:00:00:00:00:99"}
    fc = f.pipe.stats()["flow_cache"]
    assert fc["stale"] == 1 and fc["hits"] == 5
    to_wan, _ = f.send(lan=[lan_syn(0)])  # re-cached under the new generation
    assert to_wan[0].dst == "02:00:00:00:00:99"
    assert f.pipe.stats()["flow_cache"]["hits"] == 6


def test_flow_cache_never_serves_a_deleted_or_expired_session(fw):
    f = fw(udp_timeout_s=5)
    syn = lan_syn(0)
    to_wan, _ = f.send(lan=[syn])
    f.send(lan=[syn])
    nat_port = to_wan[0][TCP].sport
    assert f.pipe.stats()["flow_cache"]["hits"] == 1
    reply = wan_frame(IP(src="192.0.2.10", dst=SNAT4) / TCP(sport=80, dport=nat_port, flags="A"))
    _, to_lan = f.send(wan=[reply])
    assert len(to_lan) == 1
    # Delete the forward session: the cached entry must not be served for it.
    key = make_key("10.0.0.2", "192.0.2.10", 40000, 80, 6)
    assert f.sessions.delete(key)
    to_wan, _ = f.send(lan=[syn])
    assert len(to_wan) == 1
    fc = f.pipe.stats()["flow_cache"]
    assert fc["stale"] >= 1 and fc["hits"] == 1  # a fresh session, not the cache
    # Expiry driven by the loop clock: UDP flow idle past its timeout is gone for good.
    udp = (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.2", dst="192.0.2.10")
        / UDP(sport=7, dport=7)
    )
    t0 = time.monotonic_ns() + 10**9
    f.send(lan=[udp], now_ns=t0)
    f.send(lan=[udp], now_ns=t0)
    assert f.pipe.stats()["flow_cache"]["hits"] == 2
    f.send(lan=[], now_ns=t0 + 7 * 10**9)
    after = f.pipe.stats()
    assert after["sessions"]["expired"] >= 2
    udp_reply = wan_frame(IP(src="192.0.2.10", dst=SNAT4) / UDP(sport=7, dport=20000))
    _, to_lan = f.send(wan=[udp_reply], now_ns=t0 + 8 * 10**9)
    assert to_lan == []
    assert f.drops()["policy_denied"] >= 1


def test_backpressure_with_a_small_tx_ring_conserves_frames(umem_factory):
    u = umem_factory(4096)
    a, c = MemPort(u, None, ring_size=64), MemPort(u, None, ring_size=64)
    b = MemPort(u, None, capture=16, ring_size=32)  # TX accepts at most 32 per call
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    pipe = Pipeline(
        [a, c, b],
        [ParseStage(), RouteStage()],
        routes=rt,
        next_hops=[(2, None, None)],
        burst_size=64,
        tx_queue=64,
    )
    a.set_source(batch([lan_syn(i) for i in range(200)]))
    c.set_source(batch([lan_syn(i) for i in range(200)]))
    pipe.poll()
    # Two full bursts for one egress queue of 64 whose ring takes 32 per call: the queue
    # keeps what the ring refused (still held) and drops only what does not fit.
    u.check_frames()
    pipe.run(until_idle=True)
    st = pipe.stats()
    assert st["rx_packets"] == 400
    dropped = st["drops"].get("tx_ring_full_dropped", 0)
    assert dropped > 0 and st["tx_packets"] + dropped == 400
    assert set(st["drops"]) == {"tx_ring_full_dropped"}
    assert len(b.captured()) == 16 and b.stats()["capture_dropped"] == st["tx_packets"] - 16
    assert b.stats()["tx_ring_full"] > 0
    u.check_frames()
    pipe.close()
    u.check_frames()


def test_user_stage_sets_verdicts_and_rewrites_frames(fw, umem_factory):
    u = umem_factory(1024)
    a, b = MemPort(u, None), MemPort(u, None, capture=16)
    seen = []

    def mark(burst):
        seen.append(burst.n)
        for i in range(burst.n):
            if burst.meta["dport"][i] == 81:
                burst.verdict[i] = -1
            else:
                burst.frame(i)[-1] = 0x5A  # rewrite the last payload byte
                burst.verdict[i] = 1

    pipe = Pipeline([a, b], [ParseStage(), PyStage(mark), CountStage()])
    frames = [lan_syn(0) / Raw(b"x"), (lan_syn(1) / Raw(b"x"))]
    frames[1][TCP].dport = 81
    a.set_source(batch(frames))
    pipe.run(until_idle=True)
    out = b.captured()
    assert seen == [2] and len(out) == 1 and out[0][-1] == 0x5A
    st = pipe.stats()
    assert st["drops"] == {"user_drop": 1} and st["stages"]["mark"] == {"packets": 2, "drops": 1}
    pipe.close()


def test_user_stage_exception_stops_the_worker_and_is_reported(umem_factory):
    u = umem_factory(1024)
    a, b = MemPort(u, None), MemPort(u, None, capture=16)

    def boom(burst):
        raise KeyError("bad stage")

    pipe = Pipeline([a, b], [ParseStage(), PyStage(boom)])
    a.set_source(batch([lan_syn(0)] * 3))
    with pytest.raises(RuntimeError, match="bad stage"):
        pipe.run(seconds=1.0)
    assert isinstance(pipe.error, KeyError)
    assert pipe.stats()["drops"] == {"user_error": 3}
    pipe.close()


def test_ports_are_polled_in_rotation(umem_factory):
    u = umem_factory(4096)
    a, b, c = (MemPort(u, batch([lan_syn(i)] * 64), loop=True, ring_size=64) for i in range(3))
    sink = MemPort(u, None)
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    pipe = Pipeline(
        [a, b, c, sink],
        [ParseStage(), RouteStage()],
        routes=rt,
        next_hops=[(3, None, None)],
        burst_size=16,
    )
    for _ in range(30):
        pipe.poll()
    rx = [p.stats()["rx_packets"] for p in (a, b, c)]
    assert rx == [480, 480, 480]
    pipe.close()


def test_bad_configuration_is_refused(umem_factory):
    u = umem_factory(1024)
    a = MemPort(u, None)
    with pytest.raises(ValueError, match="RouteStage needs 'routes'"):
        Pipeline([a], [ParseStage(), RouteStage()])
    with pytest.raises(TypeError, match="PyStage"):
        Pipeline([a], [lambda b: None])
    with pytest.raises(ValueError, match="port 3 out of range"):
        Pipeline([a], [], next_hops=[(3, None, None)])
    with pytest.raises(ValueError, match="burst_size"):
        Pipeline([a], [], burst_size=0)
    with pytest.raises(ValueError, match="twice"):
        Pipeline([a, a], [])
    with pytest.raises(ValueError, match="MAC"):
        Pipeline([a], [], next_hops=[(0, "02:00", "02:00:00:00:00:01")])


def test_drop_reason_names_are_unique():
    assert len(set(DROP_REASONS)) == len(DROP_REASONS)


def _frame_strategy():
    from hypothesis import strategies as st

    good = st.sampled_from(
        [
            bytes(lan_syn(0)),
            bytes(lan_syn(1, ttl=1)),
            bytes(
                Ether(src=LAN_PEER, dst=LAN_MAC)
                / IP(src="10.0.0.9", dst="192.0.2.7")
                / UDP(sport=5, dport=6)
            ),
            bytes(
                Ether(src=LAN_PEER, dst=LAN_MAC)
                / IPv6(src="fd00::9", dst="2001:db8::1")
                / TCP(sport=5, dport=6, flags="S", options=[("MSS", 1440)])
            ),
            bytes(wan_frame(IP(src="192.0.2.10", dst=SNAT4) / TCP(sport=80, dport=20000))),
        ]
    )
    return st.tuples(good, st.integers(0, 200), st.integers(0, 255), st.booleans()).map(
        lambda t: t[0][: max(1, len(t[0]) - t[1] % 40)] if t[3] else t[0]
    )


def test_any_mix_of_frames_is_conserved_and_checksummed(umem_factory):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    u = umem_factory(4096)

    @settings(max_examples=40, deadline=None)
    @given(st.lists(_frame_strategy(), max_size=150), st.lists(_frame_strategy(), max_size=150))
    def check(lan_frames, wan_frames):
        f = Firewall(u)
        try:
            to_wan, to_lan = f.send(lan=lan_frames, wan=wan_frames)  # checksums checked
            st_ = f.pipe.stats()
            assert st_["rx_packets"] == len(lan_frames) + len(wan_frames)
            assert st_["tx_packets"] + st_["drops_total"] == st_["rx_packets"]
            assert len(to_wan) + len(to_lan) == st_["tx_packets"]
            for p in to_wan:
                if p.haslayer(IP):
                    assert p[IP].src == SNAT4
            f.sessions.check_invariants()
        finally:
            f.close()
            f.lan.close()
            f.wan.close()
        u.check_frames()

    check()


def test_dnat_port_forward_and_its_replies(fw):
    f = fw()
    f.pipe.stages[1].add_dnat(1, 6, 8080, "10.0.0.5", 80)
    syn = wan_frame(IP(src="203.0.113.9", dst=SNAT4) / TCP(sport=5555, dport=8080, flags="S"))
    other = wan_frame(IP(src="203.0.113.9", dst=SNAT4) / TCP(sport=5555, dport=8081, flags="S"))
    _, to_lan = f.send(wan=[syn, other])
    assert len(to_lan) == 1
    p = to_lan[0]
    assert (p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport) == (
        "203.0.113.9",
        "10.0.0.5",
        5555,
        80,
    )
    assert f.drops() == {"policy_denied": 1}
    reply = (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.5", dst="203.0.113.9")
        / TCP(sport=80, dport=5555, flags="SA")
    )
    to_wan, _ = f.send(lan=[reply])
    assert len(to_wan) == 1
    q = to_wan[0]
    assert (q[IP].src, q[IP].dst, q[TCP].sport, q[TCP].dport) == (SNAT4, "203.0.113.9", 8080, 5555)
    with pytest.raises(ValueError, match="dport"):
        f.pipe.stages[1].add_dnat(1, 6, 0, "10.0.0.5")


def test_flow_cache_hits_keep_the_session_alive(fw):
    f = fw(udp_timeout_s=5)
    udp = (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.2", dst="192.0.2.10")
        / UDP(sport=9, dport=9)
    )
    t0 = time.monotonic_ns() + 10**9
    for k in range(6):  # a packet every 2 s for 10 s, past twice the 5 s timeout
        to_wan, _ = f.send(lan=[udp], now_ns=t0 + k * 2 * 10**9)
        assert len(to_wan) == 1
    st = f.pipe.stats()
    # The forward entry stays alive; each direction has its own idle timer
    # (SessionTable semantics), so the never-used reply entry expired.
    assert st["flow_cache"]["hits"] == 5 and st["sessions"]["expired"] == 1
    assert st["sessions"]["created"] == 1 and len(f.sessions) == 1
    f.send(now_ns=t0 + 17 * 10**9)  # idle 7 s: now the forward entry expires too
    assert f.pipe.stats()["sessions"]["expired"] == 2
    assert len(f.sessions) == 0


def test_a_user_stage_cannot_lose_frames_by_editing_the_arrays(umem_factory):
    u = umem_factory(1024)
    a, b = MemPort(u, None), MemPort(u, None, capture=16)

    def vandal(burst):
        burst.desc["addr"][0] = 12345  # not a frame we hold
        burst.desc["len"][1] = 10**6  # past the frame
        burst.desc["len"][2] = 40  # a legal truncation: kept
        burst.verdict[:] = 1
        burst.n = 0

    pipe = Pipeline([a, b], [ParseStage(), PyStage(vandal)])
    a.set_source(batch([lan_syn(i) for i in range(3)]))
    pipe.run(until_idle=True)
    out = b.captured()
    assert [len(x) for x in out] == [len(bytes(lan_syn(0)))] * 2 + [40]
    pipe.close()
    u.check_frames()


def test_ipv6_syn_is_clamped_to_the_ipv6_mss(fw):
    f = fw(mss=1400)
    syn6 = (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IPv6(src="fd00::2", dst="2001:db8::80")
        / TCP(
            sport=1234, dport=443, flags="S", options=[("MSS", 1440), ("NOP", None), ("WScale", 7)]
        )
    )
    to_wan, _ = f.send(lan=[syn6])
    assert len(to_wan) == 1
    p = to_wan[0]
    assert p[IPv6].src == SNAT6 and p[IPv6].hlim == 63
    assert dict(p[TCP].options)["MSS"] == 1380  # mss_v6 defaults to mss_v4 - 20
