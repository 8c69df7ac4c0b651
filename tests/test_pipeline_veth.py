"""The firewall pipeline on XskPorts between two veth peers (root): kernel UDP and TCP from
a client namespace reach a server namespace SNATed and MSS-clamped, replies come back."""

from __future__ import annotations

import hashlib
import socket
import threading

import numpy as np
import pytest

from tests.conftest import needs_root
from xpfdp.pipeline import FlowCache, Forwarder, Pipeline, firewall_stages, xsk_workers
from xpfdp.route import RouteTable
from xpfdp.session import SessionTable

pytestmark = [needs_root, pytest.mark.root]

MSS_CLAMP = 1300


def test_firewall_pipeline_forwards_kernel_traffic_through_nat(topo):
    lan, wan = topo.link(), topo.link()
    lan.peer.run("ip", "route", "add", "10.77.2.0/24", "via", lan.dut_ip)
    server_ip, snat_ip = wan.peer_ip, wan.dut_ip
    with wan.peer.inside():
        udp_server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_server.bind((server_ip, 5300))
        tcp_server = socket.socket()
        tcp_server.bind((server_ip, 5301))
        tcp_server.listen(1)
    udp_server.settimeout(5)
    tcp_server.settimeout(10)
    seen = {}

    def serve_tcp():
        conn, addr = tcp_server.accept()
        seen["tcp_peer"] = addr
        seen["mss"] = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        digest = hashlib.sha256()
        with conn:
            conn.settimeout(10)
            while chunk := conn.recv(65536):
                digest.update(chunk)
            conn.sendall(digest.digest())

    def build(queue, ports):
        routes = RouteTable()
        routes.add("10.77.1.0/24", 0)
        routes.add("10.77.2.0/24", 1)
        return Pipeline(
            ports,
            firewall_stages(0, 1, snat=snat_ip, mss=MSS_CLAMP),
            routes=routes,
            next_hops=[(0, lan.dut_mac, lan.peer_mac), (1, wan.dut_mac, wan.peer_mac)],
            sessions=SessionTable(4096),
            flow_cache=FlowCache(),
            names=["lan", "wan"],
        )

    with topo.dut.inside():
        (pipe,) = xsk_workers(
            [lan.dut_if, wan.dut_if],
            build,
            frames=8192,
            tx_frames=1024,
            ring_size=1024,
            fill_target=2048,
        )
    p_lan, p_wan = pipe.ports
    umem = p_lan.umem
    fw = Forwarder([pipe], handle_signals=False)
    server = threading.Thread(target=serve_tcp)
    server.start()
    fw.start()
    try:
        # UDP request/response through NAT.
        client = lan.peer_socket()
        client.settimeout(5)
        client.bind((lan.peer_ip, 4444))
        client.sendto(b"ping", (server_ip, 5300))
        data, addr = udp_server.recvfrom(100)
        assert data == b"ping" and addr[0] == snat_ip and addr[1] != 0
        udp_server.sendto(b"pong", addr)
        assert client.recvfrom(100) == (b"pong", (server_ip, 5300))
        # Unsolicited inbound UDP to the SNAT address is dropped and counted.
        udp_server.sendto(b"unsolicited", (snat_ip, 40000))
        # A TCP transfer arrives intact, SNATed and with a clamped MSS.
        payload = np.random.default_rng(3).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
        tcp = lan.peer_socket(kind=socket.SOCK_STREAM)
        tcp.settimeout(10)
        tcp.connect((server_ip, 5301))
        tcp.sendall(payload)
        tcp.shutdown(socket.SHUT_WR)
        assert tcp.recv(64) == hashlib.sha256(payload).digest()
        tcp.close()
        client.close()
    finally:
        fw.stop()
        server.join(timeout=10)
        udp_server.close()
        tcp_server.close()
    assert seen["tcp_peer"][0] == snat_ip
    assert seen["mss"] <= MSS_CLAMP
    stats = pipe.stats()
    assert stats["drops"].get("policy_denied", 0) >= 1
    assert stats["sessions"]["created"] >= 2
    assert stats["flow_cache"]["hits"] > 0
    assert sum(stats["tx_latency"]["counts"]) > 0
    pipe.close()
    umem.check_frames()
    fw.close()
    assert umem.closed and p_lan.closed and p_wan.closed
