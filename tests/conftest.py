"""Shared fixtures: namespaces + veth links for AF_XDP tests, and the checks every test
ends with (frames conserved, programs detached, namespaces gone)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass

import pytest

from xpfdp.topology import Namespace, VethPair, list_namespaces

NS_PREFIX = "xt"
_OUR_NS = f"{NS_PREFIX}-{os.getpid() % 100000}-"


def _is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(not _is_root(), reason="needs root: namespaces, XDP, AF_XDP")


@dataclass
class Link:
    """One veth pair: `dut_if` in the DUT namespace (where xpfdp binds), `peer_if` in a
    peer namespace that talks through kernel sockets."""

    dut: Namespace
    peer: Namespace
    dut_if: str
    peer_if: str
    dut_mac: str
    peer_mac: str
    dut_ip: str
    peer_ip: str

    def peer_socket(self, family=socket.AF_INET, kind=socket.SOCK_DGRAM) -> socket.socket:
        """A kernel socket living in the peer namespace."""
        with self.peer.inside():
            return socket.socket(family, kind)

    def peer_sniffer(self) -> socket.socket:
        """An AF_PACKET socket on the peer interface (sees every frame it receives)."""
        with self.peer.inside():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            s.bind((self.peer_if, 0))
        s.settimeout(2.0)
        return s


@pytest.fixture
def topo():
    """Factory: `topo.dut` is the DUT namespace; `topo.link(queues=1)` adds a veth to a new
    peer namespace with addresses, a static neighbour and offloads off. Everything is
    removed when the test ends, pass or fail."""
    with contextlib.ExitStack() as stack:
        dut = stack.enter_context(Namespace(prefix=NS_PREFIX))
        dut.disable_ipv6()
        links: list[Link] = []

        class Topo:
            def __init__(self):
                self.dut = dut

            def link(self, queues: int = 1) -> Link:
                n = len(links) + 1
                peer = stack.enter_context(Namespace(prefix=NS_PREFIX))
                peer.disable_ipv6()
                veth = stack.enter_context(VethPair(dut, peer, queues=queues))
                link = Link(
                    dut,
                    peer,
                    veth.a,
                    veth.b,
                    veth.mac_a,
                    veth.mac_b,
                    f"10.77.{n}.1",
                    f"10.77.{n}.2",
                )
                peer.add_address(link.peer_if, link.peer_ip, 24)
                peer.add_neighbour(link.peer_if, link.dut_ip, link.dut_mac)
                peer.disable_offloads(link.peer_if)
                links.append(link)
                return link

        yield Topo()


@pytest.fixture(autouse=True)
def _leaves_nothing_behind(request):
    """After every test: no XDP program of ours attached, no namespace of ours left."""
    yield
    from xpfdp.ports import programs

    leftover = programs.attached()
    for program in leftover:
        program.close()
    assert not leftover, f"XDP programs still attached after the test: {leftover}"
    stale = [ns for ns in list_namespaces() if ns.startswith(_OUR_NS)]
    assert not stale, f"namespaces left behind: {stale}"


@pytest.fixture
def umem_factory():
    """Factory for Umems that asserts frame conservation and closes them after the test."""
    from xpfdp.ports import Umem

    made = []

    def make(*args, **kwargs):
        u = Umem(*args, **kwargs)
        made.append(u)
        return u

    yield make
    for u in made:
        if not u.closed:
            u.check_frames()
            u.close()


@contextlib.contextmanager
def running_firewall(config: dict):
    """The xpfdp firewall for a config dict (xpfdp.firewall schema), started; on a clean exit
    it is stopped and every worker's frames are checked for conservation; always closed."""
    from xpfdp.firewall import build_forwarder, parse_config

    fw = build_forwarder(parse_config(config), handle_signals=False)
    try:
        fw.start()
        yield fw
        fw.stop()
        for pipe in fw.pipelines:
            pipe.close()
            pipe.ports[0].umem.check_frames()
    finally:
        fw.close()


def wait_until(predicate, timeout_s: float = 3.0) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes (an event, not a timing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
