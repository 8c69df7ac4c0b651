"""The firewall as a host (root): local delivery of its own addresses, next-hop MACs from the
kernel's neighbour table, followed live, and unresolvable next hops.

client — [lan] xpfdp firewall [wan] — server (xpfdp.demo.topology), with no static neighbour
anywhere: every namespace, the firewall's kernel included, resolves with ARP/ND. Every test
ends with frame conservation on each worker's UMEM.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import pytest

from tests.conftest import needs_root, running_firewall, wait_until
from xpfdp.demo import traffic
from xpfdp.demo.run import demo_config, drop_counts
from xpfdp.demo.topology import FirewallTopology
from xpfdp.firewall import PORT_LAN, PORT_WAN, parse_config

pytestmark = [needs_root, pytest.mark.root]

HOST_PORT = 2222  # a port of the firewall host's own, outside the SNAT range
TCP_FORWARD, UDP_FORWARD = 8080, 5353  # port forwards on the WAN address, outside the range
UNREACHABLE_GW = "10.10.2.99"  # on the WAN subnet, nobody answers for it


@pytest.fixture
def net():
    """(topology, running forwarder) with no static neighbours, one route through a
    gateway nobody answers for and TCP and UDP port forwards on the WAN addresses to the
    client (IPv4 and IPv6); frames conserved and everything closed afterwards."""
    with FirewallTopology(prefix="xt") as topo:
        raw = demo_config(topo, shaper_mbps=None, mss_clamp=1360)
        raw["routes"].append(
            {"destination": "192.0.2.0/24", "interface": "wan", "gateway": UNREACHABLE_GW}
        )
        raw["dnat"] = [
            {"interface": "wan", "proto": proto, "port": port, "to_address": to, "to_port": to_port}
            for to in (topo.client_v4, topo.client_v6)
            for proto, port, to_port in (
                ("tcp", TCP_FORWARD, traffic.BULK_PORT),
                ("udp", UDP_FORWARD, traffic.MOUSE_PORT),
            )
        ]
        assert parse_config(raw).neighbours == ()
        with running_firewall(raw) as fw:
            yield topo, fw


def counters(fw, side: int) -> dict:
    return fw.pipelines[0].ports[side].program.counters()


def tcp_exchange(client_ns, server_ns, address: str, payload: bytes, port=HOST_PORT) -> bytes:
    """One TCP connection from `client_ns` to a listener in `server_ns` on `address`:`port`:
    what the listener echoes back."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with server_ns.inside():
        listener = socket.socket(family, socket.SOCK_STREAM)
    with client_ns.inside():
        client = socket.socket(family, socket.SOCK_STREAM)
    with listener, client:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(1)
        listener.settimeout(5)

        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.sendall(conn.recv(len(payload)))

        t = threading.Thread(target=serve)
        t.start()
        client.settimeout(5)
        client.connect((address, port))
        client.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = client.recv(len(payload))
            if not chunk:
                break
            got += chunk
        t.join(timeout=5)
    return got


def test_ping_and_tcp_to_the_firewall_itself_while_it_forwards(net):
    topo, fw = net
    echo = traffic.EchoServer(topo.server, (topo.server_v4, topo.server_v6))
    stop = threading.Event()
    mice = [traffic.MouseResult(), traffic.MouseResult()]
    movers = [
        threading.Thread(
            target=traffic.mouse_rtts_us,
            args=(topo.client, server, 30.0),
            kwargs={"stop": stop, "result": mice[i]},
        )
        for i, server in enumerate((topo.server_v4, topo.server_v6))
    ]
    for t in movers:
        t.start()
    try:
        assert wait_until(lambda: all(len(m.rtts_us) >= 5 for m in mice), 10)
        before = [len(m.rtts_us) for m in mice]
        pings = {
            address: traffic.ping(ns, address)
            for ns, address in (
                (topo.client, topo.lan_v4),
                (topo.client, topo.lan_v6),
                (topo.server, topo.wan_v4),
                (topo.server, topo.wan_v6),
                (topo.client, topo.wan_v4),  # the WAN address from the LAN (weak host)
            )
        }
        tcp = {
            address: tcp_exchange(ns, topo.firewall, address, b"hello %s" % address.encode())
            for ns, address in (
                (topo.client, topo.lan_v4),
                (topo.client, topo.lan_v6),
                (topo.server, topo.wan_v4),  # a NAT address, on a port outside the range
                (topo.server, topo.wan_v6),
            )
        }
        # the forwarded flows keep flowing meanwhile
        grown = list(zip(mice, before, strict=True))
        assert wait_until(lambda: all(len(m.rtts_us) >= b + 20 for m, b in grown), 10)
    finally:
        stop.set()
        for t in movers:
            t.join()
        echo.close()
    assert pings == dict.fromkeys(pings, 3)
    assert tcp == {a: b"hello %s" % a.encode() for a in tcp}
    assert all(m.lost == 0 for m in mice)
    assert echo.peers == {topo.wan_v4, topo.wan_v6}
    assert counters(fw, PORT_LAN)["pass_local"] > 0 and counters(fw, PORT_WAN)["pass_local"] > 0
    assert counters(fw, PORT_LAN)["redirected"] > 0


