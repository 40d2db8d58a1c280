"""The report's leaderboard: every trial, sortable, with status, reason and health flags."""

from __future__ import annotations

import math

import pandas as pd

from harness.leaderboard import Ranking, display_columns
from harness.report import page

# Columns a confirmation stage (several seeds of the top trials) is to add to trials.parquet;
# the report shows "mean ± half-width (n seeds)" beside the objective once any trial has them.
CONFIRMED_MEAN = "confirmed_mean"
CONFIRMED_HALFWIDTH = "confirmed_halfwidth"
CONFIRMED_SEEDS = "confirmed_seeds"


def confirmation_cells(frame: pd.DataFrame) -> list[str] | None:
    """The confirmed objective per trial as text, or None while no trial has been confirmed."""
    if CONFIRMED_MEAN not in frame or frame[CONFIRMED_MEAN].isna().all():
        return None
    texts = []
    for _, row in frame.iterrows():
        mean = row[CONFIRMED_MEAN]
        if pd.isna(mean):
            texts.append("-")
            continue
        text = f"{mean:.4g}"
        half = row.get(CONFIRMED_HALFWIDTH)
        if half is not None and not pd.isna(half):
            text += f" ± {half:.2g}"
        seeds = row.get(CONFIRMED_SEEDS)
        if seeds is not None and not pd.isna(seeds):
            text += f" ({int(seeds)} seeds)"
        texts.append(text)
    return texts


def leaderboard_html(ranking: Ranking, anchors: dict[str, str]) -> str:
    """Every trial in rank order; trial ids link to ``anchors`` (trial id -> page anchor)."""
    plan, frame = ranking.plan, ranking.trials
    shown = display_columns(frame, plan)
    if "train_s" in frame and "step" in shown:  # the cost a trial consumed, beside its steps
        shown.insert(shown.index("step") + 1, "train_s")
    swept = [c for c in shown if c.startswith("config/")]  # last: the table scrolls sideways
    columns = [c for c in shown if c not in swept] + swept
    confirmed = confirmation_cells(frame)
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
    return "".join(parts)


def _plain(value: object) -> object:
    """NumPy scalars as Python numbers, missing values as NaN (for the cell formatter)."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return math.nan
    if hasattr(value, "item"):
        value = value.item()
    return value
