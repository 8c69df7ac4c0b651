"""SessionTable under pressure: absurd and backward clocks (expiry never stalls) and a full
table (early eviction of unreplied flows, like Linux conntrack's early_drop), on the table
alone and in a firewall pipeline flooded with new flows (docs/sessions.md)."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.all import IP, TCP, UDP, Ether
from test_pipeline import LAN_MAC, LAN_PEER, SNAT4, WAN_MAC, WAN_PEER, Firewall, batch

from xpfdp.csum import checksums_ok
from xpfdp.session import (
    KEY_DTYPE,
    MAX_TIME_NS,
    META_DTYPE,
    Origin,
    SessionTable,
    make_decision,
    make_key,
    reverse_wire,
)

S = 1_000_000_000


def table(**kw):
    kw.setdefault("hash_seed", 4321)
    return SessionTable(**kw)


def udp_key(i, src="10.0.0.2"):
    return make_key(src, "192.0.2.10", 1024 + i, 53, proto=17)


# ------------------------------------------------------------------ time


@pytest.mark.parametrize("bad", [2**63, MAX_TIME_NS + 1, -1, 1.5])
def test_absurd_timestamps_are_refused_by_every_entry_point(bad):
    t = table()
    key = udp_key(0)
    calls = [
        lambda: t.expire(bad),
        lambda: t.install(key, now_ns=bad),
        lambda: t.install_pair(key, now_ns=bad),
        lambda: t.lookup(key, bad),
        lambda: t.touch(key, bad),
        lambda: t.upsert_synced(key, now_ns=bad),
        lambda: t.lookup_batch(key.reshape(1), bad),
    ]
    for call in calls:
        with pytest.raises((ValueError, TypeError)):
            call()
    assert len(t) == 0 and t.wheel_cursor_tick is None


def test_expiry_works_after_a_jump_to_the_largest_time_and_back():
    """Issue 10: one expire() far in the future used to stop all later expiry."""
    t = table(udp_timeout_s=60)
    t.install(udp_key(0), now_ns=10 * S)
    assert len(t.expire(MAX_TIME_NS)) == 1  # idle for 146 years: gone
    t.install(udp_key(1), now_ns=20 * S)  # the clock is back to normal
    assert len(t.expire(50 * S)) == 0
    out = t.expire(81 * S)
    assert len(out) == 1 and out[0]["key"].tobytes() == udp_key(1).tobytes()
    t.check_invariants()


def test_backward_clock_step_does_not_stall_expiry():
    """A session seen 'in the future' counts as seen when the step is noticed; one seen
    after the step expires on the new clock, not after the old high point."""
    t = table(udp_timeout_s=60)
    t.install(udp_key(0), now_ns=1000 * S)
    assert len(t.expire(1001 * S)) == 0
    t.install(udp_key(1), now_ns=10 * S)  # the clock stepped back ~990 s
    assert len(t.expire(11 * S)) == 0  # runs at once (not gated by the old high point)
    assert t.wheel_cursor_tick == 11
    assert t.entry(udp_key(0))["last_seen_ns"] == 11 * S
    t.check_invariants()
    assert len(t.expire(69 * S)) == 0
    out = t.expire(80 * S)
    assert sorted(int(k["sport"]) for k in out["key"]) == [1024, 1025]
    assert len(t) == 0
    t.check_invariants()


def test_repeated_backward_steps_keep_expiring():
    t = table(udp_timeout_s=5)
    now = 500 * S
    for step in range(20):
        t.install(udp_key(step), now_ns=now)
        t.expire(now)
        now = now - 3 * S if step % 2 else now + 11 * S
    t.expire(now + 20 * S)
    assert len(t) == 0
    t.check_invariants()


# ------------------------------------------------------------------ early eviction


def _install_flows(t, n, now_ns, first=0):
    """n new UDP flows (forward + reverse entry each) from distinct source ports."""
    keys = np.zeros(n, KEY_DTYPE)
    keys[:] = udp_key(0)
    keys["sport"] = (np.arange(first, first + n) % 60000) + 1024
    keys["src"][:, 3] = 2 + (np.arange(first, first + n) // 60000)
    fwd, rev = t.install_pair_batch(
        keys, np.repeat(make_decision().reshape(1), n), np.zeros(n, META_DTYPE), now_ns
    )
    return keys, fwd, rev


def test_full_table_evicts_the_oldest_unreplied_flow_first():
    t = table(max_sessions=20)
    keys, fwd, rev = _install_flows(t, 10, 1 * S)
    assert (fwd >= 0).all() and (rev >= 0).all() and len(t) == 20
    # flow 0 is established (its reply was seen), flows 1..9 are not
    reply0 = reverse_wire(keys[:1], np.repeat(make_decision().reshape(1), 1))
    assert t.lookup(reply0, 2 * S) == rev[0]
    assert t.records([rev[0]])[0]["replied"] == 1
    _more, f2, r2 = _install_flows(t, 3, 3 * S, first=100)
    assert (f2 >= 0).all() and (r2 >= 0).all() and len(t) == 20
    st = t.stats()
    assert st["evictions"] == 6 and st["create_drops"] == 0
    alive = [k in t for k in keys]
    assert alive[0]  # the established flow stays
    assert alive.count(False) == 3  # three unreplied flows made room, pair by pair
    assert all(r == -1 for r in t.records(fwd[~np.array(alive)])["handle"])
    t.check_invariants()


def test_nothing_evictable_means_refusal():
    t = table(max_sessions=4)
    keys, _fwd, _rev = _install_flows(t, 2, S)
    dec = np.repeat(make_decision().reshape(1), 2)
    assert t.lookup_batch(reverse_wire(keys, dec), 2 * S, np.empty(2, np.int64)) == 2
    _, f2, r2 = _install_flows(t, 1, 3 * S, first=50)
    assert f2[0] == -1 and r2[0] == -1
    st = t.stats()
    assert st["create_drops"] == 2 and st["evictions"] == 0 and len(t) == 4
    # synced and local-miss entries are never evicted either
    t2 = table(max_sessions=2, early_eviction=True)
    t2.upsert_synced(udp_key(1), now_ns=S)
    t2.install(udp_key(2), now_ns=S, origin=Origin.LOCAL_MISS)
    assert t2.install(udp_key(3), now_ns=S) == -1 and t2.stats()["evictions"] == 0
    # and eviction can be switched off
    t3 = table(max_sessions=2, early_eviction=False)
    _install_flows(t3, 1, S)
    assert _install_flows(t3, 1, S, first=9)[1][0] == -1 and t3.stats()["evictions"] == 0


def test_new_flow_flood_on_a_small_table_keeps_established_flows():
    """Tens of thousands of new flows through a 1000-entry table: every one gets in (the
    oldest unreplied flows make room), the replied ones all stay, invariants hold."""
    t = table(max_sessions=1000)
    keys, _fwd, _rev = _install_flows(t, 50, 1 * S)
    dec = np.repeat(make_decision().reshape(1), 50)
    replies = reverse_wire(keys, dec)
    now = 2 * S
    admitted = 0
    for burst in range(100):
        now += S // 4
        _, f, r = _install_flows(t, 300, now, first=1000 + burst * 300)
        admitted += int((f >= 0).sum())
        assert (f >= 0).all() and (r >= 0).all()
        # the established flows keep being served in both directions
        assert t.lookup_batch(replies, now, np.empty(50, np.int64)) == 50
        assert t.lookup_batch(keys, now, np.empty(50, np.int64)) == 50
        t.expire(now)
    assert admitted == 30000 and len(t) == 1000
    assert t.stats()["evictions"] == 2 * (30000 - 450)  # 450 flows fit before the first
    assert t.stats()["create_drops"] == 0
    t.check_invariants()


# ------------------------------------------------------------------ in the firewall


def udp_frame(sport: int) -> bytes:
    """A LAN → WAN UDP frame without a UDP checksum (0 is valid for IPv4)."""
    f = (
        Ether(src=LAN_PEER, dst=LAN_MAC)
        / IP(src="10.0.0.2", dst="192.0.2.99")
        / UDP(sport=sport, dport=5353, chksum=0)
    )
    return bytes(f)


def test_firewall_flood_of_new_flows_keeps_the_established_flow(umem_factory):
    """30 simulated seconds of 1000 new UDP flows per second through a firewall whose table
    holds 512 entries, while one established TCP flow sends a packet each way every 100 ms:
    every established packet is forwarded (NAT both ways), no new flow is refused."""
    f = Firewall(umem_factory(4096), max_sessions=512)
    try:
        now = 10 * S
        syn = (
            Ether(src=LAN_PEER, dst=LAN_MAC)
            / IP(src="10.0.0.2", dst="192.0.2.10")
            / TCP(sport=41000, dport=443, flags="S")
        )
        out, _ = f.send(lan=[syn], now_ns=now)
        nat_port = out[0][TCP].sport
        synack = (
            Ether(src=WAN_PEER, dst=WAN_MAC)
            / IP(src="192.0.2.10", dst=SNAT4)
            / TCP(sport=443, dport=nat_port, flags="SA")
        )
        ack = syn.copy()
        ack[TCP].flags = "A"
        reply = synack.copy()
        reply[TCP].flags = "A"
        _, back = f.send(wan=[synack], now_ns=now)
        assert len(back) == 1
        ack, reply = bytes(ack), bytes(reply)
        template = udp_frame(0)
        sport = 1024
        for tick in range(300):  # 100 ms each
            now += S // 10
            flood = []
            for _ in range(100):
                flood.append(template[:34] + sport.to_bytes(2, "big") + template[36:])
                sport += 1
            # raw frames (Firewall.send would parse every one with scapy): only the
            # established flow's two packets are decoded
            f.wan.clear_capture()
            f.lan.clear_capture()
            f.lan.set_source(batch([ack, *flood]))
            f.wan.set_source(batch([reply]))
            while f.pipe.poll(now_ns=now):
                pass
            to_wan, to_lan = f.wan.captured(), f.lan.captured()
            assert len(to_wan) == 101 and len(to_lan) == 1, tick
            mine = [p for p in to_wan if p[23] == 6]  # IPv4 protocol byte: TCP
            assert len(mine) == 1 and Ether(mine[0])[TCP].sport == nat_port, tick
            assert Ether(to_lan[0])[TCP].dport == 41000, tick
            assert checksums_ok(mine[0]) and checksums_ok(to_lan[0])
        st = f.pipe.stats()
        assert st["drops"].get("session_table_full", 0) == 0
        assert st["sessions"]["created"] == 30001
        assert st["sessions"]["evicted"] == 2 * (30000 - 255)  # 255 flows fit beside it
        assert st["sessions"]["active"] == 512
        f.sessions.check_invariants()
    finally:
        f.close()


def test_firewall_expiry_survives_an_absurd_poll_clock(umem_factory):
    """The pipeline hands its clock to the table unchecked: a poll at 2**63 ns, then the
    clock back to normal, and every session still expires on time."""
    f = Firewall(umem_factory(4096))
    try:
        out, _ = f.send(lan=[udp_frame(2000)], now_ns=2**63)
        assert len(out) == 1 and len(f.sessions) == 2
        out, _ = f.send(lan=[udp_frame(2001)], now_ns=100 * S)
        assert len(out) == 1 and len(f.sessions) == 4
        f.send(now_ns=102 * S)  # the step back is noticed: the first flow counts as seen now
        assert len(f.sessions) == 4
        f.send(now_ns=170 * S)  # both are idle past the 60 s UDP timeout
        f.send(now_ns=175 * S)
        assert len(f.sessions) == 0 and f.pipe.stats()["sessions"]["expired"] == 4
        f.sessions.check_invariants()
    finally:
        f.close()
