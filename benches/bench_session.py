"""SessionTable workloads (lookups by every index, churn, GC, memory) against a Python-dict
baseline, at 16,384 and 1,000,000 sessions (the table design is in docs/sessions.md).

Probe streams are what a user at scale sees: `16k` and `1M` probe every session of the table
once, in a random order, before any repeats (at 1M the working set is far larger than the
caches); `1M-hot` is the labelled warm-cache case, 16,384 keys spread over a 1M table and
probed over and over. Churn at 1M installs and removes 262,144 distinct new keys in turn.

One benchmark iteration does 256 probes (or 256 install+remove pairs), so ns per key =
iteration time / 256. The dict baseline is the table a user would otherwise write: tuple
keys, one dict per index. It is measured with
pre-built tuple probes (its best case) and, for forward lookups, with probes converted from
the same KEY_DTYPE array the batch API takes (what a pipeline would have to do).

Run: .venv/bin/python -m pytest benches/bench_session.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

from xpfdp.session import (
    DECISION_DTYPE,
    KEY_DTYPE,
    META_DTYPE,
    NatFlag,
    SessionTable,
    forward_wire,
    reverse_canonical,
    reverse_wire,
)

SMALL = 16_384
LARGE = 1_000_000
PROBES = 256
S = 1_000_000_000


def make_keys(seeds: np.ndarray) -> np.ndarray:
    """A key for every seed: ports from the seed, addresses bytes 12..16 big-endian."""
    seeds = seeds.astype(np.uint64)
    keys = np.zeros(len(seeds), dtype=KEY_DTYPE)
    keys["af"], keys["proto"] = 10, 6
    keys["sport"] = seeds & 0xFFFF
    keys["dport"] = seeds >> 16
    dst = (seeds * 0x9E3779B9) & 0xFFFFFFFF
    for i in range(4):
        keys["src"][:, 12 + i] = (seeds >> (24 - 8 * i)) & 0xFF
        keys["dst"][:, 12 + i] = (dst >> (24 - 8 * i)) & 0xFF
    return keys


def snat_decisions(keys: np.ndarray) -> np.ndarray:
    """Source-port rewrite to sport + 1: forward_wire(F) = F with src_port + 1."""
    dec = np.zeros(len(keys), dtype=DECISION_DTYPE)
    dec["nat_flags"] = NatFlag.RSP
    dec["disposition"] = 1
    dec["rsp"] = (keys["sport"].astype(np.uint32) + 1) & 0xFFFF
    return dec


def metas_for(seeds: np.ndarray) -> np.ndarray:
    meta = np.zeros(len(seeds), dtype=META_DTYPE)
    meta["owner_rg"] = seeds % 8  # carried data only
    return meta


def probe_seeds(n: int, hot: bool) -> np.ndarray:
    """Batches of seeds to probe: every seed of the table once in a random order, or (`hot`)
    64 batches of keys spread over the table, repeated, so they stay in cache."""
    if hot:
        return ((np.arange(PROBES * 64, dtype=np.uint64) * 2654435761) % n).reshape(64, PROBES)
    order = np.random.default_rng(7).permutation(n).astype(np.uint64)
    return order[: n - n % PROBES].reshape(-1, PROBES)


def as_tuples(keys: np.ndarray) -> list[tuple]:
    return [
        (int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[5].tobytes(), r[6].tobytes())
        for r in keys.tolist()
    ]


class Fixture:
    """A populated table plus the equivalent dict-of-tuples structures."""

    def __init__(self, n: int, hot: bool, with_alias: bool, with_dict: bool):
        seeds = np.arange(n, dtype=np.uint64)
        self.keys = make_keys(seeds)
        self.decs = snat_decisions(self.keys)
        self.metas = metas_for(seeds)
        self.table = SessionTable(max_sessions=3 * n, hash_seed=99)
        if with_alias:
            fwd, rev = self.table.install_pair_batch(self.keys, self.decs, self.metas, S)
            assert (fwd >= 0).all() and (rev >= 0).all()
        else:
            assert (self.table.install_batch(self.keys, self.decs, self.metas, S) >= 0).all()
        ps = probe_seeds(n, hot)
        self.fwd = [make_keys(row) for row in ps]
        self.rev = [reverse_wire(k, snat_decisions(k)) for k in self.fwd]
        self.alias = [reverse_canonical(k) for k in self.fwd]
        self.out = np.empty(PROBES, dtype=np.int64)
        self.turn = 0
        if with_dict:
            self._build_dict(with_alias)

    def _build_dict(self, with_alias: bool) -> None:
        tk = as_tuples(self.keys)
        rw = as_tuples(reverse_wire(self.keys, self.decs))
        fw = as_tuples(forward_wire(self.keys, self.decs))
        self.d, self.d_natrev, self.d_fwire, self.d_alias = {}, {}, {}, {}
        for i, k in enumerate(tk):
            self.d[k] = (i, 1, S)
            self.d_natrev[rw[i]] = k
            self.d_fwire[fw[i]] = k
        if with_alias:
            rc = as_tuples(reverse_canonical(self.keys))
            for i, k in enumerate(rw):
                self.d[k] = (i, 2, S)
                self.d_alias[rc[i]] = k
        self.t_fwd = [as_tuples(k) for k in self.fwd]
        self.t_rev = [as_tuples(k) for k in self.rev]
        self.t_alias = [as_tuples(k) for k in self.alias]

    def next_batch(self) -> int:
        self.turn = (self.turn + 1) % len(self.fwd)
        return self.turn


_cache: dict = {}


def fixture(size: tuple[int, bool], with_alias: bool = False, with_dict: bool = True) -> Fixture:
    """Table benchmarks use a fixture without the dict baseline, so millions of Python
    objects do not share the process while the table is timed."""
    key = (*size, with_alias, with_dict)
    if key not in _cache:
        _cache.clear()  # one large fixture alive at a time
        _cache[key] = Fixture(*size, with_alias, with_dict)
    return _cache[key]


def label(size: tuple[int, bool]) -> str:
    n, hot = size
    return ("16k" if n == SMALL else "1M") + ("-hot" if hot else "")


# (sessions, hot probe set)
SIZES = [
    pytest.param((SMALL, False), id="16k"),
    pytest.param((LARGE, False), id="1M"),
    pytest.param((LARGE, True), id="1M-hot"),
]


# ------------------------------------------------------------------ lookup_forward


@pytest.mark.parametrize("size", SIZES)
def test_lookup_forward_batch(benchmark, size):
    benchmark.group = f"lookup_forward-{label(size)}"
    f = fixture(size, with_dict=False)

    def run():
        i = f.next_batch()
        return f.table.lookup_batch(f.fwd[i], 2 * S, f.out)

    assert benchmark(run) == PROBES


@pytest.mark.parametrize("size", SIZES)
def test_lookup_forward_dict(benchmark, size):
    benchmark.group = f"lookup_forward-{label(size)}"
    f = fixture(size)
    d = f.d

    def run():
        probes = f.t_fwd[f.next_batch()]
        return sum(1 for k in probes if d.get(k) is not None)

    assert benchmark(run) == PROBES


def test_lookup_forward_dict_from_array(benchmark):
    """The dict as a pipeline would use it: keys arrive in the parser's arrays."""
    benchmark.group = "lookup_forward-16k"
    f = fixture((SMALL, False))
    d = f.d

    def run():
        probes = f.fwd[f.next_batch()]
        hits = 0
        for r in probes.tolist():
            if d.get((r[0], r[1], r[2], r[3], r[5].tobytes(), r[6].tobytes())) is not None:
                hits += 1
        return hits

    assert benchmark(run) == PROBES


