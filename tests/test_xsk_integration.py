"""AF_XDP ports on veth pairs in namespaces, with kernel sockets on the other side (root)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import numpy as np
import pytest

from tests.conftest import needs_root
from xpfdp.bpf import ForeignXdpProgramError, XdpError, XdpProgram
from xpfdp.ports import Burst, RingSizeError, XskPort, bridge, forward, programs

pytestmark = [needs_root, pytest.mark.root]


def udp_payloads(n: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    return [
        rng.integers(0, 256, size=int(rng.integers(1, 1400)), dtype=np.uint8).tobytes()
        for _ in range(n)
    ]


def receive(port: XskPort, want: int, burst: Burst, timeout_s: float = 3.0) -> list[bytes]:
    """Frames received by `port` (copied out, frames recycled) until `want` or timeout."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        n = port.rx_burst(burst)
        got += [bytes(burst.frame(i)) for i in range(n)]
        if n:
            port.recycle(burst)
            burst.n = 0
        else:
            port.wait(10)
    return got


def sniff(sock: socket.socket, want: int, timeout_s: float = 3.0) -> list[bytes]:
    """Frames the peer's AF_PACKET socket saw arriving (outgoing ones skipped)."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            break
        if addr[2] != socket.PACKET_OUTGOING:
            got.append(data)
    return got


def ipv4_udp_frame(dst_mac: str, src_mac: str, payload: bytes, sport: int = 5000) -> bytes:
    mac = bytes.fromhex
    udp_len = 8 + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + udp_len,
        1,
        0,
        64,
        17,
        0,
        socket.inet_aton("10.77.1.1"),
        socket.inet_aton("10.77.1.2"),
    )
    words = struct.unpack("!10H", ip)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    ip = ip[:10] + struct.pack("!H", ~total & 0xFFFF) + ip[12:]
    udp = struct.pack("!HHHH", sport, 9, udp_len, 0) + payload
    return mac(dst_mac.replace(":", "")) + mac(src_mac.replace(":", "")) + b"\x08\x00" + ip + udp


def sniff_outgoing(sock: socket.socket, want: int, timeout_s: float = 3.0) -> list[bytes]:
    """Frames the peer's AF_PACKET socket saw leaving (what the kernel put on the wire)."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            break
        if addr[2] == socket.PACKET_OUTGOING:
            got.append(data)
    return got


def test_kernel_udp_arrives_byte_for_byte(topo, umem_factory):
    link = topo.link()
    payloads = udp_payloads(100)
    with topo.dut.inside():
        umem = umem_factory(4096)
        with XskPort(link.dut_if, 0, umem) as port:
            assert port.attach_mode == "native"
            assert not port.zerocopy
            sniffer = link.peer_sniffer()
            tx = link.peer_socket()
            for i, p in enumerate(payloads):
                tx.sendto(p, (link.dut_ip, 7000 + i))
            on_wire = sniff_outgoing(sniffer, len(payloads))
            sniffer.close()
            got = receive(port, len(payloads), Burst(64))
            umem.check_frames()
    assert got == on_wire
    assert len(got) == len(payloads)
    for i, (frame, payload) in enumerate(zip(got, payloads, strict=True)):
        assert frame[:6] == bytes.fromhex(link.dut_mac.replace(":", ""))
        assert frame[30:34] == socket.inet_aton(link.dut_ip)
        assert struct.unpack("!H", frame[36:38])[0] == 7000 + i
        assert frame[42:] == payload


def socket_int_option(fd: int, option: int) -> int:
    """An int SOL_SOCKET option of the socket behind `fd` (read through a duplicate)."""
    s = socket.socket(44, socket.SOCK_RAW, 0, os.dup(fd))  # AF_XDP
    try:
        return s.getsockopt(socket.SOL_SOCKET, option)
    finally:
        s.close()


SO_BUSY_POLL, SO_PREFER_BUSY_POLL = 46, 69  # (the kernel cannot read SO_BUSY_POLL_BUDGET back)


