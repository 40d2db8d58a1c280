"""Sequential confirmation: seeds in rounds until the verdict is decided, at an honest error rate.

The confirmed best of K candidates is compared with the paper default after every round of seeds
(a *look*) by a one-sided Welch t-test, and the procedure stops at the first look where it can
say one of two things, or at its last look:

- **better**: the test rejects "the best is no better than the default";
- **bounded**: its confidence bound rejects "the best is better by the margin or more", so the
  verdict reads "not better by more than the margin".

Looking after every round would inflate the error rate of either claim; so would picking the best
of K.  Both are paid for in the per-look level every look uses:

- **Pocock's constant across the looks.**  For a fixed schedule of looks (seeds per side
  3, 5, 8, 10 by default), :func:`pocock_level` is the nominal level ``a`` such that a z-test
  repeated at every look rejects a true null with probability ``alpha`` in all (Pocock 1977; the
  boundary is computed exactly for the schedule's information fractions, by recursive numerical
  integration, as in Armitage, McPherson and Rowe 1969).  Each look's Welch p-value is compared
  with ``a``.  The "bounded" claim is the same test of the shifted null "better by the margin",
  so its error rate is bounded the same way; stopping for either reason only removes chances to
  make the other claim.
- **Bonferroni across the K candidates.**  The best is whichever candidate has the best
  confirmed mean; it can change between looks.  Every claim is one candidate's test at one look,
  so running each candidate's test at ``alpha / K`` bounds the chance of any false claim by
  ``alpha`` whichever is picked.

The t statistics of small samples follow Pocock's z-boundary approximately; the simulated error
rate (tests/test_sequential.py, thousands of confirmations of identical configurations) stays under
``alpha``.  Every look also reports what the test could see: the smallest gain it detects with 80 %
power at the observed seed spread and the seeds run.

Pure functions of the scores, no Ray: ``harness/search/confirm.py`` runs the rounds
:func:`advance` asks for, and the leaderboard recomputes the same verdict from the same rows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from scipy import optimize, special
from scipy import stats as scipy_stats

from harness.results.stats import ALPHA

POWER = 0.80  # the power at which a verdict states the difference it could have detected
FIRST_LOOK = 3  # seeds per configuration in the first round (every candidate gets them)
MAX_LOOKS = 4  # looks of ``--confirm-seeds auto`` at most
DEFAULT_MAX_SEEDS = 10  # seeds per side at the last look of ``auto``

BETTER = "better"  # the best beats the default beyond seed noise
BOUNDED = "bounded"  # the best is not better than the default by the margin or more
OPEN = "open"  # neither, yet (or at the last look: the question stays open)
TOO_FEW = "too few"  # fewer than 2 completed seeds on a side
CATCH_UP = "catch up"  # a new best runs the default's seeds before the look compares them


def schedule(max_seeds: int, first: int = FIRST_LOOK, looks: int = MAX_LOOKS) -> tuple[int, ...]:
    """Seeds per side at each look: ``first`` up to ``max_seeds`` in at most ``looks`` even
    steps (10 seeds: 3, 5, 8, 10)."""
    first = min(first, max_seeds)
    points = np.linspace(first, max_seeds, looks) if max_seeds > first else [first]
    return tuple(sorted({int(round(float(p))) for p in points}))


def _crossing(c: float, looks: tuple[int, ...], grid: int = 301) -> float:
    """P(Z_j > c at some look j) for the z statistics of a sum of independent unit draws
    observed after ``looks`` draws: the density of the paths that stayed below the boundary is
    carried from look to look on a grid (trapezoid rule)."""
    n = np.asarray(looks, dtype=float)
    z = np.linspace(-8.0, c, grid)
    weights = np.full(grid, z[1] - z[0])
    weights[[0, -1]] /= 2
    s = z * math.sqrt(n[0])  # the sum's scale
    density = scipy_stats.norm.pdf(z) / math.sqrt(n[0])  # of the sum, below the boundary
    crossed = float(scipy_stats.norm.sf(c))
    for j in range(1, len(n)):
        step = math.sqrt(n[j] - n[j - 1])
        mass = density * weights * math.sqrt(n[j - 1])  # per grid point, in the sum's measure
        crossed += float(np.sum(mass * scipy_stats.norm.sf((c * math.sqrt(n[j]) - s) / step)))
        s_next = z * math.sqrt(n[j])
        kernel = scipy_stats.norm.pdf((s_next[:, None] - s[None, :]) / step) / step
        density, s = kernel @ mass, s_next
    return crossed


@cache
def pocock_level(looks: tuple[int, ...], alpha: float) -> float:
    """The nominal one-sided level of every look such that a true null is rejected at some look
    with probability ``alpha`` (Pocock's boundary for the information at ``looks``)."""
    if len(looks) == 1:
        return alpha
    c = optimize.brentq(lambda x: _crossing(x, looks) - alpha, 0.5, 8.0, xtol=1e-6)
    return float(scipy_stats.norm.sf(c))


@dataclass(frozen=True)
class Design:
    """How a confirmation decides: its looks, the candidates the best is picked from, the
    margin of the "bounded" claim and the overall error rate."""

    looks: tuple[int, ...]  # seeds per side at each look
    candidates: int  # K: the confirmed best is the best of these
    margin: float  # the smallest gain worth finding, in the objective's unit
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if not self.looks or self.looks[0] < 2 or list(self.looks) != sorted(set(self.looks)):
            raise ValueError(f"looks {self.looks}: increasing seed counts of at least 2")
        if self.candidates < 1 or not self.margin > 0:
            raise ValueError(f"candidates {self.candidates}, margin {self.margin}: need 1, > 0")

    @property
    def level(self) -> float:
        """The one-sided level each look's test uses."""
        return pocock_level(tuple(self.looks), self.alpha / self.candidates)

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]

    def next_look(self, seeds: int) -> int | None:
        """Seeds per side at the look after one at ``seeds`` (None: that was the last)."""
        return next((n for n in self.looks if n > seeds), None)

    def describe(self) -> str:
        looks = "/".join(str(n) for n in self.looks)
        corrected = "Pocock-corrected " if len(self.looks) > 1 else ""
        plural = "s" if len(self.looks) > 1 else ""
        return (
            f"{corrected}one-sided Welch t-test at {len(self.looks)} look{plural} ({looks} seeds "
            f"each), the best of {self.candidates} candidate{'s' if self.candidates > 1 else ''}"
            f": per-look p < {self.level:.2g}, overall alpha {self.alpha}; margin {self.margin:g}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "looks": list(self.looks),
            "candidates": self.candidates,
            "margin": self.margin,
            "alpha": self.alpha,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Design:
        return cls(tuple(doc["looks"]), int(doc["candidates"]), float(doc["margin"]), doc["alpha"])


@dataclass(frozen=True)
class Welch:
    """Welch's two-sample statistics of ``a`` against ``b``, gain in the better direction."""

    n_a: int
    n_b: int
    difference: float  # mean(a) - mean(b), in the metric's unit
    gain: float  # the difference signed so that positive means ``a`` is better
    se: float  # standard error of the difference
    df: float  # Welch-Satterthwaite degrees of freedom

    def t_quantile(self, tail: float) -> float:
        """The t value with ``tail`` above it at these degrees of freedom."""
        return float(special.stdtrit(self.df, 1.0 - tail))

    def p_better(self) -> float:
        """One-sided p of "a is no better than b"; decided by the means when nothing spreads."""
        if self.se == 0:
            return 0.0 if self.gain > 0 else 1.0
        return float(special.stdtr(self.df, -self.gain / self.se))

    def p_differs(self) -> float:
        """Two-sided p of "a and b have the same mean"."""
        if self.se == 0:
            return 0.0 if self.gain != 0 else 1.0
        return float(2 * special.stdtr(self.df, -abs(self.gain) / self.se))


def welch(a: Sequence[float], b: Sequence[float], higher_is_better: bool) -> Welch:
    """Welch's statistics of two samples of 2+ values each."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("welch: each side needs at least 2 values")
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    va = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1) / len(b)
    difference = mean_a - mean_b
    se = math.sqrt(va + vb)
    if va + vb > 0:
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    else:
        df = float(len(a) + len(b) - 2)
    return Welch(
        len(a), len(b), difference, difference if higher_is_better else -difference, se, df
    )


@dataclass(frozen=True)
class Look:
    """The confirmed best against the default at one look."""

    stats: Welch
    level: float  # the per-look one-sided level
    margin: float
    p_value: float  # one-sided: the best is no better
    lower: float  # one-sided confidence bounds of the gain at the per-look level
    upper: float
    detectable: float  # the gain the test detects with POWER at this spread and these seeds
    outcome: str  # BETTER, BOUNDED or OPEN

    @property
    def significant(self) -> bool:
        return self.outcome == BETTER


def look(
    best: Sequence[float], default: Sequence[float], higher_is_better: bool, design: Design
) -> Look:
    """One look: the test, its bounds, what it could detect and what it decides."""
    w = welch(best, default, higher_is_better)
    level = design.level
    if w.se == 0:
        crit = detect = 0.0
    else:
        crit = w.t_quantile(level)
        detect = (crit + w.t_quantile(1 - POWER)) * w.se
    p = w.p_better()
    lower, upper = w.gain - crit * w.se, w.gain + crit * w.se
    outcome = BETTER if p < level else BOUNDED if upper < design.margin else OPEN
    return Look(w, level, design.margin, p, lower, upper, detect, outcome)


Scores = Mapping[str, Sequence[float | None]]
"""Per candidate label, the objective of each seed run in seed order (None: it did not complete)."""


@dataclass(frozen=True)
class Progress:
    """Where a confirmation stands: the seeds to run next, or its end."""

    wanted: dict[str, int]  # candidate -> seeds it should have run after the next round
    best: str | None  # the confirmed best (None before the first round, or with no contender)
    look: Look | None  # the best against the default now (None: not comparable yet)
    outcome: str  # BETTER, BOUNDED, OPEN, TOO_FEW, CATCH_UP, or "": nothing to compare
    seeds: int  # seeds per side at the current look
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.wanted


def completed(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def pick_best(scores: Scores, default: str | None, higher_is_better: bool) -> str | None:
    """The candidate other than the default with the best mean of its completed seeds (ties and
    candidates with none completed: the earlier listed)."""
    sign = 1.0 if higher_is_better else -1.0
    ranked = [
        (-(sign * statistics.fmean(done)) if (done := completed(v)) else math.inf, i, label)
        for i, (label, v) in enumerate(scores.items())
        if label != default
    ]
    return min(ranked)[2] if ranked else None


def advance(
    scores: Scores, default: str | None, higher_is_better: bool, design: Design
) -> Progress:
    """What the procedure does next given the seeds run so far.

    Round 1 gives every candidate the first look's seeds.  Then, at each look: the best is the
    contender with the best confirmed mean; one that has run fewer seeds than the default (it
    overtook the one extended before) first catches up; then the look decides, or the best and the
    default get the next look's seeds.
    """
    first = design.looks[0]
    short = {c: first for c, v in scores.items() if len(v) < first}
    if short or not scores:
        return Progress(short, None, None, "", 0)
    best = pick_best(scores, default, higher_is_better)
    if default is None or best is None:
        return Progress({}, best, None, "", len(next(iter(scores.values()))))
    seeds = len(scores[default])
    if len(scores[best]) < seeds:
        return Progress({best: seeds}, best, None, CATCH_UP, seeds)
    a, b = completed(scores[best]), completed(scores[default])
    now = look(a, b, higher_is_better, design) if len(a) >= 2 and len(b) >= 2 else None
    outcome = now.outcome if now else TOO_FEW
    following = design.next_look(seeds)
    if outcome in (BETTER, BOUNDED) or following is None:
        return Progress({}, best, now, outcome, seeds)
    return Progress({best: following, default: following}, best, now, outcome, seeds)


@dataclass(frozen=True)
class GuardCheck:
    """The winner against a baseline (the paper default, or an enhancer's unprocessed input) on
    one metric that must not get worse."""

    metric: str
    stats: Welch  # gain > 0: the winner is better on it
    p_value: float  # two-sided
    level: float  # alpha over the metrics checked (Bonferroni)

    @property
    def loss(self) -> bool:
        """A significant loss: worse, beyond seed noise at the corrected level."""
        return self.stats.gain < 0 and self.p_value < self.level


def guard_checks(
    best: Mapping[str, Sequence[float]],
    default: Mapping[str, Sequence[float]],
    directions: Mapping[str, bool],
    alpha: float = ALPHA,
) -> list[GuardCheck]:
    """Two-sided Welch tests of the winner against the default on each guard metric with 2+
    completed seeds on both sides, Bonferroni-corrected over those metrics.  A baseline that
    scores the same on every seed (an unprocessed input) makes each a one-sample t-test."""
    usable = [m for m in directions if len(best.get(m, ())) >= 2 and len(default.get(m, ())) >= 2]
    checks = []
    for metric in usable:
        w = welch(best[metric], default[metric], directions[metric])
        checks.append(GuardCheck(metric, w, w.p_differs(), alpha / len(usable)))
    return checks


def simulate(
    rng: np.random.Generator,
    means: Mapping[str, float],
    default: str,
    design: Design,
    sd: float = 1.0,
    fail: float = 0.0,
) -> tuple[Progress, dict[str, list[float | None]]]:
    """One confirmation run to its end by :func:`advance` on simulated seeds: each a draw
    N(mean, sd) of its candidate (higher is better), None with probability ``fail`` (a run that
    did not complete).  Returns its end and the seeds run; for checking the procedure's error
    rates and estimating the seeds a confirmation takes."""
    scores: dict[str, list[float | None]] = {label: [] for label in means}
    while True:
        progress = advance(scores, default, True, design)
        if progress.finished:
            return progress, scores
        for label, wanted in progress.wanted.items():
            for _ in range(wanted - len(scores[label])):
                value = float(rng.normal(means[label], sd))
                scores[label].append(None if rng.random() < fail else value)
