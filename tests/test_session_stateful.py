"""Random operation sequences on SessionTable against the pure-Python model.

Small pools of addresses and ports make derived keys collide with each other and with
primary keys, which exercises last-writer-wins, value-guarded removal and slot reuse.
check_invariants() runs after every step; every handle ever returned is re-checked, so a
reused slot can never answer for an old handle.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from session_model import (
    NS,
    Decision,
    Meta,
    ModelTable,
    decision_array,
    key_array,
    key_tuple,
    meta_array,
)

from xpfdp.session import SessionTable

ADDRS = [bytes([10, 0, 0, i]) + bytes(12) for i in (1, 2, 3)]
PORTS = [1, 2, 3]
keys_st = st.tuples(
    st.just(2),
    st.sampled_from([6, 17, 1]),
    st.sampled_from(PORTS),
    st.sampled_from(PORTS),
    st.sampled_from(ADDRS),
    st.sampled_from(ADDRS),
).map(lambda k: (k[0], k[1], k[2], 0, k[4], k[5]) if k[1] == 1 else k)
decisions_st = st.builds(
    lambda rs, rd, rsp, rdp, disp, a1, a2, p1, p2: Decision(
        (1 if rs else 0) | (2 if rd else 0) | (4 if rsp else 0) | (8 if rdp else 0),
        disp,
        p1 if rsp else 0,
        p2 if rdp else 0,
        0,
        a1 if rs else bytes(16),
        a2 if rd else bytes(16),
    ),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1, 1, 1, 2, 0]),
    st.sampled_from(ADDRS),
    st.sampled_from(ADDRS),
    st.sampled_from(PORTS),
    st.sampled_from(PORTS),
)
metas_st = st.builds(
    Meta,
    owner_rg=st.sampled_from([0, 1, 2]),
    ingress_zone=st.sampled_from([0, 1]),
    egress_zone=st.sampled_from([0, 2]),
    flags=st.sampled_from([0, 1, 2]),
)
origins_st = st.integers(0, 7)
flags_st = st.sampled_from([0, 0x10, 0x02, 0x01, 0x04, 0x11])


def one(k, d=None, m=None):
    return key_array([k]), decision_array([d or Decision()]), meta_array([m or Meta()])


class SessionMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Early eviction picks its victim by wheel order, which the model does not keep:
        # it is off here and tested on its own (test_session_pressure.py).
        self.table = SessionTable(
            max_sessions=12,
            tcp_timeout_s=20,
            udp_timeout_s=5,
            icmp_timeout_s=3,
            hash_seed=7,
            early_eviction=False,
        )
        self.feed = self.table.subscribe_deltas()
        self.model = ModelTable(max_sessions=12, tcp_s=20, udp_s=5, icmp_s=3)
        self.now = 5 * NS + 123
        self.handles: list[tuple[int, tuple, int]] = []  # (handle, key, incarnation)

    def _remember(self, handle, key, inc):
        assert (handle >= 0) == (inc is not None)
        if handle >= 0:
            self.handles.append((handle, key, inc))

    def _same_target(self, handle, expected_key):
        if expected_key is None:
            assert handle == -1
        else:
            assert handle >= 0
            rec = self.table.records([handle])[0]
            assert rec["valid"] == 1
            assert key_tuple(rec["key"]) == expected_key

    @rule(dt=st.integers(0, 4 * NS))
    def advance(self, dt):
        self.now += dt

    @rule(k=keys_st, d=decisions_st, m=metas_st, origin=origins_st, flags=flags_st)
    def install(self, k, d, m, origin, flags):
        ka, da, ma = one(k, d, m)
        h = self.table.install(ka, da, ma, self.now, origin, flags)
        self._remember(h, k, self.model.install(k, d, m, origin, self.now, flags))

    @rule(k=keys_st, d=decisions_st, m=metas_st, flags=flags_st)
    def install_pair(self, k, d, m, flags):
        ka, da, ma = one(k, d, m)
        hf, hr = self.table.install_pair(ka, da, ma, self.now, flags)
        f, r = self.model.install_pair(k, d, m, self.now, flags)
        self._remember(hf, k, f)
        if r is not None or hr >= 0:
            rkey = key_tuple(self.table.records([hr])[0]["key"]) if hr >= 0 else None
            self._remember(hr, rkey, r)

    @rule(
        keys=st.lists(keys_st, min_size=1, max_size=6),
        d=decisions_st,
        m=metas_st,
        origin=origins_st,
    )
    def install_batch(self, keys, d, m, origin):
        hs = self.table.install_batch(
            key_array(keys),
            decision_array([d] * len(keys)),
            meta_array([m] * len(keys)),
            self.now,
            origins=origin,
        )
        for k, h in zip(keys, hs, strict=True):
            self._remember(int(h), k, self.model.install(k, d, m, origin, self.now))

    @rule(k=keys_st, flags=flags_st)
    def lookup(self, k, flags):
        h = self.table.lookup(key_array([k]), self.now, flags)
        target, _ = self.model.lookup(k, self.now, flags)
        self._same_target(h, target)

    @rule(keys=st.lists(keys_st, min_size=1, max_size=8), flags=flags_st)
    def lookup_batch(self, keys, flags):
        out = np.empty(len(keys), dtype=np.int64)
        via = np.empty(len(keys), dtype=np.uint8)
        hits = self.table.lookup_batch(key_array(keys), self.now, out, flags, via)
        expected = [self.model.lookup(k, self.now, flags) for k in keys]
        assert hits == sum(t is not None for t, _ in expected)
        for h, a, (t, v) in zip(out, via, expected, strict=True):
            self._same_target(int(h), t)
            assert bool(a) == v

    @rule(keys=st.lists(keys_st, min_size=1, max_size=8))
    def peek_and_find(self, keys):
        arr = key_array(keys)
        out = np.empty(len(keys), dtype=np.int64)
        self.table.peek_batch(arr, out)
        for h, k in zip(out, keys, strict=True):
            self._same_target(int(h), self.model.resolve(k)[0])
        self.table.find_forward_nat_batch(arr, out)
        for h, k in zip(out, keys, strict=True):
            self._same_target(int(h), self.model.find_forward_nat(k))
        self.table.find_forward_wire_batch(arr, out)
        for h, k in zip(out, keys, strict=True):
            self._same_target(int(h), self.model.find_forward_wire(k))

    @rule(k=keys_st)
    def touch(self, k):
        assert self.table.touch(key_array([k]), self.now) == self.model.touch(k, self.now)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def touch_handles(self, data):
        picks = data.draw(st.lists(st.sampled_from(self.handles), min_size=1, max_size=4))
        n = self.table.touch_batch(np.array([h for h, _, _ in picks], dtype=np.int64), self.now)
        expected = 0
        for _, k, inc in picks:
            e = self.model.entries.get(k)
            if e is not None and e.incarnation == inc:
                self.model.touch(k, self.now)
                expected += 1
        assert n == expected

    @rule(keys=st.lists(keys_st, min_size=1, max_size=4))
    def delete(self, keys):
        n = self.table.delete_batch(key_array(keys))
        assert n == sum(self.model.delete(k) for k in keys)

    @rule(dt=st.integers(0, 3 * NS))
    def expire(self, dt):
        self.now += dt
        gated = self.model.gc_gated(self.now)
        must, may = self.model.expired_bounds(self.now)
        out = self.table.expire(self.now)
        got = [key_tuple(r) for r in out["key"]]
        if gated:
            assert got == []
            return
        assert len(set(got)) == len(got)
        assert must <= set(got) <= may, (must, got, may)
        for rec in out:
            e = self.model.entries[key_tuple(rec["key"])]
            assert rec["origin"] == e.origin
        self.model.apply_expired(self.now, got)
        stats = self.table.last_pop_stats()
        parts = ("dropped_gone", "dropped_stale", "expired", "re_bucketed")
        assert stats["scanned"] == sum(stats[p] for p in parts)

    @rule(
        k=keys_st,
        d=decisions_st,
        m=metas_st,
        origin=st.sampled_from([4, 5, 7, 6]),
        allow=st.booleans(),
    )
    def upsert_synced(self, k, d, m, origin, allow):
        ka, da, ma = one(k, d, m)
        h = self.table.upsert_synced(ka, da, ma, self.now, origin, 0, allow)
        self._remember(h, k, self.model.upsert_synced(k, d, m, origin, self.now, 0, allow))

    @rule(n=st.integers(1, 5))
    def drain(self, n):
        got = self.feed.drain(n)
        want = self.model.drain(n)
        assert [(int(d["kind"]), key_tuple(d["key"]), int(d["origin"])) for d in got] == want

    @invariant()
    def consistent(self):
        summary = self.table.check_invariants()
        assert len(self.table) == len(self.model.entries) == summary["sessions"]
        assert summary["nat_reverse"] == len(self.model.natrev)
        assert summary["forward_wire"] == len(self.model.fwire)
        assert summary["alias"] == len(self.model.alias)
        stats = self.table.stats()
        assert stats["create_drops"] == self.model.create_drops
        assert stats["delta_drops"] == self.model.delta_drops
        for k, e in self.model.entries.items():
            rec = self.table.entry(key_array([k]))
            assert rec is not None
            assert rec["origin"] == e.origin
            assert rec["last_seen_ns"] == e.last_seen_ns
            assert rec["expires_after_ns"] == e.expires_after_s * NS
            assert bool(rec["closing"]) == e.closing
            assert int(rec["meta"]["owner_rg"]) == e.meta.owner_rg

    @invariant()
    def old_handles_never_reach_new_sessions(self):
        if not self.handles:
            return
        recs = self.table.records(np.array([h for h, _, _ in self.handles], dtype=np.int64))
        for rec, (_, k, inc) in zip(recs, self.handles, strict=True):
            e = self.model.entries.get(k)
            alive = e is not None and e.incarnation == inc
            assert bool(rec["valid"]) == alive
            if alive:
                assert key_tuple(rec["key"]) == k


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(
    max_examples=400,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
