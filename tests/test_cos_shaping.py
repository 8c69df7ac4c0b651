"""Token buckets, timers, the interface scheduler and simulated-clock behaviour (docs/cos.md)."""

import numpy as np
import pytest

from xpfdp.cos import (
    XDP_DESC,
    FlowFairQueue,
    Scheduler,
    TokenBucket,
    guarantee_quantum_bytes,
    surplus_weight,
    wake_tick,
)

MS = 1_000_000
S = 1_000_000_000
GBPS = 125_000_000


def key(i):
    return (6, f"10.7.0.{i % 250}", "203.0.113.9", 30000 + i, 443)


# ---------------------------------------------------------------- token bucket (docs/cos.md)


def test_first_refill_starts_full_and_refill_is_lazy():
    tb = TokenBucket(1_000_000, 5000)
    tb.refill(123)
    assert tb.tokens == 5000 and tb.last_refill_ns == 123
    assert tb.try_consume(5000, 123) and tb.tokens == 0
    tb.refill(123 + 999)  # 0.999 bytes: nothing added, stamp kept
    assert tb.tokens == 0 and tb.last_refill_ns == 123
    tb.refill(123 + 1000)
    assert tb.tokens == 1 and tb.last_refill_ns == 1123
    tb.refill(1123 + 10 * S)
    assert tb.tokens == 5000  # capped at burst
    tb.refill(100)  # clock going backwards changes nothing
    assert tb.tokens == 5000


def test_ns_until_rounds_up_and_rate_zero_is_uncapped():
    tb = TokenBucket(3, 10)
    tb.refill(0)
    assert tb.try_consume(10, 0)
    assert tb.ns_until(1) == 333_333_334 and tb.ns_until(0) == 0
    free = TokenBucket(0, 1000)
    assert all(free.try_consume(1500, t) for t in range(100)) and free.ns_until(10**9) == 0


def test_overhead_bytes_and_no_overflow_at_high_rates():
    tb = TokenBucket(1_000_000, 10_000, overhead_bytes=24)
    assert tb.cost(1500) == 1524
    assert tb.try_consume(1500, 0) and tb.tokens == 10_000 - 1524
    fast = TokenBucket(25 * GBPS * 8, 2**40)
    fast.refill(0)
    fast.try_consume(2**32 - 1, 0)
    fast.refill(10**12)  # 1000 s x 25 GB/s would overflow a 64-bit product
    assert fast.tokens == 2**40


def test_zero_burst_never_primes():
    tb = TokenBucket(1000, 0)
    assert not tb.try_consume(1, 10**9) and tb.tokens == 0


def test_wake_tick_vector():
    tb = TokenBucket(1_000_000, 96_000)
    tb.refill(0)
    tb.try_consume(96_000, 0)
    assert tb.ns_until(1500) == 1_500_000
    assert wake_tick(0, tb.ns_until(1500)) == 30
    assert wake_tick(10 * 50_000, 0) == 11  # never the current tick


