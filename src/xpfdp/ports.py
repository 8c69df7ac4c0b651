"""Port front door: XskPort/MemPort/Umem/Burst and the per-interface program registry.

An XDP program is attached once per interface (in its network namespace) and shared by
every XskPort on that interface's queues; it is detached when the last of them closes.
`handle_signals()` turns SIGTERM into SystemExit so `with` blocks tear down in order
(sockets, then UMEM, then program and map entries) on SIGINT and SIGTERM alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from xpfdp._fast import xsk as _xsk
from xpfdp._fast.xsk import (
    ABI_VERSION,
    DESC,
    FRAME_STATES,
    KERNEL_STAT_NAMES,
    STAT_NAMES,
    Burst,
    FrameLeakError,
    MemPort,
    Port,
    RingSizeError,
    Umem,
    UmemArea,
    UmemBusyError,
    XskPort,
    bridge,
    drain,
    forward,
    generate,
    validate_ring_size,
)
from xpfdp.bpf import ABI_VERSION as _BPF_ABI_VERSION
from xpfdp.bpf import XdpProgram, ifindex_of

if _BPF_ABI_VERSION != ABI_VERSION:
    raise ImportError(
        f"xpfdp extension ABI {ABI_VERSION} != BPF loader ABI {_BPF_ABI_VERSION}: "
        "stale build, run `make build`"
    )


class ProgramRegistry:
    """Attached XdpPrograms keyed by (network namespace, ifindex), reference counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, int], list] = {}

    @staticmethod
    def _key(ifname: str) -> tuple[int, int]:
        return os.stat("/proc/thread-self/ns/net").st_ino, ifindex_of(ifname)

    def acquire(self, ifname: str, mode: str) -> XdpProgram:
        """The program on `ifname`, attaching it in `mode` if this process has none there."""
        key = self._key(ifname)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                program = XdpProgram(ifname, mode)
                entry = self._entries[key] = [program, 0]
            elif mode != "auto" and entry[0].mode != mode:
                raise ValueError(
                    f"{ifname} already runs the program in {entry[0].mode} mode, not {mode}"
                )
            entry[1] += 1
            return entry[0]

    def release(self, program: XdpProgram) -> None:
        """Drop one reference; detach the program when none remain."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry[0] is program:
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._entries[key]
                        program.close()
                    return

    def attached(self) -> list[XdpProgram]:
        """Programs currently attached by this process."""
        with self._lock:
            return [entry[0] for entry in self._entries.values()]


programs = ProgramRegistry()
_xsk._set_program_registry(programs)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit (SIGINT already raises
    KeyboardInterrupt), so context managers unwind and tear everything down.

    Only in this process: a forked child that inherited the handler (pyroute2 runs
    namespace helpers in forked processes and stops them with SIGTERM) exits at once, since
    unwinding its copy of our stack would delete our namespaces from under us.
    """
    owner = os.getpid()

    def _exit(signum, frame):
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = [
    "ABI_VERSION",
    "DESC",
    "FRAME_STATES",
    "KERNEL_STAT_NAMES",
    "STAT_NAMES",
    "Burst",
    "FrameLeakError",
    "MemPort",
    "Port",
    "ProgramRegistry",
    "RingSizeError",
    "Umem",
    "UmemArea",
    "UmemBusyError",
    "XskPort",
    "bridge",
    "drain",
    "forward",
    "generate",
    "handle_signals",
    "programs",
    "validate_ring_size",
]
