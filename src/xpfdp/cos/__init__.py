"""Class-of-service: MQFQ flow-fair queues, FIFO queues, token buckets and the shaper.

The per-packet work is in `xpfdp._fast.cos` (nogil Cython); this package is its public face
plus the fairness metrics (`xpfdp.cos.fairness`). See docs/cos.md for the algorithms.

Typical use: build a `Scheduler` per egress interface, add queues, admit bursts with
`queue.enqueue_batch(desc, meta, umem)`, then call `drain(out_desc, now_ns)` per TX batch
and `settle(accepted)` if the TX ring took only a prefix.
"""

import enum

from xpfdp._fast import cos as _cos
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


class Admission(enum.IntEnum):
    """What `enqueue` returns and `enqueue_batch` writes per packet (VERDICT_NAMES[code])."""

    ADMIT = _cos.ADMIT
    ADMIT_MARKED = _cos.ADMIT_MARKED  # admitted and marked ECN CE
    DROP_FLOW_SHARE = _cos.DROP_FLOW_SHARE
    DROP_BUFFER = _cos.DROP_BUFFER
    DROP_CAPACITY = _cos.DROP_CAPACITY
    DROP_BAD_DESC = _cos.DROP_BAD_DESC


if [m.name.lower() for m in Admission] != list(VERDICT_NAMES):
    raise ImportError("xpfdp.cos.Admission disagrees with the extension: stale build")

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
    "Admission",
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
