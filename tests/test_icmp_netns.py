"""ICMP through the xpfdp firewall with real kernel tools and sockets (root).

client — [lan] xpfdp firewall [wan] — server (xpfdp.demo.topology), the forwarder built from
the same config path the CLI uses, without MSS clamping. Every test ends with frame
conservation on each worker's UMEM.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.conftest import needs_root, running_firewall
from xpfdp.demo import traffic
from xpfdp.demo.topology import FirewallTopology

pytestmark = [needs_root, pytest.mark.root]

WAN_MTU = 1400


@pytest.fixture
def net():
    """(topology, running forwarder) with no MSS clamp; frames conserved afterwards."""
    with (
        FirewallTopology(prefix="xi") as topo,
        running_firewall(topo.firewall_config(nat={"snat_ports": [20000, 29999]})) as fw,
    ):
        yield topo, fw


def shrink_wan_mtu(topo, fw):
    """The firewall's WAN link gets a smaller MTU (the server's end keeps 1500, so it still
    advertises a 1460-byte MSS); the forwarder follows the change."""
    topo.firewall.run("ip", "link", "set", "dev", topo.wan_if, "mtu", str(WAN_MTU))
    fw.refresh_mtus()
    assert [p.ports[1].mtu for p in fw.pipelines] == [WAN_MTU] * len(fw.pipelines)


@pytest.mark.parametrize("version", [4, 6])
def test_traceroute_shows_the_firewall_hop(net, version):
    topo, _fw = net
    server = topo.server_v4 if version == 4 else topo.server_v6
    hop = topo.lan_v4 if version == 4 else topo.lan_v6
    out = topo.client.run(
        "traceroute", f"-{version}", "-n", "-q", "1", "-N", "1", "-w", "2", "-m", "4", server
    ).stdout
    hops = re.findall(r"^\s*(\d+)\s+(\S+)", out, re.M)
    assert hops[:2] == [("1", hop), ("2", server)], out  # the server's Port Unreachable too


@pytest.mark.parametrize("version", [4, 6])
def test_tracepath_discovers_the_smaller_wan_mtu(net, version):
    topo, fw = net
    shrink_wan_mtu(topo, fw)
    server = topo.server_v4 if version == 4 else topo.server_v6
    out = topo.client.run("tracepath", f"-{version}", "-n", "-m", "4", server, check=False).stdout
    assert re.search(rf"Resume: pmtu {WAN_MTU}\b", out), out
    hop = topo.lan_v4 if version == 4 else topo.lan_v6
    assert re.search(rf"^\s*1:\s+{re.escape(hop)}\b", out, re.M), out
    drops = fw.stats()["total"]["drops"]
    assert "mtu_exceeded" not in drops


def test_tcp_over_a_smaller_wan_mtu_completes_through_pmtu_discovery(net):
    topo, fw = net
    shrink_wan_mtu(topo, fw)
    sink = traffic.BulkSink(topo.server, time.monotonic(), (topo.server_v4, topo.server_v6))
    try:
        results = traffic.bulk_send_each(topo.client, (topo.server_v4, topo.server_v6), 3_000_000)
        time.sleep(0.2)
    finally:
        sink.close()
    for r in results:
        assert not r.error
        rec = sink.flows[r.flow_id]
        assert r.bytes_sent == rec.bytes_received == 3_000_000 and rec.sha256 == r.sha256
        assert rec.mss_bytes > WAN_MTU - 40  # no clamp: only PMTU discovery made it fit
    stages = fw.stats()["workers"][0]["stages"]
    assert stages["mtu"]["too_big"] >= 2  # at least one Fragmentation Needed / Packet Too Big


@pytest.mark.parametrize("version", [4, 6])
def test_connected_udp_socket_sees_connection_refused(net, version):
    topo, fw = net
    server = topo.server_v4 if version == 4 else topo.server_v6
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with topo.client.inside():
        s = socket.socket(family, socket.SOCK_DGRAM)
    with s:
        s.settimeout(2.0)
        s.connect((server, 7999))  # nothing listens there
        s.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            s.recv(100)
    assert fw.stats()["workers"][0]["stages"]["session"]["icmp_errors_translated"] >= 1
