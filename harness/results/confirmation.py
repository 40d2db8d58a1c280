"""Confirmation: is the search's winner better than the paper default by more than seed noise?

A search ranks trials that each ran one seed.  Confirmation retrains the top K configurations
and the space's first point (the paper default) with N fresh seeds each, at the search's budget
and through the same trial code (``harness/search/confirm.py`` runs them on Ray).  This module
picks the candidates and reads the runs back into statistics; it imports no Ray, so the
leaderboard and the report use it as they are.

``results/<name>/confirmation.parquet`` holds one row per run: ``candidate`` (its label),
``source_trial`` (the search trial it confirms; empty for a default the search never ran),
``seed``, ``trial_id``, ``status``, ``reason`` and the validation scores of the run's end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.seeds import CONFIRMATION, derive_seed
from harness.results.stats import Comparison, SeedSummary, compare, summarise
from harness.scoring.registry import SCORES
from harness.status import Status

DEFAULT_LABEL = "paper default"


@dataclass(frozen=True)
class Candidate:
    """A configuration to confirm: the values the search sampled or fixed for it."""

    label: str  # "rank 1", "rank 2", "paper default"
    sample: dict[str, Any]  # the trial's config without its seed
    source_trial: str | None  # the search trial it came from


def confirmation_seeds(search_seed: int, n: int) -> list[int]:
    """The seeds every candidate is confirmed with: the same for all (a fair comparison),
    none of them a seed a search trial trained with."""
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


@dataclass(frozen=True)
class Confirmed:
    """One candidate's runs: its objective over the seeds that completed."""

    label: str
    source_trial: str | None
    runs: int
    completed: int
    objective: SeedSummary | None  # None when no seed completed
    values: tuple[float, ...]


@dataclass(frozen=True)
class ConfirmationSummary:
    objective: str
    seeds: int
    candidates: list[Confirmed]
    comparison: Comparison | None  # the search's winner against the default
    verdict: str

    def lines(self) -> list[str]:
        """The leaderboard's confirmation section."""
        out = [
            f"confirmation: {self.objective} over {self.seeds} fresh seeds per configuration "
            "(mean ± std [95% t-interval])"
        ]
        width = max(len(c.label) for c in self.candidates)
        for c in self.candidates:
            shown = c.objective.format() if c.objective else "-"
            source = c.source_trial or "-"
            out.append(
                f"  {c.label:<{width}}  {source:<12}  {shown}  ({c.completed}/{c.runs} completed)"
            )
        out.append(self.verdict)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "seeds": self.seeds,
            "candidates": [
                {
                    "label": c.label,
                    "source_trial": c.source_trial,
                    "runs": c.runs,
                    "completed": c.completed,
                    "values": list(c.values),
                    **(
                        {
                            "mean": c.objective.mean,
                            "std": c.objective.std,
                            "ci95": [c.objective.low, c.objective.high],
                        }
                        if c.objective
                        else {}
                    ),
                }
                for c in self.candidates
            ],
            "p_value": self.comparison.p_value if self.comparison else None,
            "verdict": self.verdict,
        }


def read_confirmation(folder: SearchFolder) -> pd.DataFrame | None:
    """``confirmation.parquet``, or None before any confirmation ran."""
    path = folder.confirmation_table
    return pd.read_parquet(path) if path.is_file() else None


def summarise_confirmation(runs: pd.DataFrame, plan: SearchPlan) -> ConfirmationSummary:
    """Per-candidate statistics of the objective, and the verdict: winner against default."""
    objective = plan.objective
    confirmed = []
    for label, group in runs.groupby("candidate", sort=False):
        done = group[group["status"] == Status.COMPLETED]
        values = tuple(float(v) for v in done[objective].dropna()) if objective in done else ()
        confirmed.append(
            Confirmed(
                label=str(label),
                source_trial=_text(group["source_trial"].iloc[0]),
                runs=len(group),
                completed=len(values),
                objective=summarise(values) if values else None,
                values=values,
            )
        )
    seeds = int(runs["seed"].nunique())
    winner = next((c for c in confirmed if c.label.startswith("rank 1")), None)
    default = next((c for c in confirmed if c.label.endswith(DEFAULT_LABEL)), None)
    comparison, verdict = None, "verdict: no confirmed winner and default to compare"
    if winner is not None and winner is default:
        verdict = "verdict: the search's winner is the paper default itself"
    elif winner and default and len(winner.values) >= 2 and len(default.values) >= 2:
        higher = SCORES[objective].higher_is_better
        comparison = compare(winner.values, default.values, higher_is_better=higher)
        verdict = "verdict: " + comparison.verdict("the winner", "the paper default", objective)
    elif winner and default:
        verdict = "verdict: too few completed seeds (2 each needed) to compare winner and default"
    return ConfirmationSummary(objective, seeds, confirmed, comparison, verdict)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