def test_busy_poll_options_reach_the_socket(topo, umem_factory):
    link = topo.link()
    with topo.dut.inside():
        umem = umem_factory(1024)
        with XskPort(link.dut_if, 0, umem, ring_size=256, busy_poll_us=50) as port:
            assert port.busy_poll_us == 50
            assert socket_int_option(port.fd, SO_BUSY_POLL) == 50
            assert socket_int_option(port.fd, SO_PREFER_BUSY_POLL) == 1
            port.set_busy_poll(0)
            assert socket_int_option(port.fd, SO_BUSY_POLL) == 0
            assert socket_int_option(port.fd, SO_PREFER_BUSY_POLL) == 0
            with pytest.raises(ValueError, match="busy_poll_us"):
                port.set_busy_poll(-1)
            with pytest.raises(ValueError, match="budget"):
                port.set_busy_poll(10, budget=0)
            with pytest.raises(TypeError):
                port.set_busy_poll(1.5)
        with pytest.raises(ValueError, match="closed"):
            port.set_busy_poll(10)
        umem.check_frames()


def test_rx_addresses_follow_copy_mode_layout(topo, umem_factory):
    link = topo.link()
    with topo.dut.inside():
        umem = umem_factory(1024)
        with XskPort(link.dut_if, 0, umem, ring_size=256) as port:
            tx = link.peer_socket()
            for _ in range(10):
                tx.sendto(b"z" * 20, (link.dut_ip, 9))
            b = Burst(64)
            deadline = time.monotonic() + 2
            while port.rx_burst(b) == 0 and time.monotonic() < deadline:
                port.wait(10)
            assert b.n > 0
            assert all(int(a) % 4096 == 512 for a in b.desc["addr"][: b.n])
            port.recycle(b)
            b.n = 0


def test_tx_burst_frames_arrive_intact_at_peer(topo, umem_factory):
    link = topo.link()
    rng = np.random.default_rng(3)
    frames = [
        ipv4_udp_frame(
            link.peer_mac,
            link.dut_mac,
            rng.integers(0, 256, int(rng.integers(18, 1450)), dtype=np.uint8).tobytes(),
            5000 + i,
        )
        for i in range(64)
    ]
    with topo.dut.inside():
        umem = umem_factory(1024)
        with XskPort(link.dut_if, 0, umem) as port:
            sniffer = link.peer_sniffer()
            b = Burst(64)
            assert port.alloc_tx(b, 64) == 64
            for i, f in enumerate(frames):
                a = int(b.desc["addr"][i])
                umem.buf[a : a + len(f)] = np.frombuffer(f, np.uint8)
                b.desc["len"][i] = len(f)
            assert port.tx_burst(b) == 64
            b.n = 0
            seen = sniff(sniffer, 64)
            sniffer.close()
            port.poll()
            assert port.stats()["completions"] == 64
    assert seen == frames


def test_200_descriptors_complete_in_copy_mode_without_traffic(topo, umem_factory):
    link = topo.link()
    with topo.dut.inside():
        umem = umem_factory(1024, tx_frames=256)
        with XskPort(link.dut_if, 0, umem) as port:
            b = Burst(256)
            assert port.alloc_tx(b, 200) == 200
            frame = np.frombuffer(ipv4_udp_frame(link.peer_mac, link.dut_mac, b"q" * 18), np.uint8)
            for i in range(200):
                a = int(b.desc["addr"][i])
                umem.buf[a : a + len(frame)] = frame
            b.desc["len"][:200] = len(frame)
            assert port.tx_burst(b) == 200
            b.n = 0
            s = port.stats()
            assert s["completions"] == 200
            assert s["tx_kicks"] >= 7  # 32 descriptors per sendto in copy mode
            assert s["tx_kick_again"] >= 6
            assert umem.check_frames()["tx_ring"] == 0


def test_rebind_right_after_teardown(topo, umem_factory):
    link = topo.link()
    with topo.dut.inside():
        for _ in range(3):
            umem = umem_factory(512)
            # A bind still EBUSY after the retry budget raises, failing the test.
            with XskPort(link.dut_if, 0, umem, ring_size=256) as port:
                assert port.fd >= 0
            umem.check_frames()
            umem.close()


