"""Routes from the kernel's main table (root): `kernel_routes = true`.

client — [lan] xpfdp firewall [wan] — server (xpfdp.demo.topology). The server also holds
a "remote" network (an address on its loopback) that only a route in the firewall's
namespace reaches: adding, changing and deleting that route with `ip route` must change
where the forwarder sends packets for it, IPv4 and IPv6, with frames conserved.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from tests.conftest import needs_root, running_firewall, wait_until
from xpfdp.demo.run import demo_config
from xpfdp.demo.topology import FirewallTopology

pytestmark = [needs_root, pytest.mark.root]

REMOTE = {4: ("203.0.113.7", "203.0.113.0/24"), 6: ("2001:db8:7::7", "2001:db8:7::/64")}
ECHO_PORT = 7300


class Echo:
    """A UDP echo socket on (address, ECHO_PORT) in the server namespace, answered inline."""

    def __init__(self, ns, address: str) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with ns.inside():
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((address, ECHO_PORT))
        self.sock.setblocking(False)

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            self.sock.sendto(data, peer)


def answered(client_ns, echo: Echo, address: str) -> bool:
    """One request from the client to address:ECHO_PORT; True if its reply came back."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with client_ns.inside():
        s = socket.socket(family, socket.SOCK_DGRAM)
    with s:
        s.settimeout(0.05)
        s.sendto(b"route?", (address, ECHO_PORT))
        for _ in range(10):
            echo.serve()
            try:
                return s.recv(64) == b"route?"
            except TimeoutError:
                continue
    return False


@pytest.fixture
def net():
    """(topology, running forwarder following the kernel's routes); frames conserved."""
    with FirewallTopology(prefix="xr") as topo:
        raw = demo_config(topo, shaper_mbps=None, mss_clamp=1360)
        del raw["routes"]
        raw["kernel_routes"] = True
        for version, (address, _net) in REMOTE.items():
            plen = 32 if version == 4 else 128
            topo.server.run("ip", "addr", "add", f"{address}/{plen}", "dev", "lo")
        with running_firewall(raw) as fw:
            yield topo, fw


def no_route_drops(fw) -> int:
    return fw.stats()["total"]["drops"].get("no_route", 0)


@pytest.mark.parametrize("version", [4, 6])
def test_routes_added_and_deleted_in_the_kernel_are_followed(net, version):
    topo, fw = net
    address, network = REMOTE[version]
    gateway = topo.server_v4 if version == 4 else topo.server_v6
    ip = ["ip", "-4" if version == 4 else "-6", "route"]
    echo = Echo(topo.server, address)
    try:
        before = no_route_drops(fw)
        assert not answered(topo.client, echo, address)
        assert no_route_drops(fw) > before  # no route in the kernel: none in the forwarder

        topo.firewall.run(*ip, "add", network, "via", gateway, "dev", topo.wan_if)
        assert wait_until(lambda: answered(topo.client, echo, address), 5.0)
        assert any(str(r.destination) == network for r in fw.controls[0].routes)

        topo.firewall.run(*ip, "del", network, "via", gateway, "dev", topo.wan_if)
        assert wait_until(lambda: not answered(topo.client, echo, address), 5.0)
        after_delete = no_route_drops(fw)
        assert not answered(topo.client, echo, address)
        assert no_route_drops(fw) > after_delete
    finally:
        echo.sock.close()


def test_a_default_route_in_the_kernel_carries_traffic(net):
    topo, fw = net
    address, _network = REMOTE[4]
    echo = Echo(topo.server, address)
    try:
        topo.firewall.run("ip", "route", "add", "default", "via", topo.server_v4)
        assert wait_until(lambda: answered(topo.client, echo, address), 5.0)
        routes = fw.controls[0].routes
        assert any(r.destination.prefixlen == 0 and str(r.gateway) == topo.server_v4
                   for r in routes)  # fmt: skip
        wan = ipaddress.ip_address(topo.wan_v4)  # the connected subnets come along, on-link
        assert any(r.gateway is None and wan in r.destination for r in routes)
    finally:
        echo.sock.close()
