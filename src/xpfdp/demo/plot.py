"""The demo's picture as a PNG (matplotlib, the optional extra `plot`): per-flow TCP
throughput, the mouse flow's round-trip time and the drops per second, over the bulk run.

Only whole smoothing intervals inside the bulk run are drawn: a partial last interval (or
the seconds after the senders stopped) would show a fall in throughput that did not happen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xpfdp.demo.report import rate_series_mbps
from xpfdp.demo.traffic import BIN_S

PLOT_MISSING = "matplotlib not installed: skipping the throughput plot (pip install 'xpfdp[plot]')"
SMOOTH_BINS = 5


@dataclass
class DemoSeries:
    """What the picture shows; every time is seconds since the demo's t0."""

    bins_by_flow: Mapping[str, Sequence[int]]  # bytes per BIN_S, from t0
    bulk_end_s: float  # when the senders were told to stop
    mouse_times_s: Sequence[float] = ()
    mouse_rtts_us: Sequence[float] = ()
    drop_times_s: Sequence[float] = ()  # end of each one-second status interval
    drops_per_s: Sequence[float] = ()  # pipeline drops in that interval
    ring_drops_per_s: Sequence[float] = ()  # kernel ring drops (XskPort) in that interval
    shaper_rate_bps: float | None = None
    notes: list[str] = field(default_factory=list)


def plot_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_demo(series: DemoSeries, path: str | Path, *, title: str) -> Path:
    """Write the three-panel picture to `path`. Raises RuntimeError(PLOT_MISSING) without
    matplotlib."""
    if not plot_available():
        raise RuntimeError(PLOT_MISSING)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (tput, rtt, drops) = plt.subplots(
        3, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.3]}
    )
    try:
        whole_bins = int(series.bulk_end_s / BIN_S)
        for label, bins in series.bins_by_flow.items():
            rates = rate_series_mbps(list(bins)[:whole_bins], SMOOTH_BINS)
            t = [(i + 0.5) * SMOOTH_BINS * BIN_S for i in range(len(rates))]
            tput.plot(t, rates, label=label)
        if series.shaper_rate_bps and series.bins_by_flow:
            fair = series.shaper_rate_bps / 1e6 / len(series.bins_by_flow)
            tput.axhline(fair, ls="--", c="gray", label="fair share of shaper rate")
        tput.set_ylabel("throughput (Mbit/s)")
        tput.legend(loc="lower right", fontsize="small")

        rtt.plot(series.mouse_times_s, [r / 1000 for r in series.mouse_rtts_us], ".", ms=2,
                 c="tab:purple", label="mouse UDP request/response")  # fmt: skip
        rtt.set_ylabel("mouse RTT (ms)")
        rtt.set_yscale("log")
        rtt.legend(loc="upper right", fontsize="small")

        drops.step(series.drop_times_s, series.drops_per_s, where="pre", c="tab:red",
                   label="pipeline drops")  # fmt: skip
        if any(series.ring_drops_per_s):
            drops.step(series.drop_times_s, series.ring_drops_per_s, where="pre",
                       c="tab:orange", label="kernel ring drops")  # fmt: skip
        drops.set_ylabel("drops/s")
        drops.set_xlabel("time since start (s)")
        drops.legend(loc="upper right", fontsize="small")
        for ax in (tput, rtt, drops):
            ax.grid(alpha=0.3)
            ax.set_xlim(0, series.bulk_end_s)
        fig.suptitle(title, fontsize="medium")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
