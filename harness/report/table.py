"""The report's leaderboard: every trial, sortable, with status, reason and health flags."""

from __future__ import annotations

import math

import pandas as pd

from harness.report import page
from harness.results.leaderboard import Ranking, display_columns
from harness.results.verdict import summary_lines


def confirmation_columns(ranking: Ranking) -> list[tuple[str, list[str]]]:
    """One column per confirmation (the search's budget first): its header and each trial's
    confirmed objective (mean ± std [95% interval] over fresh seeds, and the seeds completed);
    "-" for trials that were not confirmed."""
    objective = ranking.plan.objective
    columns = []
    for summary in ranking.confirmations:
        by_trial = {c.source_trial: c for c in summary.candidates if c.source_trial}
        texts = []
        for trial_id in ranking.trials["trial_id"]:
            found = by_trial.get(trial_id)
            shown = found.objective.format() if found and found.objective else "-"
            texts.append(
                f"{shown} ({found.completed} seeds)" if found and found.objective else shown
            )
        at = "" if summary.setting.search else f" at {summary.setting.batches} batches"
        columns.append((f"confirmed {objective}{at}", texts))
    return columns


def leaderboard_html(ranking: Ranking, anchors: dict[str, str]) -> str:
    """Every trial in rank order; trial ids link to ``anchors`` (trial id -> page anchor)."""
    plan, frame = ranking.plan, ranking.trials
    shown = display_columns(frame, plan)
    if "train_s" in frame and "step" in shown:  # the cost a trial consumed, beside its steps
        shown.insert(shown.index("step") + 1, "train_s")
    swept = [c for c in shown if c.startswith("config/")]  # last: the table scrolls sideways
    columns = [c for c in shown if c not in swept] + swept
    confirmed = confirmation_columns(ranking)
    header = [c.removeprefix("config/").replace("trial_id", "trial") for c in columns]
    if plan.objective in columns:  # search score and confirmed means side by side
        at = columns.index(plan.objective) + 1
        header[at:at] = [title for title, _ in confirmed]
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
            if column == plan.objective:
                cells += [f"<td>{page.esc(texts[i])}</td>" for _, texts in confirmed]
        rows.append(f'<tr class="{page.esc(row["status"])}">{"".join(cells)}</tr>')
    parts = [page.table(header, rows)]
    if ranking.importances:
        weights = ", ".join(f"{k} {v:.2f}" for k, v in ranking.importances.items())
        parts.append(page.note(f"parameter importance for {plan.objective} (PED-ANOVA): {weights}"))
    if plan.multi_objective:
        front = ", ".join(ranking.front) or "none yet"
        parts.append(page.note(f"Pareto front ({plan.objective}, {plan.cost}): {front}"))
    for summary in ranking.confirmations:
        parts += [page.note(line) for line in summary_lines(summary)]
    return "".join(parts)


def _plain(value: object) -> object:
    """NumPy scalars as Python numbers, missing values as NaN (for the cell formatter)."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return math.nan
    if hasattr(value, "item"):
        value = value.item()
    return value
