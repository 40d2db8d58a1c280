"""What a trial's folder says about how it ended: ``result.json`` (written by run_trial once
training ended) and ``outcome.json`` (how the search recorded an ending that left no result)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.files import atomic_write
from harness.status import Status

LOST = "started just before a crash, after Ray's last snapshot; Ray ran a new trial instead"
PROGRESS_KEYS = ("step", "epoch", "wall_s", "batches")
"""Keys of an eval row that say when it was taken, not what was measured."""


def read_result(trial_dir: Path) -> dict[str, Any] | None:
    """A trial's ``result.json`` (written by run_trial once training ended), or None."""
    path = Path(trial_dir) / "result.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_outcome(trial_dir: Path) -> dict[str, Any] | None:
    """How the search recorded the trial's end (``outcome.json``, written by the driver)."""
    path = Path(trial_dir) / "outcome.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_outcome(trial_dir: Path, outcome: dict[str, Any]) -> None:
    atomic_write(Path(trial_dir) / "outcome.json", json.dumps(outcome, indent=2))


def outcome_on_disk(trial_dir: Path) -> dict[str, Any]:
    """Status, reason and scores from a trial's ``result.json``; "lost" if it never ended.

    Only a crash between a trial's start and Ray's next experiment snapshot leaves a trial that
    Ray does not know after a restore; Ray then runs a new trial in its place.
    """
    result = read_result(trial_dir)
    if result is None:
        recorded = read_outcome(trial_dir)  # ASHA cut it, or it errored
        return recorded or {"status": Status.LOST.value, "reason": LOST}
    row = {"status": result["status"], "reason": result["reason"], "step": result["step"]}
    if result["status"] == Status.COMPLETED:
        row.update({k: v for k, v in result["last_eval"].items() if k not in PROGRESS_KEYS})
    row.update({k: v for k, v in result.items() if k.startswith("params_")})
    return {k: v for k, v in row.items() if _scalar(v) or isinstance(v, str)}


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