def test_lookup_forward_scalar(benchmark):
    """One Python call per key, for scale: the cost the batch API removes."""
    benchmark.group = "lookup_forward-16k"
    f = fixture((SMALL, False))
    rows = [f.fwd[0][i : i + 1] for i in range(PROBES)]

    def run():
        return sum(1 for r in rows if f.table.lookup(r, 2 * S) >= 0)

    assert benchmark(run) == PROBES


# ------------------------------------------------------------------ lookup_reverse_nat


@pytest.mark.parametrize("size", SIZES)
def test_lookup_reverse_nat_batch(benchmark, size):
    benchmark.group = f"lookup_reverse_nat-{label(size)}"
    f = fixture(size, with_dict=False)

    def run():
        return f.table.find_forward_nat_batch(f.rev[f.next_batch()], f.out)

    assert benchmark(run) == PROBES


@pytest.mark.parametrize("size", SIZES)
def test_lookup_reverse_nat_dict(benchmark, size):
    benchmark.group = f"lookup_reverse_nat-{label(size)}"
    f = fixture(size)
    d, natrev = f.d, f.d_natrev

    def run():
        hits = 0
        for k in f.t_rev[f.next_batch()]:
            fk = natrev.get(k)
            if fk is not None and d.get(fk) is not None:
                hits += 1
        return hits

    assert benchmark(run) == PROBES


