"""Pure-Python reference model of the MQFQ queue (docs/cos.md).

Written independently of the Cython code: a list in ring order instead of a heap, dicts
instead of dense arrays. Tests compare the two operation by operation; benchmarks use the
model and the DRR queue below as baselines.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

U64 = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15


def model_bucket(seed: int, key, nbuckets: int = 4096) -> int:
    """Flow hash; key = (protocol, src, dst, sport, dport) or None."""
    if key is None:
        return 0
    protocol, src, dst, sport, dport = key
    src_b = ipaddress.ip_address(src).packed
    dst_b = ipaddress.ip_address(dst).packed
    family = 2 if len(src_b) == 4 else 10

    def mix(s: int, v: int) -> int:
        return (s ^ ((v + GOLDEN + ((s << 6) & U64) + (s >> 2)) & U64)) & U64

    s = seed ^ protocol ^ (family << 8)
    for addr in (src_b, dst_b):
        if len(addr) == 4:
            s = mix(s, int.from_bytes(addr, "big"))
        else:
            s = mix(s, int.from_bytes(addr[:8], "big"))
            s = mix(s, int.from_bytes(addr[8:], "big"))
    s = mix(s, sport)
    s = mix(s, dport)
    return (s & 0xFFFF) & (nbuckets - 1)


@dataclass(frozen=True)
class ModelItem:
    """A queued packet of the model: its bucket, length and an identifying tag."""

    bucket: int
    len: int
    tag: int


class ModelQueue:
    """Single-worker MQFQ with the ring tie-break and the LIFO snapshot stack."""

    def __init__(self, seed: int = 0, nbuckets: int = 4096) -> None:
        self.seed, self.nbuckets = seed, nbuckets
        self.vtime = 0
        self.active = 0
        self.peak = 0
        self.bytes: dict[int, int] = {}
        self.head: dict[int, int] = {}
        self.tail: dict[int, int] = {}
        self.items: dict[int, deque[ModelItem]] = {}
        self.ring: list[int] = []  # active buckets in tie-break order (ascending seq)
        self.seq: dict[int, int] = {}  # activation sequence of each active bucket
        self.back_seq, self.front_seq = 0, -1
        self.stack: list[list[int]] = []  # [bucket, pre_head, pre_tail, pre_vtime, pre_seq]

    def bucket(self, key) -> int:
        """Bucket of a flow key."""
        return model_bucket(self.seed, key, self.nbuckets)

    def _activate(self) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)

    def push_back(self, item: ModelItem) -> None:
        """Enqueue (docs/cos.md, MQFQ)."""
        self.stack.clear()
        b, n = item.bucket, item.len
        idle = self.bytes.get(b, 0) == 0
        if idle:
            self._activate()
        self.bytes[b] = min(self.bytes.get(b, 0) + n, U64)
        self.tail[b] = min(max(self.tail.get(b, 0), self.vtime) + n, U64)
        if idle:
            self.head[b] = self.tail[b]
        q = self.items.setdefault(b, deque())
        if not q:
            self.ring.append(b)
            self.seq[b] = self.back_seq
            self.back_seq += 1
        q.append(item)

    def _select(self) -> int | None:
        best = None
        for b in self.ring:
            if best is None or self.head[b] < self.head[best]:
                best = b
        return best

    def pop(self, snapshot: bool = True) -> ModelItem | None:
        """Dequeue (docs/cos.md, MQFQ)."""
        b = self._select()
        if b is None:
            return None
        if snapshot:
            self.stack.append([b, self.head[b], self.tail[b], self.vtime, self.seq[b]])
        served = self.head[b]
        it = self.items[b].popleft()
        self.vtime = max(self.vtime, served) if snapshot else min(self.vtime + it.len, U64)
        if self.items[b]:
            self.head[b] = min(self.head[b] + self.items[b][0].len, U64)
        else:
            self.ring.remove(b)
        rem = max(self.bytes[b] - it.len, 0)
        if self.bytes[b] > 0 and rem == 0:
            self.active -= 1
            self.head[b] = self.tail[b] = 0
        self.bytes[b] = rem
        return it

    def push_front(self, item: ModelItem) -> None:
        """Rollback (docs/cos.md) of the most recent pop of `item`."""
        b, n = item.bucket, item.len
        snap = None
        if self.stack:
            if self.stack[-1][0] != b:
                raise RuntimeError("snapshot/bucket mismatch")
            snap = self.stack.pop()
        self.vtime = snap[3] if snap else max(self.vtime - n, 0)
        q = self.items.setdefault(b, deque())
        if not q:
            if snap:
                self.bytes[b] = min(self.bytes.get(b, 0) + n, U64)
                self.head[b], self.tail[b] = snap[1], snap[2]
                self._activate()
            else:
                idle = self.bytes.get(b, 0) == 0
                if idle:
                    self._activate()
                self.bytes[b] = min(self.bytes.get(b, 0) + n, U64)
                self.tail[b] = min(max(self.tail.get(b, 0), self.vtime) + n, U64)
                if idle:
                    self.head[b] = self.tail[b]
            q.appendleft(item)
            if snap:  # back to its old ring place
                self.seq[b] = snap[4]
                self.ring.insert(sum(1 for r in self.ring if self.seq[r] < snap[4]), b)
            else:  # front of the ring
                self.seq[b] = self.front_seq
                self.front_seq -= 1
                self.ring.insert(0, b)
        else:
            self.head[b] = max(self.head[b] - q[0].len, 0)
            self.bytes[b] = min(self.bytes[b] + n, U64)
            q.appendleft(item)

    def drop_orphan(self) -> None:
        """Orphan (docs/cos.md, Rollback): the last popped item was discarded."""
        orphan = self.stack.pop()
        z, f = self.vtime, orphan[1]
        for s in self.stack:
            s[3] = max(s[3], z)
            if s[0] == orphan[0]:
                s[1] = max(s[1], f)
                s[2] = max(s[2], f)

    def queued_bytes(self) -> int:
        """Total bytes queued."""
        return sum(self.bytes.values())


class DrrQueue:
    """Deficit round-robin over hash buckets (the packet-fair primitive MQFQ is compared with).

    Benchmark baseline only: each bucket's turn adds a 1500 B quantum and serves packets
    while the deficit covers them.
    """

    QUANTUM = 1500

    def __init__(self) -> None:
        self.items: dict[int, deque[ModelItem]] = {}
        self.deficit: dict[int, int] = {}
        self.ring: deque[int] = deque()
        self.in_turn = False

    def push_back(self, item: ModelItem) -> None:
        """Enqueue; an idle bucket joins the back of the round."""
        q = self.items.setdefault(item.bucket, deque())
        if not q:
            self.ring.append(item.bucket)
            self.deficit[item.bucket] = 0
        q.append(item)

    def pop(self) -> ModelItem | None:
        """Dequeue the next packet in DRR order."""
        while self.ring:
            b = self.ring[0]
            q = self.items[b]
            if not self.in_turn:
                self.deficit[b] += self.QUANTUM
                self.in_turn = True
            if self.deficit[b] >= q[0].len:
                it = q.popleft()
                self.deficit[b] -= it.len
                if not q:
                    self.ring.popleft()
                    self.deficit[b] = 0
                    self.in_turn = False
                return it
            self.ring.rotate(-1)
            self.in_turn = False
        return None
