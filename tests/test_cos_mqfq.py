"""MQFQ flow-fair queue: hash pins, golden vectors, state traces and regressions.

Vectors and bug numbers are those of docs/cos.md.
"""

import numpy as np
import pytest
from cos_model import ModelItem, ModelQueue, model_bucket

from xpfdp.cos import XDP_DESC, FifoQueue, FlowFairQueue, QueuedPacket, flow_bucket, new_flow_seed

U64 = 2**64 - 1


def tkey(p):
    """The note's test key: v4 TCP 10.0.0.(p & 0xff):p -> 172.16.80.200:5201."""
    return (6, f"10.0.0.{p & 0xFF}", "172.16.80.200", p, 5201)


def v6key(i):
    return (17, f"2001:db8::{i:x}", "2001:db8:1::1", 40000 + i, 443)


def new_queue(**kw):
    kw.setdefault("seed", 0)
    return FlowFairQueue(**kw)


def pop_all(q):
    out = []
    while True:
        if q.n_snapshots == 64:
            q.clear_snapshots()
        p = q.pop()
        if p is None:
            break
        out.append(p)
        q.check_invariants()
    return out


# ---------------------------------------------------------------- hash (docs/cos.md, Flow hash)

HASH_PINS = {
    1111: 410, 1112: 3043, 1113: 135, 2001: 2984, 2002: 1152, 2101: 575, 2102: 2435,
    2201: 32, 2202: 2196, 2203: 2240, 3301: 3013, 3302: 2976, 1001: 259, 1002: 744,
    4444: 2326, 5555: 2026, 6001: 545, 6002: 1875, 7777: 22, 8001: 3943, 8002: 2371,
    9999: 2293,
}  # fmt: skip


@pytest.mark.parametrize(("sport", "bucket"), sorted(HASH_PINS.items()))
def test_hash_pins_v4(sport, bucket):
    assert flow_bucket(0, tkey(sport)) == bucket
    assert model_bucket(0, tkey(sport)) == bucket


def test_hash_pins_v6_none_and_low_bits():
    v6 = (6, "2001:db8::1", "2001:db8::2", 2222, 5201)
    assert flow_bucket(0, v6) == 1284
    assert flow_bucket(0, tkey(1111), 64) == 26
    assert flow_bucket(0, v6, 64) == 4
    assert flow_bucket(0, None) == 0 and flow_bucket(12345, None) == 0


def test_bug29_bucket_range_and_distribution():
    keys = [tkey(30000 + i) if i % 2 else v6key(i) for i in range(64)]
    for seed in (0, 0xA5A50000C3C3FFFF, 0x0123456789ABCDEF):
        buckets = [flow_bucket(seed, k) for k in keys]
        assert all(0 <= b < 4096 for b in buckets)
        assert len(set(buckets)) >= 58
        assert buckets == [model_bucket(seed, k) for k in keys]
    for seed in (0, 1, 2, 0xA5A50000C3C3FFFF, 0x0123456789ABCDEF):
        consecutive = {flow_bucket(seed, tkey(p)) for p in range(39754, 39766)}
        scattered = {flow_bucket(seed, tkey(p)) for p in range(33000, 61000, 2500)}
        assert len(consecutive) >= 11 and len(scattered) >= 11
    assert all(flow_bucket(7, tkey(p), 1024) < 1024 for p in range(2000))


def test_bug28_seed_never_zero_and_differs_per_queue():
    seeds = {new_flow_seed() for _ in range(50)}
    assert 0 not in seeds and len(seeds) == 50
    a, b = FlowFairQueue(), FlowFairQueue()
    assert a.seed != 0 and b.seed != 0 and a.seed != b.seed


def test_bad_bucket_counts_and_keys_rejected():
    for n in (0, 3, 1000, 131072):
        with pytest.raises(ValueError, match="power of two"):
            FlowFairQueue(nbuckets=n)
    with pytest.raises(ValueError, match="both be IPv4"):
        flow_bucket(0, (6, "10.0.0.1", "2001:db8::1", 1, 2))
    with pytest.raises(ValueError, match="ports 16 bits"):
        flow_bucket(0, (6, "10.0.0.1", "10.0.0.2", 70000, 2))


# ---------------------------------------------------------------- golden vectors (docs/cos.md)

