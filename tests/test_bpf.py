"""The XDP redirect program and its libbpf loader (root)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import needs_root
from xpfdp import bpf
from xpfdp.bpf import XdpError, XdpProgram, query_xdp

pytestmark = [needs_root, pytest.mark.root]
BPF_DIR = Path(__file__).resolve().parents[1] / "bpf"


def send_udp(link, count: int) -> None:
    s = link.peer_socket()
    for _ in range(count):
        s.sendto(b"p" * 30, (link.dut_ip, 9))
    s.close()


def wait_for(program: XdpProgram, key: str, value: int) -> dict:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        counters = program.counters()
        if counters[key] >= value:
            return counters
        time.sleep(0.02)
    return program.counters()


def test_object_carries_the_extension_abi_version():
    from xpfdp._fast.xsk import ABI_VERSION

    assert bpf.object_abi_version() == bpf.ABI_VERSION == ABI_VERSION


def test_stale_object_is_refused(tmp_path, topo):
    link = topo.link()
    stale = tmp_path / "stale.o"
    subprocess.run(
        ["clang", "-O2", "-g", "-target", "bpf", "-DXPFDP_XSK_ABI_VERSION=99", "-I", str(BPF_DIR),
         "-I", "/usr/include/x86_64-linux-gnu", "-c", str(BPF_DIR / "xsk_redirect.bpf.c"),
         "-o", str(stale)],
        check=True,
    )  # fmt: skip
    assert bpf.object_abi_version(stale) == 99
    with topo.dut.inside():
        with pytest.raises(XdpError, match="stale build"):
            XdpProgram(link.dut_if, object_path=stale)
        assert query_xdp(socket.if_nametoindex(link.dut_if))[0] == 0


def test_attach_native_then_detach(topo):
    link = topo.link()
    with topo.dut.inside():
        ifindex = socket.if_nametoindex(link.dut_if)
        with XdpProgram(link.dut_if) as prog:
            assert prog.mode == "native" and prog.attached
            assert query_xdp(ifindex) == (prog.prog_id, "native")
        assert query_xdp(ifindex) == (0, "none")


def test_close_from_another_namespace_detaches_in_the_program_namespace(topo):
    link = topo.link()
    with topo.dut.inside():
        ifindex = socket.if_nametoindex(link.dut_if)
        prog = XdpProgram(link.dut_if)
        assert query_xdp(ifindex)[0] == prog.prog_id
    prog.close()  # the calling thread is back in the root namespace
    with topo.dut.inside():
        assert query_xdp(ifindex) == (0, "none")


def test_generic_fallback_does_not_demote_other_interfaces(topo):
    link = topo.link()
    with topo.dut.inside():
        with XdpProgram(link.dut_if, "auto") as veth_prog, XdpProgram("lo", "auto") as lo_prog:
            assert lo_prog.mode == "generic"  # loopback has no native XDP
            assert veth_prog.mode == "native"
            assert query_xdp(socket.if_nametoindex(link.dut_if))[1] == "native"
        with pytest.raises(XdpError, match="native"):
            XdpProgram("lo", "native")


def test_unbound_queue_falls_back_to_the_kernel(topo):
    link = topo.link()
    with topo.dut.inside(), XdpProgram(link.dut_if) as prog:
        send_udp(link, 20)
        counters = wait_for(prog, "no_socket", 20)
    assert counters["no_socket"] == 20 and counters["redirected"] == 0


def test_redirect_switched_off_passes_everything(topo):
    link = topo.link()
    with topo.dut.inside(), XdpProgram(link.dut_if) as prog:
        prog.set_ctrl(redirect=False, pass_non_ip=True)
        send_udp(link, 10)
        counters = wait_for(prog, "pass_off", 10)
    assert counters["pass_off"] == 10 and counters["no_socket"] == 0


def test_non_ip_frames_follow_the_ctrl_setting(topo):
    link = topo.link()
    frame = bytes.fromhex(link.dut_mac.replace(":", "")) + b"\x02" * 6 + b"\x88\xb5" + b"x" * 50
    with link.peer.inside():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind((link.peer_if, 0))
    with topo.dut.inside(), XdpProgram(link.dut_if) as prog:
        raw.send(frame)
        assert wait_for(prog, "pass_non_ip", 1)["pass_non_ip"] == 1
        prog.set_ctrl(redirect=True, pass_non_ip=False)
        raw.send(frame)
        counters = wait_for(prog, "no_socket", 1)
    raw.close()
    assert counters["pass_non_ip"] == 1 and counters["no_socket"] == 1


def test_queue_range_is_checked(topo):
    link = topo.link()
    with topo.dut.inside(), XdpProgram(link.dut_if) as prog:
        with pytest.raises(ValueError, match="queue 64 out of range"):
            prog.set_socket(64, 0)
        with pytest.raises(XdpError):
            prog.set_socket(0, 0)  # fd 0 is not an AF_XDP socket


def test_forwarded_ports_of_host_addresses_stay_with_the_socket(topo):
    """With local delivery on, a host address's forwarded TCP/UDP ports (and ICMP errors
    about packets sent from them) skip the kernel; every other port is the host's."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
    from scapy.layers.l2 import Ether

    link = topo.link()
    with link.peer.inside():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind((link.peer_if, 0))
    eth = Ether(src=link.peer_mac, dst=link.dut_mac)

    def to_host(l4, address=link.dut_ip, **ip):
        return bytes(eth / IP(src=link.peer_ip, dst=address, **ip) / l4)

    def counted(prog, frame) -> tuple[str, ...]:
        before = prog.counters()
        raw.send(frame)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            after = prog.counters()
            if any(after[k] > before[k] for k in ("no_socket", "pass_local")):
                break
            time.sleep(0.02)
        return tuple(sorted(k for k in after if after[k] > before[k]))

    nat_address = "10.77.1.9"
    with raw, topo.dut.inside(), XdpProgram(link.dut_if) as prog:
        prog.set_ctrl(local_delivery=True)
        prog.set_local(link.dut_ip)  # the host's, no NAT
        prog.set_local(nat_address, nat_ports=(20000, 29999))
        prog.set_forwarded_port(link.dut_ip, 17, 5000)
        prog.set_forwarded_port(nat_address, 6, 8080)
        assert prog.is_forwarded_port(link.dut_ip, 17, 5000)
        assert not prog.is_forwarded_port(link.dut_ip, 6, 5000)
        forwarded = ("no_socket", "port_forward")  # no socket bound: then the kernel
        assert counted(prog, to_host(UDP(sport=40000, dport=5000))) == forwarded
        assert counted(prog, to_host(TCP(sport=40000, dport=5000))) == ("pass_local",)
        assert counted(prog, to_host(UDP(sport=40000, dport=5001))) == ("pass_local",)
        # an error about a datagram the port forward sent from port 5000
        error = ICMP(type=3, code=3) / IPerror(src=link.dut_ip, dst=link.peer_ip) / UDPerror(
            sport=5000, dport=40000)  # fmt: skip
        assert counted(prog, to_host(error)) == forwarded
        # a later fragment carries no ports: the non-NAT host address keeps it
        frag = to_host(UDP(sport=40000, dport=5000) / (b"x" * 16), frag=2, flags=0)
        assert counted(prog, frag) == ("pass_local",)
        # a NAT address: a forwarded port outside its SNAT range is the forwarder's too
        assert counted(prog, to_host(TCP(dport=8080), nat_address)) == forwarded
        assert counted(prog, to_host(TCP(dport=8081), nat_address)) == ("pass_local",)
        assert counted(prog, to_host(TCP(dport=20000), nat_address)) == ("no_socket",)
        prog.clear_forwarded_port(link.dut_ip, 17, 5000)
        prog.clear_forwarded_port(link.dut_ip, 17, 5000)  # absent: no error
        assert not prog.is_forwarded_port(link.dut_ip, 17, 5000)
        assert counted(prog, to_host(UDP(sport=40000, dport=5000))) == ("pass_local",)
        # local delivery off: every frame is the socket's, the map is not consulted
        prog.set_ctrl(local_delivery=False)
        assert counted(prog, to_host(TCP(dport=8080), nat_address)) == ("no_socket",)


def test_forwarded_port_arguments_are_checked(topo):
    link = topo.link()
    with topo.dut.inside(), XdpProgram(link.dut_if) as prog:
        for bad, message in (
            ((link.dut_ip, 1, 80), "proto must be 6"),
            ((link.dut_ip, True, 80), "proto must be 6"),
            ((link.dut_ip, 6, 0), "port must be an integer in 1..65535"),
            ((link.dut_ip, 6, 65536), "port must be an integer"),
            ((link.dut_ip, 6, 80.0), "port must be an integer"),
            (("10.77.1.300", 6, 80), "does not appear to be an IPv4 or IPv6 address"),
        ):
            with pytest.raises(ValueError, match=message):
                prog.set_forwarded_port(*bad)
            with pytest.raises(ValueError, match=message):
                prog.clear_forwarded_port(*bad)
        prog.set_forwarded_port("fd00::1", 6, 443)
        assert prog.is_forwarded_port("fd00::1", 6, 443)
        assert not prog.is_forwarded_port("fd00::1", 17, 443)
