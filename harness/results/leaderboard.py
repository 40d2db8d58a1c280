"""Rank a search's trials from ``trials.parquet`` and render them as a table, CSV, JSON or Markdown.

Completed trials come first, best objective first; then trials ASHA cut, then trials that
stopped themselves (diverged, out of memory), then errored ones, so a trial that did not finish
never outranks one that did.  No Ray or Optuna here: importances come from ``importances.json``,
written by the search, and the Pareto front is computed from the table.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.diagnostics.detectors import DETECTORS
from harness.files import finite, results_root
from harness.results.confirmation_summary import ConfirmationSummary, summarise_confirmations
from harness.results.folder import SearchFolder, find_search, list_searches
from harness.results.plan import SearchPlan
from harness.results.trials import read_trials
from harness.results.verdict import summary_dict, summary_lines
from harness.scoring.registry import COSTS, METRICS, SCORES
from harness.status import STATUSES, TERMINAL, Status

FORMATS = ("table", "csv", "json", "markdown")
WIDTH = 120  # characters of the default table (``--wide`` shows every column)
OTHER_SCORES = 3  # scores besides the objective that the default table keeps
STATUS_ORDER = {s: i for i, s in enumerate(STATUSES)}  # finished trials first


class LeaderboardError(ValueError):
    """A leaderboard option is invalid; one line naming it."""


def sort_spec(plan: SearchPlan, sort: str | None, columns: list[str]) -> tuple[str, bool]:
    """(column, ascending) from ``--sort METRIC[:asc|:desc]``; default: the objective."""
    if sort is None:
        return plan.objective, plan.mode == "min"
    column, _, direction = sort.partition(":")
    aliases = {"trial": "trial_id", **{c.removeprefix("config/"): c for c in columns}}
    column = column if column in columns else aliases.get(column, column)
    if column not in columns:
        raise LeaderboardError(f"--sort {column!r}: no such column; columns: {', '.join(columns)}")
    if direction not in ("", "asc", "desc"):
        raise LeaderboardError(f"--sort {sort!r}: direction must be asc or desc")
    metric = METRICS.get(column.removeprefix("best_"))
    ascending = (
        direction == "asc" if direction else (metric is not None and not metric.higher_is_better)
    )
    return column, ascending


def rank(frame: pd.DataFrame, plan: SearchPlan, sort: str | None = None) -> pd.DataFrame:
    """Trials in leaderboard order with a 1-based ``rank`` column."""
    frame = frame.copy()
    column, ascending = sort_spec(plan, sort, list(frame.columns))
    if column not in frame:
        frame[column] = math.nan
    frame["_group"] = frame["status"].map(STATUS_ORDER).fillna(len(STATUS_ORDER))
    frame = frame.sort_values(
        ["_group", column, "trial_id"], ascending=[True, ascending, True], na_position="last"
    ).drop(columns="_group")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def pareto_front(frame: pd.DataFrame, plan: SearchPlan) -> list[str]:
    """Trial ids of completed trials that no other completed trial beats on objective and cost."""
    metrics = [(plan.objective, plan.mode), (plan.cost, plan.cost_mode)]
    if any(m not in frame for m, _ in metrics):
        return []
    done = frame[(frame["status"] == Status.COMPLETED)].dropna(subset=[m for m, _ in metrics])
    signs = [1.0 if mode == "max" else -1.0 for _, mode in metrics]
    points = [
        (row["trial_id"], [s * float(row[m]) for s, (m, _) in zip(signs, metrics, strict=True)])
        for _, row in done.iterrows()
    ]

    def dominated(p: list[float]) -> bool:
        return any(all(a >= b for a, b in zip(q, p, strict=True)) and q != p for _, q in points)

    return sorted(tid for tid, p in points if not dominated(p))


def display_columns(frame: pd.DataFrame, plan: SearchPlan) -> list[str]:
    """rank, trial, status, objective, other scores, cost, swept parameters, steps, the copies of
    a population-based trial, time, health flags, the worst health score, each detector's peak
    and last score, reason."""
    scores = [m for m in SCORES if m in frame and m != plan.objective]
    costs = [c for c in COSTS if c in frame]
    params = [f"config/{p}" for p in plan.swept if f"config/{p}" in frame]
    graded = [f"{d}_{part}" for d in DETECTORS for part in ("peak", "last")]
    population = ("exploits", "rescues")  # population-based training: copies a trial made
    tail = ("step", *population, "time_s", "flags", "health", *graded, "reason")
    tail = [c for c in tail if c in frame]
    lead = ["rank", "trial_id", "status"] + ([plan.objective] if plan.objective in frame else [])
    extra = ["pareto"] if "pareto" in frame else []
    return lead + extra + scores + costs + params + tail


def raised_flags(frame: pd.DataFrame) -> pd.Series:
    """The health flags each trial raised (``flag_collapse`` -> "collapse"), comma-separated."""
    flags = [c for c in frame.columns if c.startswith("flag_")]

    def raised(row: pd.Series) -> str:
        return ",".join(f.removeprefix("flag_") for f in flags if _true(row[f]))

    return frame.apply(raised, axis=1)


def worst_health(frame: pd.DataFrame) -> pd.Series:
    """Per trial, the detector with the highest peak score and that score (``overpower=0.97``),
    so a trial that came close to a flag shows it; "-" for a trial with no score."""
    peaks = [f"{d}_peak" for d in DETECTORS if f"{d}_peak" in frame]

    def worst(row: pd.Series) -> str:
        scored = [(float(row[c]), c.removesuffix("_peak")) for c in peaks if finite(row[c])]
        if not scored:
            return "-"
        score, name = max(scored)
        return f"{name}={score:.2f}"

    return frame.apply(worst, axis=1)


def _true(value: Any) -> bool:
    return isinstance(value, bool | np.bool_) and bool(value)


def load(folder: SearchFolder) -> tuple[SearchPlan, pd.DataFrame]:
    return SearchPlan.load(folder), read_trials(folder)


def importances(folder: SearchFolder) -> dict[str, float]:
    if not folder.importances.is_file():
        return {}
    return json.loads(folder.importances.read_text()).get("importances", {})


@dataclass
class Ranking:
    """A search's trials in leaderboard order, with their flags (and Pareto membership)."""

    plan: SearchPlan
    trials: pd.DataFrame  # ranked, with "flags" and, for multi-objective searches, "pareto"
    front: list[str]  # Pareto-optimal trial ids ([] for single-objective searches)
    importances: dict[str, float]  # swept parameter -> importance, most important first
    recorded: int  # trials recorded, lost ones left out
    confirmations: list[ConfirmationSummary]  # the search's budget first, then other budgets

    @property
    def confirmation(self) -> ConfirmationSummary | None:
        """The confirmation at the search's own budget, once it has run."""
        return next((c for c in self.confirmations if c.setting.search), None)


