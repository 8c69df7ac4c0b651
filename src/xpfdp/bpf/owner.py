"""Who owns the XDP program on an interface, so a restart after a crash can tell a dead
xpfdp's leftover program from a live forwarder's or another tool's.

Every `XdpProgram` holds an `OwnerLock` -- ``flock(LOCK_EX)`` on
``/run/xpfdp/xdp-<netns inode>-<ifindex>.lock`` (``$XPFDP_RUN_DIR`` overrides the directory),
which also records the pid and program id -- from before it attaches until after it
detaches. The kernel drops a flock when its process dies, however it dies (SIGKILL, the OOM
killer), so `inspect()` classifies what is attached:

* ``none``: nothing attached;
* ``live``: the lock is held by another open file: a running xpfdp owns it (pid reported);
* ``stale``: our program (by name) with a free lock: left by a dead xpfdp, safe to replace;
* ``foreign``: any other program: never touched without ``--force``.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

# Kernel program names keep 15 characters (BPF_OBJ_NAME_LEN - 1).
_KERNEL_NAME_CHARS = 15
# `ip link` keyword that detaches a program attached in each mode.
IP_LINK_MODE_KEYWORD = {"native": "xdpdrv", "generic": "xdpgeneric", "offload": "xdpoffload"}


def run_dir() -> Path:
    """Directory of the lock files (tmpfs: cleared at boot, when no program survives)."""
    return Path(os.environ.get("XPFDP_RUN_DIR", "/run/xpfdp"))


class OwnerLock:
    """The ownership lock of one interface in the calling thread's network namespace."""

    def __init__(self, ifindex: int, ifname: str) -> None:
        directory = run_dir()
        directory.mkdir(parents=True, exist_ok=True)
        netns_inode = os.stat("/proc/thread-self/ns/net").st_ino
        self.ifname = ifname
        self.path = directory / f"xdp-{netns_inode}-{ifindex}.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.held = False

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another open file holds it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        return True

    def record(self, prog_id: int) -> None:
        """Write "pid prog_id ifname" for `xpfdp detach` and error messages to read."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()} {prog_id} {self.ifname}\n".encode(), 0)

    def recorded_pid(self) -> int | None:
        """The pid the holder recorded, if any."""
        fields = os.pread(self._fd, 256, 0).split()
        return int(fields[0]) if fields and fields[0].isdigit() else None

    def close(self) -> None:
        """Release the lock (clearing the record if we held it). Idempotent."""
        if self._fd < 0:
            return
        if self.held:
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = -1
        self.held = False

    def __del__(self) -> None:
        self.close()


@dataclass(frozen=True)
class XdpOwnership:
    """What is attached to an interface and who owns it (see the module docstring)."""

    ifname: str
    prog_id: int
    mode: str  # native, generic, offload, multi or none
    prog_name: str
    state: str  # none, live, stale or foreign
    owner_pid: int | None = None

    def detach_hint(self) -> str:
        """The `ip link` command that removes this program in its attach mode."""
        keyword = IP_LINK_MODE_KEYWORD.get(self.mode, "xdp")
        return f"ip link set dev {self.ifname} {keyword} off"

    def problem(self) -> str | None:
        """One line saying why a forwarder cannot take this interface, or None if it can."""
        what = f"XDP program id {self.prog_id} ({self.prog_name!r}, {self.mode} mode)"
        if self.state == "live":
            pid = self.owner_pid if self.owner_pid is not None else "unknown"
            return (f"{self.ifname} already has an XDP program owned by the running xpfdp "
                    f"process pid {pid} ({what}); stop that process first")  # fmt: skip
        if self.state == "foreign":
            return (f"{self.ifname} already has an XDP program that xpfdp did not attach "
                    f"({what}); detach it first: {self.detach_hint()} "
                    f"(or xpfdp detach --force {self.ifname})")  # fmt: skip
        return None


def is_our_program(prog_name: str, our_name: str) -> bool:
    """True for a kernel program name that is `our_name` (as the kernel truncates it)."""
    return prog_name == our_name[:_KERNEL_NAME_CHARS]