def test_four_queues_each_port_receives(topo, umem_factory):
    link = topo.link(queues=4)
    with topo.dut.inside():
        umem = umem_factory(8192)
        ports = [XskPort(link.dut_if, q, umem, ring_size=256, fill_target=512) for q in range(4)]
        try:
            senders = [link.peer_socket() for _ in range(64)]
            for s in senders:
                for _ in range(5):
                    s.sendto(b"m" * 32, (link.dut_ip, 4000))
            b = Burst(64)
            counts = [0] * 4
            deadline = time.monotonic() + 3
            while sum(counts) < 320 and time.monotonic() < deadline:
                for q, p in enumerate(ports):
                    n = p.rx_burst(b)
                    counts[q] += n
                    if n:
                        p.recycle(b)
                        b.n = 0
            assert sum(counts) == 320
            assert all(c > 0 for c in counts), counts
            assert programs.attached()[0].counters()["redirected"] == 320
            umem.check_frames()
        finally:
            for p in ports:
                p.close()


def test_port_on_queue_0_does_not_get_other_queues(topo, umem_factory):
    link = topo.link(queues=4)
    with topo.dut.inside():
        umem = umem_factory(2048)
        with XskPort(link.dut_if, 0, umem, ring_size=256) as port:
            senders = [link.peer_socket() for _ in range(64)]
            for s in senders:
                for _ in range(5):
                    s.sendto(b"m" * 32, (link.dut_ip, 4000))
            time.sleep(0.2)
            got = receive(port, 320, Burst(64), timeout_s=0.5)
            counters = programs.attached()[0].counters()
            assert counters["redirected"] == len(got)
            assert counters["no_socket"] > 0  # queues 1-3 fell back to the kernel
            assert len(got) + counters["no_socket"] == 320


def test_arp_goes_to_the_kernel(topo, umem_factory):
    link = topo.link()
    topo.dut.add_address(link.dut_if, link.dut_ip, 24)
    link.peer.run("ip", "neigh", "del", link.dut_ip, "dev", link.peer_if)
    with topo.dut.inside():
        umem = umem_factory(512)
        with XskPort(link.dut_if, 0, umem, ring_size=256):
            link.peer_socket().sendto(b"hello", (link.dut_ip, 9))  # resolves by ARP first
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                counters = programs.attached()[0].counters()
                if counters["redirected"]:
                    break
                time.sleep(0.02)
    assert counters["pass_arp"] >= 1
    neigh = link.peer.run("ip", "neigh", "show", link.dut_ip).stdout
    assert link.dut_mac in neigh  # the kernel answered the ARP request


def test_fill_keeps_flowing_while_tx_is_blocked(topo, umem_factory):
    """Ingress keeps receiving while the egress TX ring is stuck (its link is down)."""
    ingress, egress = topo.link(), topo.link()
    with topo.dut.inside():
        umem = umem_factory(8192, tx_frames=64)
        rx_port = XskPort(ingress.dut_if, 0, umem, ring_size=256, fill_target=512)
        tx_port = XskPort(egress.dut_if, 0, umem, ring_size=256, fill_target=64)
        try:
            topo.dut.run("ip", "link", "set", egress.dut_if, "down")
            sender = ingress.peer_socket()
            b = Burst(64)
            total = 0
            for _ in range(10):
                for _ in range(200):
                    sender.sendto(b"f" * 64, (ingress.dut_ip, 9))
                forward(rx_port, tx_port, b, 0.15)
            s_rx, s_tx = rx_port.stats(), tx_port.stats()
            total = s_rx["rx_packets"]
            assert total == 2000
            assert s_tx["tx_ring_full"] > 0  # TX really was blocked
            assert s_rx["rx_dropped"] == 0 and s_rx["rx_ring_full"] == 0
            counts = umem.check_frames()
            assert counts["tx_ring"] == 256  # stuck in the blocked TX ring
            empty_after = s_rx["rx_fill_ring_empty_descs"]
            time.sleep(0.2)
            rx_port.poll()
            assert rx_port.stats()["rx_fill_ring_empty_descs"] == empty_after
        finally:
            tx_port.close()
            rx_port.close()


