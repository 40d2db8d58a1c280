"""Seed statistics for confirmed configurations: mean, spread, interval, and a verdict.

A search's ranking rests on one seed per trial.  Confirmation retrains the top configurations
and the paper default with several seeds; this module turns those runs into the numbers the
leaderboard prints: mean ± sample standard deviation, a 95 % Student-t interval of the mean, and
a one-sided Welch t-test of "the winner is better than the default" (unequal variances, which
is what two configurations trained with different settings have).  Welch rather than a
bootstrap because confirmation runs few seeds (3 by default), where a bootstrap's resamples can
only take a handful of distinct values.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

CONFIDENCE = 0.95
ALPHA = 0.05  # one-sided significance level of the verdict


@dataclass(frozen=True)
class SeedSummary:
    """One configuration's scores over seeds."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof 1); 0 for a single seed
    low: float  # 95 % t-interval of the mean; equal to the mean for a single seed
    high: float

    def format(self, digits: int = 4) -> str:
        return f"{self.mean:.{digits}g} ± {self.std:.2g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def summarise(values: Sequence[float]) -> SeedSummary:
    """Mean ± std and the 95 % t-interval of the mean of ``values`` (at least one)."""
    if not values:
        raise ValueError("summarise: no values")
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        return SeedSummary(1, mean, 0.0, mean, mean)
    std = statistics.stdev(values)
    half = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return SeedSummary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """Is ``candidate`` better than ``baseline`` by more than seed noise?"""

    difference: float  # candidate mean - baseline mean, in the metric's unit
    p_value: float  # one-sided Welch t-test in the metric's better direction
    significant: bool

    def verdict(self, candidate: str, baseline: str, metric: str) -> str:
        sign = "better" if self.significant else "not better"
        how = f"p = {self.p_value:.3g}, one-sided Welch t-test, alpha {ALPHA}"
        return (
            f"{candidate} is {sign} than {baseline} on {metric} beyond seed noise "
            f"(difference {self.difference:+.4g}; {how})"
        )


def compare(
    candidate: Sequence[float], baseline: Sequence[float], higher_is_better: bool
) -> Comparison:
    """One-sided Welch t-test that ``candidate`` beats ``baseline``; needs 2+ values in each.

    Two sets with no spread at all are decided by their means (p 0 or 1): the t statistic is
    undefined there, and identical seeds giving identical scores is a real outcome on CPU.
    """
    if len(candidate) < 2 or len(baseline) < 2:
        raise ValueError("compare: each configuration needs at least 2 seeds")
    difference = statistics.fmean(candidate) - statistics.fmean(baseline)
    gain = difference if higher_is_better else -difference
    if statistics.pvariance(candidate) == 0 and statistics.pvariance(baseline) == 0:
        p_value = 0.0 if gain > 0 else 1.0
    else:
        alternative = "greater" if higher_is_better else "less"
        result = scipy_stats.ttest_ind(
            candidate, baseline, equal_var=False, alternative=alternative
        )
        p_value = float(result.pvalue)
    return Comparison(difference, p_value, p_value < ALPHA)
