"""State sync between firewalls: a running firewall's sessions, read through its DeltaFeed,
are imported by a second firewall, which then forwards the established flows both ways
(NAT kept, replies translated back) without creating a session (docs/sessions.md)."""

from __future__ import annotations

import time

import numpy as np
from scapy.all import IP, TCP, UDP, Ether
from test_pipeline import LAN_MAC, LAN_PEER, SNAT4, WAN_MAC, WAN_PEER, Firewall

from xpfdp.session import DeltaKind

S = 1_000_000_000
SERVER = "192.0.2.10"


def lan_tcp(i, flags):
    return (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.2", dst=SERVER)
        / TCP(sport=42000 + i, dport=443, flags=flags)
    )


def lan_udp(i):
    return (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.2", dst=SERVER)
        / UDP(sport=43000 + i, dport=53)
    )


def wan_reply(l4):
    return Ether(src=WAN_PEER, dst=WAN_MAC) / IP(src=SERVER, dst=SNAT4) / l4


def test_standby_firewall_forwards_established_flows_from_synced_deltas(umem_factory):
    active = Firewall(umem_factory(4096))
    standby = Firewall(umem_factory(4096))
    try:
        feed = active.sessions.subscribe_deltas()
        # 8 TCP and 8 UDP flows open through the active firewall and get their replies
        to_wan, _ = active.send(
            lan=[lan_tcp(i, "S") for i in range(8)] + [lan_udp(i) for i in range(8)]
        )
        assert len(to_wan) == 16
        nat = {}
        for p in to_wan:
            l4 = p[TCP] if TCP in p else p[UDP]
            nat[(p[IP].proto, l4.sport)] = l4
        replies = [
            wan_reply(TCP(sport=443, dport=l4.sport, flags="SA")) if proto == 6 else
            wan_reply(UDP(sport=53, dport=l4.sport))
            for (proto, _), l4 in nat.items()
        ]  # fmt: skip
        _, to_lan = active.send(wan=replies)
        assert len(to_lan) == 16

        now = time.monotonic_ns()
        imported = 0
        for batch in feed:  # what a sync consumer does: drain, ship, apply
            assert set(batch["kind"].tolist()) == {DeltaKind.OPEN}
            assert set(batch["reverse_egress_port"].tolist()) == {0}  # replies go to the LAN
            imported += standby.sessions.apply_deltas(batch, now)
        assert imported == 32
        assert len(standby.sessions) == len(active.sessions) == 32
        standby.sessions.check_invariants()

        # failover: the standby sees the rest of each flow, in both directions
        to_wan, _ = standby.send(
            lan=[lan_tcp(i, "A") for i in range(8)] + [lan_udp(i) for i in range(8)]
        )
        assert len(to_wan) == 16
        for p in to_wan:
            l4 = p[TCP] if TCP in p else p[UDP]
            assert p[IP].src == SNAT4 and (p[IP].proto, l4.sport) in nat
        _, to_lan = standby.send(wan=replies)
        assert len(to_lan) == 16
        for p in to_lan:
            l4 = p[TCP] if TCP in p else p[UDP]
            assert p[IP].dst == "10.0.0.2" and p[IP].src == SERVER
            assert l4.dport in {42000 + i for i in range(8)} | {43000 + i for i in range(8)}
        st = standby.pipe.stats()
        assert st["sessions"]["created"] == 0 and not st["drops"]
        assert len(standby.sessions) == 32

        # when the active's sessions expire, the Close deltas remove the standby's copies
        active.sessions.expire(now + 400 * S)
        closes = np.concatenate(list(feed))  # (apply_deltas takes concatenated batches too)
        assert len(closes) == 16 and set(closes["kind"].tolist()) == {DeltaKind.CLOSE}
        assert standby.sessions.apply_deltas(closes, now + 400 * S) == 32
        assert len(standby.sessions) == 0
        feed.close()
    finally:
        active.close()
        standby.close()


def test_export_deltas_snapshot_of_a_running_firewall(umem_factory):
    """A standby that starts late takes a snapshot (export_deltas) instead of the feed."""
    active = Firewall(umem_factory(4096))
    standby = Firewall(umem_factory(4096))
    try:
        to_wan, _ = active.send(lan=[lan_tcp(i, "S") for i in range(4)])
        assert active.sessions.stats()["deltas_pending"] == 0  # no feed: nothing queued
        snapshot = active.sessions.export_deltas()
        assert len(snapshot) == 4
        assert standby.sessions.apply_deltas(snapshot, time.monotonic_ns()) == 8
        replies = [wan_reply(TCP(sport=443, dport=p[TCP].sport, flags="SA")) for p in to_wan]
        _, to_lan = standby.send(wan=replies)
        assert sorted(p[TCP].dport for p in to_lan) == [42000, 42001, 42002, 42003]
        assert standby.pipe.stats()["sessions"]["created"] == 0
    finally:
        active.close()
        standby.close()