def test_forwards_both_ways_on_neighbours_the_kernel_resolved(net):
    topo, fw = net
    table = fw.pipelines[0].neighbours
    echo = traffic.EchoServer(topo.server, (topo.server_v4, topo.server_v6))
    try:
        results = [
            traffic.mouse_rtts_us(topo.client, s, 0.3) for s in (topo.server_v4, topo.server_v6)
        ]
    finally:
        echo.close()
    assert all(r.lost == 0 and len(r.rtts_us) > 10 for r in results)
    # the MACs the forwarder used are the kernel's, learned by ARP/ND
    for address in (topo.server_v4, topo.server_v6):
        assert table.get(PORT_WAN, address) == topo.server_mac
    for address in (topo.client_v4, topo.client_v6):
        assert table.get(PORT_LAN, address) == topo.client_mac
    kernel = topo.firewall.run("ip", "neigh", "show", topo.server_v4).stdout
    assert topo.server_mac in kernel


def test_a_neighbour_mac_change_is_followed(net):
    topo, fw = net
    echo = traffic.EchoServer(topo.server, (topo.server_v4, topo.server_v6))
    try:
        assert traffic.mouse_rtts_us(topo.client, topo.server_v4, 0.2).lost == 0
        new_mac = "02:5e:00:00:00:42"
        topo.server.run("ip", "link", "set", "dev", topo.server_if, "address", new_mac)
        for address in (topo.server_v4, topo.server_v6):  # what a gratuitous ARP/NA does
            topo.firewall.run("ip", "neigh", "replace", address, "dev", topo.wan_if,
                              "lladdr", new_mac, "nud", "reachable")  # fmt: skip
        table = fw.pipelines[0].neighbours
        assert wait_until(lambda: table.get(PORT_WAN, topo.server_v4) == new_mac)
        assert wait_until(lambda: table.get(PORT_WAN, topo.server_v6) == new_mac)
        for server in (topo.server_v4, topo.server_v6):
            result = traffic.mouse_rtts_us(topo.client, server, 0.2)
            assert result.lost == 0 and len(result.rtts_us) > 5
    finally:
        echo.close()


def test_an_unresolvable_next_hop_drops_with_a_reason_and_sends_nothing(net):
    topo, fw = net
    with topo.server.inside():
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    with topo.client.inside():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sniffer, sender:
        sniffer.bind((topo.server_if, 0))
        sniffer.settimeout(0.1)
        before = drop_counts(fw.stats())
        for i in range(5):
            sender.sendto(b"nobody %d" % i, ("192.0.2.5", 9000 + i))
        # held while the kernel tries ARP, then dropped by name (1 s hold)
        assert wait_until(
            lambda: (
                drop_counts(fw.stats()).get("neighbour_unresolved", 0)
                - before.get("neighbour_unresolved", 0)
                == 5
            )
        )
        seen = []
        while True:
            try:
                seen.append(sniffer.recv(2048))
            except TimeoutError:
                break
    to_unknown = [f for f in seen if f[14 + 16 : 14 + 20] == socket.inet_aton("192.0.2.5")]
    assert to_unknown == []  # not one frame left towards any MAC
    assert fw.pipelines[0].neighbours.get(PORT_WAN, UNREACHABLE_GW) is None
    assert fw.controls[0].requests_sent >= 1
    assert fw.stats()["total"].get("neighbour_held", 0) == 0


def test_addresses_added_and_removed_at_runtime_change_local_delivery(net):
    topo, fw = net
    extra = "10.10.2.7"
    program = fw.pipelines[0].ports[PORT_WAN].program
    assert program.is_local(extra) is None
    with topo.firewall.inside():
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with topo.server.inside():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The server sends to the firewall's MAC at once (no ARP queue holding "before").
    topo.server.add_neighbour(topo.server_if, extra, topo.wan_mac)
    with listener, sender:
        listener.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: bind before it exists
        listener.bind((extra, HOST_PORT))
        listener.settimeout(0.5)
        before = drop_counts(fw.stats())
        sender.sendto(b"before", (extra, HOST_PORT))  # the forwarder's: not the host's yet
        with pytest.raises(TimeoutError):
            listener.recv(100)
        assert drop_counts(fw.stats())["policy_denied"] == before.get("policy_denied", 0) + 1
        topo.firewall.run("ip", "addr", "add", f"{extra}/24", "dev", topo.wan_if)
        assert wait_until(lambda: program.is_local(extra) == (0, 0))
        sender.sendto(b"added", (extra, HOST_PORT))
        assert listener.recv(100) == b"added"
        topo.firewall.run("ip", "addr", "del", f"{extra}/24", "dev", topo.wan_if)
        assert wait_until(lambda: program.is_local(extra) is None)
        sender.sendto(b"removed", (extra, HOST_PORT))
        with pytest.raises(TimeoutError):
            listener.recv(100)
    # the NAT address keeps its port range; a LAN address has none
    assert program.is_local(topo.wan_v4) == (20000, 29999)
    assert program.is_local(topo.wan_v6) == (20000, 29999)
    assert program.is_local(topo.lan_v4) == (0, 0)
    assert ipaddress.ip_address(topo.wan_v4) in fw.controls[0].local