def ranking(folder: SearchFolder, sort: str | None = None, healthy_only: bool = False) -> Ranking:
    """The ranked trials of the search in ``folder``; ``healthy_only`` drops every trial that
    raised a health flag (collapse or discriminator overpowering)."""
    plan, frame = load(folder)
    ranked = rank(frame, plan, sort)
    if any(c.startswith("flag_") for c in ranked.columns):
        ranked["flags"] = raised_flags(ranked)
        if healthy_only:
            ranked = ranked[ranked["flags"] == ""].reset_index(drop=True)
    if any(c.endswith("_peak") for c in ranked.columns):
        ranked["health"] = worst_health(ranked)
    front = pareto_front(ranked, plan) if plan.multi_objective else []
    if plan.multi_objective:
        ranked["pareto"] = ranked["trial_id"].isin(front)
    recorded = int((frame["status"] != "lost").sum())
    confirmations = summarise_confirmations(folder, plan, rank(frame, plan))
    return Ranking(plan, ranked, front, importances(folder), recorded, confirmations)


def render(
    folder: SearchFolder,
    fmt: str = "table",
    top: int | None = None,
    sort: str | None = None,
    healthy_only: bool = False,
    wide: bool = False,
) -> str:
    """The leaderboard of the search in ``folder`` as text in ``fmt``.

    The table fits :data:`WIDTH` characters unless ``wide`` (every column, as the machine
    formats have); see :func:`narrow_columns` for what the narrow table keeps.
    """
    if fmt not in FORMATS:
        raise LeaderboardError(f"--format {fmt!r}: not one of {', '.join(FORMATS)}")
    found = ranking(folder, sort, healthy_only)
    plan, ranked = found.plan, found.trials
    if top is not None:
        ranked = ranked.head(top)
    shown = ranked[display_columns(ranked, plan)]
    if fmt == "csv":
        return shown.rename(columns=_short).to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return _json(found, shown)
    head = (
        f"search {plan.name}: {plan.recipe} ({plan.budget}), objective {plan.objective} "
        f"({plan.mode}), {found.recorded}/{plan.trials} trials"
        + (", finished" if folder.finished() else ", unfinished")
    )
    notes = []
    if fmt == "markdown":
        body = _markdown(shown)
    elif wide:
        body = _table(shown)
    else:
        body = _table(ranked[narrow_columns(ranked, plan, found.importances)])
        notes += _reasons(ranked)
    notes += _notes(found)
    if fmt == "table" and not wide:
        head, *notes = (textwrap.fill(n, WIDTH, subsequent_indent="  ") for n in [head, *notes])
    return "\n".join([head, "", body, *([""] + notes if notes else [])])


