"""Type stubs for xpfdp._fast.session (SessionTable and the key/decision helpers)."""

from collections.abc import Iterator
from typing import Self, final

import numpy as np
from numpy.typing import NDArray

_Records = NDArray[np.void]
_Row = np.void | NDArray[np.void]
_Ints = NDArray[np.integer]

WHEEL_TICK_NS: int
MAX_TIME_NS: int
MAX_SESSIONS: int
GC_INTERVAL_NS: int
WHEEL_BUCKETS: int
FAR_FUTURE_OFFSET: int
MAX_SESSION_DELTAS: int
DEFAULT_MAX_SESSIONS: int
TCP_CLOSING_TIMEOUT_S: int
OTHER_TIMEOUT_S: int
DEFAULT_TCP_TIMEOUT_S: int
DEFAULT_UDP_TIMEOUT_S: int
DEFAULT_ICMP_TIMEOUT_S: int
KEY_DTYPE: np.dtype[np.void]
DECISION_DTYPE: np.dtype[np.void]
META_DTYPE: np.dtype[np.void]
SESSION_DTYPE: np.dtype[np.void]
DELTA_DTYPE: np.dtype[np.void]
RECORD_BYTES: int
INDEX_NAMES: tuple[str, ...]
NAT_FLAGS: dict[str, int]
DISPOSITIONS: tuple[str, ...]
ORIGINS: tuple[str, ...]
SESSION_FLAGS: dict[str, int]
DELTA_KINDS: dict[str, int]

def forward_wire(keys: _Records, decisions: _Records) -> _Records: ...
def reverse_wire(keys: _Records, decisions: _Records) -> _Records: ...
def translated(keys: _Records, decisions: _Records) -> _Records: ...
def reverse_canonical(keys: _Records) -> _Records: ...
def reverse_decisions(keys: _Records, decisions: _Records) -> _Records: ...
def keys_from_meta(meta: _Records, out_keys: _Records) -> int: ...

@final
class SessionTable:
    @property
    def max_sessions(self) -> int: ...
    @max_sessions.setter
    def max_sessions(self, value: int) -> None: ...
    def __init__(
        self,
        max_sessions: int = 262144,
        tcp_timeout_s: int = 0,
        udp_timeout_s: int = 0,
        icmp_timeout_s: int = 0,
        hash_seed: int | None = None,
        early_eviction: bool = True,
    ) -> None: ...
    def set_timeouts(
        self, tcp_timeout_s: int = 0, udp_timeout_s: int = 0, icmp_timeout_s: int = 0
    ) -> None: ...
    @property
    def timeouts_s(self) -> tuple[int, int, int]: ...
    def install(
        self,
        key: _Row,
        decision: _Row | None = None,
        meta: _Row | None = None,
        now_ns: int = 0,
        origin: int = ...,
        tcp_flags: int = 0,
    ) -> int: ...
    def install_batch(
        self,
        keys: _Records,
        decisions: _Records,
        metas: _Records,
        now_ns: int,
        origins: _Ints | None = None,
        tcp_flags: _Ints | None = None,
        out_handles: NDArray[np.int64] | None = None,
    ) -> NDArray[np.int64]: ...
    def install_pair(
        self,
        key: _Row,
        decision: _Row | None = None,
        meta: _Row | None = None,
        now_ns: int = 0,
        tcp_flags: int = 0,
        reverse_egress_port: int = 0,
    ) -> tuple[int, int]: ...
    def install_pair_batch(
        self,
        keys: _Records,
        decisions: _Records,
        metas: _Records,
        now_ns: int,
        tcp_flags: _Ints | None = None,
        reverse_egress_ports: _Ints | None = None,
        out_forward: NDArray[np.int64] | None = None,
        out_reverse: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]: ...
    def upsert_synced(
        self,
        key: _Row,
        decision: _Row | None = None,
        meta: _Row | None = None,
        now_ns: int = 0,
        origin: int = ...,
        tcp_flags: int = 0,
        allow_replace_local: bool = False,
    ) -> int: ...
    def delete(self, key: _Row) -> bool: ...
    def delete_batch(self, keys: _Records) -> int: ...
    def touch(self, key: _Row, now_ns: int) -> bool: ...
    def touch_batch(self, handles: NDArray[np.int64], now_ns: int) -> int: ...
    def lookup(self, key: _Row, now_ns: int, tcp_flags: int = 0) -> int: ...
    def peek(self, key: _Row) -> int: ...
    def lookup_batch(
        self,
        keys: _Records,
        now_ns: int,
        out_handles: NDArray[np.int64] | None = None,
        tcp_flags: _Ints | None = None,
        out_via_alias: NDArray[np.uint8] | None = None,
    ) -> int: ...
    def peek_batch(
        self,
        keys: _Records,
        out_handles: NDArray[np.int64] | None = None,
        out_via_alias: NDArray[np.uint8] | None = None,
    ) -> int: ...
    def find_forward_nat(self, reply_key: _Row) -> int: ...
    def find_forward_wire(self, wire_key: _Row) -> int: ...
    def find_forward_nat_batch(
        self, keys: _Records, out_handles: NDArray[np.int64] | None = None
    ) -> int: ...
    def find_forward_wire_batch(
        self, keys: _Records, out_handles: NDArray[np.int64] | None = None
    ) -> int: ...
    def records(self, handles: NDArray[np.int64]) -> _Records: ...
    def entry(self, key: _Row) -> np.void | None: ...
    def keys(self) -> _Records: ...
    @property
    def last_gc_ns(self) -> int | None: ...
    @last_gc_ns.setter
    def last_gc_ns(self, value: int | None) -> None: ...
    @property
    def wheel_cursor_tick(self) -> int | None: ...
    def wheel_entries_for(self, key: _Row) -> int: ...
    def last_pop_stats(self) -> dict[str, int]: ...
    def expire(self, now_ns: int) -> _Records: ...
    def apply_deltas(
        self, deltas: _Records, now_ns: int, allow_replace_local: bool = False
    ) -> int: ...
    def subscribe_deltas(self, batch: int = 256) -> DeltaFeed: ...
    def export_deltas(self) -> _Records: ...
    def stats(self) -> dict[str, int]: ...
    def memory_bytes(self, include_wheel: bool = True) -> int: ...
    def index_load(self) -> dict[str, tuple[int, int, float]]: ...
    def check_invariants(self) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...

@final
class DeltaFeed:
    table: SessionTable | None
    batch: int
    def __new__(cls, table: SessionTable, batch: int = 256) -> Self: ...
    @property
    def attached(self) -> bool: ...
    def drain(self, max_deltas: int | None = None) -> _Records: ...
    def __iter__(self) -> Iterator[_Records]: ...
    def __next__(self) -> _Records: ...
    @property
    def pending(self) -> int: ...
    def close(self) -> None: ...
