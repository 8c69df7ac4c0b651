"""The NAT firewall forwarding real kernel traffic between namespaces (root).

client — [lan] xpfdp firewall [wan] — server, built by xpfdp.demo.topology; the forwarder
comes from the same config path the CLI uses. Every test ends with frame conservation on
each worker's UMEM, and the conftest checks that no namespace or XDP program is left.
"""

from __future__ import annotations

import errno
import socket
import threading
import time

import pytest

from tests.conftest import needs_root, running_firewall
from xpfdp.demo import traffic
from xpfdp.demo.run import demo_config, drop_counts
from xpfdp.demo.topology import FirewallTopology

pytestmark = [needs_root, pytest.mark.root]

CLAMP = 1360
IP_RECVERR, IPV6_RECVERR = 11, 25  # <linux/in.h>, <linux/in6.h>


@pytest.fixture
def net():
    """(topology, running forwarder); frames conserved and everything closed afterwards."""
    with (
        FirewallTopology(prefix="xt") as topo,
        running_firewall(demo_config(topo, shaper_mbps=None, mss_clamp=CLAMP)) as fw,
    ):
        yield topo, fw


def drops_delta(fw, before, reason):
    return drop_counts(fw.stats()).get(reason, 0) - before.get(reason, 0)


def test_tcp_udp_icmp_v4_v6_through_nat(net):
    topo, fw = net
    t0 = time.monotonic()
    sink = traffic.BulkSink(topo.server, t0, (topo.server_v4, topo.server_v6))
    echo = traffic.EchoServer(topo.server, (topo.server_v4, topo.server_v6))
    try:
        results = traffic.bulk_send_each(topo.client, (topo.server_v4, topo.server_v6), 8_000_000)
        mouse4 = traffic.mouse_rtts_us(topo.client, topo.server_v4, 0.3)
        mouse6 = traffic.mouse_rtts_us(topo.client, topo.server_v6, 0.3)
        pings = (
            traffic.ping(topo.client, topo.server_v4),
            traffic.ping(topo.client, topo.server_v6),
        )
        time.sleep(0.2)
    finally:
        sink.close()
        echo.close()
    for r, snat, family_clamp in (
        (results[0], topo.wan_v4, CLAMP),
        (results[1], topo.wan_v6, CLAMP - 20),
    ):
        rec = sink.flows[r.flow_id]
        assert not r.error
        assert r.bytes_sent == rec.bytes_received == 8_000_000
        assert rec.sha256 == r.sha256  # the bytes arrived intact
        assert rec.peer == snat  # the server saw the SNAT address
        assert rec.mss_bytes <= family_clamp  # and an MSS at most the clamp
    # replies reached the client: every request answered, from the translated source
    assert mouse4.lost == 0 and len(mouse4.rtts_us) > 10
    assert mouse6.lost == 0 and len(mouse6.rtts_us) > 10
    assert echo.peers == {topo.wan_v4, topo.wan_v6}
    assert pings == (3, 3)
    stats = fw.stats()["total"]
    assert stats["sessions"]["created"] >= 6  # 2 TCP, 2 UDP, 2 ICMP
    assert stats["drops"].get("nat_failed", 0) == 0


def test_unsolicited_wan_to_lan_is_dropped_and_counted(net):
    topo, fw = net
    topo.server.add_route("10.10.1.0/24", gateway=topo.wan_v4)
    with topo.client.inside():
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with topo.server.inside():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with listener, sender:
        listener.bind((topo.client_v4, 5555))
        listener.settimeout(0.5)
        before = drop_counts(fw.stats())
        for i in range(5):
            sender.sendto(b"unsolicited %d" % i, (topo.client_v4, 5555))  # straight at the LAN
            # at the NAT address, on ports of the SNAT range (others are the host's own)
            sender.sendto(b"unsolicited %d" % i, (topo.wan_v4, 20000 + i))
        with pytest.raises(TimeoutError):
            listener.recv(100)
        time.sleep(0.2)
        assert drops_delta(fw, before, "policy_denied") == 10
    # the firewall still forwards solicited traffic
    assert traffic.ping(topo.client, topo.server_v4) == 3


def expired(fw):
    return sum(w["stages"]["ttl"]["expired"] for w in fw.stats()["workers"])


def test_ttl_and_hop_limit_expiry_is_answered_and_counted(net):
    topo, fw = net
    with topo.server.inside():
        sink4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with topo.client.inside():
        s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with sink4, sink6, s4, s6:
        sink4.bind((topo.server_v4, 7000))
        sink6.bind((topo.server_v6, 7000))
        for sink in (sink4, sink6):
            sink.settimeout(0.5)
        s4.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
        # with RECVERR a connected socket reports the Time Exceeded the firewall sends back
        s4.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s6.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        s4.connect((topo.server_v4, 7000))
        s6.connect((topo.server_v6, 7000))
        for s, sink in ((s4, sink4), (s6, sink6)):
            before = expired(fw)
            s.settimeout(2.0)
            for _ in range(3):
                s.send(b"x")
                with pytest.raises(OSError) as err:
                    s.recv(10)
                assert err.value.errno == errno.EHOSTUNREACH
            with pytest.raises(TimeoutError):
                sink.recv(10)
            assert expired(fw) - before == 3
        assert "ttl_expired" not in drop_counts(fw.stats())  # all three were answered
        s4.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 2)  # one hop left after the firewall
        s4.send(b"ok")
        assert sink4.recv(10) == b"ok"


def _malformed(dst_mac: str, src_mac: str) -> dict[str, bytes]:
    """One frame per parser drop reason, addressed to the firewall's LAN port."""
    eth4 = bytes.fromhex(dst_mac.replace(":", "") + src_mac.replace(":", "")) + b"\x08\x00"
    ip = bytearray(
        bytes.fromhex("4500002800010000400600000a0a01020a0a0202")  # IPv4, TCP, 40 bytes
    )
    tcp = bytearray(bytes.fromhex("9c400050000000000000000050020000000000000"[:40]))
    bad_ihl = bytearray(ip)
    bad_ihl[0] = 0x43  # IHL 3 words < 5
    bad_doff = bytearray(tcp)
    bad_doff[12] = 0x20  # data offset 2 words < 5
    return {
        "parse_error:trunc_l3": eth4 + bytes(ip[:10]),
        "parse_error:bad_ihl": eth4 + bytes(bad_ihl) + bytes(tcp),
        "parse_error:bad_doff": eth4 + bytes(ip) + bytes(bad_doff),
    }


def test_malformed_frames_dropped_by_reason_while_traffic_flows(net):
    topo, fw = net
    sink = traffic.BulkSink(topo.server, time.monotonic(), (topo.server_v4,))
    result = traffic.SendResult(7)
    bulk = threading.Thread(
        target=traffic.bulk_send, args=(topo.client, topo.server_v4, 7, None, 20_000_000, result)
    )
    before = drop_counts(fw.stats())
    bulk.start()
    frames = _malformed(topo.lan_mac, topo.client_mac)
    with topo.client.inside():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with raw:
        raw.bind((topo.client_if, 0))
        for _ in range(20):
            for frame in frames.values():
                raw.send(frame)
            time.sleep(0.005)
    bulk.join(timeout=60)
    time.sleep(0.2)
    sink.close()
    assert not result.error
    assert sink.flows[7].sha256 == result.sha256 and sink.flows[7].bytes_received == 20_000_000
    for reason in frames:
        assert drops_delta(fw, before, reason) == 20, reason
    assert not fw.errors and fw.running