GOLDEN = [
    ([(2001, 1500), (2001, 1500), (2002, 1500), (2002, 1500)], [2001, 2002, 2001, 2002], 3000),
    ([(2101, 3000), (2102, 1500), (2102, 1500)], [2102, 2101, 2102], 3000),
    ([(2201, 2000), (2202, 1000), (2203, 500)], [2203, 2202, 2201], 2000),
    ([(1111, 1500), (1111, 1500), (1112, 1500), (1113, 1500)], [1111, 1112, 1113, 1111], 3000),
    ([(1111, 3000), (1112, 1500), (1113, 1500)], [1112, 1113, 1111], 3000),
    ([(1111, 3000), (1112, 1500)], [1112, 1111], 3000),
    ([(1111, 1500), (1112, 1500)], [1111, 1112], 1500),
]


@pytest.mark.parametrize(("pushes", "order", "vtime"), GOLDEN, ids=[f"G{i + 1}" for i in range(7)])
def test_golden_vectors(pushes, order, vtime):
    """Bugs 1 (tail-keyed selection), 2 (frozen head) and 5 (aggregate vtime)."""
    q = new_queue()
    for sport, n in pushes:
        q.push(n, tkey(sport), addr=sport)
    assert [p.addr for p in pop_all(q)] == order
    assert q.vtime == vtime


def test_fifo_queue_is_first_in_first_out():
    q = FifoQueue()
    for i, n in enumerate([1500, 64, 9000, 64]):
        q.push(n, tkey(1000 + i), addr=i)
    assert [p.addr for p in pop_all(q)] == [0, 1, 2, 3]
    assert q.nbuckets == 1 and not q.flow_fair


def test_ring_order_tie_break_vector():
    """Activation order: removal keeps the order of the rest."""
    q = new_queue(nbuckets=64)
    ports = {}
    for p in range(5000, 5200):
        ports.setdefault(q.bucket_of(tkey(p)), p)
    b10, b20, b30, b40 = list(ports)[:4]
    for b in (b10, b20, b30, b40):
        q.push(1000, tkey(ports[b]))
    assert q.active_order() == [b10, b20, b30, b40]
    # equal heads: pops follow ring order, and each removes its bucket from the order
    assert q.pop().bucket == b10 and q.active_order() == [b20, b30, b40]
    assert q.pop().bucket == b20 and q.active_order() == [b30, b40]
    q.pop()
    assert q.active_order() == [b40]
    q.pop()
    assert q.active_order() == []


# ---------------------------------------------------------------- state traces (docs/cos.md)


def test_T1_enqueue_bumps_finish_by_bytes():
    q = new_queue()
    q.vtime = 5000
    a = q.push(1500, tkey(1111))
    assert q.tail_finish(a) == 6500
    q.push(1500, tkey(1111))
    assert q.tail_finish(a) == 8000 and q.head_finish(a) == 6500
    b = q.push(500, tkey(1112))
    assert q.tail_finish(b) == 5500


def test_T2_idle_flow_reanchors_at_frontier():
    """Bug 4: an idle bucket starts at vtime, not 0."""
    q = new_queue()
    for _ in range(3):
        q.push(1500, tkey(3301))
    pop_all(q)
    assert q.vtime == 4500
    b = q.push(1200, tkey(3302))
    assert q.head_finish(b) == q.tail_finish(b) == 5700


def test_T3_drain_resets_finish_tags():
    """Bug 3: a drained bucket keeps no stale tags."""
    q = new_queue()
    b = q.push(1500, tkey(1111))
    q.pop()
    assert q.head_finish(b) == q.tail_finish(b) == 0 and q.active_buckets == 0


def test_T4_vtime_tracks_served_finish():
    q = new_queue()
    for _ in range(3):
        q.push(1500, tkey(1111))
    seen = []
    for _ in range(3):
        q.pop()
        seen.append(q.vtime)
    assert seen == [1500, 3000, 4500]


def test_T5_vtime_does_not_accumulate_across_flows():
    """Bug 5: vtime is the served finish, not the aggregate of drained bytes."""
    q = new_queue()
    for i in range(10):
        q.push(1500, tkey(4000 + i))
    pop_all(q)
    assert q.vtime == 1500


def test_T6_brief_idle_reentry_both_max_arms():
    q = new_queue()
    a = q.push(1500, tkey(1001))
    q.pop()
    assert q.vtime == 1500
    q.push(800, tkey(1002))
    q.pop()
    assert q.vtime == 2300
    q.push(1200, tkey(1001))
    assert q.head_finish(a) == q.tail_finish(a) == 3500
    q.push(900, tkey(1001))
    assert q.head_finish(a) == 3500 and q.tail_finish(a) == 4400


