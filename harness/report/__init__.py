"""``results/<name>/report.html``: one self-contained page to see a search.

Sections: the leaderboard (sortable); the search's course (every trial's objective over the
training time it consumed, and Optuna's own plots, drawn by harness/search/figures.py because
only the search code imports Optuna: :func:`write_search_report` passes them in); each chosen
trial's diagnostics from its Parquet rows; listening (reference and generated clips with
spectrograms).  Chosen trials: the best ``top`` and the space's first ``points_to_evaluate``
entry (the paper default), or the ``trial_ids`` asked for.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from harness.diagnostics.detectors import HealthConfig
from harness.diagnostics.telemetry import read_diagnostics
from harness.files import atomic_write
from harness.report import page
from harness.report.course import course_figure, last_rows
from harness.report.listening import Listened, listening_html
from harness.report.schedule_plot import copies_text, schedule_figure
from harness.report.table import leaderboard_html
from harness.report.trial_plots import trial_figure
from harness.results.folder import SearchFolder
from harness.results.leaderboard import Ranking, ranking
from harness.results.lineage import read_copies, schedule_of
from harness.results.plan import SearchPlan
from harness.results.request import POPULATION_SCHEDULERS
from harness.search.chatter import chatter_to_log
from harness.search.figures import study_figures

NO_STUDY = "no Optuna study in this search folder"
NO_STUDY_PBT = (
    "population-based training keeps no Optuna study: its trials follow schedules that no "
    "sampler proposed (each trial's schedule is drawn in its panel below)"
)
DEFAULT_TOP = 3
REPORT_NAME = "report.html"
PAPER_DEFAULT = "paper default"


class ReportError(ValueError):
    """A report option is invalid; one line naming it."""


def default_point_trial(ranked: Ranking) -> str | None:
    """The trial that ran the space's first ``points_to_evaluate`` entry (Optuna proposes it
    first), found by its ``sample`` in trials.parquet; None if the space has no points."""
    points = ranked.plan.space.get("points_to_evaluate")
    if not points or "sample" not in ranked.trials:
        return None
    point = points[0]
    for _, row in ranked.trials.sort_values("trial_id").iterrows():
        if not isinstance(row["sample"], str):
            continue
        sample = json.loads(row["sample"])
        if all(_same(sample.get(key), value) for key, value in point.items()):
            return str(row["trial_id"])
    return None


def _same(sampled: Any, given: Any) -> bool:
    """A sampled value equals the point's, numbers up to rounding; YAML 1.1 reads ``1.0e6`` as
    text, so the point's text counts as a number where the sample is one (as the space does)."""
    if isinstance(sampled, int | float) and not isinstance(sampled, bool):
        try:
            return math.isclose(sampled, float(given), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return sampled == given


def chosen_trials(
    ranked: Ranking, trial_ids: list[str] | None, top: int, default: str | None
) -> list[str]:
    """The asked-for trials, else the best ``top`` and the ``default`` point's trial."""
    known = [str(t) for t in ranked.trials["trial_id"]]
    if trial_ids:
        unknown = [t for t in trial_ids if t not in known]
        if unknown:
            raise ReportError(
                f"--trials {','.join(unknown)}: no such trial in search {ranked.plan.name!r}; "
                f"trials: {', '.join(known) or 'none'}"
            )
        return list(dict.fromkeys(trial_ids))
    if top < 1:
        raise ReportError(f"--top {top}: must be >= 1")
    chosen = known[:top]
    if default is not None and default not in chosen:
        chosen.append(default)
    return chosen


def trial_labels(ranked: Ranking, default: str | None) -> dict[str, str]:
    """Trial id -> "#rank id", with "(paper default)" on the ``default`` point's trial."""
    labels = {}
    for _, row in ranked.trials.iterrows():
        tid = str(row["trial_id"])
        labels[tid] = f"#{row['rank']} {tid}" + (f" ({PAPER_DEFAULT})" if tid == default else "")
    return labels


def intro_html(ranked: Ranking, folder: SearchFolder) -> str:
    plan, trials = ranked.plan, ranked.trials
    counts = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())
    state = "finished" if folder.finished() else "unfinished"
    facts = (
        f"{plan.recipe} ({plan.budget} budget), objective {plan.objective} ({plan.mode}), "
        f"{ranked.recorded}/{plan.trials} trials ({counts}), {state}; launched {plan.created}; "
        f"report written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    if "exploits" in trials:
        copies, rescues = int(trials["exploits"].sum()), int(trials["rescues"].sum())
        facts += f"; population-based training: {copies} copies, {rescues} of them rescues"
    return f"<p>{page.esc(facts)}</p>"


def course_html(
    ranked: Ranking,
    evals: pd.DataFrame,
    labels: dict[str, str],
    study_figures: dict[str, go.Figure | str],
    study_trials: dict[int, str],
) -> str:
    parts = [page.figure(course_figure(ranked, evals, labels), height=520)]
    if study_figures:
        parts.append("<h3>Optuna's plots of the study</h3>")
        if study_trials:
            numbers = ", ".join(
                f"{n} = {labels.get(t, t)}" for n, t in sorted(study_trials.items())
            )
            parts.append(page.note(f"Optuna trial numbers: {numbers}"))
    for title, fig in study_figures.items():
        parts.append(f"<h4>{page.esc(title)}</h4>")
        parts.append(page.figure(fig, height=450) if isinstance(fig, go.Figure) else page.note(fig))
    if not study_figures:
        population = ranked.plan.scheduler in POPULATION_SCHEDULERS
        parts.append(page.note(NO_STUDY_PBT if population else NO_STUDY))
    return "".join(parts)


def trial_html(ranked: Ranking, folder: SearchFolder, tid: str, label: str) -> str:
    """One chosen trial: its ending, scores, parameters and diagnostics figure."""
    plan = ranked.plan
    row = ranked.trials[ranked.trials["trial_id"] == tid].iloc[0]
    facts = [f"status {row['status']}"]
    if _text(row.get("reason")):
        facts.append(row["reason"])
    value = row.get(plan.objective)
    if value is not None and not pd.isna(value):
        facts.append(f"{plan.objective} {value:.4g}")
    if _text(row.get("flags")):
        facts.append(f"flags: {row['flags']}")
    swept = [c for c in row.index if c.startswith("config/")]
    params = [f"{c.removeprefix('config/')}={page.number_text(row[c])}" for c in swept]
    rows = last_rows(read_diagnostics(folder.diagnostics, trial_id=tid))
    steps, evals = rows[rows["kind"] == "step"], rows[rows["kind"] == "eval"]
    drawn = trial_figure(steps, evals, plan.objective, health_window(row))
    body = page.figure(*drawn) if drawn is not None else page.note("no diagnostics rows")
    body += schedule_html(row, folder.trial_dir(tid))
    return (
        f'<article id="trial-{page.esc(tid)}"><h3>{page.esc(label)}</h3>'
        f"<p>{page.esc('; '.join(facts))}</p>"
        f'<p class="note">{page.esc("  ".join(params))}</p>{body}</article>'
    )


def schedule_html(row: pd.Series, trial_dir: Path) -> str:
    """A population-based trial's schedule and the copies it made ('' for another trial)."""
    segments = schedule_of(row)
    if not segments:
        return ""
    reached = row.get("batches")
    reached = segments[-1].batches if reached is None or pd.isna(reached) else int(reached)
    copies = copies_text(read_copies(trial_dir))
    return (
        "<h4>schedule (population-based training)</h4>"
        + page.figure(*schedule_figure(segments, reached))
        + (page.note(copies) if copies else "")
    )


def _text(value: Any) -> bool:
    """A non-empty string (missing cells of text columns read back as None or NaN)."""
    return isinstance(value, str) and value != ""


def health_window(row: pd.Series) -> int:
    """Windows in a row before a health flag is raised, as the trial was configured."""
    resolved = row.get("resolved_config")
    if isinstance(resolved, str):
        return int(json.loads(resolved).get("health_window", HealthConfig.window))
    return HealthConfig.window


def write_report(
    folder: SearchFolder,
    *,
    trial_ids: list[str] | None = None,
    top: int = DEFAULT_TOP,
    study_figures: dict[str, go.Figure | str] | None = None,
    study_trials: dict[int, str] | None = None,
) -> Path:
    """Write ``folder/report.html`` (atomically) and return its path.

    ``study_figures`` maps a title to an Optuna figure, or to the reason it could not be drawn;
    ``study_trials`` maps Optuna trial numbers to trial ids (both from harness.search.figures).
    """
    ranked = ranking(folder)
    default = default_point_trial(ranked)
    chosen = chosen_trials(ranked, trial_ids, top, default)
    labels = trial_labels(ranked, default)
    anchors = {tid: f"#trial-{tid}" for tid in chosen}
    evals = read_diagnostics(folder.diagnostics, kind="eval")
    listened = [Listened(t, labels[t], folder.trial_dir(t) / "samples") for t in chosen]
    course = course_html(ranked, evals, labels, study_figures or {}, study_trials or {})
    sections = [
        ("leaderboard", "Leaderboard", leaderboard_html(ranked, anchors)),
        ("course", "The search's course", course),
        ("trials", "Trials", "".join(trial_html(ranked, folder, t, labels[t]) for t in chosen)),
        ("listening", "Listening", listening_html(listened, folder.path, ranked.plan.recipe)),
    ]
    title = f"search {ranked.plan.name}"
    path = folder.path / REPORT_NAME
    atomic_write(path, page.document(title, intro_html(ranked, folder), sections))
    return path


def write_search_report(
    folder: SearchFolder, trial_ids: list[str] | None = None, top: int | None = None
) -> Path:
    """:func:`write_report` with Optuna's plots of the search's study; Optuna's warnings about
    the plots it cannot draw yet go to the search's log (the page says why instead)."""
    with chatter_to_log(folder.log):
        figures, numbers = study_figures(folder, SearchPlan.load(folder))
    return write_report(
        folder,
        trial_ids=trial_ids,
        top=DEFAULT_TOP if top is None else top,
        study_figures=figures,
        study_trials=numbers,
    )
