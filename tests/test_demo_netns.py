"""`xpfdp demo` end to end (root): the shaper holds its rate, equal flows share it fairly,
and the report shows NAT, clamp, drops and zero checksum errors; the kernel baseline runs
through the same machinery; SIGTERM/SIGINT tear everything down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.conftest import needs_root
from xpfdp.demo.run import UNSOLICITED_PROBES, run_demo
from xpfdp.demo.topology import FirewallTopology
from xpfdp.topology import list_namespaces

pytestmark = [needs_root, pytest.mark.root]

SHAPER_MBPS = 200
CLAMP = 1360


def test_demo_shapes_fairly_and_reports_nat(tmp_path):
    lines: list[str] = []
    report = run_demo(
        mode="xpfdp",
        duration_s=5,
        flows=4,
        shaper_mbps=SHAPER_MBPS,
        mss_clamp=CLAMP,
        out_dir=tmp_path,
        emit=lines.append,
    )
    assert report.ok, "\n".join(lines)
    assert report.frames_conserved.startswith("yes")  # every UMEM frame accounted for
    # the aggregate rate through the shaper is within 5 % of configured
    assert report.wan_wire_bps == pytest.approx(SHAPER_MBPS * 1e6, rel=0.05)
    # 4 equal TCP flows (3 IPv4, 1 IPv6) through one exact MQFQ class
    assert report.jain_index >= 0.95
    assert all(f.intact for f in report.flows) and len(report.flows) == 4
    assert {f.server_saw_peer for f in report.flows} == {"10.10.2.1", "fd00:b::1"}
    assert all(f.server_mss_bytes <= CLAMP for f in report.flows)
    assert report.unsolicited_dropped == UNSOLICITED_PROBES
    assert sum(report.checksum_errors.values()) == 0 and report.checksum_errors
    assert report.sessions["created"] >= 4 + 2 + 1  # bulk, pings, mouse
    assert report.pings == {"ipv4": [3, 3], "ipv6": [3, 3]}
    assert report.mouse_load_us["n"] > 100 and report.mouse_lost == 0
    status = [line for line in lines if " pps " in line and "Mbps" in line]
    assert len(status) >= 4  # one status line per second of bulk
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["jain_index"] == report.jain_index
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kernel_baseline_runs_the_same_measurements(tmp_path):
    report = run_demo(mode="kernel", duration_s=2.5, flows=2, out_dir=tmp_path, emit=lambda s: None)
    assert report.ok and report.shaper_rate_bps is None
    assert {f.server_saw_peer for f in report.flows} == {"10.10.1.2", "fd00:a::2"}  # no NAT
    assert report.unsolicited_dropped is None and report.wan_wire_bps > 0


def test_bad_demo_arguments_fail_before_building_anything():
    before = list_namespaces()
    with pytest.raises(ValueError, match="duration_s"):
        run_demo(duration_s=1)
    with pytest.raises(ValueError, match="flows"):
        run_demo(flows=0)
    with pytest.raises(ValueError, match="mode"):
        FirewallTopology(mode="bpf")
    assert list_namespaces() == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_demo_tears_everything_down(sig, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpfdp", "demo", "--duration", "20", "--out-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test run started in the background (`cmd &`) inherits SIGINT ignored, and Python
        # keeps it ignored: give the demo the default disposition, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in proc.stdout:
            if " pps " in line:  # forwarding under load: interrupt now
                break
        prefix = f"xd-{proc.pid % 100000}-"
        assert [ns for ns in list_namespaces() if ns.startswith(prefix)]
        proc.send_signal(sig)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + signal.SIGTERM)
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]
    assert not (tmp_path / "report.json").exists()
