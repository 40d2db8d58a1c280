"""The lineage of a population-based search: each trial's schedule and the copies it made.

A trial of ``--scheduler pbt`` carries its schedule in its config (harness/runs/schedule.py):
the values of the mutable keys over batches, and which trial trained each stretch after copying
whose checkpoint.  What a trial did itself (each copy it made, from whom, at which batch, why,
and where it had got to) is ``trials/<id>/copies.json``, written by the trial as it starts from
the donor's checkpoint, so it holds only copies that really trained.

``trials.parquet`` gets, per trial of such a search, ``schedule`` (JSON), ``exploits`` (copies
it made) and ``rescues`` (those that replaced it for a health flag); ``lineage.parquet`` has one
row per segment of every trial's schedule, with one column per mutable key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from harness.diagnostics.telemetry import write_table_atomic
from harness.files import atomic_write
from harness.results.folder import SearchFolder
from harness.runs.schedule import RESCUE_PREFIX, SCHEDULE_KEY, Segment

COPIES_FILE = "copies.json"
LINEAGE_TABLE = "lineage.parquet"


def read_copies(trial_dir: Path) -> list[dict[str, Any]]:
    """The copies a trial made, oldest first ([] for none)."""
    path = Path(trial_dir) / COPIES_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def note_copy(trial_dir: Path, copy: dict[str, Any]) -> None:
    """Add ``copy`` (batches, donor, params, ...) to the trial's copies unless it is the last
    one already (a trial retried or resumed before its first own checkpoint starts from the
    same copy again)."""
    copies = read_copies(trial_dir)
    if copies and all(copies[-1].get(k) == copy[k] for k in ("batches", "donor", "params")):
        return
    atomic_write(Path(trial_dir) / COPIES_FILE, json.dumps([*copies, copy], indent=2))


def population_columns(config: dict[str, Any], trial_dir: Path) -> dict[str, Any]:
    """The ``trials.parquet`` columns of a scheduled trial ({} for any other)."""
    if SCHEDULE_KEY not in config:
        return {}
    copies = read_copies(trial_dir)
    return {
        "schedule": json.dumps(config[SCHEDULE_KEY]),
        "exploits": len(copies),
        "rescues": sum(str(c.get("reason", "")).startswith(RESCUE_PREFIX) for c in copies),
    }


def schedule_of(row: pd.Series | dict[str, Any]) -> list[Segment] | None:
    """A ``trials.parquet`` row's schedule (None for a trial of another search)."""
    raw = row.get("schedule")
    if not isinstance(raw, str) or not raw:
        return None
    return [Segment.from_dict(s) for s in json.loads(raw)]


def lineage_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per segment of every trial's schedule: where it starts and ends (the next
    segment's start, or the batches the trial got to), who trained it, whose checkpoint it
    continued and why, and the mutable keys' values."""
    rows = []
    for _, trial in trials.iterrows():
        segments = schedule_of(trial)
        if not segments:
            continue
        reached = trial.get("batches")
        for k, segment in enumerate(segments):
            end = segments[k + 1].batches if k + 1 < len(segments) else reached
            rows.append(
                {
                    "trial_id": trial["trial_id"],
                    "segment": k,
                    "batches": segment.batches,
                    "end": None if end is None or pd.isna(end) else int(end),
                    "trained_by": segment.trial,
                    "donor": segment.donor,
                    "reason": segment.reason,
                    "left_at": segment.left_at,
                    **{f"config/{key}": value for key, value in segment.params.items()},
                }
            )
    return pd.DataFrame(rows)


def write_lineage(folder: SearchFolder, trials: pd.DataFrame) -> None:
    """Rewrite ``lineage.parquet`` from the trials table, atomically (nothing for a search
    without schedules)."""
    table = lineage_table(trials)
    if not table.empty:
        write_table_atomic(
            folder.path / LINEAGE_TABLE, pa.Table.from_pandas(table, preserve_index=False)
        )
