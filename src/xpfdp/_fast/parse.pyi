"""Type stubs for xpfdp._fast.parse (batch and scalar L2-L4 parser)."""

from collections.abc import Sequence
from typing import Protocol, overload

import numpy as np
from _typeshed import ReadableBuffer
from numpy.typing import NDArray

PKT_META: np.dtype[np.void]
PARSE_STATUS_NAMES: tuple[str, ...]

class _Frames(Protocol):
    """A FrameBatch (its `meta` is allocated and filled) or a Burst."""

    @property
    def meta(self) -> NDArray[np.void] | None: ...

@overload
def parse_batch(frames: _Frames, /) -> NDArray[np.int64]: ...
@overload
def parse_batch(
    buf: NDArray[np.uint8],
    addrs: NDArray[np.integer] | Sequence[int],
    lens: NDArray[np.integer] | Sequence[int],
    out: NDArray[np.void],
    /,
) -> NDArray[np.int64]: ...
def parse_frame(frame: ReadableBuffer) -> np.void: ...
def status_name(status: int) -> str: ...
