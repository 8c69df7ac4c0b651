"""Type stubs for xpfdp._fast.csum (checksums and in-place rewrites, scalar and batch)."""

import ipaddress
from collections.abc import Sequence
from typing import Protocol, overload

import numpy as np
from _typeshed import ReadableBuffer, WriteableBuffer
from numpy.typing import NDArray

_Address = str | bytes | bytearray | ipaddress.IPv4Address | ipaddress.IPv6Address
_Addresses = _Address | tuple[_Address, _Address] | NDArray[np.uint8] | None
_Ports = int | NDArray[np.integer] | None
_Buf = NDArray[np.uint8]
_Offsets = NDArray[np.integer] | Sequence[int]
_Mss = int | NDArray[np.integer]
_Meta = NDArray[np.void]

RESULT_NAMES: tuple[str, ...]
ECN_RESULT_NAMES: tuple[str, ...]
PARSE_STATUS_NAMES: tuple[str, ...]

def internet_checksum(data: ReadableBuffer) -> int: ...
def checksum_partial(data: ReadableBuffer, seed: int = 0) -> int: ...
def incremental_update(hc: int, old: int, new: int) -> int: ...
def incremental_update32(hc: int, old: int, new: int) -> int: ...
def incremental_update_bytes(hc: int, old: ReadableBuffer, new: ReadableBuffer) -> int: ...
def fix_checksums(frame: WriteableBuffer) -> None: ...
def checksums_ok(frame: ReadableBuffer) -> bool: ...
def clamp_mss(frame: WriteableBuffer, mss: int) -> bool: ...
def decrement_ttl(frame: WriteableBuffer) -> int: ...
def mark_ecn_ce(frame: WriteableBuffer) -> bool: ...
def packed_address(address: _Address) -> bytes: ...
def rewrite_nat(
    frame: WriteableBuffer,
    *,
    src: _Address | None = None,
    dst: _Address | None = None,
    sport: int | None = None,
    dport: int | None = None,
) -> None: ...

class _Frames(Protocol):
    """A FrameBatch (parsed: `meta` set) or a Burst."""

    @property
    def meta(self) -> NDArray[np.void] | None: ...

@overload
def checksum_batch(frames: _Frames, /) -> NDArray[np.uint16]: ...
@overload
def checksum_batch(buf: _Buf, addrs: _Offsets, lens: _Offsets, /) -> NDArray[np.uint16]: ...
@overload
def fix_checksums_batch(frames: _Frames, /) -> None: ...
@overload
def fix_checksums_batch(buf: _Buf, addrs: _Offsets, lens: _Offsets, meta: _Meta, /) -> None: ...
@overload
def checksums_ok_batch(frames: _Frames, /) -> NDArray[np.bool_]: ...
@overload
def checksums_ok_batch(
    buf: _Buf, addrs: _Offsets, lens: _Offsets, meta: _Meta, /
) -> NDArray[np.bool_]: ...
@overload
def clamp_mss_batch(frames: _Frames, mss: _Mss, /) -> NDArray[np.uint8]: ...
@overload
def clamp_mss_batch(
    buf: _Buf, addrs: _Offsets, lens: _Offsets, meta: _Meta, mss: _Mss, /
) -> NDArray[np.uint8]: ...
@overload
def mss_batch(frames: _Frames, /) -> NDArray[np.int32]: ...
@overload
def mss_batch(buf: _Buf, addrs: _Offsets, lens: _Offsets, meta: _Meta, /) -> NDArray[np.int32]: ...
@overload
def decrement_ttl_batch(frames: _Frames, /) -> NDArray[np.int16]: ...
@overload
def decrement_ttl_batch(
    buf: _Buf, addrs: _Offsets, lens: _Offsets, meta: _Meta, /
) -> NDArray[np.int16]: ...
@overload
def mark_ecn_ce_batch(frames: _Frames, /) -> NDArray[np.uint8]: ...
@overload
def mark_ecn_ce_batch(
    buf: _Buf, addrs: _Offsets, lens: _Offsets, meta: _Meta, /
) -> NDArray[np.uint8]: ...
@overload
def rewrite_nat_batch(
    frames: _Frames,
    /,
    *,
    src: _Addresses = None,
    dst: _Addresses = None,
    sport: _Ports = None,
    dport: _Ports = None,
) -> NDArray[np.uint8]: ...
@overload
def rewrite_nat_batch(
    buf: _Buf,
    addrs: _Offsets,
    lens: _Offsets,
    meta: _Meta,
    /,
    *,
    src: _Addresses = None,
    dst: _Addresses = None,
    sport: _Ports = None,
    dport: _Ports = None,
) -> NDArray[np.uint8]: ...
