"""The README's CoS example, kept runnable: same code, with its printed results asserted."""

import numpy as np

from xpfdp.cos import XDP_DESC, FlowFairQueue, Scheduler, fairness


def test_readme_example():
    sched = Scheduler(shaping_rate_bytes_per_s=125_000_000)
    video = sched.add_queue(0, priority=0, transmit_rate_bytes_per_s=62_500_000, exact=True)
    bulk = sched.add_queue(1, priority=5)
    for i in range(6):
        video.enqueue(1200, key=(17, "10.0.0.1", "10.0.0.2", 5000 + i % 3, 443), addr=i * 4096)
        bulk.enqueue(1500, addr=(100 + i) * 4096)

    out = np.zeros(64, XDP_DESC)
    n = sched.drain(out, now_ns=0)
    assert sched.last_batch == (0, "exact_guarantee")
    assert (out["addr"][:n] // 4096).tolist() == [0, 1, 2, 3, 4, 5]
    sched.settle(n - 2)
    assert video.n_items == 2

    q = FlowFairQueue(seed=0)
    q.push(3000, key=(6, "10.0.0.1", "172.16.80.200", 1111, 5201))
    q.push(1500, key=(6, "10.0.0.2", "172.16.80.200", 1112, 5201))
    first = q.pop()
    q.push_front(first)
    assert [p.len for p in (q.pop(), q.pop())] == [1500, 3000] and q.vtime == 3000

    assert round(fairness.jain_index([1000, 1000, 900]), 4) == 0.9976
    assert round(fairness.cstruct([1, 1, 2, 2, 3, 3]), 4) == 0.4714
