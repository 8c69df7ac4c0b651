"""CoS benchmarks: MQFQ enqueue+dequeue per packet at 1/16/1024/4096 active buckets, shaped
drain per packet, next to the pure-Python model and a DRR baseline (tests/cos_model.py).

Run: .venv/bin/python -m pytest benches/bench_cos.py --benchmark-only
Per-packet ns = mean / PACKETS (printed by the `ns_per_packet` extra_info column).
"""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from xpfdp._fast.meta import PKT_META
from xpfdp.cos import XDP_DESC, FlowFairQueue, Scheduler, flow_bucket

# the reference model lives with the tests, which run it differentially against the Cython code
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
cos_model = importlib.import_module("cos_model")
DrrQueue, ModelItem, ModelQueue = cos_model.DrrQueue, cos_model.ModelItem, cos_model.ModelQueue

PACKETS = 16384
BURST = 64
SEED = 0x0123456789ABCDEF
META_L4_VALID = 0x08
UNLIMITED_BUFFER = 1 << 40


def distinct_flow_keys(count, seed=SEED, nbuckets=4096):
    """`count` v4 UDP 5-tuples that hash to distinct buckets."""
    keys, seen, i = [], set(), 0
    while len(keys) < count:
        k = (17, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "192.0.2.1", 1024 + i % 60000, 53)
        b = flow_bucket(seed, k, nbuckets)
        if b not in seen:
            seen.add(b)
            keys.append(k)
        i += 1
    return keys


def burst_arrays(flows, packets=PACKETS, length=1500):
    """Descriptors and parser metadata for `packets` packets round-robin over `flows` flows."""
    keys = distinct_flow_keys(flows)
    desc = np.zeros(packets, XDP_DESC)
    desc["len"] = length
    desc["options"] = np.arange(packets)
    meta = np.zeros(packets, PKT_META)
    meta["ip_version"] = 4
    meta["protocol"] = 17
    meta["flags"] = META_L4_VALID
    for i in range(packets):
        _, src, dst, sport, dport = keys[i % flows]
        meta[i]["src"][:4] = [int(x) for x in src.split(".")]
        meta[i]["dst"][:4] = [int(x) for x in dst.split(".")]
        meta[i]["sport"], meta[i]["dport"] = sport, dport
    return desc, meta, np.zeros(2048, np.uint8), keys


def ns_per_packet(benchmark, packets):
    if benchmark.stats is None:  # --benchmark-disable: the workload ran once as a check
        return
    benchmark.extra_info["ns_per_packet"] = round(benchmark.stats.stats.mean * 1e9 / packets, 1)


@pytest.mark.parametrize("flows", [1, 16, 1024, 4096])
def test_mqfq_enqueue_dequeue(benchmark, flows):
    """Bursts of 64 through enqueue_batch, then dequeue_batch 64 at a time until empty."""
    benchmark.group = "cos enqueue+dequeue (Cython, 64-packet bursts)"
    desc, meta, umem, _ = burst_arrays(flows)
    q = FlowFairQueue(seed=SEED, buffer_bytes=UNLIMITED_BUFFER, capacity_items=PACKETS)
    out = np.zeros(BURST, XDP_DESC)
    bursts = [(desc[i : i + BURST], meta[i : i + BURST]) for i in range(0, PACKETS, BURST)]

    def run():
        for d, m in bursts:
            q.enqueue_batch(d, m, umem)
        while q.dequeue_batch(out):
            pass

    benchmark(run)
    assert q.n_items == 0 and q.counters["drops_flow_share"] == 0
    ns_per_packet(benchmark, PACKETS)


@pytest.mark.parametrize("flows", [1, 16, 1024, 4096])
def test_mqfq_enqueue_dequeue_whole_array(benchmark, flows):
    """One enqueue_batch call for all packets: shows the cost without per-burst Python calls."""
    benchmark.group = "cos enqueue+dequeue (Cython, one enqueue call)"
    desc, meta, umem, _ = burst_arrays(flows)
    q = FlowFairQueue(seed=SEED, buffer_bytes=UNLIMITED_BUFFER, capacity_items=PACKETS)
    out = np.zeros(BURST, XDP_DESC)

    def run():
        q.enqueue_batch(desc, meta, umem)
        while q.dequeue_batch(out):
            pass

    benchmark(run)
    ns_per_packet(benchmark, PACKETS)


