"""Fairness metrics for shaped traffic (docs/cos.md, Fairness metrics), as pure functions.

`cstruct` is the best coefficient of variation achievable when flows are pinned to workers
(RSS), so an observed CoV is judged against it rather than against zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

STARVED_FRACTION = 0.01  # a cell below 1 % of the mean cell counts as starved
SATURATION_FRACTION = 0.95  # a second at >= 95 % of the cap counts as saturated
SATURATED_SECONDS_FRACTION = 0.80  # ... in at least 80 % of the seconds
COV_GATE_SLACK = 0.05  # observed CoV may exceed Cstruct by this much


def cov(values: Sequence[float]) -> float:
    """Population stddev / mean of per-flow throughputs; 0 for empty or zero-mean input."""
    n = len(values)
    if n == 0:
        return 0.0
    mean = math.fsum(values) / n
    if mean == 0:
        return 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return math.sqrt(var) / mean


def cstruct(active_flows_per_worker: Sequence[int]) -> float:
    """Structural CoV ceiling: CoV of {1/a_i repeated a_i times} over workers with a_i > 0."""
    shares: list[float] = []
    for a in active_flows_per_worker:
        if a < 0:
            raise ValueError(f"active flow counts must be >= 0, got {a}")
        if a:
            shares.extend([1.0 / a] * a)
    return cov(shares)


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (Σx)² / (n·Σx²): 1 is perfectly fair, 1/n is one flow takes all.

    Empty or all-zero input returns 1.0 (nothing is shared unfairly).
    """
    n = len(values)
    squares = math.fsum(v * v for v in values)
    if n == 0 or squares == 0:
        return 1.0
    total = math.fsum(values)
    return total * total / (n * squares)


def starved_flows(bytes_per_second: Sequence[Sequence[float]]) -> int:
    """Flows whose every 1-second cell is below 1 % of the mean cell over all flows.

    `bytes_per_second[f][s]` is flow f's bytes in second s; transient dips do not count.
    """
    cells = [c for flow in bytes_per_second for c in flow]
    if not cells:
        return 0
    threshold = STARVED_FRACTION * math.fsum(cells) / len(cells)
    return sum(1 for flow in bytes_per_second if flow and all(c < threshold for c in flow))


def structural_cap(active_flows: int, workers: int, shaper_rate: float) -> float:
    """Aggregate rate the active flows can reach: (N_active / N_workers) × shaper rate."""
    if workers <= 0:
        raise ValueError("workers must be > 0")
    return active_flows / workers * shaper_rate


def saturated(aggregate_per_second: Sequence[float], cap: float) -> bool:
    """True if the aggregate reached 95 % of `cap` in at least 80 % of the seconds."""
    n = len(aggregate_per_second)
    if n == 0 or cap <= 0:
        return False
    hits = sum(1 for a in aggregate_per_second if a >= SATURATION_FRACTION * cap)
    return hits >= SATURATED_SECONDS_FRACTION * n


def cov_within_gate(observed_cov: float, structural_cov: float) -> bool:
    """The fairness gate: observed CoV ≤ Cstruct + 0.05."""
    return observed_cov <= structural_cov + COV_GATE_SLACK
