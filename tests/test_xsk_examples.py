"""The examples run end to end between namespaces (root)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_root
from tests.test_xsk_integration import sniff

pytestmark = [needs_root, pytest.mark.root]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


@pytest.mark.parametrize("name", ["rxdrop.py", "txgen.py", "l2fwd.py"])
def test_help(name):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--help"], capture_output=True, text=True, check=True
    )
    assert "--iface" in out.stdout and "--netns" in out.stdout


def test_txgen_to_rxdrop(topo):
    link = topo.link()
    rx = run_example(
        "rxdrop.py", "--iface", link.peer_if, "--netns", link.peer.name, "--duration", "5"
    )
    assert "receiving" in rx.stdout.readline()  # bound before traffic starts
    tx = run_example(
        "txgen.py", "--iface", link.dut_if, "--netns", topo.dut.name, "--dst-mac",
        link.peer_mac, "--size", "128", "--flows", "4", "--rate", "20000", "--duration", "1",
    )  # fmt: skip
    tx_out, tx_err = tx.communicate(timeout=30)
    rx_out, rx_err = rx.communicate(timeout=30)
    assert tx.returncode == 0, tx_err
    assert rx.returncode == 0, rx_err
    sent = int(re.findall(r"total (\d+)", tx_out)[-1])
    received = int(re.findall(r"total (\d+)", rx_out)[-1])
    assert 15000 <= sent <= 20100
    assert received == sent
    assert len(rx_out.splitlines()) >= 4  # one status line per second


def test_l2fwd_reflects_with_macs_swapped(topo):
    link = topo.link()
    fwd = run_example(
        "l2fwd.py", "--iface", link.dut_if, "--netns", topo.dut.name, "--duration", "2"
    )
    assert "forwarding" in fwd.stdout.readline()  # bound before traffic starts
    sniffer = link.peer_sniffer()
    sender = link.peer_socket()
    for i in range(20):
        sender.sendto(b"r" * (20 + i), (link.dut_ip, 9))
    seen = sniff(sniffer, 20)
    sniffer.close()
    _, err = fwd.communicate(timeout=30)
    assert fwd.returncode == 0, err
    assert len(seen) == 20
    for i, frame in enumerate(seen):
        assert frame[:6] == mac_bytes(link.peer_mac) and frame[6:12] == mac_bytes(link.dut_mac)
        assert frame[42:] == b"r" * (20 + i)


def test_sigterm_tears_down_and_detaches(topo):
    link = topo.link()
    proc = run_example("rxdrop.py", "--iface", link.dut_if, "--netns", topo.dut.name)
    assert "receiving" in proc.stdout.readline()
    attached = topo.dut.run("ip", "link", "show", link.dut_if).stdout
    assert "xdp" in attached
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "xdp" not in topo.dut.run("ip", "link", "show", link.dut_if).stdout
