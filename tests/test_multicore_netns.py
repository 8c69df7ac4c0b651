"""The NAT firewall with one worker per RX queue on multi-queue veth pairs (root).

client — [lan] firewall [wan] — server with 2 and 4 queues on every veth end. Each
client flow has its own socket, so the kernel spreads flows over the firewall's LAN RX
queues; replies come from a few server sockets and land on whatever WAN queue their
socket hashes to, which is usually not the queue of the worker that owns the SNAT port.
Every flow must complete with its data intact, replies must never be taken for
unsolicited packets, handoffs must really have happened, and frames are conserved. Large
datagrams, fragmented by the sending kernel, must get through too: their later fragments
(no ports) are handed to the datagram's fragment owner, which learns the decision from the
worker that resolved the first fragment (docs/fragments.md).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.conftest import needs_root
from xpfdp.demo import traffic
from xpfdp.demo.run import demo_config
from xpfdp.demo.topology import FirewallTopology
from xpfdp.firewall import build_forwarder, parse_config

pytestmark = [needs_root, pytest.mark.root]

CLOSED_PORT = 7199  # nothing listens: the server's kernel answers Port Unreachable
ECHO_PORTS = range(7100, 7103)  # several server sockets: replies leave on several queues
FLOWS = 24
ROUNDS = 15
TCP_FLOWS = 6
TCP_BYTES = 2_000_000
DNAT_PORT = 8080  # outside the demo's SNAT range: the XDP program keeps it from the host
FRAG_SIZES = (3000, 8000)  # 3 and 6 fragments at a 1500-byte MTU, in turn
FRAG_ROUNDS = 6
# Flows run in waves of FRAG_WAVE, one datagram in flight each: at most 48 fragments from
# the SNAT address at once. A Linux receiver drops a datagram when more than
# net.ipv4.ipfrag_max_dist (64) fragments from its source arrive between two of its own,
# and with several workers fragments of different datagrams interleave more than with one
# (docs/fragments.md); the receivers here turn that heuristic off, since it would test the
# receiver rather than xpfdp (a loaded box still reordered enough to trip it now and then).
FRAG_WAVE = 8
# The sender's kernel picks a veth queue by a hash that leaves a fragment's ports out, so
# all fragments between two addresses share a queue: the server answers on many addresses,
# one flow each.
FRAG_SERVERS = {
    4: [f"10.10.2.{100 + k}" for k in range(32)],
    6: [f"fd00:b::{100 + k:x}" for k in range(32)],
}


def start_forwarder(topo, queues, dnat=()):
    config = demo_config(topo, shaper_mbps=None, mss_clamp=1360)
    config["forwarder"] = {"queues": queues, "ring_size": 512}
    config["dnat"] = list(dnat)
    fw = build_forwarder(parse_config(config), handle_signals=False)
    fw.start()
    return fw


def stop_and_check(fw):
    """Stop the workers, return their frames and prove conservation on every UMEM."""
    fw.stop()
    for pipe in fw.pipelines:
        pipe.close()
        pipe.ports[0].umem.check_frames()


def family_of(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class UdpEcho:
    """An echo socket per (address, port) in `ns`, each on its own thread; `address` may be
    a list (a socket for every address and port)."""

    def __init__(self, ns, address, ports, bufsize=2048):
        self.bufsize = bufsize
        addresses = [address] if isinstance(address, str) else list(address)
        ends = [(a, p) for a in addresses for p in ports]
        with ns.inside():
            self.socks = [socket.socket(family_of(a), socket.SOCK_DGRAM) for a, _ in ends]
        for s, end in zip(self.socks, ends, strict=True):
            s.bind(end)
            s.settimeout(0.2)
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(s,)) for s in self.socks]
        for t in self.threads:
            t.start()

    def _loop(self, s):
        while not self._stop.is_set():
            try:
                data, peer = s.recvfrom(self.bufsize)
            except TimeoutError:
                continue
            s.sendto(data, peer)

    def close(self):
        self._stop.set()
        for t in self.threads:
            t.join()
        for s in self.socks:
            s.close()


def small_payload(flow, r):
    return f"flow {flow} round {r} ".encode() * (1 + r % 7)


def udp_flows(ns, target, ports, flows=FLOWS, rounds=ROUNDS, payload=small_payload):
    """`flows` UDP flows from `ns` in parallel, each `rounds` request/replies of
    `payload(flow, round)` to target:port (ports, and targets when `target` is a list, taken
    in turn). Returns (replies intact, flows with a loss)."""
    ok = [0] * flows
    lost = [0] * flows
    targets = [target] if isinstance(target, str) else list(target)

    def one(i):
        with ns.inside():
            s = socket.socket(family_of(targets[0]), socket.SOCK_DGRAM)
        with s:
            s.settimeout(2.0)
            dst = (targets[i % len(targets)], ports[i % len(ports)])
            for r in range(rounds):
                data_out = payload(i, r)
                s.sendto(data_out, dst)
                try:
                    data, _ = s.recvfrom(65535)
                except TimeoutError:
                    lost[i] += 1
                    continue
                ok[i] += data == data_out

    threads = [threading.Thread(target=one, args=(i,)) for i in range(flows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(ok), [i for i in range(flows) if lost[i]]


def refused_flows(ns, target, port, flows=FLOWS):
    """`flows` connected UDP sockets in `ns` send to target:port; returns how many saw
    ECONNREFUSED (the ICMP Port Unreachable reached their socket)."""
    refused = 0
    for i in range(flows):
        with ns.inside():
            s = socket.socket(family_of(target), socket.SOCK_DGRAM)
        with s:
            s.settimeout(1.0)
            s.connect((target, port))
            for attempt in range(3):
                try:
                    s.send(f"flow {i} try {attempt}".encode())
                    s.recv(2048)
                except ConnectionRefusedError:
                    refused += 1
                    break
                except TimeoutError:
                    continue
    return refused


def tcp_flows(client_ns, sink_ns, sink_address, connect_to, port=traffic.BULK_PORT):
    """TCP_FLOWS parallel transfers to connect_to:port; asserts every byte arrived intact."""
    sink = traffic.BulkSink(sink_ns, time.monotonic(), (sink_address,))
    try:
        results = [traffic.SendResult(i) for i in range(TCP_FLOWS)]
        threads = [
            threading.Thread(
                target=traffic.bulk_send,
                args=(client_ns, connect_to, i, None, TCP_BYTES, r, port),
            )
            for i, r in enumerate(results)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        time.sleep(0.2)
    finally:
        sink.close()
    for r in results:
        assert not r.error, r.error
        rec = sink.flows[r.flow_id]
        assert r.bytes_sent == rec.bytes_received == TCP_BYTES
        assert rec.sha256 == r.sha256
    return sink


def assert_spread_and_handed_off(fw):
    stats = fw.stats()
    workers = stats["workers"]
    assert all(w["rx_packets"] > 0 for w in workers), [w["rx_packets"] for w in workers]
    total = stats["total"]
    assert total["handoff"]["out"] > 0, "no packet was handed off: the test proved nothing"
    assert total["handoff"]["out"] == total["handoff"]["in"]
    drops = total["drops"]
    for reason in ("policy_denied", "handoff_ring_full", "nat_ports_exhausted"):
        assert drops.get(reason, 0) == 0, drops


@pytest.mark.parametrize("queues", [2, 4])
def test_snat_flows_complete_when_replies_land_on_other_queues(queues):
    with FirewallTopology(prefix="xt", queues=queues) as topo:
        fw = start_forwarder(topo, queues)
        try:
            echo = UdpEcho(topo.server, topo.server_v4, ECHO_PORTS)
            try:
                good, lossy = udp_flows(topo.client, topo.server_v4, list(ECHO_PORTS))
            finally:
                echo.close()
            assert lossy == [] and good == FLOWS * ROUNDS
            sink = tcp_flows(topo.client, topo.server, topo.server_v4, topo.server_v4)
            assert {rec.peer for rec in sink.flows.values()} == {topo.wan_v4}
            assert_spread_and_handed_off(fw)
            sessions = [w["sessions"]["created"] for w in fw.stats()["workers"]]
            assert sum(sessions) >= FLOWS + TCP_FLOWS and all(sessions), sessions
            stop_and_check(fw)
        finally:
            fw.close()


@pytest.mark.parametrize("queues", [2, 4])
def test_dnat_port_forward_with_replies_on_other_queues(queues):
    with FirewallTopology(prefix="xt", queues=queues) as topo:
        inside_ports = [7300 + k for k in range(len(ECHO_PORTS))]
        outside_ports = [DNAT_PORT + 1 + k for k in range(len(ECHO_PORTS))]
        rules = [
            {"interface": "wan", "proto": "udp", "port": out_port,
             "to_address": topo.client_v4, "to_port": in_port}
            for out_port, in_port in zip(outside_ports, inside_ports, strict=True)
        ]  # fmt: skip
        rules.append({"interface": "wan", "proto": "tcp", "port": DNAT_PORT,
                      "to_address": topo.client_v4, "to_port": traffic.BULK_PORT})  # fmt: skip
        fw = start_forwarder(topo, queues, rules)
        try:
            echo = UdpEcho(topo.client, topo.client_v4, inside_ports)
            try:
                good, lossy = udp_flows(topo.server, topo.wan_v4, outside_ports)
            finally:
                echo.close()
            assert lossy == [] and good == FLOWS * ROUNDS
            sink = tcp_flows(topo.server, topo.client, topo.client_v4, topo.wan_v4, DNAT_PORT)
            assert {rec.peer for rec in sink.flows.values()} == {topo.server_v4}  # no SNAT
            assert_spread_and_handed_off(fw)
            stop_and_check(fw)
        finally:
            fw.close()


def test_more_queues_than_the_interface_has_is_a_clear_error():
    with FirewallTopology(prefix="xt", queues=2) as topo:
        config = demo_config(topo, shaper_mbps=None, mss_clamp=1360)
        config["forwarder"] = {"queues": 3}
        with pytest.raises(ValueError, match=r"has 2 RX queues; set queues <= 2"):
            build_forwarder(parse_config(config), handle_signals=False)
        config["forwarder"] = {"queues": "all"}
        fw = build_forwarder(parse_config(config), handle_signals=False)
        try:
            assert len(fw.pipelines) == 2
        finally:
            fw.close()


@pytest.mark.parametrize(("queues", "version"), [(2, 4), (4, 4), (2, 6), (4, 6)])
def test_icmp_errors_reach_flows_another_worker_owns(queues, version):
    """The server's Port Unreachables to the SNAT address all hash to one WAN queue, so
    most quote a flow another worker owns: they must be handed to it and translated."""
    with FirewallTopology(prefix="xt", queues=queues) as topo:
        for knob in ("net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"):
            topo.server.run("sysctl", "-qw", knob)  # no per-peer limit on the errors
        fw = start_forwarder(topo, queues)
        try:
            server = topo.server_v4 if version == 4 else topo.server_v6
            assert refused_flows(topo.client, server, CLOSED_PORT) == FLOWS
            workers = fw.stats()["workers"]
            translated = [w["stages"]["session"]["icmp_errors_translated"] for w in workers]
            assert sum(translated) == FLOWS, translated
            total = fw.stats()["total"]
            assert total["drops"].get("icmp_error_no_session", 0) == 0, total["drops"]
            assert total["handoff"]["out"] > 0 and total["handoff"]["out"] == total["handoff"]["in"]
            stop_and_check(fw)
        finally:
            fw.close()


def large_payload(_flow, r):
    return os.urandom(FRAG_SIZES[r % len(FRAG_SIZES)])


def add_frag_servers(topo, version):
    """FRAG_SERVERS[version] on the server, with the firewall's neighbour entries for them
    made in advance (the forwarder follows the kernel's table), so no first packet waits
    for ARP / ND; both ends reassemble without the ipfrag_max_dist heuristic."""
    for ns in (topo.client, topo.server):
        ns.run("sysctl", "-qw", "net.ipv4.ipfrag_max_dist=0")
    for address in FRAG_SERVERS[version]:
        topo.server.run("ip", f"-{version}", "addr", "add",
                        f"{address}/{24 if version == 4 else 64}", "dev", topo.server_if,
                        "nodad")  # fmt: skip
        topo.firewall.run("ip", f"-{version}", "neigh", "replace", address, "lladdr",
                          topo.server_mac, "dev", topo.wan_if, "nud", "permanent")  # fmt: skip


@pytest.mark.parametrize(("queues", "version"), [(2, 4), (4, 4), (2, 6), (4, 6)])
def test_kernel_fragmented_datagrams_through_snat_with_several_workers(queues, version):
    """Requests (SNAT) and echoes (un-NAT) of 3000 and 8000 bytes, fragmented by the
    sending kernel: every fragment of a datagram lands on the queue its sender's socket
    uses, usually neither its flow's owner nor its fragment owner."""
    with FirewallTopology(prefix="xt", queues=queues) as topo:
        servers = FRAG_SERVERS[version]
        add_frag_servers(topo, version)
        fw = start_forwarder(topo, queues)
        try:
            echo = UdpEcho(topo.server, servers, ECHO_PORTS[:1], bufsize=65535)
            try:
                waves = [
                    udp_flows(topo.client, servers[k : k + FRAG_WAVE], ECHO_PORTS[:1],
                              flows=FRAG_WAVE, rounds=FRAG_ROUNDS, payload=large_payload)
                    for k in range(0, len(servers), FRAG_WAVE)
                ]  # fmt: skip
            finally:
                echo.close()
            sent = len(servers) * FRAG_ROUNDS
            total = fw.stats()["total"]
            assert [lossy for _, lossy in waves] == [[]] * len(waves), (
                total["drops"], total["fragments"])  # fmt: skip
            assert sum(good for good, _ in waves) == sent
            assert_spread_and_handed_off(fw)
            stats = fw.stats()
            total = stats["total"]
            for reason in ("frag_timeout", "frag_session_gone", "frag_limit",
                           "frag_note_ring_full", "handoff_oversize"):  # fmt: skip
                assert total["drops"].get(reason, 0) == 0, total["drops"]
            fr = total["fragments"]
            assert fr["recorded"] + fr["noted"] == 2 * sent  # every request and every echo
            assert fr["completed"] == 2 * sent and fr["held"] == fr["released"]
            assert fr["noted"] > 0, "no datagram needed a note: the test proved nothing"
            handoff = total["handoff"]
            assert handoff["notes_out"] == handoff["notes_in"] == fr["noted"]
            translating = [w["fragments"]["translated"] for w in stats["workers"]]
            assert sum(1 for n in translating if n) >= 2, translating
            stop_and_check(fw)
        finally:
            fw.close()