# ------------------------------------------------------------------ lookup_alias


@pytest.mark.parametrize("size", SIZES)
def test_lookup_alias_batch(benchmark, size):
    benchmark.group = f"lookup_alias-{label(size)}"
    f = fixture(size, with_alias=True, with_dict=False)

    def run():
        return f.table.lookup_batch(f.alias[f.next_batch()], 2 * S, f.out)

    assert benchmark(run) == PROBES


@pytest.mark.parametrize("size", SIZES)
def test_lookup_alias_dict(benchmark, size):
    benchmark.group = f"lookup_alias-{label(size)}"
    f = fixture(size, with_alias=True)
    d, alias = f.d, f.d_alias

    def run():
        hits = 0
        for k in f.t_alias[f.next_batch()]:
            rk = alias.get(k)
            if rk is not None and d.get(rk) is not None:
                hits += 1
        return hits

    assert benchmark(run) == PROBES


# ------------------------------------------------------------------ insert+remove churn


def churn_rounds(size: tuple[int, bool]) -> int:
    """Rounds of 256 new keys a churn run cycles through: 262,144 distinct keys at 1M (their
    index lines do not stay cached), 16,384 at 16k and on the labelled hot row."""
    n, hot = size
    return 1024 if n == LARGE and not hot else 64


class Churn:
    """Steady state of n/2 sessions; each round installs 256 new SNAT sessions and removes
    them again, drains their 256 Open deltas (a sync consumer is attached) and runs the
    once-a-second GC."""

    def __init__(self, size: tuple[int, bool]):
        n = size[0]
        half = n // 2
        seeds = np.arange(half, dtype=np.uint64)
        keys = make_keys(seeds)
        # the steady-state sessions must outlive the run: a long TCP timeout keeps them
        self.table = SessionTable(max_sessions=n, tcp_timeout_s=10**8, hash_seed=5)
        self.table.install_batch(keys, snat_decisions(keys), metas_for(seeds), S)
        self.rounds = [
            make_keys(np.arange(half + r * PROBES, half + (r + 1) * PROBES, dtype=np.uint64))
            for r in range(churn_rounds(size))
        ]
        self.decs = [snat_decisions(k) for k in self.rounds]
        self.metas = np.zeros(PROBES, dtype=META_DTYPE)
        self.feed = self.table.subscribe_deltas()
        self.out = np.empty(PROBES, dtype=np.int64)
        self.turn = 0
        self.now = S

    def run(self) -> int:
        t = self.table
        self.turn = (self.turn + 1) % len(self.rounds)
        self.now += S
        keys = self.rounds[self.turn]
        t.install_batch(keys, self.decs[self.turn], self.metas, self.now, out_handles=self.out)
        removed = t.delete_batch(keys)
        self.feed.drain(256)
        t.expire(self.now)
        return removed


@pytest.mark.parametrize("size", SIZES)
def test_insert_churn_batch(benchmark, size):
    benchmark.group = f"insert_churn-{label(size)}"
    c = Churn(size)
    before = c.table.stats()
    assert benchmark(c.run) == PROBES
    after = c.table.stats()
    assert len(c.table) == size[0] // 2  # steady state
    for name in ("nat_reverse_entries", "forward_wire_entries", "alias_entries"):
        assert after[name] == before[name]  # indices do not leak during churn