def test_l2fwd_bridge_carries_kernel_tcp(topo, umem_factory):
    a, b = topo.link(), topo.link()
    # Put both peers in one subnet and point them at each other through the bridge.
    b.peer.run("ip", "addr", "flush", "dev", b.peer_if)
    b.peer.add_address(b.peer_if, "10.77.1.3", 24)
    a.peer.add_neighbour(a.peer_if, "10.77.1.3", b.peer_mac)
    b.peer.add_neighbour(b.peer_if, a.peer_ip, a.peer_mac)
    payload = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    with b.peer.inside():
        server = socket.socket()
        server.bind(("10.77.1.3", 5201))
        server.listen(1)
    server.settimeout(10)
    received = bytearray()

    def serve():
        conn, _ = server.accept()
        conn.settimeout(10)
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)
            conn.sendall(b"done")

    t = threading.Thread(target=serve)
    t.start()
    with topo.dut.inside():
        umem = umem_factory(8192, tx_frames=0)
        pa = XskPort(a.dut_if, 0, umem, ring_size=1024, fill_target=2048)
        pb = XskPort(b.dut_if, 0, umem, ring_size=1024, fill_target=2048)
        stop = threading.Event()
        totals = []

        def run_bridge():
            burst = Burst(64)
            while not stop.is_set():
                totals.append(bridge(pa, pb, burst, 0.05))

        fwd = threading.Thread(target=run_bridge)
        fwd.start()
        try:
            client = a.peer_socket(kind=socket.SOCK_STREAM)
            client.settimeout(10)
            client.connect(("10.77.1.3", 5201))
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            assert client.recv(16) == b"done"
            client.close()
        finally:
            stop.set()
            fwd.join()
            t.join(timeout=10)
            server.close()
            pb.close()
            pa.close()
    assert bytes(received) == payload
    assert sum(x[0] for x in totals) > 100 and sum(x[1] for x in totals) > 50


def test_clear_errors(topo, umem_factory, monkeypatch):
    link = topo.link()
    umem = umem_factory(256)
    with pytest.raises(RingSizeError, match="power of two"):
        XskPort("definitely-not-there", 0, umem, ring_size=1000)
    with topo.dut.inside():
        with pytest.raises(ValueError, match="unknown interface 'nope0'"):
            XskPort("nope0", 0, umem)
        with pytest.raises(XdpError, match="native"):
            XskPort("lo", 0, umem, mode="native")
        with (
            XdpProgram(link.dut_if, "generic"),
            pytest.raises(ForeignXdpProgramError, match="already has an XDP program"),
        ):
            XskPort(link.dut_if, 0, umem)
        import xpfdp.bpf

        monkeypatch.setattr(xpfdp.bpf, "_effective_caps", lambda: 0)
        with pytest.raises(PermissionError, match="CAP_NET_ADMIN"):
            XskPort(link.dut_if, 0, umem)
    assert umem.check_frames()["fill_ring"] == 0


def test_idle_port_keeps_its_fill_stock_and_receives_the_first_packet(topo, umem_factory):
    link = topo.link()
    with topo.dut.inside():
        umem = umem_factory(1024)
        with XskPort(link.dut_if, 0, umem, ring_size=256) as port:
            before = port.stats()
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                port.poll()
                port.wait(50)
            idle = port.stats()
            assert idle["rx_fill_ring_empty_descs"] == before["rx_fill_ring_empty_descs"] == 0
            assert idle["fill_empty"] == 0
            assert idle["frames_fill_ring"] == 512  # 2 x ring, stocked at bind
            link.peer_socket().sendto(b"first", (link.dut_ip, 9))
            got = receive(port, 1, Burst(8))
    assert len(got) == 1 and got[0].endswith(b"first")


def test_closed_port_leaves_no_stale_xskmap_entry(topo, umem_factory):
    link = topo.link(queues=2)
    with topo.dut.inside():
        umem = umem_factory(2048)
        keep = XskPort(link.dut_if, 1, umem, ring_size=256, fill_target=256)
        try:
            with XskPort(link.dut_if, 0, umem, ring_size=256, fill_target=256):
                pass
            program = programs.attached()[0]
            assert program.attached  # still serving queue 1
            senders = [link.peer_socket() for _ in range(32)]
            for s in senders:
                s.sendto(b"s" * 20, (link.dut_ip, 9))
            got = receive(keep, 32, Burst(64), timeout_s=0.5)
            counters = program.counters()
            assert counters["redirected"] == len(got)
            assert counters["no_socket"] == 32 - len(got) > 0  # queue 0 went to the kernel
        finally:
            keep.close()


