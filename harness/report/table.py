"""The report's leaderboard: every trial, sortable, with status, reason and health flags."""

from __future__ import annotations

import math

import pandas as pd

from harness.report import page
from harness.results.leaderboard import Ranking, display_columns


def confirmation_cells(ranking: Ranking) -> list[str] | None:
    """Each trial's confirmed objective (mean ± std [95% interval] over fresh seeds), or None
    while no confirmation has run; "-" for trials that were not confirmed."""
    summary = ranking.confirmation
    if summary is None:
        return None
    by_trial = {c.source_trial: c for c in summary.candidates if c.source_trial}
    texts = []
    for trial_id in ranking.trials["trial_id"]:
        found = by_trial.get(trial_id)
        texts.append(found.objective.format() if found and found.objective else "-")
    return texts


def leaderboard_html(ranking: Ranking, anchors: dict[str, str]) -> str:
    """Every trial in rank order; trial ids link to ``anchors`` (trial id -> page anchor)."""
    plan, frame = ranking.plan, ranking.trials
    shown = display_columns(frame, plan)
    if "train_s" in frame and "step" in shown:  # the cost a trial consumed, beside its steps
        shown.insert(shown.index("step") + 1, "train_s")
    swept = [c for c in shown if c.startswith("config/")]  # last: the table scrolls sideways
    columns = [c for c in shown if c not in swept] + swept
    confirmed = confirmation_cells(ranking)
    header = [c.removeprefix("config/").replace("trial_id", "trial") for c in columns]
    if confirmed is not None:
        header.insert(columns.index(plan.objective) + 1, f"confirmed {plan.objective}")
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for column in columns:
            value = row[column]
            if column == "trial_id":
                cells.append(page.cell(value, link=anchors.get(value)))
            elif column in ("flags", "reason"):  # text, or None / NaN when missing
                text = value if isinstance(value, str) else ""
                kind = "flag" if column == "flags" else "reason"
                cells.append(f'<td class="{kind}">{page.esc(text)}</td>')
            else:
                cells.append(page.cell(_plain(value)))
            if column == plan.objective and confirmed is not None:
                cells.append(f"<td>{page.esc(confirmed[i])}</td>")
        rows.append(f'<tr class="{page.esc(row["status"])}">{"".join(cells)}</tr>')
    parts = [page.table(header, rows)]
    if ranking.importances:
        weights = ", ".join(f"{k} {v:.2f}" for k, v in ranking.importances.items())
        parts.append(page.note(f"parameter importance for {plan.objective} (PED-ANOVA): {weights}"))
    if plan.multi_objective:
        front = ", ".join(ranking.front) or "none yet"
        parts.append(page.note(f"Pareto front ({plan.objective}, {plan.cost}): {front}"))
    if ranking.confirmation is not None:
        parts += [page.note(line) for line in ranking.confirmation.lines()]
    return "".join(parts)


def _plain(value: object) -> object:
    """NumPy scalars as Python numbers, missing values as NaN (for the cell formatter)."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return math.nan
    if hasattr(value, "item"):
        value = value.item()
    return value
