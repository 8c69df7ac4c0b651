"""Fragment table (xpfdp.frag): fragment fields from frames, decisions for later fragments,
holding and releasing early fragments, timeouts on a simulated clock, limits; every frame
handed to the table comes back exactly once (property tests drive it like the pipeline)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (
    IP,
    UDP,
    Ether,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    Raw,
    fragment,
    fragment6,
)

from xpfdp.frag import HELD, LIMIT, NOTED, FragTable, fragment_info
from xpfdp.session import DECISION_DTYPE, make_decision

S = 1_000_000_000
A, B = "10.0.0.2", "192.0.2.10"


def test_fragment_info_ipv4():
    dg = IP(src=A, dst=B, id=0xBEEF) / UDP(sport=1, dport=2) / Raw(b"x" * 3000)
    infos = [fragment_info(bytes(Ether() / f)) for f in fragment(dg, fragsize=1400)]
    assert [(i["offset"], i["length"], i["more"], i["first"]) for i in infos] == [
        (0, 1400, True, True),
        (1400, 1400, True, False),
        (2800, 208, False, False),
    ]
    assert {(i["src"], i["dst"], i["proto"], i["frag_id"], i["family"]) for i in infos} == {
        (A, B, 17, 0xBEEF, 4)
    }
    assert fragment_info(bytes(Ether() / dg)) is None  # not a fragment
    assert fragment_info(b"") is None


def test_fragment_info_ipv6_with_extension_header_before_fragment_header():
    dg = (
        IPv6(src="fd00::2", dst="fd00:b::2")
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(id=0xDEADBEEF)
        / UDP(sport=1, dport=2)
        / Raw(b"y" * 3000)
    )
    frags = fragment6(dg, 1280)
    infos = [fragment_info(bytes(Ether() / f)) for f in frags]
    assert [i["first"] for i in infos] == [True, False, False]
    assert {(i["proto"], i["frag_id"], i["family"]) for i in infos} == {(17, 0xDEADBEEF, 6)}
    assert sum(i["length"] for i in infos) == 8 + 3000
    assert infos[-1]["more"] is False and infos[1]["offset"] == infos[0]["length"]


def test_later_fragment_before_first_is_held_then_released():
    t = FragTable(max_entries=8, max_held_frames=4)
    key = (A, B, 17, 7)
    assert t.later_fragment(*key, 1480, 1480, True, (4096, 1514, 0), 0) == HELD
    assert t.later_fragment(*key, 2960, 40, False, (8192, 74, 1), 0) == HELD
    assert t.held_frames == 2 and len(t) == 1
    assert t.pop_released() == []
    assert t.first_fragment(*key, 11, S, length=1480)
    assert t.pop_released() == [(4096, 1514, 0), (8192, 74, 1)]  # arrival order
    assert t.held_frames == 0
    # Handed back, they resolve now; the last byte completes the datagram.
    assert t.later_fragment(*key, 1480, 1480, True, (4096, 1514, 0), S) == 11
    assert t.later_fragment(*key, 2960, 40, False, (8192, 74, 1), S) == 11
    assert len(t) == 0
    assert t.stats() | {} == {
        "recorded": 1,
        "translated": 2,
        "held": 2,
        "released": 2,
        "timed_out": 0,
        "dropped_limit": 0,
        "completed": 1,
        "expired": 0,
        "noted": 0,
        "entries": 0,
        "held_frames": 0,
    }
    t.check_invariants()


def test_note_from_another_worker_releases_held_fragments_and_gives_its_decision():
    """The fragment owner holds later fragments until the worker that resolved the first
    one sends its decision; later fragments then take that decision, not a handle."""
    t = FragTable(max_entries=8, max_held_frames=4)
    key = (A, B, 17, 7)
    nat = make_decision(snat="192.0.2.1", snat_port=61000, egress_port=1)
    assert t.later_fragment(*key, 1480, 1480, True, (4096, 1514, 0), 0) == HELD
    assert t.note_fragment(*key, nat, S, length=1480)
    assert t.pop_released() == [(4096, 1514, 0)]
    out = np.zeros(1, dtype=DECISION_DTYPE)
    assert t.later_fragment(*key, 1480, 1480, True, (4096, 1514, 0), S, decision_out=out) == NOTED
    assert out[0].tobytes() == nat.tobytes()
    out[:] = 0
    assert t.later_fragment(*key, 2960, 40, False, (8192, 74, 1), S, decision_out=out) == NOTED
    assert out[0].tobytes() == nat.tobytes()
    assert len(t) == 0  # every byte passed: the entry is gone
    st_ = t.stats()
    assert (st_["noted"], st_["recorded"], st_["translated"], st_["completed"]) == (1, 0, 2, 1)
    assert st_["held"] == st_["released"] == 1
    t.check_invariants()


def test_noted_and_local_decisions_replace_each_other_like_a_repeated_first_fragment():
    t = FragTable()
    key = (A, B, 17, 8)
    nat = make_decision(snat="192.0.2.1", snat_port=61001)
    t.note_fragment(*key, nat, 0, length=8)
    assert t.later_fragment(*key, 8, 8, True, (0, 64, 0), 0) == NOTED  # no decision_out
    assert t.first_fragment(*key, 42, 0, length=8)  # a reused ID resolved here
    assert t.later_fragment(*key, 8, 8, True, (0, 64, 0), 0) == 42
    assert t.note_fragment(*key, nat, 0, length=8)
    out = np.zeros(2, dtype=DECISION_DTYPE)
    assert t.later_fragment(*key, 8, 8, True, (0, 64, 0), 0, decision_out=out) == NOTED
    assert out[0]["rsp"] == 61001 and out[1]["rsp"] == 0
    t.check_invariants()


def test_noted_entries_obey_the_entry_limit_and_the_timeout():
    t = FragTable(max_entries=1)
    nat = make_decision(snat="192.0.2.1", snat_port=61002)
    assert t.note_fragment(A, B, 17, 1, nat, 10 * S, length=8)
    assert not t.note_fragment(A, B, 17, 2, nat, 10 * S, length=8)  # no entry free
    assert t.stats()["dropped_limit"] == 1 and t.stats()["noted"] == 1
    assert t.expire(40 * S - 1) == [] and len(t) == 1
    assert t.expire(40 * S) == [] and len(t) == 0
    # The note has expired with its entry: a later fragment now waits for a new one.
    assert t.later_fragment(A, B, 17, 1, 8, 8, False, (0, 64, 0), 40 * S) == HELD
    assert t.drain() == [(0, 64, 0)]
    t.check_invariants()


def test_note_arguments_are_validated():
    t = FragTable()
    with pytest.raises(TypeError, match="DECISION_DTYPE"):
        t.note_fragment(A, B, 17, 1, b"\0" * 40, 0)
    with pytest.raises(TypeError, match="DECISION_DTYPE"):
        t.note_fragment(A, B, 17, 1, np.zeros(2, dtype=DECISION_DTYPE), 0)
    with pytest.raises(ValueError, match="frag_id"):
        t.note_fragment(A, B, 17, 1 << 16, make_decision(), 0)
    with pytest.raises(TypeError, match="decision_out"):
        t.later_fragment(A, B, 17, 1, 8, 8, True, (0, 64, 0), 0, decision_out=np.zeros(1))
    with pytest.raises(ValueError, match="decision_out"):
        t.later_fragment(
            A, B, 17, 1, 8, 8, True, (0, 64, 0), 0, decision_out=np.zeros(0, DECISION_DTYPE)
        )
    assert len(t) == 0 and t.held_frames == 0  # nothing recorded or held by a refused call


def test_keys_separate_families_protocols_ids_and_addresses():
    t = FragTable()
    t.first_fragment(A, B, 17, 1, 100, 0, length=8)
    assert t.later_fragment(A, B, 17, 2, 8, 8, True, (0, 64, 0), 0) == HELD  # other ID
    assert t.later_fragment(A, B, 6, 1, 8, 8, True, (64, 64, 0), 0) == HELD  # other proto
    assert t.later_fragment(B, A, 17, 1, 8, 8, True, (128, 64, 0), 0) == HELD  # reversed
    assert t.later_fragment(A, B, 17, 1, 8, 8, True, (192, 64, 0), 0) == 100
    t6 = FragTable()
    t6.first_fragment("fd00::1", "fd00::2", 17, 0xFFFFFFFF, 5, 0, length=8)
    assert t6.later_fragment("fd00::1", "fd00::2", 17, 0xFFFFFFFF, 8, 8, False, (0, 64, 0), 0) == 5
    with pytest.raises(ValueError):
        t.first_fragment(A, B, 17, 1 << 16, 1, 0)  # IPv4 IDs are 16 bits
    with pytest.raises(ValueError):
        t.first_fragment(A, "fd00::1", 17, 1, 1, 0)
    t.check_invariants()


def test_timeout_is_thirty_seconds_from_creation_and_drops_held_frames():
    t = FragTable()
    assert t.timeout_ns == 30 * S
    assert t.later_fragment(A, B, 17, 9, 8, 8, True, (4096, 64, 0), 10 * S) == HELD
    assert t.expire(40 * S - 1) == [] and len(t) == 1
    assert t.expire(40 * S) == [(4096, 64, 0)]
    assert len(t) == 0 and t.stats()["timed_out"] == 1 and t.stats()["expired"] == 1
    # A resolved entry is not extended by traffic: it expires 30 s after it was made.
    t.first_fragment(A, B, 17, 10, 3, 50 * S, length=8)
    assert t.later_fragment(A, B, 17, 10, 8, 8, True, (0, 64, 0), 79 * S) == 3
    t.expire(80 * S)
    assert len(t) == 0
    assert t.later_fragment(A, B, 17, 10, 16, 8, True, (0, 64, 0), 80 * S) == HELD
    t.check_invariants()


def test_limits_refuse_and_count():
    t = FragTable(max_entries=2, max_held_frames=1)
    assert t.later_fragment(A, B, 17, 1, 8, 8, True, (0, 64, 0), 0) == HELD
    assert t.later_fragment(A, B, 17, 1, 16, 8, True, (64, 64, 0), 0) == LIMIT  # frames
    assert t.later_fragment(A, B, 17, 2, 8, 8, True, (128, 64, 0), 0) == LIMIT  # frames
    assert len(t) == 1  # a refused fragment leaves no empty entry behind
    assert t.first_fragment(A, B, 17, 3, 1, 0, length=8)
    assert not t.first_fragment(A, B, 17, 4, 1, 0, length=8)  # entries
    assert t.stats()["dropped_limit"] == 3
    assert t.drain() == [(0, 64, 0)] and len(t) == 0
    t.check_invariants()


def test_constructor_validates():
    for kw in ({"max_entries": 0}, {"timeout_s": 0}, {"max_held_frames": 1 << 25}):
        with pytest.raises(ValueError):
            FragTable(**kw)
    with pytest.raises(ValueError):
        FragTable().first_fragment(A, B, 17, 1, -1, 0)


# ---- property: driven like the pipeline --------------------------------------------------


@st.composite
def datagrams_and_order(draw):
    """Up to 6 datagrams of 2..5 fragments (IPv4 or IPv6 keys, some sharing addresses)
    and one interleaving of all their fragments."""
    n = draw(st.integers(1, 6))
    datagrams = []
    for d in range(n):
        v6 = draw(st.booleans())
        src, dst = ("fd00::2", "fd00:b::2") if v6 else (A, B)
        sizes = draw(st.lists(st.integers(1, 200), min_size=2, max_size=5))
        frags, off = [], 0
        for k, size in enumerate(sizes):
            frags.append((off, size * 8, k < len(sizes) - 1))
            off += size * 8
        datagrams.append(((src, dst, 17, 1000 + d), frags, draw(st.booleans())))
    order = [(d, k) for d, (_, frags, _) in enumerate(datagrams) for k in range(len(frags))]
    order = draw(st.permutations(order))
    return datagrams, order


class Driver:
    """Submits fragments, re-submits released ones, and tracks where every frame went.
    A datagram drawn as `noted` gets its first fragment as another worker's note, whose
    decision names the datagram in its SNAT port."""

    def __init__(self, table, datagrams):
        self.t, self.datagrams = table, datagrams
        self.frame_of = {}
        self.translated, self.refused, self.dropped = {}, [], []

    def frame(self, d, k):
        return ((d * 8 + k) * 4096, 64 + k, d % 3)

    def submit(self, d, k, now_ns):
        key, frags, noted = self.datagrams[d]
        off, length, more = frags[k]
        if k == 0:
            if noted:
                nat = make_decision(snat=A, snat_port=1000 + d)
                ok = self.t.note_fragment(*key, nat, now_ns, length=length, more=more)
            else:
                ok = self.t.first_fragment(*key, d, now_ns, length=length, more=more)
            if ok:
                self.translated[(d, 0)] = d
            else:
                self.refused.append((d, 0))
        else:
            frame = self.frame(d, k)
            self.frame_of[frame] = (d, k)
            out = np.zeros(1, dtype=DECISION_DTYPE)
            r = self.t.later_fragment(*key, off, length, more, frame, now_ns, decision_out=out)
            if r == NOTED:
                self.translated[(d, k)] = int(out[0]["rsp"]) - 1000
            elif r >= 0:
                self.translated[(d, k)] = r
            elif r == LIMIT:
                self.refused.append((d, k))
        for frame in self.t.pop_released():
            self.submit(*self.frame_of[frame], now_ns)


@settings(max_examples=200, deadline=None)
@given(datagrams_and_order())
def test_any_order_gives_every_fragment_its_datagrams_decision(case):
    datagrams, order = case
    t = FragTable(max_entries=64, max_held_frames=64)
    drv = Driver(t, datagrams)
    for d, k in order:
        drv.submit(d, k, 0)
        t.check_invariants()
    expected = {(d, k): d for d, (_, frags, _) in enumerate(datagrams) for k in range(len(frags))}
    assert drv.translated == expected and not drv.refused
    assert len(t) == 0 and t.held_frames == 0  # every datagram completed
    st_ = t.stats()
    assert st_["completed"] == len(datagrams) and st_["held"] == st_["released"]
    assert st_["noted"] == sum(noted for _, _, noted in datagrams)


@settings(max_examples=200, deadline=None)
@given(
    datagrams_and_order(),
    st.integers(1, 4),
    st.integers(0, 3),
    st.lists(st.integers(0, 20), min_size=1, max_size=40),
)
def test_limits_and_timeouts_conserve_frames(case, max_entries, max_held, steps_s):
    datagrams, order = case
    t = FragTable(max_entries=max_entries, max_held_frames=max_held, timeout_s=30)
    drv = Driver(t, datagrams)
    now = 0
    for n, (d, k) in enumerate(order):
        now += steps_s[n % len(steps_s)] * S
        drv.dropped += [drv.frame_of[f] for f in t.expire(now)]
        drv.submit(d, k, now)
        t.check_invariants()
    left = [drv.frame_of[f] for f in t.drain()]
    later = [(d, k) for d, (_, frags, _) in enumerate(datagrams) for k in range(1, len(frags))]
    outcomes = [x for x in drv.translated if x[1] > 0] + [x for x in drv.refused if x[1] > 0]
    # Every later fragment ends exactly once: translated, refused, timed out or drained.
    assert sorted(outcomes + drv.dropped + left) == sorted(later)
    for (d, _k), handle in drv.translated.items():
        assert handle == d  # never another datagram's decision
    st_ = t.stats()
    assert st_["timed_out"] == len(drv.dropped)
    assert st_["held"] == st_["released"] + st_["timed_out"] + len(left)
    assert len(t) == 0 and t.held_frames == 0
    t.check_invariants()
