"""Fairness metrics pinned by the docs/cos.md examples."""

import pytest

from xpfdp.cos.fairness import (
    cov,
    cov_within_gate,
    cstruct,
    jain_index,
    saturated,
    starved_flows,
    structural_cap,
)


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        ([2, 2, 2, 2, 2, 2], 0.0),
        ([1, 1, 2, 2, 3, 3], 0.4714),
        ([0, 2, 2, 2, 3, 3], 0.2000),
        ([1, 3, 0, 0, 0, 0], 0.5774),
        ([6, 0, 0, 0, 0, 6], 0.0),
        ([4, 0, 4, 0, 5, 0], 0.1054),
        ([], 0.0),
        ([0, 0, 0], 0.0),
        ([1, 0, 0, 0], 0.0),
    ],
)
def test_cstruct_table(active, expected):
    assert cstruct(active) == pytest.approx(expected, abs=5e-5)


def test_cstruct_rejects_negative_counts():
    with pytest.raises(ValueError):
        cstruct([1, -1])


def test_observed_cov():
    assert cov([1000] * 4) == 0.0
    assert cov([500, 500, 1500, 1500]) == pytest.approx(0.5)
    assert cov([]) == 0.0 and cov([0, 0]) == 0.0


def test_jain_index():
    assert jain_index([5, 5, 5, 5]) == pytest.approx(1.0)
    assert jain_index([10, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_index([500, 500, 1500, 1500]) == pytest.approx(0.8)
    assert jain_index([]) == 1.0 and jain_index([0, 0]) == 1.0


def test_starved_flows():
    flows = [[0] * 60] + [[1000] * 60 for _ in range(3)]
    assert starved_flows(flows) == 1  # mean cell 750, threshold 7.5
    dip = [[0] * 5 + [1000] * 55] + [[1000] * 60 for _ in range(3)]
    assert starved_flows(dip) == 0  # a transient dip does not count
    assert starved_flows([]) == 0


def test_saturated_inclusive_80_percent():
    cap = structural_cap(12, 6, 1000.0)
    assert cap == 2000.0
    assert saturated([cap] * 48 + [cap / 2] * 12, cap)
    assert not saturated([cap] * 42 + [cap / 2] * 18, cap)
    assert not saturated([], cap) and not saturated([1.0], 0)
    with pytest.raises(ValueError):
        structural_cap(1, 0, 1.0)


def test_cov_gate():
    assert cov_within_gate(0.52, 0.4714) and not cov_within_gate(0.53, 0.4714)