def test_T7_same_bucket_multipop_drop_keeps_dropped_finish():
    """Bug 12: the dropped packet's service stays consumed."""
    q = new_queue()
    for i, n in enumerate([1000, 2000, 1500]):
        b = q.push(n, tkey(1111), addr=i)
    a1 = q.pop()
    assert q.head_finish(b) == 3000
    q.pop()
    assert q.head_finish(b) == 4500
    q.drop_orphan()
    q.push_front(a1)
    assert q.head_finish(b) == 3000
    q.check_invariants()
    assert q.pop().addr == 0
    assert q.head_finish(b) == 4500


def test_T8_scratch_drop_preserves_vtime_for_survivors():
    """Bug 11: restoring survivors keeps the dropped packet's vtime advance."""
    q = new_queue()
    x = q.push(1500, tkey(1111))
    y = q.push(2000, tkey(1112))
    q.push(3000, tkey(1113))
    px, py = q.pop(), q.pop()
    q.pop()
    assert q.vtime == 3000
    q.drop_orphan()
    q.push_front(py)
    q.push_front(px)
    assert q.vtime == 3000
    assert q.head_finish(x) == 1500 and q.head_finish(y) == 2000
    w = q.push(100, tkey(1001))
    assert q.head_finish(w) == 3100
    q.check_invariants()


def test_T9_drained_bucket_orphan_drop_keeps_served_finish():
    """Bug 13."""
    q = new_queue()
    a = q.push(1000, tkey(8001))
    q.push(2000, tkey(8001))
    c = q.push(2500, tkey(8002))
    a1 = q.pop()
    assert a1.bucket == a and q.head_finish(a) == 3000
    pc = q.pop()
    assert pc.bucket == c
    assert q.pop().bucket == a and q.active_buckets == 0
    q.drop_orphan()
    q.push_front(pc)
    q.push_front(a1)
    assert q.head_finish(c) == 2500 and q.head_finish(a) == 3000
    assert q.pop().bucket == c


def test_T10_push_front_neutral_on_active_bucket():
    """Bugs 6 and 7: push_front rewinds vtime and the head."""
    q = new_queue()
    for n in [1000, 2000, 1500]:
        b = q.push(n, tkey(1111))
    assert (q.head_finish(b), q.tail_finish(b), q.bucket_bytes(b), q.vtime) == (1000, 4500, 4500, 0)
    p = q.pop()
    assert q.head_finish(b) == 3000 and q.vtime == 1000
    q.push_front(p)
    assert (q.head_finish(b), q.tail_finish(b), q.bucket_bytes(b), q.vtime) == (1000, 4500, 4500, 0)


def test_T11_push_front_neutral_on_drained_bucket():
    """Bug 8: a drained bucket is restored at its old tags, not re-anchored."""
    q = new_queue()
    q.vtime = 5000
    b = q.push(1500, tkey(7777))
    assert q.head_finish(b) == q.tail_finish(b) == 6500
    p = q.pop()
    assert q.head_finish(b) == q.tail_finish(b) == 0 and q.vtime == 6500
    q.push_front(p)
    assert q.head_finish(b) == q.tail_finish(b) == 6500
    assert q.vtime == 5000 and q.active_buckets == 1


def state(q, buckets):
    return (
        q.vtime,
        q.active_buckets,
        q.peak_active_buckets,
        q.queued_bytes,
        [
            (q.head_finish(b), q.tail_finish(b), q.bucket_bytes(b), q.bucket_packets(b))
            for b in buckets
        ],
    )


def test_T12_batched_rollback_restores_everything():
    q = new_queue()
    q.vtime = 3000
    for n in [1000, 1200, 800, 1400]:
        b = q.push(n, tkey(1111))
    assert (q.head_finish(b), q.tail_finish(b), q.bucket_bytes(b)) == (4000, 7400, 4400)
    before = state(q, [b])
    popped = [q.pop() for _ in range(4)]
    assert q.n_snapshots == 4
    for p in reversed(popped):
        q.push_front(p)
    assert state(q, [b]) == before


def test_T13_batched_rollback_across_buckets():
    """Bug 9: one snapshot per pop, not one slot."""
    q = new_queue()
    q.vtime = 100
    a = q.push(1500, tkey(6001))
    b = q.push(900, tkey(6002))
    assert q.head_finish(a) == 1600 and q.head_finish(b) == 1000
    q.vtime = 5000
    popped = [q.pop(), q.pop()]
    assert [p.bucket for p in popped] == [b, a] and q.vtime == 5000
    for p in reversed(popped):
        q.push_front(p)
    assert q.head_finish(a) == 1600 and q.head_finish(b) == 1000
    assert q.vtime == 5000 and q.active_buckets == 2