def udp_exchange(ns, address: str, port: int, payload: bytes) -> tuple[bytes, tuple]:
    """One datagram from `ns` to `address`:`port`: the reply and where it came from."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with ns.inside():
        s = socket.socket(family, socket.SOCK_DGRAM)
    with s:
        s.settimeout(2)
        s.sendto(payload, (address, port))
        data, peer = s.recvfrom(2048)
    return data, peer[:2]


def test_port_forwards_on_the_wan_address_outside_the_snat_range(net):
    """Local delivery is on, yet TCP and UDP to the forwarded ports of the WAN address reach
    the LAN host (data intact, the server's own address seen), while another port of the
    same address is still the firewall host's."""
    topo, fw = net
    wan = fw.pipelines[0].ports[PORT_WAN].program
    for address in (topo.wan_v4, topo.wan_v6):
        assert wan.is_local(address) == (20000, 29999)  # a NAT address, ports outside
        assert wan.is_forwarded_port(address, 6, TCP_FORWARD)
        assert wan.is_forwarded_port(address, 17, UDP_FORWARD)
        assert not wan.is_forwarded_port(address, 6, HOST_PORT)
    lan = fw.pipelines[0].ports[PORT_LAN].program
    assert not lan.is_forwarded_port(topo.wan_v4, 6, TCP_FORWARD)  # the ingress side only
    sink = traffic.BulkSink(topo.client, time.monotonic(), (topo.client_v4, topo.client_v6))
    echo = traffic.EchoServer(topo.client, (topo.client_v4, topo.client_v6))
    try:
        sent = [
            traffic.bulk_send(
                topo.server, address, flow_id, total_bytes=1_000_000, port=TCP_FORWARD
            )
            for flow_id, address in enumerate((topo.wan_v4, topo.wan_v6))
        ]
        replies = {
            address: udp_exchange(topo.server, address, UDP_FORWARD, b"query %s" % address.encode())
            for address in (topo.wan_v4, topo.wan_v6)
        }
        time.sleep(0.2)  # the sink records the end of each flow
    finally:
        sink.close()
        echo.close()
    for result, peer in zip(sent, (topo.server_v4, topo.server_v6), strict=True):
        record = sink.flows[result.flow_id]
        assert not result.error and result.bytes_sent == record.bytes_received == 1_000_000
        assert record.sha256 == result.sha256 and record.peer == peer  # no SNAT on the way in
    assert replies == {a: (b"query %s" % a.encode(), (a, UDP_FORWARD)) for a in replies}
    assert echo.peers == {topo.server_v4, topo.server_v6}
    # the host keeps the address's other ports
    for address in (topo.wan_v4, topo.wan_v6):
        got = tcp_exchange(topo.server, topo.firewall, address, b"host %s" % address.encode())
        assert got == b"host %s" % address.encode()
    assert counters(fw, PORT_WAN)["port_forward"] > 0
    assert counters(fw, PORT_WAN)["pass_local"] > 0


def test_forwarded_ports_follow_addresses_and_can_be_withdrawn(net):
    topo, fw = net
    watcher = fw.controls[0]
    program = fw.pipelines[0].ports[PORT_WAN].program
    extra = "10.10.2.7"
    topo.firewall.run("ip", "addr", "add", f"{extra}/24", "dev", topo.wan_if)
    assert wait_until(lambda: program.is_forwarded_port(extra, 6, TCP_FORWARD))
    assert program.is_forwarded_port(extra, 17, UDP_FORWARD)
    topo.firewall.run("ip", "addr", "del", f"{extra}/24", "dev", topo.wan_if)
    assert wait_until(lambda: not program.is_forwarded_port(extra, 6, TCP_FORWARD))
    assert not program.is_forwarded_port(extra, 17, UDP_FORWARD)
    # withdrawn: the host takes the port back (a listener on the firewall itself answers)
    watcher.unforward_port(topo.wan_if, 4, 6, TCP_FORWARD)
    assert not program.is_forwarded_port(topo.wan_v4, 6, TCP_FORWARD)
    assert program.is_forwarded_port(topo.wan_v6, 6, TCP_FORWARD)  # the other family stays
    got = tcp_exchange(topo.server, topo.firewall, topo.wan_v4, b"mine", port=TCP_FORWARD)
    assert got == b"mine"
    watcher.forward_port(topo.wan_if, 4, 6, TCP_FORWARD)
    assert program.is_forwarded_port(topo.wan_v4, 6, TCP_FORWARD)
    with pytest.raises(ValueError, match="not one of the watched interfaces"):
        watcher.forward_port("eth9", 4, 6, TCP_FORWARD)
    with pytest.raises(ValueError, match="proto must be 6"):
        watcher.forward_port(topo.wan_if, 4, 1, TCP_FORWARD)
