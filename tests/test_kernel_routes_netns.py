"""Routes from the kernel's main table (root): `kernel_routes = true`.

client — [lan] xpfdp firewall [wan] — server (xpfdp.demo.topology). The server also holds
a "remote" network (an address on its loopback) that only a route in the firewall's
namespace reaches: adding, changing and deleting that route with `ip route` must change
where the forwarder sends packets for it, IPv4 and IPv6, with frames conserved.
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.conftest import needs_root, running_firewall, wait_until
from xpfdp.demo import traffic
from xpfdp.demo.run import demo_config
from xpfdp.demo.topology import FirewallTopology

pytestmark = [needs_root, pytest.mark.root]

REMOTE = {4: ("203.0.113.7", "203.0.113.0/24"), 6: ("2001:db8:7::7", "2001:db8:7::/64")}


def answered(topo, address: str) -> bool:
    """True if a request from the client to the echo server on `address` got its reply
    (the demo's mouse probe: one request, up to 0.5 s for the reply)."""
    return bool(traffic.mouse_rtts_us(topo.client, address, 0.01).rtts_us)


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
    echo = traffic.EchoServer(topo.server, (address,))
    try:
        before = no_route_drops(fw)
        assert not answered(topo, address)
        assert no_route_drops(fw) > before  # no route in the kernel: none in the forwarder

        topo.firewall.run(*ip, "add", network, "via", gateway, "dev", topo.wan_if)
        assert wait_until(lambda: answered(topo, address), 5.0)
        assert any(str(r.destination) == network for r in fw.controls[0].routes)

        topo.firewall.run(*ip, "del", network, "via", gateway, "dev", topo.wan_if)
        assert wait_until(lambda: not answered(topo, address), 5.0)
        after_delete = no_route_drops(fw)
        assert not answered(topo, address)
        assert no_route_drops(fw) > after_delete
    finally:
        echo.close()


def test_a_default_route_in_the_kernel_carries_traffic(net):
    topo, fw = net
    address, _network = REMOTE[4]
    echo = traffic.EchoServer(topo.server, (address,))
    try:
        topo.firewall.run("ip", "route", "add", "default", "via", topo.server_v4)
        assert wait_until(lambda: answered(topo, address), 5.0)
        routes = fw.controls[0].routes
        assert any(r.destination.prefixlen == 0 and str(r.gateway) == topo.server_v4
                   for r in routes)  # fmt: skip
        wan = ipaddress.ip_address(topo.wan_v4)  # the connected subnets come along, on-link
        assert any(r.gateway is None and wan in r.destination for r in routes)
    finally:
        echo.close()
