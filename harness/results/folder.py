"""The results folder of a search, and its one-row-per-trial table ``trials.parquet``.

::

    results/<name>/
      config.yaml       the search as launched (:class:`SearchPlan`) and the share of the
                        cluster each trial got (:class:`Resources`, its ``resources:`` section)
      tune/             Ray Tune experiment (restorable), unless --storage moved it
      optuna.db         Optuna study (SQLite): optuna-dashboard sqlite:///results/<name>/optuna.db
      diagnostics/      Parquet dataset of step and eval rows, partitioned by trial_id
      trials/<id>/      one trial: config.yaml, checkpoints/, samples/, result.json (training
                        ended), outcome.json (how the search recorded its end)
      trials.parquet    one row per trial, rewritten atomically as trials finish
      importances.json  Optuna parameter importances, written when a search run ends
      summary.json      written when the search has finished
      reruns/           ``run.py rerun`` output
      confirm/          the confirmation runs (``--confirm K`` / ``run.py confirm``)
      confirmation.parquet  one row per confirmation run (harness/results/confirmation.py)

No Ray here: the leaderboard and rerun read these files without starting anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml

from harness.diagnostics.telemetry import write_table_atomic
from harness.files import atomic_write
from harness.status import TERMINAL, Status

RESULTS_ENV = "GAN_HARNESS_RESULTS"
EMPTY_TABLE = ["trial_id", "status", "reason"]  # the columns of a table with no trial yet
LOST = "started just before a crash, after Ray's last snapshot; Ray ran a new trial instead"
PROGRESS_KEYS = ("step", "epoch", "wall_s", "batches")
"""Keys of an eval row that say when it was taken, not what was measured."""


class ResultsError(ValueError):
    """A results folder or trial is missing or unreadable; one line naming it."""


def results_root(arg: str | Path | None = None) -> Path:
    """``--results DIR``, else ``$GAN_HARNESS_RESULTS``, else ``./results`` (absolute)."""
    return Path(arg or os.environ.get(RESULTS_ENV) or "results").expanduser().resolve()


@dataclass(frozen=True)
class SearchFolder:
    """Paths inside ``results/<name>/``."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def tune(self) -> Path:
        return self.path / "tune"

    @property
    def optuna_db(self) -> Path:
        return self.path / "optuna.db"

    @property
    def diagnostics(self) -> Path:
        return self.path / "diagnostics"

    @property
    def trials_dir(self) -> Path:
        return self.path / "trials"

    def trial_dir(self, trial_id: str) -> Path:
        return self.trials_dir / trial_id

    @property
    def trials_table(self) -> Path:
        return self.path / "trials.parquet"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one process running this search (hidden from the globs)."""
        return self.path / ".search.lock"

    @property
    def importances(self) -> Path:
        return self.path / "importances.json"

    @property
    def reruns(self) -> Path:
        return self.path / "reruns"

    @property
    def confirm_dir(self) -> Path:
        """The confirmation runs: a search folder of their own (tune/, trials/, diagnostics/)."""
        return self.path / "confirm"

    @property
    def confirmation_table(self) -> Path:
        return self.path / "confirmation.parquet"

    def finished(self) -> bool:
        return self.summary.is_file()

    def search_writes(self) -> tuple[Path, ...]:
        """The files in this folder that only the search holding :attr:`lock` writes (a
        leaderboard run beside it writes ``report.html``)."""
        return (
            self.config,
            self.trials_table,
            self.summary,
            self.importances,
            self.confirmation_table,
        )

    def last_change(self) -> float:
        """Seconds since the epoch of the newest table or config write (for "most recent")."""
        stamps = [p.stat().st_mtime for p in (self.trials_table, self.config) if p.exists()]
        return max(stamps, default=0.0)


@dataclass(frozen=True)
class SearchPlan:
    """A search as launched: everything needed to resume it or to read its results.

    Its resource fields are what was asked for (``--cpus-per-trial`` ...); what the search got
    on its cluster is a :class:`Resources`, saved beside the plan.
    """

    name: str
    recipe: str
    budget: str
    space_file: str
    space: dict[str, Any]  # the YAML document, kept verbatim so resume never re-reads the file
    swept: list[str]
    objective: str
    mode: str
    trials: int
    seed: int = 0
    data: str | None = None
    multi_objective: bool = False
    cost: str = "params_g"
    cost_mode: str = "min"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 where the cluster has GPUs, else 0
    max_concurrent: int = 0  # 0 = whatever the cluster's resources allow
    scheduler: str = "asha"
    stop_unhealthy: bool = True  # end flagged trials early (overpowering, collapse)
    grace_period: int = 0  # ASHA: first training step at which a trial may be cut
    max_t: int = 0  # ASHA: batches of a full trial
    storage: str | None = None  # Ray storage URI (default: this folder)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    @property
    def metrics(self) -> list[str]:
        """What Optuna optimises: the objective, and the cost for multi-objective searches."""
        return [self.objective, self.cost] if self.multi_objective else [self.objective]

    @property
    def modes(self) -> list[str]:
        return [self.mode, self.cost_mode] if self.multi_objective else [self.mode]

    def save(self, folder: SearchFolder, resources: Resources | None = None) -> None:
        """Write ``config.yaml``: the plan, and the resources it got as ``resources:``."""
        doc = dataclasses.asdict(self)
        if resources is not None:
            doc["resources"] = dataclasses.asdict(resources)
        atomic_write(folder.config, yaml.safe_dump(doc, sort_keys=False))

    @classmethod
    def load(cls, folder: SearchFolder) -> SearchPlan:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in _search_config(folder).items() if k in known})


@dataclass(frozen=True)
class Resources:
    """What each trial of a search got, fitted to the cluster when the search started."""

    cpus_per_trial: float
    gpus_per_trial: float
    trials_at_once: int
    address: str | None = None  # the Ray cluster (None: a local Ray started by the search)

    @classmethod
    def load(cls, folder: SearchFolder) -> Resources:
        doc = _search_config(folder)
        if "resources" in doc:
            return cls(**doc["resources"])
        if "address" in doc:  # written before resources had a section: the plan held the fit
            return cls(
                cpus_per_trial=doc["cpus_per_trial"],
                gpus_per_trial=doc["gpus_per_trial"],
                trials_at_once=doc["max_concurrent"],
                address=doc["address"],
            )
        raise ResultsError(f"{folder.config}: no resources section (the search never started)")


def _search_config(folder: SearchFolder) -> dict[str, Any]:
    if not folder.config.is_file():
        raise ResultsError(f"{folder.path}: not a search folder (no config.yaml)")
    return yaml.safe_load(folder.config.read_text())


def list_searches(root: Path) -> list[SearchFolder]:
    """Every search under ``root``, most recently changed first."""
    if not Path(root).is_dir():
        return []
    found = [SearchFolder(p) for p in Path(root).iterdir() if (p / "config.yaml").is_file()]
    return sorted(found, key=lambda f: f.last_change(), reverse=True)


def find_search(root: Path, name: str | None) -> SearchFolder:
    """The search called ``name`` under ``root``, or the most recent one when ``name`` is None."""
    if name is None:
        found = list_searches(root)
        if not found:
            raise ResultsError(f"{root}: no searches yet; start one with `run.py search RECIPE`")
        return found[0]
    folder = SearchFolder(Path(root) / name)
    if not folder.config.is_file():
        names = ", ".join(f.name for f in list_searches(root)) or "none"
        raise ResultsError(f"search {name!r} not found in {root}; searches: {names}")
    return folder


# ---------------------------------------------------------------------- trials.parquet
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