def _json(found: Ranking, shown: pd.DataFrame) -> str:
    plan, confirmation = found.plan, found.confirmation
    doc = {
        "search": plan.name,
        "recipe": plan.recipe,
        "objective": plan.objective,
        "mode": plan.mode,
        "trials": json.loads(shown.rename(columns=_short).to_json(orient="records")),
        "importances": found.importances,
        "pareto": found.front,
        "confirmation": summary_dict(confirmation) if confirmation else None,
        "budget_checks": [summary_dict(c) for c in found.confirmations if not c.setting.search],
    }
    return json.dumps(doc, indent=2)


def _notes(found: Ranking) -> list[str]:
    """The lines under the table: importances, the Pareto front, the confirmation."""
    plan, notes = found.plan, []
    if found.importances:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in found.importances.items())
        notes.append(f"parameter importance for {plan.objective} (PED-ANOVA): {parts}")
    if plan.multi_objective:
        notes.append(
            f"Pareto front ({plan.objective} {plan.mode}, {plan.cost} {plan.cost_mode}): "
            + (", ".join(found.front) or "none yet")
        )
    for confirmation in found.confirmations:
        notes += summary_lines(confirmation)
    return notes


def leaderboard(
    results: str | Path | None,
    name: str | None,
    *,
    listing: bool = False,
    fmt: str = "table",
    top: int | None = None,
    sort: str | None = None,
    healthy_only: bool = False,
    wide: bool = False,
) -> str:
    """``run.py leaderboard``: the searches under the results root ``results`` when ``listing``,
    else the leaderboard of the search ``name`` (None: the most recent)."""
    root = results_root(results)
    if listing:
        return list_table(root)
    if top is not None and top < 1:
        raise LeaderboardError(f"--top {top}: must be >= 1")
    return render(find_search(root, name), fmt, top, sort, healthy_only, wide)


