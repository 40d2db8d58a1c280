"""A :class:`~harness.scoring.pairs.ScoreReport` as text: an aligned table, CSV or JSON.

Each has one row per utterance (its scores, and why it was skipped or scored worst-case) and the
means with the counts of valid and skipped utterances; ``pesq`` is labelled with its band.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from harness.scoring.pairs import ScoreReport


def format_table(report: ScoreReport, columns: list[str], mode: str) -> str:
    """Aligned rows: file, metrics, note; then the mean and the counts."""
    header = ["file", *_labels(columns, mode), "note"]
    rows = []
    for item in report.per_item:
        status, reason = _status(item)
        values = [_number(item.get(c)) for c in columns]
        rows.append([item["id"], *values, "" if status == "ok" else f"{status}: {reason}"])
    rows.append(["mean", *(_number(report.mean[c]) for c in columns), _summary(report)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: list[str]) -> str:
        name, *values, note = cells
        text = "  ".join(
            [name.ljust(widths[0])] + [v.rjust(w) for v, w in zip(values, widths[1:], strict=True)]
        )
        return f"{text}  {note}".rstrip() + "\n"

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1)) + "\n"
    return line(header) + rule + "".join(line(r) for r in rows[:-1]) + rule + line(rows[-1])


def format_csv(report: ScoreReport, columns: list[str], mode: str) -> str:
    """One row per file (status ok / worst_case / skipped), then a ``mean`` row with the counts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "status", *_labels(columns, mode), "note"])
    for item in report.per_item:
        status, reason = _status(item)
        writer.writerow([item["id"], status, *(item.get(c, "") for c in columns), reason])
    writer.writerow(["", "mean", *(report.mean[c] for c in columns), _summary(report)])
    return out.getvalue()


def format_json(report: ScoreReport, columns: list[str], mode: str) -> str:
    """``{"mode", "n_valid", "n_skipped", "mean", "items"}``; NaN becomes null."""
    doc = {
        "mode": mode,
        "n_valid": report.n_valid,
        "n_skipped": report.n_skipped,
        "mean": {c: _json_number(report.mean[c]) for c in columns},
        "items": [{k: _json_number(v) for k, v in item.items()} for item in report.per_item],
    }
    return json.dumps(doc, indent=2) + "\n"


FORMATTERS = {"table": format_table, "csv": format_csv, "json": format_json}
FORMATS = tuple(FORMATTERS)


def _status(item: dict[str, Any]) -> tuple[str, str]:
    if item.get("skipped"):
        return "skipped", item["skipped"]
    if item.get("worst_case"):
        return "worst_case", item["worst_case"]
    return "ok", ""


def _summary(report: ScoreReport) -> str:
    return f"n_valid={report.n_valid} n_skipped={report.n_skipped}"


def _labels(columns: list[str], mode: str) -> list[str]:
    """Column names for humans and spreadsheets: ``pesq`` says which band it is."""
    return [f"pesq_{mode}" if c == "pesq" else c for c in columns]


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
