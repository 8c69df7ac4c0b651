"""Network namespaces and veth pairs for tests, examples and benchmarks (pyroute2).

Entering a namespace and reading an interface's attributes there are runtime needs too;
they live in `xpfdp.netns`, which this module builds on.

Every helper is a context manager that removes what it created even when the body
raises, so a failed test never leaves a namespace or a link behind. Names are unique per
process (`<prefix>-<pid>-<n>`) so parallel runs cannot collide.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess

from pyroute2 import IPRoute, netns

from xpfdp.netns import inside, interface_mac

_counter = itertools.count()


def unique_name(prefix: str = "xt") -> str:
    """A namespace or link name unique to this process, at most 15 characters."""
    name = f"{prefix}-{os.getpid() % 100000}-{next(_counter)}"
    if len(name) > 15:
        raise ValueError(f"name {name!r} longer than IFNAMSIZ-1; use a shorter prefix")
    return name


def list_namespaces() -> list[str]:
    """Names of the network namespaces under /run/netns."""
    return sorted(netns.listnetns())


class Namespace:
    """A network namespace that exists for the lifetime of the `with` block."""

    def __init__(self, name: str | None = None, prefix: str = "xt") -> None:
        self.name = name or unique_name(prefix)

    def __enter__(self) -> Namespace:
        netns.create(self.name)
        try:
            with self.ipr() as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.link("set", index=lo, state="up")
        except BaseException:
            netns.remove(self.name)
            raise
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            netns.remove(self.name)

    def ipr(self) -> IPRoute:
        """An rtnetlink handle inside this namespace (close it, or use it with `with`)."""
        return IPRoute(netns=self.name)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside the namespace (`ip netns exec`), capturing its output."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv], check=check, capture_output=True, text=True
        )

    def inside(self):
        """Context manager: the calling thread enters this namespace for the body."""
        return inside(self.name)

    def ifindex(self, ifname: str) -> int:
        with self.ipr() as ipr:
            found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise ValueError(f"no interface {ifname!r} in namespace {self.name}")
        return found[0]

    def set_up(self, ifname: str, *, mtu: int | None = None) -> None:
        """Bring `ifname` up, optionally setting its MTU first."""
        with self.ipr() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            if mtu is not None:
                ipr.link("set", index=idx, mtu=mtu)
            ipr.link("set", index=idx, state="up")

    def add_address(self, ifname: str, address: str, prefixlen: int) -> None:
        """Assign `address/prefixlen` (IPv4 or IPv6) to `ifname`."""
        with self.ipr() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)

    def add_route(self, dst: str, gateway: str | None = None, ifname: str | None = None) -> None:
        """Add a route to `dst` (CIDR) via `gateway` and/or out of `ifname`."""
        kwargs: dict = {"dst": dst}
        with self.ipr() as ipr:
            if gateway:
                kwargs["gateway"] = gateway
            if ifname:
                kwargs["oif"] = ipr.link_lookup(ifname=ifname)[0]
            ipr.route("add", **kwargs)

    def add_neighbour(self, ifname: str, address: str, mac: str) -> None:
        """Install a permanent neighbour entry so no ARP/ND is needed."""
        with self.ipr() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.neigh("replace", dst=address, lladdr=mac, ifindex=idx, state="permanent")

    def mac(self, ifname: str) -> str:
        """MAC address of `ifname`."""
        return interface_mac(ifname, self.name)

    def disable_ipv6(self) -> None:
        """Turn IPv6 off in the namespace (no router solicitations or MLD reports: tests
        that count frames see only their own)."""
        for scope in ("all", "default"):
            self.run("sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")

    def disable_offloads(self, ifname: str) -> None:
        """Turn off GRO/TSO/GSO and TX checksum offload so frames leave complete, wire-sized."""
        self.run("ethtool", "-K", ifname, "gro", "off", "tso", "off", "gso", "off", "tx", "off")


class VethPair:
    """A veth pair with `queues` RX/TX queues per end, one end in each namespace.

    Both ends are up when the block starts; the pair is deleted when it ends (deleting one
    end deletes both). `a`/`b` are the interface names in `ns_a`/`ns_b`.
    """

    def __init__(
        self,
        ns_a: Namespace,
        ns_b: Namespace,
        *,
        a: str | None = None,
        b: str | None = None,
        queues: int = 1,
        mtu: int | None = None,
    ) -> None:
        if queues < 1:
            raise ValueError("queues must be >= 1")
        self.ns_a, self.ns_b = ns_a, ns_b
        self.a = a or unique_name("va")
        self.b = b or unique_name("vb")
        self.queues = queues
        self.mtu = mtu

    def __enter__(self) -> VethPair:
        # `ip` sets the queue counts on both ends in one request, which pyroute2's veth
        # peer attribute does not expose.
        q = str(self.queues)
        subprocess.run(
            [
                "ip",
                "-n",
                self.ns_a.name,
                "link",
                "add",
                self.a,
                "numtxqueues",
                q,
                "numrxqueues",
                q,
                "type",
                "veth",
                "peer",
                "name",
                self.b,
                "netns",
                self.ns_b.name,
                "numtxqueues",
                q,
                "numrxqueues",
                q,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        try:
            self.ns_a.set_up(self.a, mtu=self.mtu)
            self.ns_b.set_up(self.b, mtu=self.mtu)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception), self.ns_a.ipr() as ipr:
            found = ipr.link_lookup(ifname=self.a)
            if found:
                ipr.link("del", index=found[0])

    @property
    def mac_a(self) -> str:
        return self.ns_a.mac(self.a)

    @property
    def mac_b(self) -> str:
        return self.ns_b.mac(self.b)


__all__ = [
    "Namespace",
    "VethPair",
    "inside",
    "interface_mac",
    "list_namespaces",
    "unique_name",
]
