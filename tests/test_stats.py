"""Seed statistics of the confirmation stage, against values computed by hand."""

import math

import pytest

from harness.results.stats import compare, summarise


def test_summary_of_known_values():
    s = summarise([1.0, 2.0, 3.0])
    assert s.n == 3 and s.mean == 2.0 and s.std == 1.0
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * std / sqrt(n)
    assert s.low == pytest.approx(2.0 - half) and s.high == pytest.approx(2.0 + half)


def test_single_seed_has_no_spread():
    s = summarise([0.7])
    assert (s.mean, s.std, s.low, s.high) == (0.7, 0.0, 0.7, 0.7)
    with pytest.raises(ValueError):
        summarise([])


def test_welch_one_sided_matches_hand_computation():
    a, b = [3.1, 3.3, 3.2], [2.9, 3.0, 3.1]
    va, vb = 0.01, 0.01  # sample variances
    t = (3.2 - 3.0) / math.sqrt(va / 3 + vb / 3)  # 2.449, df 4
    assert t == pytest.approx(2.449489742783178)
    c = compare(a, b, higher_is_better=True)
    assert c.difference == pytest.approx(0.2)
    assert c.p_value == pytest.approx(0.035242, abs=1e-5)  # 1 - T_4(2.4495)
    assert c.significant
    # the same numbers for a lower-is-better metric: the candidate is the worse one
    assert not compare(a, b, higher_is_better=False).significant


def test_noise_sized_difference_is_not_significant():
    c = compare([1.00, 1.20, 0.95], [1.05, 0.90, 1.10], higher_is_better=True)
    assert not c.significant and c.p_value > 0.3
    assert "not better" in c.verdict("winner", "paper default", "pesq")


def test_zero_spread_is_decided_by_the_means():
    assert compare([2.0, 2.0], [1.0, 1.0], higher_is_better=True).p_value == 0.0
    assert compare([1.0, 1.0], [1.0, 1.0], higher_is_better=True).p_value == 1.0
    with pytest.raises(ValueError):
        compare([1.0], [1.0, 2.0], higher_is_better=True)
