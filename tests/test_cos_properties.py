"""Property tests: the Cython queue equals the pure-Python model operation by operation,
keeps the docs/cos.md invariants, conserves bytes and packets, and rolls back exactly."""

import numpy as np
from cos_model import ModelItem, ModelQueue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpfdp.cos import XDP_DESC, FlowFairQueue

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NBUCKETS = 16  # small, so flows collide and ties are frequent

flows = st.integers(0, 40)
lengths = st.sampled_from([1, 64, 100, 500, 1000, 1500, 9000])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), flows, lengths),
        st.tuples(st.just("pop"), st.booleans()),
        st.tuples(st.just("push_front")),
        st.tuples(st.just("drop_orphan")),
        st.tuples(st.just("clear")),
        st.tuples(st.just("vtime"), st.integers(0, 20000)),
    ),
    max_size=120,
)


def key(flow):
    return (6 if flow % 3 else 17, f"10.1.{flow // 250}.{flow % 250}", "192.0.2.1", 1000 + flow, 80)


def compare(q, m):
    assert q.vtime == m.vtime
    assert q.active_buckets == m.active and q.peak_active_buckets == m.peak
    assert q.queued_bytes == m.queued_bytes()
    assert q.n_snapshots == len(m.stack)
    assert q.active_order() == m.ring
    for b in range(NBUCKETS):
        assert q.bucket_bytes(b) == m.bytes.get(b, 0)
        assert q.head_finish(b) == (m.head.get(b, 0) if m.items.get(b) else 0)
        assert q.tail_finish(b) == (m.tail.get(b, 0) if m.items.get(b) else 0)
        assert [p.addr for p in q.bucket_packets(b)] == [it.tag for it in m.items.get(b, [])]


@SETTINGS
@given(ops)
def test_matches_model_and_keeps_invariants(operations):
    q = FlowFairQueue(nbuckets=NBUCKETS, seed=0)
    m = ModelQueue(seed=0, nbuckets=NBUCKETS)
    popped = []  # un-restored pops, most recent last: (queue packet, model item)
    tag = 0
    for op in operations:
        if op[0] == "push":
            _, flow, n = op
            b = q.push(n, key(flow), addr=tag)
            m.push_back(ModelItem(m.bucket(key(flow)), n, tag))
            assert b == m.bucket(key(flow))
            tag += 1
        elif op[0] == "pop":
            snapshot = op[1]
            if snapshot and len(m.stack) == 64:
                continue
            if not snapshot:  # no-snapshot pops are teardown pops: stack cleared first
                q.clear_snapshots()
                m.stack.clear()
            p, it = q.pop(snapshot), m.pop(snapshot)
            assert (p is None) == (it is None)
            if p is not None:
                assert (p.addr, p.len, p.bucket) == (it.tag, it.len, it.bucket)
                popped.append((p, it))
        elif op[0] == "push_front" and popped:
            p, it = popped.pop()
            q.push_front(p)
            m.push_front(it)
        elif op[0] == "drop_orphan" and m.stack:
            q.drop_orphan()
            m.drop_orphan()
            popped.pop()
        elif op[0] == "clear":
            q.clear_snapshots()
            m.stack.clear()
        elif op[0] == "vtime" and not m.active:
            q.vtime = m.vtime = op[1]
        q.check_invariants()
        compare(q, m)


