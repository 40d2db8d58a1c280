"""The search's course: every trial's objective over the training time it had consumed.

One line per trial through its validations (x = trainer seconds, ``wall_s`` of the eval rows,
the same clock as ``train_s`` in trials.parquet), the best value any trial had reached by each
cost (trials compared at equal cost, not at equal step counts), and each trial's end marked:
ASHA cuts, and trials that stopped themselves or errored, with their reasons on hover.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.results.leaderboard import Ranking

FAILED = ("stopped", "errored")
END_STYLE = {"ASHA cut": ("x-thin-open", "#555"), "stopped or errored": ("x", "#d62728")}


def last_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, kind, step): a resumed trial logs the steps since its checkpoint
    again, and the later row is the one the trial went on from."""
    if rows.empty:
        return rows
    return rows.drop_duplicates(["trial_id", "kind", "step"], keep="last").reset_index(drop=True)


def best_so_far(x: np.ndarray, y: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The running best of ``y`` in order of ``x`` (min or max by ``mode``), NaNs left out."""
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep], kind="stable")
    xs, ys = x[keep][order], y[keep][order]
    running = np.minimum.accumulate(ys) if mode == "min" else np.maximum.accumulate(ys)
    return xs, running


def course_figure(ranking: Ranking, evals: pd.DataFrame, labels: dict[str, str]) -> dict[str, Any]:
    """The figure (a plotly dict); ``labels`` names the trials (trial id -> label)."""
    plan, objective = ranking.plan, ranking.plan.objective
    evals = last_rows(evals)
    data: list[dict[str, Any]] = []
    ends: dict[str, list[tuple[float, float, str]]] = {what: [] for what in END_STYLE}
    for _, trial in ranking.trials.iterrows():
        rows = evals[evals["trial_id"] == trial["trial_id"]].sort_values("step")
        if objective not in rows or rows[objective].isna().all():
            continue
        data.append(trial_line(trial, rows, objective, labels.get(trial["trial_id"])))
        if trial["status"] == "pruned":
            ends["ASHA cut"].append(trial_end(trial, rows, objective))
        elif trial["status"] in FAILED:
            ends["stopped or errored"].append(trial_end(trial, rows, objective))
    data += [end_markers(what, points) for what, points in ends.items() if points]
    if objective in evals:
        xs, best = best_so_far(
            evals["wall_s"].to_numpy(float), evals[objective].to_numpy(float), plan.mode
        )
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": best,
                "line": {"shape": "hv", "color": "black", "width": 3, "dash": "dot"},
                "name": f"best {objective} by this cost (any trial)",
            }
        )
    layout = {
        "title": {"text": f"{objective} ({plan.mode}) over training time, every trial"},
        "xaxis": {"title": {"text": "trainer seconds (train_s)"}},
        "yaxis": {"title": {"text": objective}},
        "legend": {"font": {"size": 11}},
    }
    return {"data": data, "layout": layout}


def trial_line(
    trial: pd.Series, rows: pd.DataFrame, objective: str, label: str | None
) -> dict[str, Any]:
    """One trial's objective through its validations, over trainer seconds."""
    name = label or trial["trial_id"]
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "x": rows["wall_s"].to_numpy(float),
        "y": rows[objective].to_numpy(float),
        "customdata": rows["step"].to_numpy(float),
        "name": f"{name} ({trial['status']})",
        "hovertemplate": f"{name}<br>step %{{customdata}}<br>%{{x:.1f}} s<br>"
        f"{objective} %{{y:.4g}}<extra></extra>",
    }


def trial_end(trial: pd.Series, rows: pd.DataFrame, objective: str) -> tuple[float, float, str]:
    """(trainer seconds, last objective, hover text) where a trial ended."""
    finite = rows.dropna(subset=[objective])
    end_x = trial.get("train_s")
    if end_x is None or pd.isna(end_x):
        end_x = finite["wall_s"].iloc[-1]
    reason = f"{trial['trial_id']}: {trial['reason']}"
    return float(end_x), float(finite[objective].iloc[-1]), reason


def end_markers(what: str, points: list[tuple[float, float, str]]) -> dict[str, Any]:
    """The trials that ended as ``what`` (a key of :data:`END_STYLE`), with their reasons."""
    xs, ys, reasons = zip(*points, strict=True)
    symbol, colour = END_STYLE[what]
    return {
        "type": "scatter",
        "mode": "markers",
        "x": list(xs),
        "y": list(ys),
        "text": list(reasons),
        "name": what,
        "marker": {
            "symbol": symbol,
            "size": 14,
            "color": colour,
            "line": {"width": 2, "color": colour},
        },
        "hovertemplate": "%{text}<extra>" + what + "</extra>",
    }
