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
from dataclasses import dataclass
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
    Progress,
    advance,
    schedule,
)
from harness.results.space import parse_space
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