@pytest.mark.parametrize("size", SIZES)
def test_insert_churn_dict(benchmark, size):
    benchmark.group = f"insert_churn-{label(size)}"
    f = fixture(size)
    d, natrev, fwire = f.d, f.d_natrev, f.d_fwire
    n = size[0]
    rounds = []
    for r in range(churn_rounds(size)):
        keys = make_keys(np.arange(n + r * PROBES, n + (r + 1) * PROBES, dtype=np.uint64))
        decs = snat_decisions(keys)
        rounds.append(
            list(
                zip(
                    as_tuples(keys),
                    as_tuples(reverse_wire(keys, decs)),
                    as_tuples(reverse_canonical(keys)),
                    as_tuples(forward_wire(keys, decs)),
                    strict=True,
                )
            )
        )
    state = {"turn": 0}

    def run():
        state["turn"] = (state["turn"] + 1) % len(rounds)
        batch = rounds[state["turn"]]
        for k, rw, rc, fw in batch:
            d[k] = (0, 1, S)
            natrev[rw] = k
            natrev[rc] = k
            fwire[fw] = k
        for k, rw, rc, fw in batch:
            del d[k]
            if natrev.get(rw) == k:
                del natrev[rw]
            if natrev.get(rc) == k:
                del natrev[rc]
            if fwire.get(fw) == k:
                del fwire[fw]
        return len(batch)

    assert benchmark(run) == PROBES


# ------------------------------------------------------------------ GC drain (T10 shape)


def test_gc_drain_touched_every_second(benchmark):
    """K ~ N: 16k sessions touched every second, then one GC pop (all stale duplicates)."""
    benchmark.group = "gc_drain-16k"
    seeds = np.arange(SMALL, dtype=np.uint64)
    keys = make_keys(seeds)
    t = SessionTable(max_sessions=SMALL, hash_seed=3)
    handles = t.install_batch(keys, snat_decisions(keys), metas_for(seeds), S)
    state = {"now": S}

    def run():
        state["now"] += S
        t.touch_batch(handles, state["now"])
        t.expire(state["now"])
        return t.last_pop_stats()["scanned"]

    benchmark(run)


# ------------------------------------------------------------------ memory per session


@pytest.mark.parametrize("pairs", [False, True], ids=["forward", "nat_pairs"])
def test_memory_per_session_1m(benchmark, pairs):
    """Heap bytes per session at 1M sessions (slab + every index + NAT cells + wheel),
    from the table's own accounting of what it allocated."""
    benchmark.group = "memory-1M"
    _cache.clear()
    n = LARGE // 2 if pairs else LARGE
    seeds = np.arange(n, dtype=np.uint64)
    keys = make_keys(seeds)
    decs = snat_decisions(keys)
    decs["nat_flags"] |= np.uint8(NatFlag.RS)
    decs["rs"][:, 15] = 1
    metas = metas_for(seeds)
    t = SessionTable(max_sessions=LARGE, hash_seed=8)
    if pairs:
        t.install_pair_batch(keys, decs, metas, S)
    else:
        t.install_batch(keys, decs, metas, S)
    assert len(t) == LARGE
    per = t.memory_bytes() / len(t)
    benchmark.extra_info["bytes_per_session"] = round(per, 1)
    benchmark.extra_info["bytes_per_session_without_wheel"] = round(
        t.memory_bytes(include_wheel=False) / len(t), 1
    )
    benchmark(len, t)


def test_memory_per_session_dict_16k(benchmark):
    """The dict-of-tuples baseline's bytes per session (tracemalloc), for comparison."""
    import tracemalloc

    benchmark.group = "memory-1M"
    _cache.clear()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    f = Fixture(SMALL, False, with_alias=False, with_dict=True)
    f.table = None
    f.fwd = f.rev = f.alias = f.t_fwd = f.t_rev = f.t_alias = None
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    keys_bytes = f.keys.nbytes + f.decs.nbytes + f.metas.nbytes  # the numpy inputs
    benchmark.extra_info["bytes_per_session"] = round((used - keys_bytes) / SMALL, 1)
    benchmark(len, f.d)
