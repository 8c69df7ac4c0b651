"""Watching the interfaces under a running forwarder: a deleted or downed link is logged by
name and counted instead of showing up only as tx_ring_full drops.

`LinkWatch` keeps one rtnetlink socket opened inside the interfaces' namespace and reads
each link's operational state when `check()` is called (the forwarder calls it about once a
second). States: ``up``, ``down`` (administratively down or no carrier: frames cannot
leave, the link may come back, the forwarder keeps serving) and ``missing`` (deleted: its
AF_XDP sockets are dead, the forwarder stops with a non-zero exit).
"""

from __future__ import annotations

import logging

from pyroute2 import IPRoute

from xpfdp.netns import inside

log = logging.getLogger(__name__)

# IFLA_OPERSTATE values that pass frames (UNKNOWN: drivers without carrier reporting).
_RUNNING = ("UP", "UNKNOWN")


class LinkWatch:
    """Operational state of named interfaces in namespace `ns` (None: the caller's)."""

    def __init__(self, ifnames, ns: str | None = None) -> None:
        self.ifnames = list(ifnames)
        self.ns = ns
        with inside(ns):
            self._ipr = IPRoute()  # the socket stays in `ns` after leaving it
        self.states: dict[str, str] = {}
        self.events: dict[str, int] = {"down": 0, "up": 0, "missing": 0}

    def _state(self, ifname: str) -> str:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            return "missing"
        link = self._ipr.get_links(found[0])[0]
        return "up" if link.get_attr("IFLA_OPERSTATE") in _RUNNING else "down"

    def check(self) -> dict[str, str]:
        """Read every link's state; log and count each change (the first reading logs
        only links that are not up). Returns {ifname: state}."""
        for name in self.ifnames:
            state = self._state(name)
            before = self.states.get(name)
            self.states[name] = state
            if state == before or (before is None and state == "up"):
                continue
            self.events[state] += 1
            where = f" (namespace {self.ns})" if self.ns else ""
            if state == "missing":
                log.error("interface %s%s was deleted: its AF_XDP sockets are gone", name, where)
            elif state == "down":
                log.warning("interface %s%s is down: no frames leave through it until it is "
                            "up again", name, where)  # fmt: skip
            else:
                log.info("interface %s%s is up again", name, where)
        return dict(self.states)

    @property
    def missing(self) -> list[str]:
        """Interfaces found deleted at the last check."""
        return [name for name, state in self.states.items() if state == "missing"]

    def close(self) -> None:
        self._ipr.close()
