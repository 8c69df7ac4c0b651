"""Type stubs for xpfdp._fast.parse (batch and scalar L2-L4 parser)."""

import numpy as np
from _typeshed import ReadableBuffer
from numpy.typing import NDArray

PKT_META: np.dtype[np.void]
PARSE_STATUS_NAMES: tuple[str, ...]

def parse_batch(
    buf: NDArray[np.uint8],
    addrs: NDArray[np.integer],
    lens: NDArray[np.integer],
    out: NDArray[np.void],
) -> NDArray[np.int64]: ...
def parse_frame(frame: ReadableBuffer) -> np.void: ...
def status_name(status: int) -> str: ...
