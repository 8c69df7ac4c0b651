"""Classic pcap files (libpcap format) to and from packed numpy frame batches.

A batch is one contiguous uint8 buffer plus per-frame offsets, lengths and timestamps: the
shape every batch kernel in xpfdp takes, so a capture feeds `parse_batch`, the checksum
kernels or a `MemPort` with no per-packet Python work after loading.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LINKTYPE_ETHERNET = 1
_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER_BYTES = 16
_SNAPLEN_BYTES = 262144


class PcapError(ValueError):
    """The file is not a classic pcap file we can read (bad magic, link type or record)."""


@dataclass
class FrameBatch:
    """Frames in one buffer; frame i is `buf[offsets[i]:offsets[i] + lengths[i]]`.

    `meta` holds one `PKT_META` record per frame once `xpfdp.parse.parse_batch(batch)` ran
    (None before); the batch functions of `xpfdp.csum` take the batch itself.
    """

    buf: np.ndarray  # uint8, contiguous
    offsets: np.ndarray  # uint64
    lengths: np.ndarray  # uint32
    timestamps_ns: np.ndarray  # int64, capture time
    meta: np.ndarray | None = None  # PKT_META records, from parse_batch

    def __len__(self) -> int:
        return len(self.lengths)

    def select(self, mask) -> FrameBatch:
        """The frames `mask` picks (a bool array of len(self) or integer indices), in that
        order, as a new batch over the same buffer: no packet bytes are copied, and a
        rewrite through either batch is seen by both. Parsed records are selected too."""
        index = np.asarray(mask)
        if index.dtype == np.bool_:
            if index.shape != (len(self),):
                raise ValueError(f"a bool mask needs {len(self)} entries, not {index.shape}")
            index = np.flatnonzero(index)
        elif index.dtype.kind not in "iu" and index.size:
            raise TypeError(f"mask must be bool or integer indices, not {index.dtype}")
        index = index.astype(np.intp, copy=False).reshape(-1)
        if index.size and not (-len(self) <= index.min() and index.max() < len(self)):
            raise IndexError(f"index out of range for a batch of {len(self)} frames")
        return FrameBatch(
            self.buf,
            self.offsets[index],
            self.lengths[index],
            self.timestamps_ns[index],
            None if self.meta is None else self.meta[index],
        )

    def frame(self, i: int) -> np.ndarray:
        """Zero-copy view of frame i."""
        start = int(self.offsets[i])
        return self.buf[start : start + int(self.lengths[i])]

    @classmethod
    def from_frames(cls, frames, timestamps_ns=None) -> FrameBatch:
        """Pack a sequence of bytes-like frames into one buffer."""
        lengths = np.fromiter((len(f) for f in frames), dtype=np.uint32, count=len(frames))
        offsets = np.zeros(len(frames), dtype=np.uint64)
        if len(frames):
            offsets[1:] = np.cumsum(lengths[:-1], dtype=np.uint64)
        buf = np.frombuffer(b"".join(bytes(f) for f in frames), dtype=np.uint8).copy()
        if timestamps_ns is None:
            timestamps_ns = np.zeros(len(frames), dtype=np.int64)
        return cls(buf, offsets, lengths, np.asarray(timestamps_ns, dtype=np.int64))


def read_pcap(path: str | Path) -> FrameBatch:
    """Read an Ethernet pcap (either byte order, µs or ns timestamps) into a FrameBatch."""
    data = Path(path).read_bytes()
    if len(data) < _GLOBAL_HEADER.size:
        raise PcapError(f"{path}: shorter than a pcap global header")
    (magic,) = struct.unpack_from("<I", data)
    if magic in (_MAGIC_US, _MAGIC_NS):
        endian = "<"
    else:
        (magic,) = struct.unpack_from(">I", data)
        if magic not in (_MAGIC_US, _MAGIC_NS):
            raise PcapError(f"{path}: not a classic pcap file (magic {data[:4].hex()})")
        endian = ">"
    ns_per_frac = 1 if magic == _MAGIC_NS else 1000
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(f"{path}: link type {linktype}, only Ethernet (1) is supported")

    record = struct.Struct(endian + "IIII")
    starts, lengths, stamps = [], [], []
    pos = _GLOBAL_HEADER.size
    while pos < len(data):
        if pos + _RECORD_HEADER_BYTES > len(data):
            raise PcapError(f"{path}: truncated record header at byte {pos}")
        sec, frac, incl_len, _orig_len = record.unpack_from(data, pos)
        pos += _RECORD_HEADER_BYTES
        if pos + incl_len > len(data):
            raise PcapError(f"{path}: record at byte {pos} runs past the end of the file")
        starts.append(pos)
        lengths.append(incl_len)
        stamps.append(sec * 1_000_000_000 + frac * ns_per_frac)
        pos += incl_len

    raw = np.frombuffer(data, dtype=np.uint8)
    length_arr = np.asarray(lengths, dtype=np.uint32)
    offsets = np.zeros(len(lengths), dtype=np.uint64)
    if lengths:
        offsets[1:] = np.cumsum(length_arr[:-1], dtype=np.uint64)
        buf = np.concatenate([raw[s : s + n] for s, n in zip(starts, lengths, strict=True)])
    else:
        buf = np.zeros(0, dtype=np.uint8)
    return FrameBatch(buf, offsets, length_arr, np.asarray(stamps, dtype=np.int64))


def write_pcap(path: str | Path, batch: FrameBatch) -> None:
    """Write a FrameBatch as a little-endian nanosecond-resolution Ethernet pcap."""
    parts = [_GLOBAL_HEADER.pack(_MAGIC_NS, 2, 4, 0, 0, _SNAPLEN_BYTES, LINKTYPE_ETHERNET)]
    record = struct.Struct("<IIII")
    for i in range(len(batch)):
        frame = batch.frame(i)
        ts = int(batch.timestamps_ns[i])
        parts.append(record.pack(ts // 1_000_000_000, ts % 1_000_000_000, len(frame), len(frame)))
        parts.append(frame.tobytes())
    Path(path).write_bytes(b"".join(parts))
