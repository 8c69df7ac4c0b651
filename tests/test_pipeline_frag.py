"""Fragments through the NAT firewall on MemPort: datagrams fragmented by scapy go through
SNAT (and their replies through un-NAT) in order, reversed and interleaved, IPv4 and IPv6,
and reassemble into the translated datagram with every checksum right by full
recomputation; held fragments time out, limits drop, frames are conserved."""

from __future__ import annotations

import os

import csum_reference
import pytest
from frag_reference import reassemble
from scapy.all import IP, UDP, Ether, IPv6, IPv6ExtHdrFragment, Raw, fragment, fragment6
from test_pipeline import LAN_MAC, LAN_PEER, SNAT4, SNAT6, Firewall, wan_frame

from xpfdp.frag import FragTable
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import ParseStage, Pipeline, RouteStage
from xpfdp.ports import MemPort
from xpfdp.route import RouteTable

S = 1_000_000_000
CLIENT4, SERVER4 = "10.0.0.2", "192.0.2.10"
CLIENT6, SERVER6 = "fd00::2", "2001:db8:2::10"


@pytest.fixture
def fw(umem_factory):
    made = []

    def make(**kw):
        f = Firewall(umem_factory(4096), mss=None, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def udp_fragments(family, src, dst, sport, dport, payload, ident, size=1400):
    """A UDP datagram fragmented by scapy, as L3 packets (checksum over the whole)."""
    if family == 4:
        dg = IP(src=src, dst=dst, id=ident) / UDP(sport=sport, dport=dport) / Raw(payload)
        return fragment(dg, fragsize=size)
    dg = (
        IPv6(src=src, dst=dst)
        / IPv6ExtHdrFragment(id=ident)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
    )
    return fragment6(dg, size + 48)


def lan_frames(l3s):
    return [Ether(src=LAN_PEER, dst=LAN_MAC) / p for p in l3s]


def datagram_of(frames):
    """The reassembled datagram as scapy, after checking every checksum by recomputation."""
    whole = reassemble([bytes(f) for f in frames])
    assert csum_reference.checksums_ok(whole)
    return Ether(whole)


def addrs(family):
    return (CLIENT4, SERVER4, SNAT4) if family == 4 else (CLIENT6, SERVER6, SNAT6)


ORDERS = {
    "in_order": lambda fs: fs,
    "reversed": lambda fs: fs[::-1],
    "first_last": lambda fs: fs[1:] + fs[:1],
}


@pytest.mark.parametrize(
    ("order", "burst"),
    [("in_order", 64), ("reversed", 64), ("reversed", 1), ("first_last", 1)],
)
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("size", [3000, 8000])
def test_datagram_through_snat_and_its_reply_reassemble_exactly(fw, family, order, size, burst):
    """Within one burst, later fragments are resolved after the burst's first fragments;
    across bursts (burst size 1), those ahead of their first are held, then re-run."""
    f = fw(burst_size=burst)
    client, server, snat = addrs(family)
    up = os.urandom(size)
    frags = udp_fragments(family, client, server, 40000, 5353, up, ident=0x1234)
    assert csum_reference.checksums_ok(reassemble([bytes(Ether() / p) for p in frags]))
    to_wan, to_lan = f.send(lan=lan_frames(ORDERS[order](list(frags))))
    assert to_lan == [] and len(to_wan) == len(frags)
    ip = IP if family == 4 else IPv6
    assert all(p[ip].src == snat and p[ip].dst == server for p in to_wan)
    out = datagram_of(to_wan)
    assert out[UDP].dport == 5353 and out[UDP].sport != 40000  # port allocated by SNAT
    assert bytes(out[UDP].payload) == up
    nat_port = out[UDP].sport

    # The server's reply, fragmented too, is un-NATed fragment by fragment.
    down = os.urandom(size)
    reply = udp_fragments(family, server, snat, 5353, nat_port, down, ident=0x4321)
    to_wan, to_lan = f.send(wan=[wan_frame(p) for p in ORDERS[order](list(reply))])
    assert to_wan == [] and len(to_lan) == len(reply)
    back = datagram_of(to_lan)
    assert (back[ip].src, back[ip].dst) == (server, client)
    assert (back[UDP].sport, back[UDP].dport) == (5353, 40000)
    assert bytes(back[UDP].payload) == down

    stats = f.pipe.stats()
    assert not stats["drops"]
    fr = stats["fragments"]
    later = len(frags) - 1 + len(reply) - 1
    assert fr["recorded"] == 2 and fr["translated"] == later
    early = 0 if order == "in_order" or burst > 1 else later
    assert fr["held"] == fr["released"] == early
    assert fr["completed"] == 2 and fr["entries"] == 0 and fr["held_frames"] == 0


def test_interleaved_datagrams_of_two_flows_each_take_their_own_translation(fw):
    f = fw()
    a = udp_fragments(4, CLIENT4, SERVER4, 40001, 53, b"a" * 3000, ident=7)
    b = udp_fragments(4, "10.0.0.3", SERVER4, 40001, 53, b"b" * 3000, ident=7)
    mixed = [b[2], a[1], b[0], a[2], b[1], a[0]]
    to_wan, _ = f.send(lan=lan_frames(mixed))
    assert len(to_wan) == 6
    by_port = {}
    for p in to_wan:
        by_port.setdefault(p[IP].id, []).append(p)
    assert list(by_port) == [7]  # same ID: told apart by source address before NAT
    firsts = [p for p in to_wan if p[IP].frag == 0]
    ports = {p[UDP].sport for p in firsts}
    assert len(ports) == 2
    # Group by the payload byte each datagram carries, then reassemble each.
    groups = {b"a": [], b"b": []}
    for p in to_wan:
        groups[bytes(p[IP].payload)[-1:]].append(p)
    for byte, frames in groups.items():
        out = datagram_of(frames)
        assert bytes(out[UDP].payload) == byte * 3000
    assert not f.drops()


def test_early_fragment_whose_first_never_comes_times_out_like_linux(fw):
    f = fw()
    frags = udp_fragments(4, CLIENT4, SERVER4, 40000, 53, b"z" * 3000, ident=99)
    to_wan, _ = f.send(lan=lan_frames(frags[1:]), now_ns=1 * S)
    assert to_wan == []
    assert f.pipe.stats()["fragments"]["held_frames"] == 2
    f.send(now_ns=1 * S + 30 * S - 1)
    assert f.pipe.stats()["fragments"]["held_frames"] == 2
    f.send(now_ns=31 * S)
    st = f.pipe.stats()
    assert st["drops"] == {"frag_timeout": 2}
    assert st["fragments"]["timed_out"] == 2 and st["fragments"]["entries"] == 0


def test_unsolicited_wan_fragments_are_never_forwarded(fw):
    f = fw()
    frags = udp_fragments(4, SERVER4, SNAT4, 53, 33333, b"q" * 3000, ident=5)
    to_wan, to_lan = f.send(wan=[wan_frame(p) for p in frags], now_ns=S)
    assert to_lan == [] and to_wan == []
    f.send(now_ns=40 * S)
    assert f.drops() == {"policy_denied": 1, "frag_timeout": 2}


def test_limits_drop_with_a_reason_and_close_returns_held_frames(fw):
    f = fw(fragments=FragTable(max_entries=2, max_held_frames=1))
    a = udp_fragments(4, CLIENT4, SERVER4, 40000, 53, b"1" * 3000, ident=1)
    b = udp_fragments(4, CLIENT4, SERVER4, 40001, 53, b"2" * 3000, ident=2)
    c = udp_fragments(4, CLIENT4, SERVER4, 40002, 53, b"3" * 3000, ident=3)
    to_wan, _ = f.send(lan=lan_frames([a[2], a[1], b[1]]), now_ns=S)
    assert to_wan == []
    assert f.drops() == {"frag_limit": 2}  # one frame may be held, not three
    # Two entries: a's (holding a[2]) and c's first; a third datagram's first is refused.
    to_wan, _ = f.send(lan=lan_frames([c[0], b[0]]), now_ns=S)
    assert len(to_wan) == 1 and to_wan[0][UDP].dport == 53
    assert f.drops() == {"frag_limit": 3}
    f.pipe.close()
    assert f.drops() == {"frag_limit": 3, "shutdown": 1}


def test_later_fragment_of_an_ended_session_is_dropped(fw):
    f = fw(fragments=FragTable(timeout_s=600), udp_timeout_s=60)
    frags = udp_fragments(4, CLIENT4, SERVER4, 40000, 53, b"s" * 3000, ident=11)
    to_wan, _ = f.send(lan=lan_frames(frags[:1]), now_ns=S)
    assert len(to_wan) == 1
    f.send(now_ns=200 * S)  # the UDP session expires
    assert f.pipe.stats()["sessions"]["active"] == 0
    to_wan, _ = f.send(lan=lan_frames(frags[1:]), now_ns=201 * S)
    assert to_wan == [] and f.drops() == {"frag_session_gone": 2}


def test_router_without_sessions_forwards_later_fragments(umem_factory):
    umem = umem_factory(1024)
    frags = udp_fragments(6, CLIENT6, SERVER6, 1, 2, b"r" * 3000, ident=3)
    src = MemPort(umem, None)
    dst = MemPort(umem, None, capture=8)
    src.set_source(FrameBatch.from_frames([bytes(p) for p in lan_frames(frags)]))
    rt = RouteTable()
    rt.add("::/0", 0)
    pipe = Pipeline(
        [src, dst], [ParseStage(), RouteStage()], routes=rt, next_hops=[(1, None, None)]
    )
    assert pipe.fragments is None
    pipe.run(until_idle=True)
    assert bytes(datagram_of([Ether(x) for x in dst.captured()])[UDP].payload) == b"r" * 3000
    pipe.close()
