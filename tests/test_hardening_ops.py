"""Operator-facing failures of `xpfdp forward` and `xpfdp detach`, each checked by its exact
message: restart after SIGKILL, a live owner, another tool's XDP program, missing or
unenterable namespaces, too many queues, a busy metrics port, values that cannot work, and
interfaces that go down or disappear under a running forwarder."""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import needs_root
from xpfdp.cli import EXIT_CONFIG, EXIT_LINK_LOST, EXIT_NOT_DETACHED, EXIT_START
from xpfdp.demo import traffic
from xpfdp.demo.topology import FirewallTopology
from xpfdp.firewall import SESSIONS_MAX, to_toml
from xpfdp.topology import list_namespaces

REFLECT_OBJECT = Path(__file__).resolve().parents[1] / "src/xpfdp/bpf/xdp_reflect.o"
XPFDP = [sys.executable, "-m", "xpfdp"]


def run_cli(*argv, prefix=(), timeout=60):
    return subprocess.run(
        [*prefix, *XPFDP, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def write_config(tmp_path, config) -> str:
    path = tmp_path / "fw.toml"
    path.write_text(to_toml(config) if isinstance(config, dict) else config)
    return str(path)


class Forwarder:
    """`xpfdp forward` in a subprocess, started and waited for until it forwards."""

    def __init__(self, path: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*XPFDP, "forward", "--config", path, "--quiet", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        assert line.startswith("forwarding "), line + self.proc.stderr.read()

    def finish(self, timeout=30) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def xdp_of(topo, ifname) -> str:
    return topo.firewall.run("ip", "-d", "link", "show", ifname).stdout


@pytest.fixture
def fw(tmp_path):
    with FirewallTopology(prefix="xt") as topo:
        topo.path = write_config(tmp_path, topo.firewall_config())
        yield topo


# ---- restart safety ---------------------------------------------------------------------


@needs_root
@pytest.mark.root
def test_sigkill_then_the_same_command_starts_again(fw):
    first = Forwarder(fw.path)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    assert "xdp" in xdp_of(fw, fw.lan_if)  # the dead process left its programs attached
    second = Forwarder(fw.path, "--duration", "3")
    try:
        assert traffic.ping(fw.client, fw.server_v4, 3) == 3
        code, _out, err = second.finish()
    finally:
        second.kill()
    assert code == 0, err
    for ifname in (fw.lan_if, fw.wan_if):
        assert f"{ifname}: replaced XDP program id" in err and "left by a dead xpfdp" in err
        assert "xdp" not in xdp_of(fw, ifname)


@needs_root
@pytest.mark.root
def test_a_live_owner_is_reported_by_pid_and_keeps_forwarding(fw):
    first = Forwarder(fw.path)
    try:
        out = run_cli("forward", "--config", fw.path, "--duration", "1")
        assert out.returncode == EXIT_START
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("xpfdp: cannot start the forwarder: ")
        for ifname in (fw.lan_if, fw.wan_if):  # every interface checked, both reported
            assert (f"{ifname} already has an XDP program owned by the running xpfdp "
                    f"process pid {first.proc.pid} (XDP program id ") in lines[0]  # fmt: skip
        assert traffic.ping(fw.client, fw.server_v4, 3) == 3  # the first one is untouched
        refused = run_cli("detach", "--namespace", fw.firewall.name, fw.wan_if)
        assert refused.returncode == EXIT_NOT_DETACHED
        assert f"owned by the running xpfdp process pid {first.proc.pid}" in refused.stderr
        assert traffic.ping(fw.client, fw.server_v4, 2) == 2
    finally:
        first.kill()


@needs_root
@pytest.mark.root
def test_detach_cleans_up_after_a_dead_forwarder(fw):
    first = Forwarder(fw.path)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    out = run_cli("detach", "--namespace", fw.firewall.name, fw.lan_if, fw.wan_if)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split(": detached XDP program id ")[0] for line in lines] == [
        fw.lan_if, fw.wan_if]  # fmt: skip
    assert all("'xpfdp_xsk_redir'" in line for line in lines)
    assert "xdp" not in xdp_of(fw, fw.lan_if) and "xdp" not in xdp_of(fw, fw.wan_if)
    again = run_cli("detach", "--namespace", fw.firewall.name, fw.lan_if)
    assert again.stdout.strip() == f"{fw.lan_if}: no XDP program attached"


@needs_root
@pytest.mark.root
def test_another_tools_program_gets_the_hint_of_its_mode(fw):
    fw.firewall.run("ip", "link", "set", "dev", fw.wan_if, "xdpgeneric", "obj",
                    str(REFLECT_OBJECT), "sec", "xdp")  # fmt: skip
    out = run_cli("forward", "--config", fw.path, "--duration", "1")
    assert out.returncode == EXIT_START
    assert "generic mode)" in out.stderr
    assert out.stderr.strip().endswith(
        f"detach it first: ip link set dev {fw.wan_if} xdpgeneric off "
        f"(or xpfdp detach --force {fw.wan_if})"
    )
    assert "xdp" not in xdp_of(fw, fw.lan_if)  # nothing attached before the check failed
    refused = run_cli("detach", "--namespace", fw.firewall.name, fw.wan_if)
    assert refused.returncode == EXIT_NOT_DETACHED
    forced = run_cli("detach", "--namespace", fw.firewall.name, "--force", fw.wan_if)
    assert forced.returncode == 0 and "generic mode" in forced.stdout
    assert "xdp" not in xdp_of(fw, fw.wan_if)


# ---- operator mistakes ------------------------------------------------------------------


@needs_root
@pytest.mark.root
def test_a_misspelt_namespace_is_reported_and_never_created(fw, tmp_path):
    config = fw.firewall_config(namespace=fw.firewall.name + "x")
    out = run_cli("forward", "--config", write_config(tmp_path, config), "--duration", "1")
    assert out.returncode == EXIT_START
    assert out.stderr.strip() == (
        f"xpfdp: cannot start the forwarder: network namespace '{fw.firewall.name}x' does "
        "not exist (`ip netns list` shows the existing ones; xpfdp never creates it)"
    )
    assert fw.firewall.name + "x" not in list_namespaces()


@needs_root
@pytest.mark.root
def test_without_privileges_the_missing_capability_is_named(fw):
    drop_all = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]
    out = run_cli("forward", "--config", fw.path, "--duration", "1", prefix=drop_all)
    assert out.returncode == EXIT_START
    assert out.stderr.strip() == (
        f"xpfdp: cannot start the forwarder: entering network namespace "
        f"'{fw.firewall.name}' needs CAP_SYS_ADMIN (run as root)"
    )


@needs_root
@pytest.mark.root
def test_more_queues_than_the_interface_has_names_its_count(fw, tmp_path):
    config = fw.firewall_config(forwarder={"queues": 4})
    out = run_cli("forward", "--config", write_config(tmp_path, config), "--duration", "1")
    assert out.returncode == EXIT_START
    assert out.stderr.strip() == (
        f"xpfdp: cannot start the forwarder: forwarder.queues: 4, but {fw.lan_if} has 1 RX "
        "queue; set queues <= 1"
    )


@needs_root
@pytest.mark.root
def test_a_busy_prometheus_port_is_one_line(fw):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli("forward", "--config", fw.path, "--duration", "1",
                      "--prometheus-port", str(port))  # fmt: skip
    assert out.returncode == EXIT_CONFIG
    assert out.stderr.strip() == (
        f"xpfdp: cannot serve Prometheus metrics on 127.0.0.1:{port}: Address already in use "
        "(choose another --prometheus-port)"
    )


BASE_TOML = """
[lan]
interface = "lan0"
addresses = ["10.10.1.1/24"]
[wan]
interface = "wan0"
addresses = ["10.10.2.1/24"]
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[cos]\nrate_mbps = nan\n", "cos.rate_mbps: must be a finite number, got nan"),
        (
            "[forwarder]\nsessions = 1099511627776\n",
            f"forwarder.sessions: must be <= {SESSIONS_MAX}, got 1099511627776",
        ),
    ],
)
def test_check_rejects_values_that_cannot_work(tmp_path, extra, message):
    path = write_config(tmp_path, BASE_TOML + extra)
    out = run_cli("forward", "--config", path, "--check")
    assert out.returncode == EXIT_CONFIG
    assert out.stderr.strip() == f"xpfdp: config error: {path}: {message}"
    assert math.isnan(float("nan"))  # TOML's nan is what the file holds


# ---- runtime faults ---------------------------------------------------------------------


@needs_root
@pytest.mark.root
def test_links_going_down_and_away_are_logged_counted_and_handled(fw):
    ns = fw.firewall.name
    fw.firewall.run("ip", "link", "set", "dev", fw.wan_if, "down")
    running = Forwarder(fw.path)
    try:
        time.sleep(1.5)
        fw.firewall.run("ip", "link", "set", "dev", fw.wan_if, "up")
        fw.firewall.run("ip", "link", "set", "dev", fw.lan_if, "down")
        time.sleep(2.5)
        assert running.proc.poll() is None  # a downed link: keep serving
        fw.firewall.run("ip", "link", "set", "dev", fw.lan_if, "up")
        fw.firewall.run("ip", "link", "del", fw.wan_if)
        code, out, err = running.finish()
    finally:
        running.kill()
    assert code == EXIT_LINK_LOST
    assert (f"xpfdp: WARNING: WAN interface {fw.wan_if} is down at start: nothing reaches "
            "the WAN until it is up") in err  # fmt: skip
    assert f"xpfdp: INFO: interface {fw.wan_if} (namespace {ns}) is up again" in err
    assert (f"xpfdp: WARNING: interface {fw.lan_if} (namespace {ns}) is down: no frames "
            "leave through it until it is up again") in err  # fmt: skip
    assert (f"xpfdp: ERROR: interface {fw.wan_if} (namespace {ns}) was deleted: its AF_XDP "
            "sockets are gone") in err  # fmt: skip
    assert err.strip().splitlines()[-1] == f"xpfdp: stopped: interface {fw.wan_if} was deleted"
    assert "forwarded " in out  # the summary still printed
