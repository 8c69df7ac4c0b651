"""The demo report's arithmetic and text (no root)."""

from __future__ import annotations

import math

import pytest

from xpfdp.demo.report import (
    DemoReport,
    FlowReport,
    checksum_error_delta,
    fairness,
    format_report,
    latency_summary,
    percentile,
    rate_series_mbps,
    steady_rate_bps,
)
from xpfdp.demo.traffic import BIN_S


def flow(i, rate, intact=True, peer="10.10.2.1", mss=1348, error=""):
    return FlowReport(i, "IPv4", 1000, 1000 if intact else 999, intact, rate, peer, mss, error)


def report(**kw):
    base = dict(
        mode="xpfdp", duration_s=5, flows=[flow(0, 1e8), flow(1, 1e8)], jain_index=1.0,
        aggregate_bps=2e8, shaper_rate_bps=2e8, wan_wire_bps=1.99e8, mss_clamp_bytes=1360,
        snat_address="10.10.2.1", mouse_idle_us=latency_summary([100, 200]),
        mouse_load_us=latency_summary([300, 400]), mouse_lost=0,
        pings={"ipv4": [3, 3], "ipv6": [3, 3]}, sessions={"active": 4, "created": 2,
        "expired": 0}, drops={"policy_denied": 5}, unsolicited_dropped=5,
        checksum_errors={"Tcp": 0},
    )  # fmt: skip
    base.update(kw)
    return DemoReport(**base)


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 100) == 100 and percentile([7], 99) == 7
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_steady_rate_uses_only_the_window():
    bins = [0] * 10 + [125_000] * 10 + [0] * 5  # 1 Mbyte/s for one second after 1 s
    assert steady_rate_bps(bins, 1.0, 2.0) == pytest.approx(10e6)
    assert steady_rate_bps(bins, 0.0, 2.5) == pytest.approx(10e6 * 1.0 / 2.5)
    with pytest.raises(ValueError, match="empty window"):
        steady_rate_bps(bins, 2.0, 2.0)
    assert BIN_S == 0.1


def test_rate_series_smooths_bins():
    assert rate_series_mbps([125_000] * 10, 5) == pytest.approx([10.0, 10.0])
    assert rate_series_mbps([125_000] * 7, 5) == pytest.approx([10.0])  # partial group left out


def test_fairness_and_checksum_delta():
    assert fairness([flow(0, 1.0), flow(1, 1.0)]) == 1.0
    assert fairness([flow(0, 1.0), flow(1, 0.0)]) == pytest.approx(0.5)
    assert checksum_error_delta({"Tcp": 3, "Udp": 1}, {"Tcp": 5, "Udp": 1, "Icmp": 2}) == {
        "Tcp": 2, "Udp": 0, "Icmp": 2}  # fmt: skip


def test_report_ok_requires_intact_flows_no_checksum_errors_and_pings():
    assert report().ok
    assert not report(flows=[flow(0, 1e8, intact=False)]).ok
    assert not report(flows=[flow(0, 1e8, error="ConnectionResetError")]).ok
    assert not report(checksum_errors={"Tcp": 1}).ok
    assert not report(pings={"ipv4": [2, 3]}).ok
    assert report(frames_conserved="yes (12,544 frames)").ok
    assert not report(frames_conserved="NO: 3 frames missing").ok
    assert "frames conserved: NO: 3" in format_report(report(frames_conserved="NO: 3"))


def test_report_text_has_every_section():
    text = format_report(report())
    for needle in (
        "flow 0 IPv4", "Jain's index 1.000", "199.0 Mbit/s on the wire vs configured 200.0",
        "(99.5%)", "MSS seen by the server: [1348] (clamp 1360)",
        "source address seen by the server: 10.10.2.1", "p99 400 µs (p99 2.0x idle)",
        "ipv4 3/3 answered", "sessions: active 4, created 2, expired 0",
        "drops by reason: policy_denied 5", "unsolicited WAN -> LAN probes dropped: 5",
        "checksum errors at the receivers: 0 (must be 0)", "result: OK",
    ):  # fmt: skip
        assert needle in text, needle
    kernel_report = report(
        mode="kernel", shaper_rate_bps=None, sessions={}, unsolicited_dropped=None,
        checksum_errors={"Tcp": 2},
    )  # fmt: skip
    kernel = format_report(kernel_report)
    assert "shaper: none configured" in kernel and "sessions: n/a" in kernel
    assert "unsolicited" not in kernel and "result: FAILED" in kernel
    assert "checksum errors at the receivers: 2" in kernel