def test_failed_bind_releases_the_program(topo, umem_factory):
    link = topo.link()
    with topo.dut.inside():
        umem = umem_factory(256)
        with pytest.raises(OSError, match="zero-copy"):
            XskPort(link.dut_if, 0, umem, zerocopy=True)  # veth has no zero-copy
        assert programs.attached() == []
        assert umem.check_frames()["fill_ring"] == 0
        with XskPort(link.dut_if, 0, umem, ring_size=256) as port:  # and it still works after
            assert not port.zerocopy


def test_frames_conserved_under_random_operations_on_a_live_socket(topo, umem_factory):
    """Random rx / partial tx / recycle / alloc / poll with live traffic: every step keeps
    the frame accounting exact (reap, refill and kick paths of XskPort)."""
    import random

    link = topo.link()
    frame = np.frombuffer(ipv4_udp_frame(link.peer_mac, link.dut_mac, b"c" * 30), np.uint8)
    with topo.dut.inside():
        umem = umem_factory(1024, tx_frames=96)
        with XskPort(link.dut_if, 0, umem, ring_size=64, fill_target=128) as port:
            sender = link.peer_socket()
            b = Burst(64)
            for seed in range(20):
                rng = random.Random(seed)
                for _ in range(30):
                    op = rng.choice(["send", "rx", "tx", "recycle", "alloc", "poll"])
                    if op == "send":
                        for _ in range(rng.randrange(1, 80)):
                            sender.sendto(b"x" * 40, (link.dut_ip, 9))
                    elif op == "rx" and b.n == 0:
                        port.rx_burst(b)
                    elif op == "alloc" and b.n == 0:
                        for i in range(port.alloc_tx(b, rng.randrange(0, 65))):
                            a = int(b.desc["addr"][i])
                            umem.buf[a : a + len(frame)] = frame
                        b.desc["len"][: b.n] = len(frame)
                    elif op == "tx" and b.n:
                        sent = port.tx_burst(b, 0, rng.randrange(0, b.n + 1))
                        port.recycle(b, sent)
                        b.n = 0
                    elif op == "recycle" and b.n:
                        port.recycle(b)
                        b.n = 0
                    elif op == "poll":
                        port.poll()
                    assert umem.check_frames()["held"] == b.n
            if b.n:
                port.recycle(b)
                b.n = 0
            s = port.stats()
            assert s["bad_desc"] == 0 and s["tx_invalid_descs"] == 0
            assert s["rx_packets"] > 0 and s["completions"] > 0


def test_queued_tx_stays_bounded_while_tx_is_blocked(topo, umem_factory):
    """queue_tx to a blocked port: the pending queue stops at 2 x ring (oldest dropped and
    recycled), the TX ring holds the rest, and ingress keeps receiving everything."""
    ingress, egress = topo.link(), topo.link()
    with topo.dut.inside():
        umem = umem_factory(8192, tx_frames=64)
        rx_port = XskPort(ingress.dut_if, 0, umem, ring_size=128, fill_target=512)
        tx_port = XskPort(egress.dut_if, 0, umem, ring_size=64, fill_target=64)
        try:
            topo.dut.run("ip", "link", "set", egress.dut_if, "down")
            sender = ingress.peer_socket()
            b = Burst(64)
            received = 0
            for round_ in range(1, 11):
                for _ in range(100):
                    sender.sendto(b"q" * 64, (ingress.dut_ip, 9))
                deadline = time.monotonic() + 2
                while received < 100 * round_ and time.monotonic() < deadline:
                    n = rx_port.rx_burst(b)
                    if n:
                        assert tx_port.queue_tx(b) == n
                        b.n = 0
                        received += n
                assert umem.check_frames()["pending_tx"] <= 128
            assert received == 1000
            counts = umem.check_frames()
            assert counts["pending_tx"] == 128 and counts["tx_ring"] == 64
            assert tx_port.stats()["tx_queue_drops"] == 1000 - 128 - 64
            assert rx_port.stats()["rx_dropped"] == 0
        finally:
            tx_port.close()
            rx_port.close()