@SETTINGS
@given(st.lists(st.tuples(flows, lengths), min_size=1, max_size=300), st.data())
def test_conservation_and_per_flow_order(pushes, data):
    """Interleaved enqueue, batch dequeue and partial settle lose, duplicate or reorder
    nothing within a flow."""
    q = FlowFairQueue(nbuckets=NBUCKETS, seed=1)
    out = np.zeros(64, XDP_DESC)
    sent = []
    pending = list(enumerate(pushes))
    while pending or q.n_items:
        for _ in range(data.draw(st.integers(0 if q.n_items else 1, 20))):
            if pending:
                tag, (flow, n) = pending.pop(0)
                q.push(n, key(flow), addr=tag)
        n = q.dequeue_batch(out, data.draw(st.integers(1, 64)))
        accepted = data.draw(st.integers(min(n, 1), n))  # at least one: progress
        sent.extend(out["addr"][:accepted].tolist())
        q.settle(accepted)
        q.check_invariants()
    assert sorted(sent) == list(range(len(pushes)))
    sent_bytes = sum(pushes[t][1] for t in sent)
    assert sent_bytes == sum(n for _, n in pushes)
    for flow in {f for f, _ in pushes}:
        order = [t for t in sent if pushes[t][0] == flow]
        assert order == sorted(order)


@SETTINGS
@given(
    st.lists(st.tuples(flows, lengths), min_size=1, max_size=150),
    st.integers(0, 149),
    st.integers(1, 64),
    st.integers(0, 5000),
)
def test_rollback_restores_state_and_future_order(pushes, pre_pops, batch, vtime):
    """Popping a batch and pushing all of it back gives the same state and the same
    service order as never having popped."""
    q = FlowFairQueue(nbuckets=NBUCKETS, seed=2)
    ref = FlowFairQueue(nbuckets=NBUCKETS, seed=2)
    for target in (q, ref):
        target.vtime = vtime
        for tag, (flow, n) in enumerate(pushes):
            target.push(n, key(flow), addr=tag)
        for _ in range(min(pre_pops, len(pushes) - 1)):
            target.pop(snapshot=False)
    before = snapshot_state(q)
    out = np.zeros(64, XDP_DESC)
    q.dequeue_batch(out, batch)
    q.settle(0)
    assert snapshot_state(q) == before
    q.check_invariants()
    assert [p.addr for p in drain(q)] == [p.addr for p in drain(ref)]


def snapshot_state(q):
    return (
        q.vtime,
        q.active_buckets,
        q.peak_active_buckets,
        q.queued_bytes,
        q.n_items,
        [
            (q.head_finish(b), q.tail_finish(b), q.bucket_bytes(b), q.bucket_packets(b))
            for b in range(NBUCKETS)
        ],
    )


def drain(q):
    out = []
    while True:
        q.clear_snapshots()
        p = q.pop()
        if p is None:
            return out
        out.append(p)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), flows, lengths), min_size=1, max_size=200),
    st.data(),
)
def test_scheduler_conserves_packets_with_partial_tx(pushes, data):
    """Through the scheduler with random partial TX acceptance, every packet leaves once
    and each flow keeps its order."""
    from xpfdp.cos import Scheduler

    s = Scheduler(12_500_000)
    queues = [
        s.add_queue(0, transmit_rate_bytes_per_s=2_000_000, exact=True, flow_buckets=16, seed=3),
        s.add_queue(1, transmit_rate_bytes_per_s=1_000_000, priority=2),
        s.add_queue(2, weight=3),
    ]
    for tag, (qi, flow, n) in enumerate(pushes):
        queues[qi].push(n, key(flow), addr=tag)
    out = np.zeros(64, XDP_DESC)
    sent, now = [], 0
    for _ in range(100_000):
        if not any(q.n_items for q in queues):
            break
        n = s.drain(out, now, data.draw(st.integers(1, 64)))
        if n:
            accepted = data.draw(st.integers(1, n))
            sent.extend(out["addr"][:accepted].tolist())
            s.settle(accepted)
        else:
            wake = s.next_wakeup_ns()
            assert wake is not None, "backlogged but nothing can ever be served"
            now = max(now + 1, wake)
        for q in queues:
            q.check_invariants()
    assert sorted(sent) == list(range(len(pushes)))
    for qi, flow in {(q, f) for q, f, _ in pushes}:
        order = [t for t in sent if pushes[t][:2] == (qi, flow)]
        assert order == sorted(order)
