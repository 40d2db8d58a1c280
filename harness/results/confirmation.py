"""Confirmation: is the search's best configuration better than the paper default beyond seed
noise, and does the search's ranking hold?

A search ranks trials that each ran one seed.  Confirmation retrains the top K configurations
and the space's first point (the paper default) with fresh seeds, through the same trial code
(``harness/search/confirm.py`` runs them on Ray), at the search's budget or at another one
(``run.py confirm NAME --batches N``).  With ``--confirm-seeds auto`` the seeds come in rounds
until the verdict is decided (``harness/results/sequential.py``); with a number, that many each.

This module picks the candidates, says which seeds to run next, and reads the runs back into
statistics and a verdict; it imports no Ray, so the leaderboard and the report use it as they are.

``results/<name>/confirmation.parquet`` holds one row per run of every confirmation: ``candidate``
(its label), ``source_trial`` (the search trial it confirms; empty for a default the search never
ran), ``seed``, ``trial_id``, ``status``, ``reason``, ``budget`` and ``batches`` (what it trained
at; a table written before these columns is read as the search's own budget), ``round`` and the
validation scores of the run's end.  Each confirmation keeps its runs in its own folder:
``confirm/`` at the search's budget, ``confirm-<budget>-<batches>/`` at any other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from harness.recipes import recipe_class
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.seeds import CONFIRMATION, derive_seed
from harness.results.sequential import (
    DEFAULT_MAX_SEEDS,
    Design,
    GuardCheck,
    Look,
    Progress,
    advance,
    completed,
    guard_checks,
    schedule,
    welch,
)
from harness.results.space import parse_space
from harness.results.stats import ALPHA, SeedSummary, summarise
from harness.runs.resolve import resolve_config
from harness.scoring.registry import MARGINS, SCORES
from harness.status import Status

DEFAULT_LABEL = "paper default"
AUTO = "auto"  # --confirm-seeds auto: sequential rounds
PLAN_FILE = "plan.yaml"  # in a confirmation's folder: its candidates, seeds, design and setting
FINISHED_FILE = "finished.json"  # written when a confirmation has reached its verdict


class ConfirmationError(ValueError):
    """A confirmation option is invalid; one line naming it."""


@dataclass(frozen=True)
class Candidate:
    """A configuration to confirm: the values the search sampled or fixed for it."""

    label: str  # "rank 1", "rank 2", "paper default"
    sample: dict[str, Any]  # the trial's config without its seed
    source_trial: str | None  # the search trial it came from


@dataclass(frozen=True)
class ConfirmRequest:
    """What ``--confirm K`` or ``run.py confirm`` asks for."""

    top: int = 2
    seeds: int | str = AUTO  # "auto": rounds until decided; a number: that many each, one look
    max_seeds: int = DEFAULT_MAX_SEEDS  # seeds per configuration at the last look of auto
    margin: float | None = None  # the bounded claim's size (None: the objective's, MARGINS)
    budget: str | None = None  # None: the search's budget
    batches: int | None = None  # None: the budget's batches (the search's, at its budget)

    def check(self, flags: dict[str, str]) -> None:
        """One-line errors naming the option (``flags``: field -> its option on this command)."""
        if self.top < 1:
            raise ConfirmationError(f"{flags['top']} {self.top}: must be >= 1")
        if self.seeds != AUTO and (not isinstance(self.seeds, int) or self.seeds < 2):
            raise ConfirmationError(f"{flags['seeds']} {self.seeds}: use auto or a number >= 2")
        if self.max_seeds < 2:
            raise ConfirmationError(f"{flags['max_seeds']} {self.max_seeds}: must be >= 2")
        if self.margin is not None and not (math.isfinite(self.margin) and self.margin > 0):
            raise ConfirmationError(f"{flags['margin']} {self.margin:g}: must be > 0")
        if self.batches is not None and self.batches < 1:
            raise ConfirmationError(f"{flags['batches']} {self.batches}: must be >= 1")

    def design(self, objective: str, candidates: list[Candidate]) -> Design:
        """The looks, the number of contenders the best is picked from, and the margin."""
        looks = schedule(self.max_seeds) if self.seeds == AUTO else (int(self.seeds),)
        contenders = sum(not c.label.endswith(DEFAULT_LABEL) for c in candidates)
        margin = self.margin if self.margin is not None else MARGINS[objective]
        return Design(looks, max(contenders, 1), margin)


def parse_seeds(text: str) -> int | str:
    """``--confirm-seeds`` / ``--seeds``: ``auto`` or a whole number (checked by the request)."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise ConfirmationError(f"seeds {text!r}: use auto or a number >= 2") from None


