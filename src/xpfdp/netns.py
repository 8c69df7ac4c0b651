"""Entering network namespaces with errors an operator can act on, and reading an
interface's attributes inside one: what the firewall and the examples need at run time
(creating namespaces and links for tests is `xpfdp.topology`).

pyroute2 creates a namespace it is asked to enter when it does not exist, so a misspelt
name would silently run in a new, empty namespace; and without privileges it only says
"failed to open netns". Everything that enters a named namespace goes through
`require_namespace` and `enter_fd` instead: a missing namespace is reported as missing
(never created), a missing capability is named.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
from array import array
from collections.abc import Iterator

from pyroute2 import IPRoute

from xpfdp.errors import XpfdpError

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_CAP_SYS_ADMIN = 21
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(XpfdpError, OSError):
    """A named network namespace is missing or may not be entered."""


def effective_caps() -> int:
    """This process's effective capability bits (CapEff)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def require_namespace(ns: str) -> str:
    """The path of namespace `ns`; NamespaceError if it does not exist or this process
    lacks CAP_SYS_ADMIN, which entering it needs."""
    path = os.path.join(NETNS_DIR, ns)
    if "/" in ns or not os.path.exists(path):
        raise NamespaceError(
            errno.ENOENT,
            f"network namespace {ns!r} does not exist (`ip netns list` shows the existing "
            f"ones; xpfdp never creates it)",
        )
    if not effective_caps() >> _CAP_SYS_ADMIN & 1:
        raise NamespaceError(
            errno.EPERM,
            f"entering network namespace {ns!r} needs CAP_SYS_ADMIN (run as root)",
        )
    return path


@contextlib.contextmanager
def enter_fd(netns_fd: int, what: str) -> Iterator[None]:
    """Run the body with the calling thread in the namespace open at `netns_fd`, then go
    back. `what` names it in errors."""
    if os.fstat(netns_fd).st_ino == os.stat("/proc/thread-self/ns/net").st_ino:
        yield
        return
    home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(netns_fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            hint = " (needs CAP_SYS_ADMIN: run as root)" if err == errno.EPERM else ""
            raise NamespaceError(err, f"entering {what}: {os.strerror(err)}{hint}")
        try:
            yield
        finally:
            _libc.setns(home_fd, _CLONE_NEWNET)
    finally:
        os.close(home_fd)


@contextlib.contextmanager
def enter(ns: str) -> Iterator[None]:
    """Run the body with the calling thread inside the existing namespace `ns`."""
    fd = os.open(require_namespace(ns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with enter_fd(fd, f"network namespace {ns!r}"):
            yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(ns: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside namespace `ns` (None: stay put).

    Sockets, AF_XDP bindings and interface lookups made in the body belong to `ns`;
    sockets keep that namespace after the body ends.
    """
    if ns is None:
        yield
        return
    with enter(ns):  # an existing namespace only: a misspelt name is an error
        yield


def interface_mac(ifname: str, ns: str | None = None) -> str:
    """MAC address of `ifname` in namespace `ns` (None: the calling thread's), read over
    rtnetlink (sysfs may show another namespace's). ValueError if there is no such link."""
    return _link_attr(ifname, ns, "IFLA_ADDRESS")


def _link_attr(ifname: str, ns: str | None, attr: str):
    with inside(ns), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            where = f" in namespace {ns}" if ns else ""
            raise ValueError(f"interface {ifname!r} not found{where}")
        return ipr.get_links(found[0])[0].get_attr(attr)


_SIOCETHTOOL = 0x8946
_ETHTOOL_GCHANNELS = 0x3C


def interface_rx_queues(ifname: str, ns: str | None = None) -> int:
    """RX queues of `ifname` in namespace `ns` (None: the calling thread's): the driver's
    channel count (ethtool GCHANNELS: rx + combined), or the queue count rtnetlink reports
    (IFLA_NUM_RX_QUEUES) when the driver has no channel API. ValueError if there is no
    such interface."""
    channels = array("I", [_ETHTOOL_GCHANNELS] + [0] * 8)
    ifreq = struct.pack("16sP16x", ifname.encode(), channels.buffer_info()[0])
    try:
        with inside(ns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), _SIOCETHTOOL, ifreq)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENODEV):
            raise
    else:
        if channels[5] + channels[8]:
            return channels[5] + channels[8]
    return int(_link_attr(ifname, ns, "IFLA_NUM_RX_QUEUES") or 1)
