"""Large UDP datagrams through the NAT firewall between namespaces (root): fragmented by the
sender's kernel, or sent fragment by fragment in reverse order through AF_PACKET, they
arrive whole at kernel sockets in both directions, IPv4 and IPv6; frames are conserved
(the `net` fixture checks every worker's UMEM after stopping)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from scapy.all import IP, UDP, Ether, IPv6, IPv6ExtHdrFragment, Raw, fragment, fragment6

from tests.conftest import needs_root
from tests.test_firewall_netns import net  # noqa: F401  (the fixture)

pytestmark = [needs_root, pytest.mark.root]

PORT = 7400
FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


def udp_socket(ns, family, address, port=0, timeout_s=3.0):
    with ns.inside():
        s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((address, port))
    s.settimeout(timeout_s)
    return s


def ends(topo, family):
    """(client, server, SNAT) addresses of one family."""
    if family == socket.AF_INET:
        return topo.client_v4, topo.server_v4, topo.wan_v4
    return topo.client_v6, topo.server_v6, topo.wan_v6


def totals(fw):
    return fw.stats()["total"]


@pytest.mark.parametrize("size", [3000, 8000])
@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
def test_kernel_fragmented_datagrams_both_ways(net, family, size):  # noqa: F811
    topo, fw = net
    client_addr, server_addr, snat = ends(topo, family)
    request, reply = os.urandom(size), os.urandom(size)
    with (
        udp_socket(topo.server, family, server_addr, PORT) as server,
        udp_socket(topo.client, family, client_addr) as client,
    ):
        client.sendto(request, (server_addr, PORT))
        got, peer = server.recvfrom(65535)
        assert got == request and peer[0] == snat  # whole, and source-NATed
        server.sendto(reply, peer[:2])
        got, peer = client.recvfrom(65535)
        assert got == reply and peer[0] == server_addr  # whole, and un-NATed
    stats = totals(fw)
    assert stats["fragments"]["recorded"] == 2
    assert stats["fragments"]["translated"] >= 2 * (size // 1500)
    assert stats["fragments"]["completed"] == 2
    assert not [k for k in stats["drops"] if k.startswith("frag_")]


def reversed_frames(family, src, dst, ports, payload, macs, ident):
    """The datagram fragmented for a 1500-byte MTU, last fragment first, as Ethernet frames."""
    l4 = UDP(sport=ports[0], dport=ports[1]) / Raw(payload)
    if family == socket.AF_INET:
        frags = fragment(IP(src=src, dst=dst, id=ident) / l4, fragsize=1480)
    else:
        frags = fragment6(IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(id=ident) / l4, 1500)
    assert len(frags) >= 3
    return [bytes(Ether(src=macs[0], dst=macs[1]) / f) for f in reversed(frags)]


def send_raw(ns, ifname, frames, pause_s=0.2):
    """Send `frames` through AF_PACKET, pausing before the last (the first fragment) so the
    forwarder has seen every later fragment before it: they must be held."""
    with ns.inside():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with raw:
        raw.bind((ifname, 0))
        for frame in frames[:-1]:
            raw.send(frame)
        time.sleep(pause_s)
        raw.send(frames[-1])


@pytest.mark.parametrize("size", [3000, 8000])
@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
def test_reversed_fragments_both_ways(net, family, size):  # noqa: F811
    topo, fw = net
    client_addr, server_addr, snat = ends(topo, family)
    request, reply = os.urandom(size), os.urandom(size)
    with (
        udp_socket(topo.server, family, server_addr, PORT) as server,
        udp_socket(topo.client, family, client_addr) as client,
    ):
        ports = (client.getsockname()[1], PORT)
        up = reversed_frames(
            family,
            client_addr,
            server_addr,
            ports,
            request,
            (topo.client_mac, topo.lan_mac),
            ident=0x5A5A,
        )
        send_raw(topo.client, topo.client_if, up)
        got, peer = server.recvfrom(65535)
        assert got == request and peer[0] == snat
        # The reply, reversed too, from the server's side to the NAT address and port.
        down = reversed_frames(
            family,
            server_addr,
            snat,
            (PORT, peer[1]),
            reply,
            (topo.server_mac, topo.wan_mac),
            ident=0xA5A5,
        )
        send_raw(topo.server, topo.server_if, down)
        got, peer = client.recvfrom(65535)
        assert got == reply and peer[:2] == (server_addr, PORT)
    stats = totals(fw)
    later = len(up) - 1 + len(down) - 1
    # Every later fragment came before its first one: all were held, then released.
    assert stats["fragments"]["held"] == stats["fragments"]["released"] == later
    assert stats["fragments"]["translated"] == later
    assert not [k for k in stats["drops"] if k.startswith("frag_")]
