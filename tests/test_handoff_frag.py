"""Fragments through the NAT with several workers, on in-memory ports (no root).

A datagram's first fragment is resolved by its flow's owner; its later fragments go to the
datagram's fragment owner, to which the flow's owner sends a note with the decision. Here
the fragments of one datagram land on different workers, in any order, both directions:
every datagram must leave whole (checked by independent reassembly and full checksum
recomputation) with no fragment dropped, and every frame comes back."""

from __future__ import annotations

import os

import csum_reference
import pytest
from frag_reference import reassemble
from scapy.all import IP, UDP, Ether, Raw, fragment
from test_handoff import LAN_MAC, LAN_PEER, WAN_MAC, WAN_PEER, Workers, total

from xpfdp.pipeline import fragment_owner

CLIENT, SERVER, SNAT = "10.10.1.2", "10.10.2.2", "10.10.2.1"
DATAGRAMS = 32


def fragmented(src, dst, sport, dport, payload, ident, macs):
    """A UDP datagram fragmented for a 1500-byte MTU, as Ethernet frames in order."""
    dg = IP(src=src, dst=dst, id=ident) / UDP(sport=sport, dport=dport) / Raw(payload)
    return [bytes(Ether(src=macs[0], dst=macs[1]) / f) for f in fragment(dg, fragsize=1480)]


def spread(ws, side, datagrams, workers):
    """Datagram i: first fragment on worker i, later ones on worker i + 1 + i // workers,
    reversed for every third datagram, so later fragments come before and after their
    first one and land on workers other than their fragment owner."""
    per_worker: dict[int, list[bytes]] = {}
    for i, frames in enumerate(datagrams):
        later = frames[1:][::-1] if i % 3 == 0 else frames[1:]
        per_worker.setdefault(i % workers, []).append(frames[0])
        per_worker.setdefault((i + 1 + i // workers) % workers, []).extend(later)
    for w, frames in per_worker.items():
        ws.inject(side, w, frames)
    ws.run()


def whole(frames):
    """{IP ID: reassembled datagram as scapy}, every checksum checked by recomputation."""
    by_id: dict[int, list[bytes]] = {}
    for _, f in frames:
        by_id.setdefault(Ether(f)[IP].id, []).append(f)
    out = {}
    for ident, fs in by_id.items():
        dg = reassemble(fs)
        assert csum_reference.checksums_ok(dg)
        out[ident] = Ether(dg)
    return out


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("size", [3000, 8000])
def test_datagrams_whose_fragments_land_on_several_workers_leave_whole(workers, size):
    ws = Workers(workers)
    try:
        up = [os.urandom(size) for _ in range(DATAGRAMS)]
        sent = [
            fragmented(CLIENT, SERVER, 34000 + i, 5000, up[i], 0x100 + i, (LAN_PEER, LAN_MAC))
            for i in range(DATAGRAMS)
        ]
        owners = {fragment_owner(frames[0], workers) for frames in sent}
        assert owners == set(range(workers))  # the datagrams really spread over workers
        spread(ws, "lan", sent, workers)
        out = whole(ws.out("wan"))
        assert sorted(out) == [0x100 + i for i in range(DATAGRAMS)]
        nat_port = {}
        for i in range(DATAGRAMS):
            dg = out[0x100 + i]
            assert (dg[IP].src, dg[IP].dst, dg[UDP].dport) == (SNAT, SERVER, 5000)
            assert bytes(dg[UDP].payload) == up[i]
            nat_port[i] = dg[UDP].sport

        # The server's fragmented replies, to the NAT ports, spread over the WAN queues.
        down = [os.urandom(size) for _ in range(DATAGRAMS)]
        replies = [
            fragmented(SERVER, SNAT, 5000, nat_port[i], down[i], 0x900 + i, (WAN_PEER, WAN_MAC))
            for i in range(DATAGRAMS)
        ]
        spread(ws, "wan", replies, workers)
        back = whole(ws.out("lan"))
        assert sorted(back) == [0x900 + i for i in range(DATAGRAMS)]
        for i in range(DATAGRAMS):
            dg = back[0x900 + i]
            assert (dg[IP].src, dg[IP].dst) == (SERVER, CLIENT)
            assert (dg[UDP].sport, dg[UDP].dport) == (5000, 34000 + i)
            assert bytes(dg[UDP].payload) == down[i]

        stats = [p.stats() for p in ws.pipes]
        assert not any(s["drops"] for s in stats), [s["drops"] for s in stats]
        fr = {k: sum(s["fragments"][k] for s in stats) for k in stats[0]["fragments"]}
        assert fr["recorded"] + fr["noted"] == 2 * DATAGRAMS
        assert fr["completed"] == 2 * DATAGRAMS and fr["entries"] == fr["held_frames"] == 0
        later = sum(len(f) - 1 for f in sent + replies)
        assert fr["translated"] == later
        assert fr["held"] == fr["released"] > 0  # some later fragments waited for a note
        assert fr["noted"] > 0 and total(ws, "notes_out") == total(ws, "notes_in") == fr["noted"]
        assert total(ws, "out") == total(ws, "in") > 0
    finally:
        ws.close()


def test_a_full_ring_drops_the_first_fragment_its_note_cannot_follow():
    """Worker 1 is not polled and its ring holds 4: notes beyond that are not sent and
    their first fragments are dropped as frag_note_ring_full (their later fragments could
    never be translated); what waits in the ring is no packet when the worker stops."""
    ws = Workers(2, slots=4)
    try:
        firsts = [
            fragmented(CLIENT, SERVER, 35000 + i, 5000, bytes(3000), i, (LAN_PEER, LAN_MAC))[0]
            for i in range(64)
        ]
        ws.inject("lan", 0, firsts)
        ws.pipes[0].poll()
        s0 = ws.pipes[0].stats()
        notes, lost = s0["handoff"]["notes_out"], s0["drops"].get("frag_note_ring_full", 0)
        full = s0["drops"].get("handoff_ring_full", 0)
        assert notes == 4 and lost > 0  # the notes went first: the packets found it full
        assert s0["handoff"]["out"] == 0 and full > 0
        assert s0["tx_packets"] + full + lost == 64
        # What worker 0 resolved and sent on was recorded here or noted to worker 1.
        assert s0["fragments"]["recorded"] + notes == s0["tx_packets"]
        assert ws.handoff.ready(0, 1) == 4
        for u in ws.umems:
            u.check_frames()
        assert ws.pipes[1].discard_handed_in() == 0  # notes carry no packet
        assert "shutdown" not in ws.pipes[1].stats()["drops"]
    finally:
        ws.close()


def test_fragment_owner_is_the_same_for_every_fragment_of_a_datagram():
    for workers in (2, 3, 4):
        for ident in range(20):
            frames = fragmented(CLIENT, SERVER, 1, 2, bytes(8000), ident, (LAN_PEER, LAN_MAC))
            assert len({fragment_owner(f, workers) for f in frames}) == 1
    whole_packet = bytes(Ether() / IP(src=CLIENT, dst=SERVER) / UDP() / Raw(b"x"))
    assert fragment_owner(whole_packet, 2) is None
    with pytest.raises(ValueError):
        fragment_owner(whole_packet, 0)
