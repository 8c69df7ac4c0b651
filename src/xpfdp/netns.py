"""Network-namespace helpers the runtime needs (the firewall and the examples): run code
inside a namespace, read an interface's MAC there. Creating namespaces and links for tests
is `xpfdp.topology`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyroute2 import IPRoute, netns


@contextlib.contextmanager
def inside(ns: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside namespace `ns` (None: stay put).

    Sockets, AF_XDP bindings and interface lookups made in the body belong to `ns`;
    sockets keep that namespace after the body ends.
    """
    if ns is None:
        yield
        return
    netns.pushns(ns)
    try:
        yield
    finally:
        netns.popns()


def interface_mac(ifname: str, ns: str | None = None) -> str:
    """MAC address of `ifname` in namespace `ns` (None: the calling thread's), read over
    rtnetlink (sysfs may show another namespace's). ValueError if there is no such link."""
    with IPRoute(**({"netns": ns} if ns else {})) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            where = f" in namespace {ns}" if ns else ""
            raise ValueError(f"interface {ifname!r} not found{where}")
        return ipr.get_links(found[0])[0].get_attr("IFLA_ADDRESS")
