"""Port front door: XskPort/MemPort/Umem/Burst, and the per-interface program registry
(kept by `xpfdp.bpf`, the layer below the ports).

An XDP program is attached once per interface (in its network namespace) and shared by
every XskPort on that interface's queues; it is detached when the last of them closes.
`handle_signals()` turns SIGTERM into SystemExit so `with` blocks tear down in order
(sockets, then UMEM, then program and map entries) on SIGINT and SIGTERM alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from xpfdp._fast.loops import bridge, drain, forward, generate
from xpfdp._fast.xsk import (
    ABI_VERSION,
    BUSY_POLL_BUDGET,
    DESC,
    FRAME_STATES,
    KERNEL_STAT_NAMES,
    MAX_BUSY_POLL_US,
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
    validate_ring_size,
)
from xpfdp.bpf import ABI_VERSION as _BPF_ABI_VERSION
from xpfdp.bpf import ProgramRegistry, programs

if _BPF_ABI_VERSION != ABI_VERSION:
    raise ImportError(
        f"xpfdp extension ABI {ABI_VERSION} != BPF loader ABI {_BPF_ABI_VERSION}: "
        "stale build, run `make build`"
    )


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
    "BUSY_POLL_BUDGET",
    "DESC",
    "FRAME_STATES",
    "KERNEL_STAT_NAMES",
    "MAX_BUSY_POLL_US",
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