def test_T14_drain_all_restore_front_round_trip():
    """Bug 14: a drain/restore round trip leaves vtime and tags unchanged."""
    q = new_queue()
    q.vtime = 5000
    for n in [1000, 2000, 1500]:
        b = q.push(n, tkey(1111))
    items = q.drain_all()
    assert q.vtime == 9500 and q.n_snapshots == 0
    q.restore_front(items)
    assert (q.head_finish(b), q.tail_finish(b), q.vtime) == (6000, 9500, 5000)
    # a new flow does not jump ahead of the restored backlog
    w = q.push(1000, tkey(2222))
    assert q.head_finish(w) == 6000 and q.pop().bucket == b


def test_T15_snapshot_stack_bounded():
    """Bug 10: the stack never exceeds the batch size; drain_all leaves it empty."""
    q = new_queue()
    for i in range(128):
        q.push(100, tkey(i))
    for _ in range(64):
        q.pop()
    assert q.n_snapshots == 64
    with pytest.raises(RuntimeError, match="snapshot stack"):
        q.pop()
    q.clear_snapshots()
    for _ in range(64):
        q.pop()
    assert q.n_snapshots == 64
    for i in range(364):
        q.push(100, tkey(i))
    assert q.n_snapshots == 0
    assert len(q.drain_all()) == 364 and q.n_snapshots == 0


def test_bug15_push_front_of_other_bucket_is_fatal():
    q = new_queue()
    q.push(1000, tkey(1111))
    q.push(1000, tkey(1112))
    q.pop()
    second = q.pop()
    with pytest.raises(RuntimeError, match="does not match the top snapshot"):
        q.push_front(QueuedPacket(0, 1000, 0, flow_bucket(0, tkey(1111)) ^ 1))
    q.push_front(second)
    q.check_invariants()


def test_drop_orphan_without_pop_and_bad_push_front_rejected():
    q = new_queue()
    with pytest.raises(RuntimeError, match="no snapshot"):
        q.drop_orphan()
    with pytest.raises(ValueError):
        q.push_front(QueuedPacket(0, 0, 0, 1))
    with pytest.raises(ValueError):
        q.push_front(QueuedPacket(0, 10, 0, 4096))


def test_saturation_at_u64_max():
    """Tags saturate instead of wrapping."""
    q = new_queue()
    q.vtime = U64 - 10_000
    b = q.push(9000, tkey(1111))
    assert q.head_finish(b) == q.tail_finish(b) == U64 - 1000
    q.push(9000, tkey(1111))
    assert q.tail_finish(b) == U64 and q.head_finish(b) == U64 - 1000
    q.pop()
    assert q.head_finish(b) == U64 and q.vtime == U64 - 1000


def test_zero_length_rejected():
    q = new_queue()
    with pytest.raises(ValueError, match="length"):
        q.push(0, tkey(1))
    assert q.n_items == 0


def test_capacity_is_enforced():
    q = new_queue(capacity_items=3)
    for i in range(3):
        q.push(100, tkey(i))
    with pytest.raises(OverflowError):
        q.push(100, tkey(9))
    q.check_invariants()


# ---------------------------------------------------------------- batch drain and settle


def test_dequeue_batch_and_partial_settle_restore_exactly():
    q = new_queue()
    ref = new_queue()
    for i in range(200):
        for target in (q, ref):
            target.push(64 + (i * 37) % 1400, tkey(1000 + i % 13), addr=i)
    out = np.zeros(64, XDP_DESC)
    n = q.dequeue_batch(out, 100)
    assert n == 64 and q.n_snapshots == 64
    q.settle(10)
    q.check_invariants()
    sent = out["addr"][:10].tolist()
    rest = [p.addr for p in pop_all(q)]
    expected = [p.addr for p in pop_all(ref)]
    assert sent + rest == expected
    with pytest.raises(ValueError, match="exceeds"):
        q.settle(5)


def test_dequeue_batch_requires_desc_dtype():
    q = new_queue()
    with pytest.raises(TypeError, match="XDP_DESC"):
        q.dequeue_batch(np.zeros(4, np.uint64))


def test_model_agrees_on_golden_vectors():
    for pushes, order, vtime in GOLDEN:
        m = ModelQueue()
        for sport, n in pushes:
            m.push_back(ModelItem(m.bucket(tkey(sport)), n, sport))
        got = []
        while (it := m.pop()) is not None:
            got.append(it.tag)
        assert got == order and m.vtime == vtime


def test_abstract_base_cannot_be_built():
    from xpfdp.cos import CosQueue

    with pytest.raises(TypeError, match="abstract"):
        CosQueue()


def test_reinit_rejected():
    q = FlowFairQueue(seed=0)
    with pytest.raises(RuntimeError, match="already initialised"):
        q.__init__()