@dataclass(frozen=True)
class Setting:
    """What a confirmation trains at: a budget preset and the batches drawn."""

    budget: str
    batches: int
    search: bool  # the search's own budget and batches

    @property
    def dirname(self) -> str:
        return "confirm" if self.search else f"confirm-{self.budget}-{self.batches}"

    def describe(self) -> str:
        own = ", the search's" if self.search else ""
        return f"{self.batches} batches ({self.budget} budget{own})"


def search_batches(plan: SearchPlan) -> int:
    """The batches every trial of the search trained to (its budget with the space's fixed
    values)."""
    fixed = parse_space(plan.space, plan.recipe, plan.space_file).fixed
    return resolve_config(plan.recipe, plan.budget, sample=fixed).trainer.batches


def setting_for(plan: SearchPlan, budget: str | None, batches: int | None) -> Setting:
    """The setting ``--budget`` / ``--batches`` ask for (either left out: the search's)."""
    budget = budget or plan.budget
    if budget not in recipe_class(plan.recipe).budgets:
        known = ", ".join(recipe_class(plan.recipe).budgets)
        raise ConfirmationError(f"--budget {budget!r}: recipe {plan.recipe} has {known}")
    own = search_batches(plan)
    if batches is None:
        fixed = parse_space(plan.space, plan.recipe, plan.space_file).fixed
        batches = resolve_config(plan.recipe, budget, sample=fixed).trainer.batches
    return Setting(budget, batches, budget == plan.budget and batches == own)


def confirm_folder(folder: SearchFolder, setting: Setting) -> SearchFolder:
    """The folder of the confirmation at ``setting`` (tune/, trials/, diagnostics/, plan)."""
    return SearchFolder(folder.path / setting.dirname)


def confirmation_seeds(search_seed: int, n: int) -> list[int]:
    """The seeds every candidate is confirmed with: the same for all (a fair comparison), and
    at every budget, none of them a seed a search trial trained with."""
    return [derive_seed(search_seed, CONFIRMATION, r) for r in range(n)]


def pick_candidates(
    ranked: pd.DataFrame, default: dict[str, Any] | None, top: int
) -> list[Candidate]:
    """The best ``top`` completed configurations (distinct), then the default if not among them.

    ``ranked`` is the leaderboard order (completed trials first, best first); ``default`` the
    space's first point with its fixed values, or None for a space without points.
    """
    picked: list[Candidate] = []
    seen: list[dict[str, Any]] = []
    for row in ranked[ranked["status"] == Status.COMPLETED].itertuples():
        sample = _without_seed(json.loads(row.sample))
        if sample in seen:
            continue
        seen.append(sample)
        is_default = default is not None and sample == default
        label = f"rank {row.rank}" + (f" = {DEFAULT_LABEL}" if is_default else "")
        picked.append(Candidate(label, sample, row.trial_id))
        if len(picked) == top:
            break
    if default is not None and default not in seen:
        source = ranked[ranked["sample"].map(lambda s: _without_seed(json.loads(s)) == default)]
        trial = source["trial_id"].iloc[0] if len(source) else None
        picked.append(Candidate(DEFAULT_LABEL, dict(default), trial))
    return picked


def _without_seed(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sample.items() if k != "seed"}


def default_label(labels: list[str]) -> str | None:
    """The paper default's label among ``labels`` ("paper default" or "rank K = paper
    default"), None if the confirmation has no default."""
    return next((label for label in labels if label.endswith(DEFAULT_LABEL)), None)


def guard_metrics(plan: SearchPlan) -> tuple[str, ...]:
    """The recipe's guard metrics, leaving out the objective and its own baseline or gain."""
    base = plan.objective.removesuffix("_gain").removesuffix("_noisy")
    return tuple(g for g in recipe_class(plan.recipe).guards if g not in (plan.objective, base))


def confirmation_spec(
    candidates: list[Candidate], seeds: list[int], design: Design, setting: Setting
) -> dict[str, Any]:
    """What a confirmation is, as recorded in its ``plan.yaml``: resuming must ask for the same."""
    return {
        "seeds": seeds,
        "candidates": [
            {"label": c.label, "sample": c.sample, "source_trial": c.source_trial}
            for c in candidates
        ],
        "design": design.as_dict(),
        "budget": setting.budget,
        "batches": setting.batches,
    }


