"""Per-flow throughput over time as a PNG (matplotlib, the optional extra `plot`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from xpfdp.demo.report import rate_series_mbps
from xpfdp.demo.traffic import BIN_S

PLOT_MISSING = "matplotlib not installed: skipping the throughput plot (pip install 'xpfdp[plot]')"
SMOOTH_BINS = 5


def plot_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_flows(
    bins_by_flow: Mapping[str, Sequence[int]],
    path: str | Path,
    *,
    title: str,
    shaper_rate_bps: float | None = None,
) -> Path:
    """Write one line per flow (Mbit/s over time) and, if given, the shaper rate split
    evenly as the fair share. Raises RuntimeError(PLOT_MISSING) without matplotlib."""
    if not plot_available():
        raise RuntimeError(PLOT_MISSING)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    try:
        for label, bins in bins_by_flow.items():
            series = rate_series_mbps(bins, SMOOTH_BINS)
            t = [(i + 0.5) * SMOOTH_BINS * BIN_S for i in range(len(series))]
            ax.plot(t, series, label=label)
        if shaper_rate_bps and bins_by_flow:
            ax.axhline(shaper_rate_bps / 1e6 / len(bins_by_flow), ls="--", c="gray",
                       label="fair share of shaper rate")  # fmt: skip
        ax.set_xlabel("time (s)")
        ax.set_ylabel("throughput (Mbit/s)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
