"""The demo's report: numbers computed from what the traffic saw and the forwarder counted.

Pure functions over plain data (flow records, RTT lists, stats snapshots), so the report is
unit-tested without namespaces and can be rebuilt from a saved `report.json`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from xpfdp.cos.fairness import jain_index
from xpfdp.demo.traffic import BIN_S


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def steady_rate_bps(bins: Sequence[int], start_s: float, end_s: float) -> float:
    """Mean bit rate of per-`BIN_S` byte counts over [start_s, end_s)."""
    first, last = int(start_s / BIN_S), int(end_s / BIN_S)
    if last <= first:
        raise ValueError(f"empty window [{start_s}, {end_s})")
    window = bins[first:last]
    return sum(window) * 8 / ((last - first) * BIN_S)


def rate_series_mbps(bins: Sequence[int], smooth_bins: int = 5) -> list[float]:
    """Mbit/s of each whole group of `smooth_bins` consecutive bins (for plots); a partial
    last group is left out rather than averaged over fewer bins."""
    whole = len(bins) - len(bins) % smooth_bins
    return [
        sum(bins[i : i + smooth_bins]) * 8 / (smooth_bins * BIN_S) / 1e6
        for i in range(0, whole, smooth_bins)
    ]


@dataclass
class FlowReport:
    """One TCP bulk flow as the report shows it."""

    flow_id: int
    family: str
    bytes_sent: int
    bytes_received: int
    intact: bool  # SHA-256 of what was sent == SHA-256 of what arrived
    rate_bps: float
    server_saw_peer: str
    server_mss_bytes: int
    error: str = ""


@dataclass
class DemoReport:
    """Everything the demo measured (JSON-serialisable with `asdict`)."""

    mode: str
    duration_s: float
    flows: list[FlowReport]
    jain_index: float
    aggregate_bps: float
    shaper_rate_bps: float | None
    wan_wire_bps: float | None
    mss_clamp_bytes: int | None
    snat_address: str | None
    mouse_idle_us: dict[str, float]
    mouse_load_us: dict[str, float]
    mouse_lost: int
    pings: dict[str, list[int]]  # family -> [replies, requests]
    sessions: dict[str, int]
    drops: dict[str, int]
    unsolicited_dropped: int | None
    checksum_errors: dict[str, int]
    notes: list[str] = field(default_factory=list)
    frames_conserved: str | None = None  # UMEM frame accounting after the run (xpfdp)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def ok(self) -> bool:
        """Every flow intact, no checksum errors, every ping answered, frames conserved."""
        return (
            all(f.intact and not f.error for f in self.flows)
            and not any(self.checksum_errors.values())
            and all(replies == sent for replies, sent in self.pings.values())
            and (self.frames_conserved is None or self.frames_conserved.startswith("yes"))
        )


def latency_summary(rtts_us: Sequence[float]) -> dict[str, float]:
    """p50/p99/max and the sample count of round-trip times in µs."""
    return {
        "p50": percentile(rtts_us, 50),
        "p99": percentile(rtts_us, 99),
        "max": max(rtts_us) if rtts_us else math.nan,
        "n": len(rtts_us),
    }


def fairness(flows: Sequence[FlowReport]) -> float:
    """Jain's index over the flows' steady-state rates."""
    return jain_index([f.rate_bps for f in flows])


def checksum_error_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Checksum errors that appeared between two `checksum_errors()` readings."""
    return {k: after[k] - before.get(k, 0) for k in after}


def _mbps(bps: float | None) -> str:
    return "n/a" if bps is None else f"{bps / 1e6:,.1f} Mbit/s"


def format_report(r: DemoReport) -> str:
    """The human-readable report printed at the end of the demo."""
    lines = [f"== xpfdp demo report ({r.mode} forwarding, {r.duration_s:g} s of bulk) =="]
    lines.append("TCP bulk flows (server side, steady state):")
    for f in r.flows:
        status = "intact" if f.intact else "CORRUPT"
        if f.error:
            status += f" ({f.error})"
        lines.append(
            f"  flow {f.flow_id} {f.family:4} {_mbps(f.rate_bps):>16}  "
            f"{f.bytes_received / 1e6:8.1f} MB {status:7}  server saw {f.server_saw_peer} "
            f"MSS {f.server_mss_bytes}"
        )
    lines.append(f"  aggregate {_mbps(r.aggregate_bps)}, Jain's index {r.jain_index:.3f}")
    if r.shaper_rate_bps is not None:
        wire = r.wan_wire_bps or 0.0
        lines.append(
            f"shaper: WAN egress {_mbps(r.wan_wire_bps)} on the wire vs configured "
            f"{_mbps(r.shaper_rate_bps)} ({wire / r.shaper_rate_bps:.1%})"
        )
    else:
        lines.append(f"shaper: none configured; WAN egress {_mbps(r.wan_wire_bps)} on the wire")
    clamp = f"clamp {r.mss_clamp_bytes}" if r.mss_clamp_bytes else "no clamp"
    mss = sorted({f.server_mss_bytes for f in r.flows})
    lines.append(f"MSS seen by the server: {mss} ({clamp})")
    lines.append(f"source address seen by the server: {r.snat_address}")
    idle, load = r.mouse_idle_us, r.mouse_load_us
    ratio = load["p99"] / idle["p99"] if idle["p99"] and not math.isnan(idle["p99"]) else math.nan
    lines.append(
        f"mouse UDP RTT: idle p50 {idle['p50']:.0f} µs p99 {idle['p99']:.0f} µs | "
        f"under load p50 {load['p50']:.0f} µs p99 {load['p99']:.0f} µs "
        f"(p99 {ratio:.1f}x idle), lost {r.mouse_lost}"
    )
    lines.append("pings: " + ", ".join(f"{k} {a}/{b} answered" for k, (a, b) in r.pings.items()))
    lines.append(
        "sessions: " + ", ".join(f"{k} {v}" for k, v in r.sessions.items())
        if r.sessions
        else "sessions: n/a (kernel forwarding is stateless here)"
    )
    drops = ", ".join(f"{k} {v}" for k, v in sorted(r.drops.items())) or "none"
    lines.append(f"drops by reason: {drops}")
    if r.unsolicited_dropped is not None:
        lines.append(f"unsolicited WAN -> LAN probes dropped: {r.unsolicited_dropped}")
    total_csum = sum(r.checksum_errors.values())
    lines.append(f"checksum errors at the receivers: {total_csum} (must be 0)")
    if r.frames_conserved is not None:
        lines.append(f"frames conserved: {r.frames_conserved}")
    lines.extend(f"note: {n}" for n in r.notes)
    lines.append("result: " + ("OK" if r.ok else "FAILED"))
    return "\n".join(lines)
