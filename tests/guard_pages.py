"""Frames placed against unreadable pages, so any out-of-bounds access faults at once.

`GuardedPages` maps three pages and makes the first and last PROT_NONE. A frame placed
with `place(frame, at_end=True)` ends on the last readable byte (a read or write past it
faults); with `at_end=False` it starts on the first readable byte (an access before it
faults). `array` covers all three pages, so offsets are relative to the first guard page.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np


class GuardedPages:
    """One readable page between two PROT_NONE pages."""

    def __init__(self):
        self.page = mmap.PAGESIZE
        self.map = mmap.mmap(-1, 3 * self.page)
        self.anchor = ctypes.c_char.from_buffer(self.map)
        libc = ctypes.CDLL(None, use_errno=True)
        base = ctypes.addressof(self.anchor)
        for guard in (base, base + 2 * self.page):
            assert libc.mprotect(ctypes.c_void_p(guard), self.page, 0) == 0
        self.array = np.frombuffer(self.map, dtype=np.uint8, count=3 * self.page)

    @property
    def first_readable(self) -> int:
        """Address of the first readable byte (tests prove the guards fault with it)."""
        return ctypes.addressof(self.anchor) + self.page

    def place(self, frame, *, at_end: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Copy `frame` against the far (`at_end`) or near guard; return (addrs, lens)."""
        frame = bytes(frame)
        start = 2 * self.page - len(frame) if at_end else self.page
        self.array[start : start + len(frame)] = np.frombuffer(frame, dtype=np.uint8)
        return np.array([start], dtype=np.uint64), np.array([len(frame)], dtype=np.uint32)

    def frame_bytes(self, addrs, lens) -> bytes:
        return bytes(self.array[int(addrs[0]) : int(addrs[0]) + int(lens[0])])