MODEL_PACKETS = 4096


@pytest.mark.parametrize("flows", [1, 16, 1024, 4096])
def test_python_model_enqueue_dequeue(benchmark, flows):
    """The pure-Python MQFQ model (ring scan selection) on the same workload."""
    benchmark.group = "cos enqueue+dequeue (pure-Python MQFQ model)"
    keys = distinct_flow_keys(flows)
    model = ModelQueue(seed=SEED)
    buckets = [model.bucket(k) for k in keys]
    items = [ModelItem(buckets[i % flows], 1500, i) for i in range(MODEL_PACKETS)]

    def run():
        for it in items:
            model.push_back(it)
        while model.pop() is not None:
            if len(model.stack) == BURST:
                model.stack.clear()

    benchmark.pedantic(run, rounds=3 if flows >= 1024 else 10, iterations=1)
    ns_per_packet(benchmark, MODEL_PACKETS)


@pytest.mark.parametrize("flows", [1, 16, 1024, 4096])
def test_python_drr_enqueue_dequeue(benchmark, flows):
    """Deficit round-robin baseline in pure Python on the same workload."""
    benchmark.group = "cos enqueue+dequeue (pure-Python DRR baseline)"
    keys = distinct_flow_keys(flows)
    buckets = [flow_bucket(SEED, k) for k in keys]
    items = [ModelItem(buckets[i % flows], 1500, i) for i in range(MODEL_PACKETS)]
    drr = DrrQueue()

    def run():
        for it in items:
            drr.push_back(it)
        while drr.pop() is not None:
            pass

    benchmark.pedantic(run, rounds=10, iterations=1)
    ns_per_packet(benchmark, MODEL_PACKETS)


@pytest.mark.parametrize("flows", [16, 4096])
def test_shaped_drain(benchmark, flows):
    """Scheduler.drain of an exact (MQFQ) queue under a 10 Gbps root: drain cost only."""
    benchmark.group = "cos shaped drain (Scheduler.drain, 64 per call)"
    desc, meta, umem, _ = burst_arrays(flows)
    out = np.zeros(BURST, XDP_DESC)
    state = {}

    def setup():
        s = Scheduler(1_250_000_000, burst_bytes=1 << 40)
        q = s.add_queue(
            0,
            transmit_rate_bytes_per_s=1_250_000_000,
            exact=True,
            buffer_bytes=UNLIMITED_BUFFER,
            seed=SEED,
            capacity_items=PACKETS,
        )
        q.enqueue_batch(desc, meta, umem)
        state["s"], state["q"] = s, q

    def run():
        s, now = state["s"], 0
        while s.drain(out, now) or state["q"].n_items:
            now += 1_000_000  # 1 ms per batch: plenty of tokens at 10 Gbps

    benchmark.pedantic(run, setup=setup, rounds=20, iterations=1)
    assert state["q"].n_items == 0
    ns_per_packet(benchmark, PACKETS)


def test_shaped_drain_fifo(benchmark):
    """Scheduler decision + token accounting alone: a FIFO guarantee queue under the root."""
    benchmark.group = "cos shaped drain (Scheduler.drain, 64 per call)"
    desc, meta, umem, _ = burst_arrays(1)
    out = np.zeros(BURST, XDP_DESC)
    state = {}

    def setup():
        s = Scheduler(1_250_000_000, burst_bytes=1 << 40)
        q = s.add_queue(
            0,
            transmit_rate_bytes_per_s=1_250_000_000,
            buffer_bytes=UNLIMITED_BUFFER,
            capacity_items=PACKETS,
        )
        q.enqueue_batch(desc, meta, umem)
        state["s"], state["q"] = s, q

    def run():
        s, now = state["s"], 0
        while s.drain(out, now) or state["q"].n_items:
            now += 1_000_000

    benchmark.pedantic(run, setup=setup, rounds=20, iterations=1)
    assert state["q"].n_items == 0
    ns_per_packet(benchmark, PACKETS)
