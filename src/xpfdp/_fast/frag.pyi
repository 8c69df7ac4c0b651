"""Type stubs for xpfdp._fast.frag (the per-worker IP fragment table)."""

import ipaddress
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from typing_extensions import disjoint_base

_Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address
_Frame = tuple[int, int, int]  # (addr, len, port)

STAT_NAMES: tuple[str, ...]
HELD: int
LIMIT: int
NOTED: int

def fragment_info(frame: bytes | bytearray | memoryview) -> dict[str, Any] | None: ...

@disjoint_base
class FragTable:
    def __new__(
        cls, max_entries: int = 4096, max_held_frames: int = 256, timeout_s: float = 30.0
    ) -> Self: ...
    @property
    def max_entries(self) -> int: ...
    @property
    def max_held_frames(self) -> int: ...
    @property
    def timeout_ns(self) -> int: ...
    @property
    def held_frames(self) -> int: ...
    def __len__(self) -> int: ...
    def first_fragment(
        self,
        src: _Address,
        dst: _Address,
        proto: int,
        frag_id: int,
        handle: int,
        now_ns: int,
        *,
        length: int = 0,
        more: bool = True,
    ) -> bool: ...
    def note_fragment(
        self,
        src: _Address,
        dst: _Address,
        proto: int,
        frag_id: int,
        decision: np.void | NDArray[np.void],
        now_ns: int,
        *,
        length: int = 0,
        more: bool = True,
    ) -> bool: ...
    def later_fragment(
        self,
        src: _Address,
        dst: _Address,
        proto: int,
        frag_id: int,
        offset: int,
        length: int,
        more: bool,
        frame: _Frame,
        now_ns: int,
        *,
        decision_out: NDArray[np.void] | None = None,
    ) -> int: ...
    def pop_released(self) -> list[_Frame]: ...
    def expire(self, now_ns: int) -> list[_Frame]: ...
    def drain(self) -> list[_Frame]: ...
    def stats(self) -> dict[str, int]: ...
    def check_invariants(self) -> None: ...