def narrow_columns(
    frame: pd.DataFrame, plan: SearchPlan, weights: dict[str, float], width: int = WIDTH
) -> list[str]:
    """The columns of ``frame`` that fit ``width`` characters, in display order.

    Kept in this order while they fit: rank, trial, status, the objective (and the Pareto mark
    and cost objective of a multi-objective search), health flags, the cost a trial consumed
    (batches drawn; the copies a population-based trial made; trainer seconds), up to :data:`OTHER_SCORES` other scores (an enhancer's
    noisy baseline and gain of its objective first), the worst health score
    (:func:`worst_health`), then the swept parameters, most important first.  Reasons go below
    the table (:func:`_reasons`).
    """
    # an enhancer's objective comes with its noisy-input baseline and the gain over it
    base = plan.objective.removesuffix("_gain").removesuffix("_noisy")
    baseline = [m for m in (base, f"{base}_noisy", f"{base}_gain") if m != plan.objective]
    scored = [m for m in SCORES if m in frame and m != plan.objective and frame[m].notna().any()]
    scores = [*(m for m in baseline if m in scored), *(m for m in scored if m not in baseline)]
    swept = [f"config/{p}" for p in plan.swept if f"config/{p}" in frame]
    swept.sort(key=lambda c: -weights.get(c.removeprefix("config/"), -1.0))
    cost = [plan.cost] if plan.multi_objective else []
    wanted = ["rank", "trial_id", "status", plan.objective, "pareto", *cost, "flags", "batches"]
    wanted += ["exploits"]  # population-based training: the copies a trial made
    # batches: the cost, so no step; the most important swept parameter before the health score
    wanted += ["train_s", *scores[:OTHER_SCORES], *swept[:1], "health", *swept[1:]]
    candidates = list(dict.fromkeys(c for c in wanted if c in frame))
    header, rows = _cells(frame[candidates])
    kept: list[str] = []
    used = -2  # no separator before the first column
    for i, column in enumerate(candidates):
        cell_width = max(len(text) for text in [header[i], *(row[i] for row in rows)])
        if used + 2 + cell_width <= width:
            kept.append(column)
            used += 2 + cell_width
    order = ["rank", "trial_id", "status", plan.objective, "pareto", *scores, *cost]
    tail = ["batches", "exploits", "train_s", "flags", "health", *swept]
    return [c for c in dict.fromkeys([*order, *tail]) if c in kept]


def _reasons(frame: pd.DataFrame) -> list[str]:
    """One line per trial that did not complete: why (the narrow table has no reason column)."""
    if "reason" not in frame:
        return []
    ended = frame[(frame["status"] != "completed") & (frame["reason"].fillna("") != "")]
    lines = [f"{row.trial_id} {row.status}: {row.reason}" for row in ended.itertuples()]
    return [line if len(line) <= WIDTH else line[: WIDTH - 3] + "..." for line in lines]


def _short(column: str) -> str:
    return {"trial_id": "trial", "time_s": "time_s"}.get(column, column.removeprefix("config/"))


def cell_text(value: Any, yes: str = "*") -> str:
    """How a table cell shows a value: 4 significant digits, '-' for missing, ``yes`` for a true
    flag and nothing for a false one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return yes if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [_short(c) for c in frame.columns]
    rows = [[cell_text(v) for v in row] for row in frame.astype(object).itertuples(index=False)]
    return header, rows


def _table(frame: pd.DataFrame) -> str:
    header, rows = _cells(frame)
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    out = io.StringIO()
    for line in [header, *rows]:
        cells = [
            c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(line, widths, strict=True)
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    return out.getvalue().rstrip("\n")


def _markdown(frame: pd.DataFrame) -> str:
    header, rows = _cells(frame)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def list_table(root: Any) -> str:
    """One line per search under ``root``, most recent first."""
    lines = [("search", "recipe", "budget", "objective", "trials", "state", "best", "created")]
    for folder in list_searches(root):
        plan, frame = load(folder)
        done = int(frame["status"].isin(TERMINAL).sum() - (frame["status"] == Status.LOST).sum())
        best = "-"
        if len(frame):
            top = rank(frame, plan).iloc[0]
            if top["status"] == Status.COMPLETED and plan.objective in top:
                best = cell_text(top[plan.objective])
        state = "finished" if folder.finished() else "unfinished"
        lines.append(
            (
                plan.name,
                plan.recipe,
                plan.budget,
                plan.objective,
                f"{done}/{plan.trials}",
                state,
                best,
                plan.created,
            )
        )
    if len(lines) == 1:
        return f"no searches in {root}"
    widths = [max(len(str(x)) for x in col) for col in zip(*lines, strict=True)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