def test_guarantee_quantum_and_weight_vectors():
    assert [guarantee_quantum_bytes(r) for r in (1_000_000, GBPS // 10, GBPS, 10 * GBPS)] == [
        1500, 2500, 25_000, 250_000,
    ]  # fmt: skip
    assert guarantee_quantum_bytes(25 * GBPS) == 524_288
    assert surplus_weight(GBPS, 25 * GBPS) == 1
    assert surplus_weight(10 * GBPS, 25 * GBPS) == 7
    assert surplus_weight(24 * GBPS, 25 * GBPS) == 16
    assert surplus_weight(0, GBPS) == surplus_weight(GBPS, 0) == 1


# ------------------------------------------------- scheduler vectors (docs/cos.md, Service order)

OUT = np.zeros(64, XDP_DESC)


def fill(queue, count, length=1500, flows=1, start=0):
    for i in range(count):
        queue.push(length, key(i % flows) if queue.flow_fair else None, addr=start + i)


def test_guarantee_visit_limited_to_quantum():
    s = Scheduler()
    q = s.add_queue(0, transmit_rate_bytes_per_s=1_000_000)
    fill(q, 4)
    assert s.drain(OUT, 0) == 1
    assert s.last_batch == (0, "nonexact_guarantee")


def test_high_rate_guarantee_batch_is_64():
    s = Scheduler()
    q = s.add_queue(0, transmit_rate_bytes_per_s=10 * GBPS, buffer_bytes=262_144)
    fill(q, 200)
    assert s.drain(OUT, 0) == 64


def test_backlogged_queues_alternate():
    s = Scheduler()
    for qid in (0, 1):
        fill(s.add_queue(qid, transmit_rate_bytes_per_s=1_000_000), 10)
    order = []
    for _ in range(6):
        s.drain(OUT, 0)
        order.append(s.last_batch[0])
    assert order == [0, 1, 0, 1, 0, 1]


def test_surplus_priority_and_weights():
    s = Scheduler()
    fill(s.add_queue(0, priority=5), 10)
    fill(s.add_queue(1, priority=0), 10)
    s.drain(OUT, 0)
    assert s.last_batch == (1, "surplus")
    w = Scheduler()
    fill(w.add_queue(0, weight=1), 10)
    fill(w.add_queue(1, weight=4), 10)
    assert w.drain(OUT, 0) == 1 and w.last_batch[0] == 0
    assert w.drain(OUT, 0) == 4 and w.last_batch[0] == 1


def test_bad_queue_config_rejected():
    s = Scheduler()
    s.add_queue(1)
    with pytest.raises(ValueError, match="unique"):
        s.add_queue(1)
    with pytest.raises(ValueError, match="priority"):
        s.add_queue(2, priority=6)
    with pytest.raises(ValueError, match="exact queue needs"):
        s.add_queue(3, exact=True)
    with pytest.raises(ValueError, match="surplus_sharing"):
        s.add_queue(4, surplus_sharing=True)
    with pytest.raises(ValueError, match="weight"):
        s.add_queue(5, weight=17)
    with pytest.raises(TypeError, match="XDP_DESC"):
        s.drain(np.zeros(4, np.uint64), 0)


def test_partial_settle_refunds_tokens_and_resends_in_order():
    s = Scheduler(GBPS)
    q = s.add_queue(0, transmit_rate_bytes_per_s=GBPS // 2, exact=True)
    fill(q, 100, flows=5)
    s.drain(OUT, 0)
    root_before = s.root_tokens
    n = s.drain(OUT, 0)
    assert n == 8  # quantum 12_500 B
    first = OUT["addr"][:n].tolist()
    tokens_after = s.queue_tokens(0)
    s.settle(3)
    assert s.queue_tokens(0) == tokens_after + (n - 3) * 1500
    assert s.root_tokens == root_before - 3 * 1500
    q.check_invariants()
    m = s.drain(OUT, 0)
    assert OUT["addr"][: n - 3].tolist() == first[3:n] and m >= n - 3
    with pytest.raises(ValueError, match="exceeds"):
        s.settle(m + 1)


def test_timer_park_and_wake_at_exact_tick():
    s = Scheduler(6_000_000)  # 1500 B every 250 us = 5 ticks of 50 us
    q = s.add_queue(0)
    fill(q, 200)
    sent = 0
    while (n := s.drain(OUT, 0)) > 0:
        sent += n
    assert sent == 64 and s.is_parked(0)
    assert s.next_wakeup_ns() == 250_000 and wake_tick(0, s.next_wakeup_ns()) == 5
    assert s.drain(OUT, 4 * 50_000) == 0 and s.is_parked(0)
    assert s.drain(OUT, 5 * 50_000) == 1
    assert s.counters["root_token_starvation_parks"] >= 1


def test_bug23_rate_zero_root_is_transparent():
    s = Scheduler(0)
    q = s.add_queue(0)
    e = s.add_queue(1, transmit_rate_bytes_per_s=1_000_000, exact=True)
    fill(q, 500)
    fill(e, 500, flows=3)
    total = 0
    for _ in range(1000):
        total += s.drain(OUT, 0)
    assert q.n_items == 0  # never parked on the root
    assert s.is_parked(1) and s.next_wakeup_ns() is not None  # exact cap still applies
    assert total == 500 + 64


def test_bug24_exact_and_nonexact_cursors_are_independent():
    s = Scheduler()
    a = s.add_queue(0, transmit_rate_bytes_per_s=1_000_000, exact=True)
    fill(s.add_queue(1, transmit_rate_bytes_per_s=1_000_000), 10, start=100)
    fill(s.add_queue(2, transmit_rate_bytes_per_s=1_000_000), 10, start=200)
    served = []
    for i in range(4):
        fill(a, 1, flows=1, start=i)
        for _ in range(2):
            s.drain(OUT, 0)
            served.append(s.last_batch[0])
    assert served == [0, 1, 0, 2, 0, 1, 0, 2]


@pytest.mark.parametrize("sharing", [True, False])
def test_bug25_surplus_sharing_exact_queue_is_not_parked(sharing):
    s = Scheduler(GBPS)
    q = s.add_queue(0, transmit_rate_bytes_per_s=1_000_000, exact=True, surplus_sharing=sharing)
    fill(q, 200, flows=4)
    while s.drain(OUT, 0) and s.last_batch[1] == "exact_guarantee":
        pass
    tokens = s.queue_tokens(0)
    assert tokens < 1500
    if sharing:
        assert s.last_batch == (0, "surplus") and not s.is_parked(0)
        s.drain(OUT, 0)
        assert s.queue_tokens(0) == tokens  # surplus is not charged to the exact cap
        assert s.counters["queue_token_starvation_parks"] == 0
    else:
        assert s.is_parked(0) and s.counters["queue_token_starvation_parks"] == 1
        assert s.drain(OUT, 0) == 0


# ---------------------------------------------------------------- simulated clock


def simulate(s, until_ns, feed, batch_ns=1000):
    """Drive `s` on a simulated clock; returns [(time, queue_id, bytes, lengths, addrs)]."""
    log, now = [], 0
    while now < until_ns:
        feed(now)
        n = s.drain(OUT, now)
        if n:
            qid = s.last_batch[0]
            lens = OUT["len"][:n].tolist()
            log.append((now, qid, sum(lens), lens, OUT["addr"][:n].tolist()))
            now += batch_ns
        else:
            wake = s.next_wakeup_ns()
            now = wake if wake is not None and wake > now else now + 10_000
    return log


def keep_backlogged(queue, length=1500, flows=1, depth=256):
    counter = [0]

    def feed(_now):
        while queue.n_items < depth:
            queue.push(length, key(counter[0] % flows) if queue.flow_fair else None)
            counter[0] += 1

    return feed


def window_bytes(log, start, end, qid=None):
    return sum(b for t, q, b, _, _ in log if start <= t < end and (qid is None or q == qid))


@pytest.mark.parametrize("overhead", [0, 24])
def test_shaped_root_output_within_half_percent_over_one_second(overhead):
    rate = GBPS // 10
    s = Scheduler(rate, overhead_bytes=overhead)
    q = s.add_queue(0)
    log = simulate(s, S + 200 * MS, keep_backlogged(q))
    sent = window_bytes(log, 100 * MS, 1100 * MS)
    packets = sum(len(lens) for t, _, _, lens, _ in log if 100 * MS <= t < 1100 * MS)
    assert abs(sent + packets * overhead - rate) <= 0.005 * rate


def test_exact_queue_capped_at_its_rate_and_residual_goes_to_others():
    s = Scheduler(GBPS // 10)
    exact = s.add_queue(0, transmit_rate_bytes_per_s=5_000_000, exact=True, priority=0)
    bulk = s.add_queue(1)
    feeds = [keep_backlogged(exact, flows=4), keep_backlogged(bulk)]
    log = simulate(s, S + 200 * MS, lambda now: [f(now) for f in feeds])
    assert abs(window_bytes(log, 100 * MS, 1100 * MS, 0) - 5_000_000) <= 0.005 * 5_000_000
    assert abs(window_bytes(log, 100 * MS, 1100 * MS, 1) - 7_500_000) <= 0.01 * 7_500_000


def test_surplus_shared_by_weight():
    s = Scheduler(GBPS // 10)
    light, heavy = s.add_queue(0, weight=1), s.add_queue(1, weight=3)
    feeds = [keep_backlogged(light), keep_backlogged(heavy)]
    log = simulate(s, S, lambda now: [f(now) for f in feeds])
    ratio = window_bytes(log, 100 * MS, S, 1) / window_bytes(log, 100 * MS, S, 0)
    assert abs(ratio - 3) <= 0.02 * 3


def test_rate_zero_queue_never_deadlocks():
    for root_rate in (0, GBPS // 100):
        s = Scheduler(root_rate)
        q = s.add_queue(0)  # surplus-only, rate 0
        fill(q, 3000)
        log = simulate(s, 10 * S, lambda now: None)
        assert q.n_items == 0 and sum(len(x[3]) for x in log) == 3000


def test_flow_bytes_within_2_percent_of_equal_in_every_window():
    """Backlogged flows of different packet sizes through one exact (MQFQ) queue."""
    sizes = [64, 200, 576, 1000, 1400, 1500]
    q = FlowFairQueue(seed=0, capacity_items=65536)
    flows = []
    for f in range(1000):
        if len(flows) == len(sizes):
            break
        if all(q.bucket_of(key(f)) != q.bucket_of(key(g)) for g in flows):
            flows.append(f)
    bucket_size = {q.bucket_of(key(f)): size for f, size in zip(flows, sizes, strict=True)}
    queued = dict.fromkeys(flows, 0)
    served = []
    for _ in range(30000):
        for f, size in zip(flows, sizes, strict=True):  # every flow stays backlogged
            while queued[f] < 4:
                q.push(size, key(f))
                queued[f] += 1
        q.clear_snapshots()
        b = q.pop().bucket
        queued[flows[sizes.index(bucket_size[b])]] -= 1
        served.append(b)
    # windows holding 100 packets of every flow's size: 100 x Σ sizes bytes of service
    window = 100 * sum(sizes)
    served = np.array(served)
    lens = np.array([bucket_size[b] for b in served], np.int64)
    ends = np.concatenate([[0], np.cumsum(lens)])
    starts = np.searchsorted(ends, ends - window)  # first packet of the window ending here
    full = ends - ends[starts] >= window - 1500
    fair = (ends - ends[starts])[full] / len(sizes)
    worst = 0.0
    for b in bucket_size:
        per_flow = np.concatenate([[0], np.cumsum(np.where(served == b, lens, 0))])
        got = (per_flow - per_flow[starts])[full]
        worst = max(worst, float(np.max(np.abs(got - fair) / fair)))
    print("worst relative deviation from the fair share:", worst)
    assert worst <= 0.02


def test_new_mouse_served_within_one_packet_of_each_active_flow():
    """No head-start penalty: a new flow's first packet waits at most one packet per flow."""
    q = FlowFairQueue(seed=0)
    elephants = list(range(8))
    for _ in range(200):
        for e in elephants:
            q.push(1500, key(e))
    for _ in range(500):
        if q.n_snapshots == 64:
            q.clear_snapshots()
        q.pop()
    mouse = q.push(64, key(999))
    before = []
    while True:
        q.clear_snapshots()
        p = q.pop()
        if p.bucket == mouse:
            break
        before.append(p.bucket)
    assert len(before) <= len(elephants) and len(set(before)) == len(before)


def test_jumbo_packet_larger_than_surplus_quantum_is_sent_on_first_drain():
    """Found by the scheduler property test: a drain that only credited deficit returned 0
    with no wake-up time, so a caller sleeping until next_wakeup_ns() stalled forever."""
    s = Scheduler(GBPS)
    q = s.add_queue(0, weight=1)
    q.push(9000, addr=7)
    assert s.drain(OUT, 0) == 1 and OUT["addr"][0] == 7


def test_scheduled_queue_only_dequeues_through_the_scheduler():
    s = Scheduler()
    q = s.add_queue(0, transmit_rate_bytes_per_s=GBPS, exact=True)
    q.push(100, key(1))
    for call in (q.pop, q.drain_all, q.clear_snapshots, lambda: q.dequeue_batch(OUT)):
        with pytest.raises(RuntimeError, match="belongs to a Scheduler"):
            call()
    assert s.drain(OUT, 0) == 1
