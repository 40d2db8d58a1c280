"""A confirmation read back: each candidate's statistics over its seeds, ranked by confirmed
mean, the verdict's comparison, the guard metrics, and which of the search's orderings the
confirmation reversed (harness/results/confirmation.py picks and records the runs;
harness/results/verdict.py puts this in words)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.results.confirmation import (
    Setting,
    confirm_folder,
    default_label,
    guard_metrics,
    read_confirmation,
    recorded,
    scores_of,
    search_batches,
)
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.sequential import (
    Design,
    GuardCheck,
    Look,
    Progress,
    advance,
    completed,
    guard_checks,
    welch,
)
from harness.results.stats import SeedSummary, summarise
from harness.scoring.registry import MARGINS, SCORES
from harness.status import Status


@dataclass(frozen=True)
class Confirmed:
    """One candidate's runs: its objective over the seeds that completed."""

    label: str
    source_trial: str | None
    runs: int
    completed: int
    objective: SeedSummary | None  # None when no seed completed
    values: tuple[float, ...]
    search_rank: int | None = None  # its trial's rank in the search's leaderboard
    search_score: float | None = None  # the objective its trial reached in the search
    rank: int = 0  # by confirmed mean, 1 = best (candidates with no completed seed last)


@dataclass(frozen=True)
class ConfirmationSummary:
    """One confirmation (one setting): per-candidate statistics, best first, and the verdict."""

    objective: str
    setting: Setting
    search_batches: int
    candidates: list[Confirmed]  # best confirmed mean first
    design: Design
    progress: Progress
    best: Confirmed | None  # the winner: the confirmed best other than the default
    default: Confirmed | None
    guards: list[GuardCheck] = field(default_factory=list)
    # an enhancer's winner against its unprocessed input (doing nothing)
    against_input: list[GuardCheck] = field(default_factory=list)

    @property
    def comparison(self) -> Look | None:
        return self.progress.look

    @property
    def finished(self) -> bool:
        return self.progress.finished

    @property
    def seeds(self) -> int:
        """Seeds run by the configurations that ran the most."""
        return max((c.runs for c in self.candidates), default=0)


def summarise_confirmation(
    runs: pd.DataFrame,
    plan: SearchPlan,
    ranked: pd.DataFrame | None = None,
    setting: Setting | None = None,
    design: Design | None = None,
    labels: list[str] | None = None,
) -> ConfirmationSummary:
    """Statistics and verdict of one confirmation's rows (``runs``, one setting).

    ``ranked`` (the leaderboard order) gives each candidate its search rank and score;
    ``design`` and ``labels`` are the confirmation's recorded ones (None: a fixed number of
    seeds, read from the rows, with the objective's margin).
    """
    own = search_batches(plan)
    setting = setting or Setting(plan.budget, own, True)
    objective = plan.objective
    higher = SCORES[objective].higher_is_better
    scores = scores_of(runs, objective, labels)
    labels = list(scores)
    default = default_label(labels)
    if design is None:
        looks = (max(2, max(len(v) for v in scores.values())),)
        design = Design(looks, max(1, len(labels) - (default is not None)), MARGINS[objective])
    progress = advance(scores, default, higher, design)
    confirmed = _confirmed(runs, scores, _search_facts(ranked, objective))
    ordered = _by_mean(confirmed, higher)
    by_label = {c.label: c for c in ordered}
    best = by_label.get(progress.best) if progress.best else None
    base = by_label.get(default) if default else None
    guards = _guards(runs, plan, best, base) if best and base else []
    against_input = _against_input(runs, best) if best else []
    return ConfirmationSummary(
        objective, setting, own, ordered, design, progress, best, base, guards, against_input
    )


def _confirmed(
    runs: pd.DataFrame,
    scores: dict[str, list[float]],
    trials: dict[str, tuple[int, float | None]],
) -> list[Confirmed]:
    """Each candidate's seeds, with its trial's search rank and score where it has a trial."""
    sources = {
        str(k): _text(v) for k, v in zip(runs["candidate"], runs["source_trial"], strict=True)
    }
    confirmed = []
    for label, seeds in scores.items():
        values = tuple(completed(seeds))
        source = sources.get(label)
        rank, score = trials.get(source, (None, None)) if source else (None, None)
        confirmed.append(
            Confirmed(
                label=label,
                source_trial=source,
                runs=len(seeds),
                completed=len(values),
                objective=summarise(values) if values else None,
                values=values,
                search_rank=rank,
                search_score=score,
            )
        )
    return confirmed


