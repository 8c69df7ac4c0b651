"""Class-of-service: MQFQ flow-fair queues, FIFO queues, token buckets and the shaper.

The per-packet work is in `xpfdp._fast.cos` (nogil Cython); this package is its public face
plus the fairness metrics (`xpfdp.cos.fairness`). See docs/cos.md for the algorithms.

Typical use: build a `Scheduler` per egress interface, add queues, admit bursts with
`queue.enqueue_batch(desc, meta, umem)`, then call `drain(out_desc, now_ns)` per TX batch
and `settle(accepted)` if the TX ring took only a prefix.
"""

from xpfdp._fast.cos import (
    ADMIT,
    ADMIT_MARKED,
    BATCH_MAX,
    DROP_BAD_DESC,
    DROP_BUFFER,
    DROP_CAPACITY,
    DROP_FLOW_SHARE,
    PHASE_NAMES,
    VERDICT_NAMES,
    XDP_DESC,
    CosQueue,
    FifoQueue,
    FlowFairQueue,
    QueuedPacket,
    Scheduler,
    TokenBucket,
    admission_limits_for,
    default_burst_bytes,
    flow_bucket,
    guarantee_quantum_bytes,
    new_flow_seed,
    surplus_weight,
    wake_tick,
)
from xpfdp.cos import fairness

__all__ = [
    "ADMIT",
    "ADMIT_MARKED",
    "BATCH_MAX",
    "DROP_BAD_DESC",
    "DROP_BUFFER",
    "DROP_CAPACITY",
    "DROP_FLOW_SHARE",
    "PHASE_NAMES",
    "VERDICT_NAMES",
    "XDP_DESC",
    "CosQueue",
    "FifoQueue",
    "FlowFairQueue",
    "QueuedPacket",
    "Scheduler",
    "TokenBucket",
    "admission_limits_for",
    "default_burst_bytes",
    "fairness",
    "flow_bucket",
    "guarantee_quantum_bytes",
    "new_flow_seed",
    "surplus_weight",
    "wake_tick",
]
