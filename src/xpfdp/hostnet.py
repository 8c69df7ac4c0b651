"""The host's own addresses and neighbours, followed live over rtnetlink (pyroute2).

A forwarder that owns an interface's packets must still let the host be a host and must
address frames the way the host's kernel would. `HostWatcher` runs one background thread
in the interfaces' network namespace that

* keeps every XDP program's local-address map equal to the namespace's addresses (all
  interfaces, like Linux's weak host model, plus IPv4 broadcast addresses), so packets
  for the host itself go to the kernel (`XdpProgram.set_local`); SNAT addresses carry
  their port range so replies to translated flows stay with the forwarder, and the ports
  of port forwards (DNAT) stay with it on the addresses of the interface they listen on
  (`XdpProgram.set_forwarded_port`);
* mirrors the kernel's neighbour table for the forwarding interfaces into a
  `xpfdp.pipeline.NeighbourTable` (RTM_NEWNEIGH / RTM_DELNEIGH), so next-hop MACs are the
  kernel's and follow every change;
* asks the kernel to resolve what the forwarder needs: gateways become *managed*
  neighbour entries (the kernel resolves them and keeps them fresh), and addresses that
  workers dropped packets for (`Pipeline.take_neighbour_requests()`) get an RTM_NEWNEIGH
  with NTF_USE, which makes the kernel send ARP/ND for them; at most once per
  `retry_s` per address;
* optionally (`follow_routes`) follows the main routing table: the unicast routes out of
  the forwarding interfaces are handed to `on_routes` at start and after every change
  (the table is read again whole, once per burst of route events), and their gateways
  become managed neighbours too.

It starts with a full dump (subscribed first, so no change is lost in between) and stops
cleanly: `stop()` wakes the thread, joins it and removes the managed entries it added.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_NEIGH,
)
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from xpfdp.bpf import check_forwarded_port
from xpfdp.netns import inside

log = logging.getLogger(__name__)

# linux/neighbour.h
NTF_USE = 0x01
NTF_EXT_MANAGED = 0x01  # NDA_FLAGS_EXT bit
NUD_INCOMPLETE, NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x01, 0x20, 0x40, 0x80
NUD_UNUSABLE = NUD_INCOMPLETE | NUD_FAILED  # no usable link-layer address
REQUEST_MEMORY = 4096  # addresses remembered for the per-address retry interval
EVENT_BUFFER_BYTES = 1 << 20  # netlink receive buffer: bursts of events fit before ENOBUFS

# linux/rtnetlink.h
RT_TABLE_MAIN = 254
RTN_UNICAST = 1

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (interface name, IP version, L4 protocol 6/17, port): a port forward listening on the
# interface's addresses of that version
ForwardedPort = tuple[str, int, int, int]


@dataclass(frozen=True)
class KernelRoute:
    """A unicast route of the main table: `destination` leaves through pipeline port
    `port`, via `gateway` (None: on-link)."""

    destination: Network
    port: int
    gateway: Address | None


class HostWatcher:
    """Follow the host's addresses and neighbours in `namespace` (None: the caller's).

    `interfaces` maps interface names to the pipeline port index their neighbours belong
    to. `programs`: XdpPrograms whose local map to keep (local delivery is switched on).
    `nat_ports`: {address: (lo, hi)} for addresses the forwarder also uses for SNAT.
    `forwarded_ports`: (interface, IP version, proto, port) port forwards whose packets to
    that interface's own addresses stay with the forwarder (see `forward_port`).
    `neighbours`: the NeighbourTable to fill; `pipelines`: whose resolution requests to
    serve; `gateways`: (port index, address) pairs to keep resolved (managed entries);
    `start()` waits up to `settle_s` for them to resolve, so the first packets find them.
    `follow_routes`: read the main routing table (`routes`, sorted KernelRoutes through
    `interfaces`) and call `on_routes(routes)` from the watcher thread at start and after
    each change; their gateways are kept resolved as well.
    """

    def __init__(
        self,
        interfaces: dict[str, int],
        *,
        namespace: str | None = None,
        programs: Iterable = (),
        nat_ports: dict | None = None,
        forwarded_ports: Iterable[ForwardedPort] = (),
        neighbours=None,
        pipelines: Iterable = (),
        gateways: Iterable[tuple[int, Address]] = (),
        follow_routes: bool = False,
        on_routes: Callable[[list[KernelRoute]], None] | None = None,
        retry_s: float = 1.0,
        poll_s: float = 0.05,
        settle_s: float = 1.0,
    ) -> None:
        if retry_s <= 0 or poll_s <= 0:
            raise ValueError("retry_s and poll_s must be > 0")
        self.namespace = namespace
        self.interfaces = dict(interfaces)
        self.programs = list(programs)
        self.nat_ports = {ipaddress.ip_address(a): tuple(r) for a, r in (nat_ports or {}).items()}
        self.neighbours = neighbours
        self.pipelines = list(pipelines)
        self.gateways = [(int(p), ipaddress.ip_address(a)) for p, a in gateways]
        self.follow_routes = follow_routes
        self.on_routes = on_routes
        self.routes: list[KernelRoute] = []
        self._routes_stale = False
        self.retry_s = retry_s
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.local: dict[Address, set[int]] = {}  # address -> ifindexes that hold it
        self.own: dict[int, set[Address]] = {}  # ifindex -> its unicast addresses
        self.forwarded: set[ForwardedPort] = set()
        self._lock = threading.Lock()  # local, own and forwarded: watcher vs. callers
        for forward in forwarded_ports:
            self.forward_port(*forward)
        self.requests_sent = 0
        self.errors: list[str] = []
        self._port_of: dict[int, int] = {}  # ifindex -> port
        self._ifindex_of: dict[int, int] = {}  # port -> ifindex
        self._last_request: dict[tuple[int, Address], float] = {}
        self._managed: list[tuple[int, Address]] = []
        self._events: socket.socket | None = None
        self._cmd: IPRoute | None = None
        self._marshal = MarshalRtnl()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> HostWatcher:
        """Start the thread; it subscribes, loads the current addresses and neighbours and
        only then lets `start` return (re-raising what failed). pyroute2 handles belong to
        the thread that made them, so every netlink call happens in the watcher thread."""
        if self._thread is not None:
            raise RuntimeError("watcher already started")
        self._stop.clear()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="xpfdp-hostnet", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the thread (it removes the managed entries it added and closes its
        sockets). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HostWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- the thread

    def _run(self, ready: threading.Event, failure: list) -> None:
        kw = {"netns": self.namespace} if self.namespace else {}
        try:
            try:
                # Events come on a plain netlink socket parsed by pyroute2's marshal: every
                # message of every datagram is seen, and a lost burst shows as ENOBUFS.
                with inside(self.namespace):
                    self._events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
                self._events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER_BYTES)
                groups = RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
                if self.follow_routes:
                    groups |= RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
                self._events.bind((0, groups))
                self._cmd = IPRoute(**kw)
                self._load()
                deadline = time.monotonic() + self.settle_s
                while self._unresolved_gateways() and time.monotonic() < deadline:
                    self._poll_events()
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            while not self._stop.is_set():
                try:
                    self._poll_events()
                    if self._routes_stale:
                        self._load_routes()
                    self._serve_requests()
                except Exception as exc:  # recorded and logged; the watcher keeps going
                    self.errors.append(repr(exc))
                    log.warning("hostnet: %r", exc)
                    self._stop.wait(self.poll_s)
        finally:
            self._unmanage()
            for handle in (self._events, self._cmd):
                if handle is not None:
                    with contextlib.suppress(Exception):
                        handle.close()
            self._events = self._cmd = None

    def _netlink(self) -> IPRoute:
        """The rtnetlink handle of a started watcher."""
        if self._cmd is None:
            raise RuntimeError("the host watcher is not started")
        return self._cmd

    def _poll_events(self) -> None:
        """Apply the netlink events that arrive within `poll_s`; after an overflow (events
        lost), load everything again."""
        events = self._events
        if events is None:
            return
        readable, _, _ = select.select([events], [], [], self.poll_s)
        if not readable:
            return
        try:
            data = events.recv(EVENT_BUFFER_BYTES)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            log.warning("hostnet: netlink events lost, reloading addresses and neighbours")
            self._load()
            return
        for msg in self._marshal.parse(data):
            self._dispatch(msg)

    def _unresolved_gateways(self) -> bool:
        if self.neighbours is None:
            return False
        return any(self.neighbours.get(port, a) is None for port, a in self.gateways
                   if port in self._ifindex_of)  # fmt: skip

    def _load(self) -> None:
        """Interface indexes, then the current addresses and neighbours (already
        subscribed, so a change in between arrives as an event afterwards)."""
        for name, port in self.interfaces.items():
            found = self._netlink().link_lookup(ifname=name)
            if not found:
                where = f" in namespace {self.namespace}" if self.namespace else ""
                raise ValueError(f"interface {name!r} not found{where}")
            self._port_of[found[0]] = port
            self._ifindex_of[port] = found[0]
        for msg in self._netlink().get_addr():
            self._on_address(msg)
        for program in self.programs:
            program.set_ctrl(local_delivery=True)
        if self.neighbours is not None:
            for msg in self._netlink().get_neighbours():
                self._on_neighbour(msg)
        if self.follow_routes:
            self._load_routes()
        elif self.neighbours is not None:
            self._manage_gateways()

    def _unmanage(self) -> None:
        if self._cmd is not None:
            for port, address in self._managed:
                with contextlib.suppress(Exception):
                    self._cmd.neigh("del", dst=str(address), ifindex=self._ifindex_of[port])
        self._managed = []

    def _dispatch(self, msg) -> None:
        event = msg.get("event")
        if event in ("RTM_NEWADDR", "RTM_DELADDR"):
            self._on_address(msg)
        elif event in ("RTM_NEWNEIGH", "RTM_DELNEIGH") and self.neighbours is not None:
            self._on_neighbour(msg)
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            self._routes_stale = True  # read once the burst of events is in

    # ---------------------------------------------------------------- addresses

    def _on_address(self, msg) -> None:
        added = msg.get("event") != "RTM_DELADDR"
        ifindex = msg["index"]
        # IFA_LOCAL is the host's side of a point-to-point address (IPv4 sets it on every
        # address); IFA_ADDRESS alone is the address (IPv6).
        unicast = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        with self._lock:
            for value in (unicast, msg.get_attr("IFA_BROADCAST")):
                if value is None:
                    continue
                address = ipaddress.ip_address(value)
                owners = self.local.setdefault(address, set())
                if added:
                    if not owners:
                        for program in self.programs:
                            program.set_local(address, self.nat_ports.get(address))
                    owners.add(ifindex)
                else:
                    owners.discard(ifindex)
                    if not owners:
                        del self.local[address]
                        for program in self.programs:
                            program.remove_local(address)
            if unicast is not None:
                self._own_address(ifindex, ipaddress.ip_address(unicast), added)

    # ---------------------------------------------------------------- port forwards

    def forward_port(self, interface: str, version: int, proto: int, port: int) -> None:
        """A port forward listens on `interface`: keep `proto` (6 TCP, 17 UDP) packets to
        `port` of its IPv`version` addresses, present and future, with the forwarder
        rather than the host (`XdpProgram.set_forwarded_port` on that interface's
        programs). Callable from any thread, before or after `start()`."""
        forward = self._forward(interface, version, proto, port)
        with self._lock:
            self.forwarded.add(forward)
            for program, address in self._addresses_on(interface, version):
                program.set_forwarded_port(address, proto, port)

    def unforward_port(self, interface: str, version: int, proto: int, port: int) -> None:
        """Undo `forward_port`: the host takes that port of the interface's addresses back
        (no error if it was not forwarded)."""
        forward = self._forward(interface, version, proto, port)
        with self._lock:
            self.forwarded.discard(forward)
            for program, address in self._addresses_on(interface, version):
                program.clear_forwarded_port(address, proto, port)

    def _forward(self, interface: str, version: int, proto: int, port: int) -> ForwardedPort:
        if interface not in self.interfaces:
            raise ValueError(f"forwarded port on {interface!r}, which is not one of the "
                             f"watched interfaces ({', '.join(self.interfaces)})")  # fmt: skip
        if version not in (4, 6):
            raise ValueError(f"IP version must be 4 or 6, got {version!r}")
        check_forwarded_port(proto, port)
        return interface, version, proto, port

    def _addresses_on(self, interface: str, version: int):
        """(program, address) for each program on `interface` and each of the interface's
        IPv`version` addresses (caller holds the lock)."""
        return [(program, address) for program in self.programs if program.ifname == interface
                for address in self.own.get(program.ifindex, ())
                if address.version == version]  # fmt: skip

    def _own_address(self, ifindex: int, address: Address, added: bool) -> None:
        """Record `address` arriving on / leaving `ifindex` and add / remove the forwarded
        ports of that interface for it (caller holds the lock)."""
        held = self.own.setdefault(ifindex, set())
        if added:
            held.add(address)
        else:
            held.discard(address)
        for program in self.programs:
            if program.ifindex != ifindex:
                continue
            for interface, version, proto, port in self.forwarded:
                if interface != program.ifname or version != address.version:
                    continue
                if added:
                    program.set_forwarded_port(address, proto, port)
                else:
                    program.clear_forwarded_port(address, proto, port)

    # ---------------------------------------------------------------- routes

    def _load_routes(self) -> None:
        """Read the main table again; on a change, keep the new gateways resolved and hand
        the routes to `on_routes`."""
        self._routes_stale = False
        routes = sorted(
            {r for family in (socket.AF_INET, socket.AF_INET6)
             for msg in self._netlink().get_routes(family=family, table=RT_TABLE_MAIN)
             if (r := self._kernel_route(msg)) is not None},
            key=lambda r: (r.destination.version, r.destination, r.port, str(r.gateway)),
        )  # fmt: skip
        if self.neighbours is not None:
            known = set(self.gateways)
            for r in routes:
                if r.gateway is not None and (r.port, r.gateway) not in known:
                    self.gateways.append((r.port, r.gateway))
                    known.add((r.port, r.gateway))
            self._manage_gateways()
        if routes != self.routes:
            self.routes = routes
            if self.on_routes is not None:
                self.on_routes(routes)

    def _kernel_route(self, msg) -> KernelRoute | None:
        """The KernelRoute of one RTM_NEWROUTE message, or None for routes the forwarder
        does not take: other tables, non-unicast types, other interfaces, link-local and
        multicast destinations. A multipath route takes its first path."""
        table = msg.get_attr("RTA_TABLE") or msg["table"]
        if table != RT_TABLE_MAIN or msg["type"] != RTN_UNICAST:
            return None
        oif, gateway = msg.get_attr("RTA_OIF"), msg.get_attr("RTA_GATEWAY")
        paths = msg.get_attr("RTA_MULTIPATH")
        if oif is None and paths:
            oif, gateway = paths[0]["oif"], paths[0].get_attr("RTA_GATEWAY")
        port = self._port_of.get(oif)
        if port is None:
            return None
        unspecified = "0.0.0.0" if msg["family"] == socket.AF_INET else "::"
        destination = ipaddress.ip_network(f"{msg.get_attr('RTA_DST') or unspecified}/"
                                           f"{msg['dst_len']}")  # fmt: skip
        if destination.is_link_local or destination.is_multicast:
            return None
        return KernelRoute(destination, port, ipaddress.ip_address(gateway) if gateway else None)

    # ---------------------------------------------------------------- neighbours

    def _on_neighbour(self, msg) -> None:
        port = self._port_of.get(msg["ifindex"])
        dst = msg.get_attr("NDA_DST")
        if port is None or dst is None:
            return
        address = ipaddress.ip_address(dst)
        if address.is_multicast:
            return
        mac = msg.get_attr("NDA_LLADDR")
        if msg.get("event") == "RTM_DELNEIGH" or msg["state"] & NUD_UNUSABLE or not mac:
            mac = None
        try:
            self.neighbours.set(port, address, mac)
        except MemoryError as exc:  # table full: this neighbour stays unresolved (counted)
            self.errors.append(str(exc))

    def _manage_gateways(self) -> None:
        """Make each gateway a managed neighbour unless the host pinned it (permanent)."""
        for port, address in self.gateways:
            ifindex = self._ifindex_of.get(port)
            if ifindex is None or (port, address) in self._managed:
                continue
            pinned = any(
                n["state"] & (NUD_PERMANENT | NUD_NOARP)
                for n in self._netlink().get_neighbours(ifindex=ifindex, dst=str(address))
            )
            if pinned:
                continue
            self._netlink().neigh(
                "replace", dst=str(address), ifindex=ifindex, state=0,
                NDA_FLAGS_EXT=NTF_EXT_MANAGED,
            )  # fmt: skip
            self._managed.append((port, address))

    def resolve(self, port: int, address) -> None:
        """Ask the kernel to resolve `address` on `port`'s interface now (ARP/ND)."""
        ifindex = self._ifindex_of[port]
        self._netlink().neigh("replace", dst=str(address), ifindex=ifindex, state=0, flags=NTF_USE)
        self.requests_sent += 1

    def _serve_requests(self) -> None:
        now = time.monotonic()
        if len(self._last_request) > REQUEST_MEMORY:
            self._last_request = {k: t for k, t in self._last_request.items()
                                  if now - t < self.retry_s}  # fmt: skip
        for pipe in self.pipelines:
            for port, address in pipe.take_neighbour_requests():
                key = (port, address)
                if (
                    port not in self._ifindex_of
                    or now - self._last_request.get(key, -1e9) < self.retry_s
                ):
                    continue
                self._last_request[key] = now
                self.resolve(port, address)


__all__ = ["HostWatcher"]
