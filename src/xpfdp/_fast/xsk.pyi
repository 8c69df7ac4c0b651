"""Type stubs for xpfdp._fast.xsk (Umem, Burst and the ports)."""

from types import TracebackType
from typing import Any, Protocol, Self, final

import numpy as np
from numpy.typing import NDArray
from typing_extensions import disjoint_base

from xpfdp.bpf import ProgramRegistry, XdpProgram
from xpfdp.errors import XpfdpError

ABI_VERSION: int
BUSY_POLL_BUDGET: int
MAX_BUSY_POLL_US: int
DESC: np.dtype[np.void]
PKT_META: np.dtype[np.void]
FRAME_STATES: tuple[str, ...]
STAT_NAMES: tuple[str, ...]
KERNEL_STAT_NAMES: tuple[str, ...]

class _FrameSource(Protocol):
    @property
    def buf(self) -> NDArray[np.uint8]: ...
    @property
    def offsets(self) -> NDArray[np.uint64]: ...
    @property
    def lengths(self) -> NDArray[np.uint32]: ...

class FrameLeakError(XpfdpError, AssertionError): ...
class RingSizeError(XpfdpError, ValueError): ...
class UmemBusyError(XpfdpError, RuntimeError): ...

def validate_ring_size(size: int, what: str = "ring_size") -> int: ...

@final
class UmemArea: ...

@final
class Umem:
    hugepages: bool
    frames: int
    frame_size: int
    headroom: int
    tx_frames: int
    ring_size: int
    def __new__(
        cls, frames: int, frame_size: int = 4096, headroom: int = 256, tx_frames: int | None = None
    ) -> Self: ...
    @property
    def buf(self) -> NDArray[np.uint8]: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def check_frames(self) -> dict[str, int]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Umem: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

@final
class Burst:
    desc: NDArray[np.void]
    meta: NDArray[np.void]
    verdict: NDArray[np.int16]
    reason: NDArray[np.uint8]
    capacity: int
    @property
    def umem(self) -> Umem | None: ...
    def __new__(cls, capacity: int = 64) -> Self: ...
    @property
    def n(self) -> int: ...
    @n.setter
    def n(self, value: int) -> None: ...
    def __len__(self) -> int: ...
    def drop(
        self, mask: NDArray[np.bool_] | NDArray[np.integer], reason: str = "user_drop"
    ) -> int: ...
    def frame(self, i: int) -> NDArray[np.uint8]: ...
    def swap_mac_addresses(self, start: int = 0, count: int | None = None) -> None: ...

@disjoint_base
class Port:
    umem: Umem
    closed: bool
    mtu: int
    def set_mtu(self, mtu: int) -> None: ...
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    def rx_burst(self, burst: Burst) -> int: ...
    def tx_burst(self, burst: Burst, start: int = 0, count: int | None = None) -> int: ...
    def queue_tx(self, burst: Burst, start: int = 0, count: int | None = None) -> int: ...
    def recycle(self, burst: Burst, start: int = 0, count: int | None = None) -> None: ...
    def alloc_tx(self, burst: Burst, count: int) -> int: ...
    def poll(self) -> None: ...
    def wait(self, timeout_ms: int) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def __enter__(self) -> Port: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

@final
class XskPort(Port):
    fd: int
    busy_poll_us: int
    zerocopy: bool
    ring_size: int
    ifname: str
    queue: int
    attach_mode: str
    program: XdpProgram | None
    def __init__(
        self,
        ifname: str,
        queue: int = 0,
        umem: Umem | None = None,
        *,
        mode: str = "auto",
        ring_size: int = 1024,
        zerocopy: bool | None = None,
        fill_target: int | None = None,
        programs: ProgramRegistry | None = None,
        busy_poll_us: int = 0,
    ) -> None: ...
    def __enter__(self) -> XskPort: ...
    def set_busy_poll(self, busy_poll_us: int, budget: int = 64) -> None: ...
    def refresh_mtu(self) -> int: ...
    def close(self) -> None: ...

@final
class MemPort(Port):
    loop: bool
    ring_size: int
    def __init__(
        self,
        umem: Umem,
        source: _FrameSource | None = None,
        *,
        loop: bool = False,
        ring_size: int = 1024,
        capture: int = 0,
        fill_target: int | None = None,
        mtu: int = 1500,
    ) -> None: ...
    def __enter__(self) -> MemPort: ...
    def close(self) -> None: ...
    def set_source(self, source: _FrameSource | None) -> None: ...
    def captured(self) -> list[bytes]: ...
    def clear_capture(self) -> None: ...
