"""``trials.parquet``: one row per trial of a search, merged and rewritten atomically."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml

from harness.diagnostics.telemetry import write_table_atomic
from harness.results.folder import SearchFolder
from harness.results.trial_files import outcome_on_disk, read_outcome
from harness.status import TERMINAL

EMPTY_TABLE = ["trial_id", "status", "reason"]  # the columns of a table with no trial yet


def write_trials(
    folder: SearchFolder, rows: list[dict[str, Any]], every_live_trial: bool = False
) -> pd.DataFrame:
    """Merge ``rows`` into ``trials.parquet`` (by trial_id) and rewrite it atomically.

    Rows already in the table for trials not in ``rows`` are kept, so a trial recorded once is
    never dropped, and trial folders that only have a ``result.json`` are added.  When ``rows``
    holds ``every_live_trial`` of the search, an unfinished row missing from it belongs to a
    trial started after Ray's last snapshot before a crash: Ray replaced it, it is "lost".
    """
    table = {row["trial_id"]: row for row in _read_rows(folder)}
    if every_live_trial:
        fresh = {row["trial_id"] for row in rows}
        for trial_id, row in table.items():
            if trial_id not in fresh and row["status"] not in TERMINAL:
                row.update(outcome_on_disk(folder.trial_dir(trial_id)))
    table.update({row["trial_id"]: row for row in rows})
    for row in rows_from_trial_dirs(folder, known=set(table)):
        table[row["trial_id"]] = row
    ordered = [table[k] for k in sorted(table)]
    frame = pd.DataFrame(ordered) if ordered else pd.DataFrame(columns=EMPTY_TABLE)
    write_table_atomic(folder.trials_table, pa.Table.from_pandas(frame, preserve_index=False))
    return frame


def read_trials(folder: SearchFolder) -> pd.DataFrame:
    """``trials.parquet`` as a DataFrame (empty if no trial has been recorded yet)."""
    if not folder.trials_table.is_file():
        return pd.DataFrame(columns=EMPTY_TABLE)
    return pd.read_parquet(folder.trials_table)


def _read_rows(folder: SearchFolder) -> list[dict[str, Any]]:
    frame = read_trials(folder)
    return [{k: v for k, v in row.items() if not _missing(v)} for row in frame.to_dict("records")]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def rows_from_trial_dirs(folder: SearchFolder, known: set[str]) -> list[dict[str, Any]]:
    """Rows for trial folders the table does not know, rebuilt from their files."""
    if not folder.trials_dir.is_dir():
        return []
    rows = []
    for trial_dir in sorted(folder.trials_dir.iterdir()):
        config = trial_dir / "config.yaml"
        if trial_dir.name in known or not (config.is_file() or read_outcome(trial_dir)):
            continue
        row: dict[str, Any] = {"search": folder.name, "trial_id": trial_dir.name}
        row.update(outcome_on_disk(trial_dir))
        if config.is_file():
            row["resolved_config"] = json.dumps(yaml.safe_load(config.read_text()))
        rows.append(row)
    return rows
