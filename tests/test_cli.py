"""The `xpfdp` command: help, config checking, and `forward` on real namespaces (root)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import pytest

import xpfdp
from tests.conftest import needs_root
from xpfdp.cli import EXIT_CONFIG, EXIT_START, build_parser, main
from xpfdp.demo import traffic
from xpfdp.demo.topology import FirewallTopology
from xpfdp.firewall import to_toml

VALID_TOML = """
[lan]
interface = "lan0"
addresses = ["10.10.1.1/24"]
[wan]
interface = "wan0"
addresses = ["10.10.2.1/24"]
[[neighbours]]
interface = "wan"
address = "10.10.2.2"
mac = "02:00:00:00:02:02"
[[routes]]
destination = "0.0.0.0/0"
interface = "wan"
gateway = "10.10.2.2"
"""


def run_cli(*argv, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "xpfdp", *argv], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("argv", [["--help"], ["forward", "--help"], ["demo", "--help"]])
def test_help_of_every_command(argv):
    out = run_cli(*argv)
    assert out.returncode == 0 and out.stdout.startswith("usage: xpfdp")
    expected = {
        "--help": ["forward", "demo"],
        "forward": ["--config", "--duration", "--prometheus-port"],
        "demo": ["--mode", "--flows", "--shaper-mbps"],
    }
    for word in expected[argv[0]]:
        assert word in out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"xpfdp {xpfdp.__version__}"


def test_help_shows_defaults_and_the_exit_codes():
    demo = run_cli("demo", "--help").stdout
    assert "(default: 10.0)" in demo and "(default: demo-out)" in demo
    assert "(default: xpfdp)" in demo and "(default: None)" not in demo
    for argv in (["--help"], ["forward", "--help"], ["demo", "--help"]):
        text = run_cli(*argv).stdout
        assert f"  {EXIT_CONFIG}        configuration error" in text, argv
        assert f"  {EXIT_START}        valid configuration, but the forwarder cannot" in text
        assert "128+N    stopped by signal N (130: Ctrl-C, 143: SIGTERM)" in text


def test_check_accepts_a_valid_config(tmp_path, capsys):
    path = tmp_path / "fw.toml"
    path.write_text(VALID_TOML)
    assert main(["forward", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "OK (lan0 <-> wan0); 1 static neighbour; other on-link" in out
    assert "port forwards" not in out


def test_check_lists_the_port_forwards(tmp_path, capsys):
    path = tmp_path / "fw.toml"
    path.write_text(
        VALID_TOML + '[[dnat]]\ninterface = "wan"\nproto = "tcp"\nport = 8080\n'
        'to_address = "10.10.1.2"\nto_port = 80\n[[dnat]]\ninterface = "wan"\n'
        'proto = "udp"\nport = 5353\nto_address = "10.10.1.2"\n'
    )
    assert main(["forward", "--config", str(path), "--check"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "port forwards: tcp wan:8080 -> 10.10.1.2:80, udp wan:5353 -> 10.10.1.2:5353"
    )


def test_check_accepts_a_config_without_static_neighbours(tmp_path, capsys):
    path = tmp_path / "fw.toml"
    text = VALID_TOML.replace('[[neighbours]]\ninterface = "wan"\naddress = "10.10.2.2"\n'
                              'mac = "02:00:00:00:02:02"\n', "")  # fmt: skip
    assert "neighbours" not in text
    path.write_text(text)
    assert main(["forward", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "0 static neighbours; gateway MACs from the host's neighbour table: 10.10.2.2" in out


def test_invalid_config_exits_2_with_one_line_naming_the_key(tmp_path):
    path = tmp_path / "fw.toml"
    path.write_text(VALID_TOML.replace('gateway = "10.10.2.2"', 'gateway = "10.10.9.9"'))
    out = run_cli("forward", "--config", str(path), "--check")
    assert out.returncode == EXIT_CONFIG
    assert out.stderr.strip().splitlines() == [
        f"xpfdp: config error: {path}: routes[0].gateway: 10.10.9.9 is not on a subnet of "
        "wan (10.10.2.1/24)"
    ]


def test_forward_on_missing_interfaces_exits_3_with_one_line(tmp_path):
    path = tmp_path / "fw.toml"
    path.write_text(VALID_TOML.replace('"lan0"', '"xpfdp-nolan"'))
    out = run_cli("forward", "--config", str(path), "--duration", "1")
    assert out.returncode == EXIT_START
    assert out.stderr.strip() == (
        "xpfdp: cannot start the forwarder: interface 'xpfdp-nolan' not found"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["forward"],  # --config is required
        ["forward", "--config", "x", "--duration", "-1"],
        ["forward", "--config", "x", "--prometheus-port", "70000"],
        ["demo", "--mode", "ebpf"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_are_usage_errors(argv):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


@needs_root
@pytest.mark.root
def test_forward_runs_the_config_and_detaches_on_exit(tmp_path):
    with FirewallTopology(prefix="xt") as topo:
        config = topo.firewall_config(mss={"clamp_bytes": 1400}, cos={"rate_mbps": 50})
        path = tmp_path / "fw.toml"
        path.write_text(to_toml(config))
        proc = subprocess.Popen(
            [sys.executable, "-m", "xpfdp", "forward", "--config", str(path), "--duration", "4",
             "--prometheus-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            banner = proc.stdout.readline()
            assert banner.startswith("prometheus: http://127.0.0.1:")
            assert proc.stdout.readline().startswith(f"forwarding {topo.lan_if} <-> {topo.wan_if}")
            replies = traffic.ping(topo.client, topo.server_v4, 5)
            replies6 = traffic.ping(topo.client, topo.server_v6, 5)
            metrics = urllib.request.urlopen(banner.split()[1], timeout=5).read().decode()
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert (replies, replies6) == (5, 5)
        assert re.search(r'^xpfdp_rx_packets_total\{worker="0"\} (\d+)', metrics, re.M)
        assert 'xpfdp_sessions_created_total{worker="0"} 2.0' in metrics
        assert 'xpfdp_port_tx_packets_total{port="wan",worker="0"}' in metrics
        status = [line for line in out.splitlines() if " pps " in line]
        assert len(status) >= 2 and all("sessions" in line for line in status)
        assert "forwarded " in out.splitlines()[-1] and "sessions created 2" in out
        time.sleep(0.1)
        for ifname in (topo.lan_if, topo.wan_if):  # the XDP program left with the process
            assert "xdp" not in topo.firewall.run("ip", "link", "show", ifname).stdout


@needs_root
@pytest.mark.root
def test_firewall_example_from_flags(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "firewall.py"
    with FirewallTopology(prefix="xt") as topo:
        argv = [
            sys.executable, str(example), "--netns", topo.firewall.name, "--duration", "3",
            "--lan", topo.lan_if, "--lan-address", f"{topo.lan_v4}/24",
            "--wan", topo.wan_if, "--wan-address", f"{topo.wan_v4}/24",
            "--neighbour", f"lan,{topo.client_v4},{topo.client_mac}",
            "--neighbour", f"wan,{topo.server_v4},{topo.server_mac}",
            "--route", f"0.0.0.0/0,wan,{topo.server_v4}", "--mss", "1400",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().startswith("forwarding ")
            replies = traffic.ping(topo.client, topo.server_v4, 3)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert replies == 3 and "sessions created 1" in out


@needs_root
@pytest.mark.root
def test_shaper_example_demo_is_fair_and_at_rate():
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "shaper.py"
    out = subprocess.run(
        [sys.executable, str(example), "--demo", "--rate-mbps", "80", "--duration", "4",
         "--flows", "3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" intact") == 3 and "CORRUPT" not in out.stdout
    wire, jain = re.search(r"~([\d.]+) on the wire\) .* Jain's index ([\d.]+)", out.stdout).groups()
    assert float(wire) == pytest.approx(80, rel=0.05) and float(jain) >= 0.95