def recorded(confirm: SearchFolder) -> tuple[Design | None, list[str]]:
    """The design and candidate labels a confirmation recorded in its plan (no design: one
    recorded before designs were, read as a fixed number of seeds)."""
    path = confirm.path / PLAN_FILE
    if not path.is_file():
        return None, []
    doc = yaml.safe_load(path.read_text()) or {}
    design = Design.from_dict(doc["design"]) if "design" in doc else None
    return design, [c["label"] for c in doc.get("candidates", [])]


def read_confirmation(folder: SearchFolder) -> pd.DataFrame | None:
    """``confirmation.parquet``, or None before any confirmation ran."""
    path = folder.confirmation_table
    return pd.read_parquet(path) if path.is_file() else None


def search_confirmation_finished(folder: SearchFolder) -> bool:
    """Whether the confirmation at the search's budget has reached its verdict (a table from
    before rounds existed was only ever written at the end)."""
    if (folder.confirm_dir / FINISHED_FILE).is_file():
        return True
    runs = read_confirmation(folder)
    return runs is not None and len(runs) > 0 and "batches" not in runs.columns


def scores_of(
    runs: pd.DataFrame, objective: str, labels: list[str] | None = None
) -> dict[str, list[float | None]]:
    """Per candidate (``labels`` first, each with no run yet as []; then the others in table
    order), its objective per seed run: None where the run did not complete.  A seed run twice
    (a round restarted from scratch) counts once, completed first."""
    out: dict[str, list[float | None]] = {label: [] for label in labels or []}
    for label, group in runs.groupby("candidate", sort=False):
        per_seed: dict[Any, float | None] = {}
        for row in group.itertuples(index=False):
            value = getattr(row, objective, None) if objective in group else None
            done = row.status == Status.COMPLETED and value is not None and math.isfinite(value)
            if done or row.seed not in per_seed:
                per_seed[row.seed] = float(value) if done else per_seed.get(row.seed)
        out[str(label)] = list(per_seed.values())
    return out


def progress_of(
    runs: pd.DataFrame, plan: SearchPlan, design: Design, labels: list[str]
) -> Progress:
    """Where the confirmation of the candidates ``labels`` stands, given its rows ``runs``:
    the seeds to run next, or its verdict's look."""
    scores = scores_of(runs, plan.objective, labels)
    higher = SCORES[plan.objective].higher_is_better
    return advance(scores, default_label(list(scores)), higher, design)


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
    trials = _search_facts(ranked, objective)
    sources = {
        str(k): _text(v) for k, v in zip(runs["candidate"], runs["source_trial"], strict=True)
    }
    confirmed = []
    for label in labels:
        values = tuple(completed(scores[label]))
        source = sources.get(label)
        rank, score = trials.get(source, (None, None)) if source else (None, None)
        confirmed.append(
            Confirmed(
                label=label,
                source_trial=source,
                runs=len(scores[label]),
                completed=len(values),
                objective=summarise(values) if values else None,
                values=values,
                search_rank=rank,
                search_score=score,
            )
        )
    sign = 1.0 if higher else -1.0

    def place(i: int) -> tuple[float, int]:
        summary = confirmed[i].objective
        return (-sign * summary.mean if summary else math.inf, i)

    order = sorted(range(len(confirmed)), key=place)
    ordered = [_with_rank(confirmed[i], r + 1) for r, i in enumerate(order)]
    by_label = {c.label: c for c in ordered}
    best = by_label.get(progress.best) if progress.best else None
    base = by_label.get(default) if default else None
    guards = _guards(runs, plan, best, base) if best and base else []
    return ConfirmationSummary(
        objective, setting, own, ordered, design, progress, best, base, guards
    )


def _with_rank(c: Confirmed, rank: int) -> Confirmed:
    return Confirmed(**{**c.__dict__, "rank": rank})


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


def _guards(
    runs: pd.DataFrame, plan: SearchPlan, best: Confirmed, default: Confirmed
) -> list[GuardCheck]:
    """The winner against the default on the recipe's guard metrics."""
    metrics = [m for m in guard_metrics(plan) if m in runs.columns]
    done = runs[runs["status"] == Status.COMPLETED]

    def values(label: str) -> dict[str, list[float]]:
        rows = done[done["candidate"] == label].drop_duplicates("seed")
        return {m: [float(v) for v in rows[m] if pd.notna(v) and math.isfinite(v)] for m in metrics}

    directions = {m: SCORES[m].higher_is_better for m in metrics}
    return guard_checks(values(best.label), values(default.label), directions, ALPHA)


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
