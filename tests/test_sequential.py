"""The sequential confirmation procedure on simulated seeds: draws from fixed distributions, no
training, so thousands of confirmations take seconds and every answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.results import sequential
from harness.results.sequential import (
    BETTER,
    BOUNDED,
    CATCH_UP,
    OPEN,
    TOO_FEW,
    Design,
    advance,
    guard_checks,
    look,
    pocock_level,
    schedule,
)
from harness.results.stats import ALPHA

DEFAULT = "paper default"


def simulate(rng, means, design, sd=1.0, fail=0.0):
    return sequential.simulate(rng, means, DEFAULT, design, sd, fail)


def test_pocock_constants_match_the_published_table():
    """Pocock's one-sided boundary at level 0.025, equally spaced looks (Jennison & Turnbull,
    Group Sequential Methods, Table 2.1: 2.178, 2.289, 2.361, 2.413)."""
    for looks, c in [(2, 2.178), (3, 2.289), (4, 2.361), (5, 2.413)]:
        level = pocock_level(tuple(range(1, looks + 1)), 0.025)
        assert stats.norm.isf(level) == pytest.approx(c, abs=1e-3)
    assert pocock_level((3,), 0.05) == 0.05  # one look: no correction


def test_the_schedule_spreads_at_most_four_looks_up_to_the_maximum():
    assert schedule(10) == (3, 5, 8, 10)
    assert schedule(3) == (3,) and schedule(2) == (2,) and schedule(4) == (3, 4)
    assert schedule(20) == (3, 9, 14, 20)


def test_a_look_against_hand_computation():
    best, default = [3.1, 3.3, 3.2], [2.9, 3.0, 3.1]
    design = Design((3,), candidates=1, margin=0.5)
    now = look(best, default, True, design)
    se = math.sqrt(0.01 / 3 + 0.01 / 3)
    assert now.stats.df == pytest.approx(4.0) and now.stats.se == pytest.approx(se)
    assert now.p_value == pytest.approx(0.035242, abs=1e-5)  # as tests/test_stats.py
    crit = stats.t.isf(0.05, 4)
    assert now.lower == pytest.approx(0.2 - crit * se) and now.upper == pytest.approx(
        0.2 + crit * se
    )
    assert now.detectable == pytest.approx((crit + stats.t.isf(0.2, 4)) * se)
    assert now.outcome == BETTER
    worse = look(best, default, False, design)  # lower is better: the same numbers lose
    assert worse.stats.gain == pytest.approx(-0.2) and worse.outcome == BOUNDED
    narrow = Design((3,), candidates=1, margin=0.1)
    assert look([1.0, 1.2, 0.9], [1.1, 0.8, 1.0], True, narrow).outcome == OPEN


def test_a_large_difference_is_decided_in_the_first_round():
    design = Design(schedule(10), candidates=2, margin=0.1)
    rng = np.random.default_rng(0)
    means = {"rank 1": 1.0, "rank 2": 0.7, DEFAULT: 0.0}
    for _ in range(20):
        end, scores = simulate(rng, means, design, sd=0.05)
        assert end.outcome == BETTER and end.best == "rank 1"
        assert [len(v) for v in scores.values()] == [3, 3, 3]  # the first round only


def test_identical_configurations_end_bounded_without_exceeding_the_maximum():
    """With the margin at 2 seed standard deviations, the upper bound of a zero gain falls
    under it by 10 seeds in nearly every confirmation; none runs a seed past the maximum."""
    design = Design(schedule(10), candidates=1, margin=2.0)
    rng = np.random.default_rng(1)
    ends = [simulate(rng, {"rank 1": 0.0, DEFAULT: 0.0}, design) for _ in range(400)]
    assert max(len(v) for _, scores in ends for v in scores.values()) <= 10
    outcomes = [end.outcome for end, _ in ends]
    assert outcomes.count(BOUNDED) >= 0.95 * len(ends)
    assert outcomes.count(BETTER) <= ALPHA * len(ends)
    bounded = next(end for end, _ in ends if end.outcome == BOUNDED)
    assert bounded.look.upper < 2.0 and bounded.seeds <= 10


@pytest.mark.parametrize("candidates", [1, 2])
def test_false_positive_rate_on_identical_configurations_stays_under_alpha(candidates):
    """Thousands of confirmations where every candidate equals the default: the share whose
    verdict says "better" is at most alpha, the looks and the pick of the best included.

    The check allows for the simulation's own noise: a one-sided binomial test at 1 % must not
    reject "the rate is at most alpha" (benchmarks/sequential_error_rates.py measures the rates
    on many more confirmations, and what the same looks would give uncorrected).
    """
    design = Design(schedule(10), candidates=candidates, margin=0.5)
    rng = np.random.default_rng(2 + candidates)
    means = {f"rank {k + 1}": 0.0 for k in range(candidates)} | {DEFAULT: 0.0}
    runs = 3000
    better = sum(simulate(rng, means, design)[0].outcome == BETTER for _ in range(runs))
    assert better <= stats.binom.ppf(0.99, runs, ALPHA), better / runs
    assert design.level < ALPHA / candidates  # what the correction costs each look


def test_the_bounded_claim_is_wrong_at_most_alpha_when_the_gain_is_the_margin():
    """The candidate is truly better by exactly the margin: "not better by more than the margin"
    would be a false claim, and it is made at most alpha of the time."""
    design = Design(schedule(10), candidates=1, margin=1.0)
    rng = np.random.default_rng(5)
    runs = 2000
    ends = [simulate(rng, {"rank 1": 1.0, DEFAULT: 0.0}, design)[0] for _ in range(runs)]
    bounded = sum(e.outcome == BOUNDED for e in ends)
    assert bounded <= stats.binom.ppf(0.99, runs, ALPHA), bounded / runs


def test_runs_that_did_not_complete_leave_the_look_open_until_the_maximum():
    design = Design(schedule(5), candidates=1, margin=0.1)
    rng = np.random.default_rng(6)
    end, scores = simulate(rng, {"rank 1": 0.0, DEFAULT: 0.0}, design, fail=0.9)
    assert end.finished and len(scores[DEFAULT]) <= 5
    assert end.outcome in (TOO_FEW, OPEN, BOUNDED, BETTER)
    nothing = advance({"rank 1": [None] * 5, DEFAULT: [None] * 5}, DEFAULT, True, design)
    assert nothing.finished and nothing.outcome == TOO_FEW and nothing.look is None


def test_the_best_is_re_picked_and_catches_up_before_it_is_compared():
    design = Design(schedule(10), candidates=2, margin=0.1)
    scores = {"rank 1": [1.0, 1.1, 0.9, 0.5, 0.4], "rank 2": [0.9, 0.8, 0.85], DEFAULT: [0.7] * 5}
    step = advance(scores, DEFAULT, True, design)
    assert step.best == "rank 2" and step.wanted == {"rank 2": 5} and step.look is None
    assert step.outcome == CATCH_UP and not step.finished
    scores["rank 2"] += [0.8, 0.9]
    step = advance(scores, DEFAULT, True, design)
    assert step.best == "rank 2" and step.look is not None


def test_a_guard_metric_reports_a_significant_loss_only_beyond_noise():
    best = {"pesq": [1.50, 1.52, 1.51, 1.49], "mel_l1": [1.0, 1.1, 0.9, 1.05]}
    default = {"pesq": [1.80, 1.82, 1.79, 1.81], "mel_l1": [1.02, 0.95, 1.08, 1.0]}
    checks = {c.metric: c for c in guard_checks(best, default, {"pesq": True, "mel_l1": False})}
    assert checks["pesq"].loss and checks["pesq"].stats.gain == pytest.approx(-0.30)
    assert checks["pesq"].level == pytest.approx(ALPHA / 2)  # Bonferroni over the two guards
    assert not checks["mel_l1"].loss
    p = stats.ttest_ind(best["mel_l1"], default["mel_l1"], equal_var=False).pvalue
    assert checks["mel_l1"].p_value == pytest.approx(p)  # two-sided Welch
    assert guard_checks({"stoi": [0.5]}, {"stoi": [0.6, 0.7]}, {"stoi": True}) == []