def _by_mean(confirmed: list[Confirmed], higher: bool) -> list[Confirmed]:
    """``confirmed`` best confirmed mean first, ranked 1.. (those with no completed seed last)."""
    sign = 1.0 if higher else -1.0

    def place(i: int) -> tuple[float, int]:
        summary = confirmed[i].objective
        return (-sign * summary.mean if summary else math.inf, i)

    order = sorted(range(len(confirmed)), key=place)
    return [Confirmed(**{**confirmed[i].__dict__, "rank": r + 1}) for r, i in enumerate(order)]


def _search_facts(
    ranked: pd.DataFrame | None, objective: str
) -> dict[str, tuple[int, float | None]]:
    """Trial id -> (its leaderboard rank, its objective in the search)."""
    if ranked is None or not len(ranked):
        return {}
    facts = {}
    for row in ranked.itertuples(index=False):
        value = getattr(row, objective, None) if objective in ranked else None
        score = float(value) if value is not None and math.isfinite(value) else None
        facts[str(row.trial_id)] = (int(row.rank), score)
    return facts


def _values(runs: pd.DataFrame, label: str, columns: list[str]) -> dict[str, list[float]]:
    """``label``'s completed seeds (one row each): the finite values of each column."""
    done = runs[(runs["status"] == Status.COMPLETED) & (runs["candidate"] == label)]
    rows = done.drop_duplicates("seed")
    return {c: [float(v) for v in rows[c] if pd.notna(v) and math.isfinite(v)] for c in columns}


def _guards(
    runs: pd.DataFrame, plan: SearchPlan, best: Confirmed, default: Confirmed
) -> list[GuardCheck]:
    """The winner against the default on the recipe's guard metrics."""
    metrics = [m for m in guard_metrics(plan) if m in runs.columns]
    directions = {m: SCORES[m].higher_is_better for m in metrics}
    return guard_checks(
        _values(runs, best.label, metrics), _values(runs, default.label, metrics), directions
    )


def _against_input(runs: pd.DataFrame, best: Confirmed) -> list[GuardCheck]:
    """An enhancer's winner against its unprocessed input (doing nothing) on every score the
    rows also hold for the input (``<m>_noisy``): the input scores the same for every seed, so
    each test is a one-sample t-test of the winner's seeds, Bonferroni over those scores."""
    metrics = [m for m in SCORES if m in runs.columns and f"{m}_noisy" in runs.columns]
    if not metrics:
        return []
    values = _values(runs, best.label, metrics + [f"{m}_noisy" for m in metrics])
    inputs = {m: values[f"{m}_noisy"] for m in metrics}
    directions = {m: SCORES[m].higher_is_better for m in metrics}
    return guard_checks(values, inputs, directions)


def ranking_swaps(summary: ConfirmationSummary) -> tuple[list[tuple[Confirmed, Confirmed]], int]:
    """Pairs (higher in the search, above it now) whose order the confirmation reversed, and
    the number of pairs compared (those with a search rank and 2+ completed seeds each)."""
    ranked = [c for c in summary.candidates if c.search_rank is not None and c.completed >= 2]
    swaps = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            above, below = (a, b) if a.search_rank < b.search_rank else (b, a)
            if above.rank > below.rank:
                swaps.append((above, below))
    return swaps, len(ranked) * (len(ranked) - 1) // 2


def swap_p_value(summary: ConfirmationSummary, above: Confirmed, below: Confirmed) -> float:
    """One-sided Welch p that the one now ranked higher (``below`` in the search) is better."""
    higher = SCORES[summary.objective].higher_is_better
    return welch(below.values, above.values, higher).p_better()


def summarise_confirmations(
    folder: SearchFolder, plan: SearchPlan, ranked: pd.DataFrame | None = None
) -> list[ConfirmationSummary]:
    """Every confirmation of the search in ``folder``: the one at the search's budget first,
    then the others by batches."""
    runs = read_confirmation(folder)
    if runs is None or not len(runs):
        return []
    own = search_batches(plan)
    runs = runs.copy()
    if "budget" not in runs:
        runs["budget"] = plan.budget
    if "batches" not in runs:
        runs["batches"] = own
    summaries = []
    for (budget, batches), group in runs.groupby(["budget", "batches"], sort=False):
        setting = Setting(str(budget), int(batches), budget == plan.budget and batches == own)
        design, labels = recorded(confirm_folder(folder, setting))
        group = group.reset_index(drop=True)
        summaries.append(summarise_confirmation(group, plan, ranked, setting, design, labels))
    return sorted(summaries, key=lambda s: (not s.setting.search, s.setting.batches))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
