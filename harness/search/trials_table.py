"""``trials.parquet`` kept current from Ray's view of the trials, and the console progress lines."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from harness.console import print_line
from harness.faults import fault_point
from harness.files import finite
from harness.results.folder import SearchFolder
from harness.results.lineage import population_columns, write_lineage
from harness.results.plan import SearchPlan
from harness.results.trial_files import read_outcome
from harness.results.trials import write_trials
from harness.runs.schedule import SCHEDULE_KEY
from harness.scoring.registry import SCORES
from harness.search.optuna_bridge import ENDINGS, outcome
from harness.search.trainable import STATUS, TUNE_BOOKKEEPING_KEYS, TrialSetup
from harness.status import TERMINAL, Status

INTERRUPTED = "the search was interrupted; run it again to continue"


def trial_row(
    trial: Trial, setup: TrialSetup, swept: list[str], ended: bool = False
) -> dict[str, Any]:
    """One trials.parquet row from Ray's view of a trial and the ending the searcher recorded.

    A trial Ray terminated without an ending on record was stopped by an interrupted search
    (Ctrl-C): it is "interrupted" and resumes when the search is run again.
    """
    last = trial.last_result or {}
    status, reason = trial_status(trial, setup, ended)
    row: dict[str, Any] = {
        "search": setup.search,
        "trial_id": trial.trial_id,
        "status": status.value,
        "reason": reason,
        "retries": int(trial.num_failures),
        "step": last.get("step"),
        "batches": last.get("batches"),  # the cost ASHA compares trials at
        "train_s": trial.metric_analysis.get("wall_s", {}).get("max"),  # trainer time
        "time_s": last.get("time_total_s"),
    }
    for key, stats in trial.metric_analysis.items():
        if key in TUNE_BOOKKEEPING_KEYS or "/" in key:
            continue
        # a flag stays raised along the weights' lineage (harness/diagnostics/monitor.py), so its
        # last value says whether it was ever raised there; a trial that copied a healthy
        # donor's checkpoint (population-based training) ends with the donor's
        row[key] = stats.get("last")
        if key in SCORES:
            row[f"best_{key}"] = stats.get(SCORES[key].direction)
    row.update({f"config/{k}": trial.config.get(k) for k in swept})
    row["seed"] = trial.config.get("seed")  # the trial's training seed (from --seed)
    row["sample"] = json.dumps(trial.config)
    row.update(population_columns(trial.config, Path(setup.folder) / "trials" / trial.trial_id))
    try:
        row["resolved_config"] = json.dumps(setup.trial_config(trial.config).flat())
    except ValueError:
        row["resolved_config"] = None
    return row


def trial_status(trial: Trial, setup: TrialSetup, ended: bool) -> tuple[Status, str]:
    """(status, reason) of a trial: Ray's state, and the ending on record once it ended."""
    recorded = read_outcome(Path(setup.folder) / "trials" / trial.trial_id)
    if recorded and recorded["status"] in ENDINGS:  # an error after it is its resume's
        return Status(recorded["status"]), recorded["reason"]
    if trial.status == Trial.ERROR:
        return Status.ERRORED, error_reason(trial)
    if (ended or trial.status == Trial.TERMINATED) and recorded:
        return Status(recorded["status"]), recorded["reason"]
    if ended:
        return outcome(trial.last_result or {}, error=False)
    if trial.status == Trial.TERMINATED:
        return Status.INTERRUPTED, INTERRUPTED
    return (Status.RUNNING if trial.status == Trial.RUNNING else Status.PENDING), ""


def error_reason(trial: Trial) -> str:
    """The last line of the trial's last recorded exception."""
    path = trial.error_file
    if not path or not Path(path).is_file():
        return "errored (no error file)"
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    tail = lines[-1] if lines else "errored"
    retries = f" (after {trial.num_failures - 1} retries)" if trial.num_failures > 1 else ""
    return tail[:300] + retries


class TrialsTable(tune.Callback):
    """Keeps ``trials.parquet`` current as trials start and end, and prints progress lines."""

    def __init__(self, setup: TrialSetup, plan: SearchPlan, echo: bool) -> None:
        self.trial_setup = setup
        self.swept = list(plan.swept)
        self.objective = plan.objective
        self.total = plan.trials
        self.echo = echo
        self.t0 = time.perf_counter()
        self.announced: set[tuple] = set()  # the copies of a population-based search said

    def setup(self, **info) -> None:
        self.t0 = time.perf_counter()  # also on resume, where this object was unpickled

    def _write(self, trials: list[Trial], ended: Trial | None = None) -> list[dict[str, Any]]:
        rows = [trial_row(t, self.trial_setup, self.swept, ended=t is ended) for t in trials]
        folder = SearchFolder(Path(self.trial_setup.folder))
        write_lineage(folder, write_trials(folder, rows, every_live_trial=True))
        return rows

    def _say(self, text: str) -> None:
        if self.echo:
            print_line(f"[{time.perf_counter() - self.t0:6.0f}s] {text}")

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._write(trials)
        params = "  ".join(f"{k}={_short(trial.config.get(k))}" for k in self.swept)
        copied = copy_made(trial)
        if copied is None:
            self._say(f"{trial.trial_id} started: {params}")
        elif copied not in self.announced:
            self.announced.add(copied)
            self._say(
                f"{trial.trial_id} continues {copied[1]}'s checkpoint at batch {copied[2]} "
                f"({copied[3]}): {params}"
            )

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info
    ) -> None:
        if result.get(STATUS) == Status.RUNNING:
            score = result.get(self.objective)
            shown = f"{score:.4g}" if finite(score) else "-"
            self._say(f"{trial.trial_id} step {result.get('step')}: {self.objective} {shown}")

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info):
        fault_point("before_trials_write")  # the trial's ending is on record, not yet here
        self._announce(self._write(trials, ended=trial), trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._announce(self._write(trials, ended=trial), trial.trial_id)

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        self._write(trials)

    def _announce(self, rows: list[dict[str, Any]], trial_id: str) -> None:
        row = next(r for r in rows if r["trial_id"] == trial_id)
        done = sum(r["status"] in TERMINAL for r in rows)
        score = row.get(self.objective)
        shown = f"{score:.4g}" if finite(score) else "-"
        why = f" ({row['reason']})" if row["status"] != Status.COMPLETED else ""
        self._say(
            f"{trial_id} {row['status']} at step {row['step']}: {self.objective} {shown}{why}"
            f"  [{done}/{self.total} done]"
        )


def copy_made(trial: Trial) -> tuple | None:
    """(trial, donor, batch, reason) of the copy a population-based trial starts from, if it
    starts from one it made itself; None otherwise."""
    segments = trial.config.get(SCHEDULE_KEY) or []
    last = segments[-1] if segments else {}
    if last.get("donor") is None or last.get("trial") != trial.trial_id:
        return None
    return trial.trial_id, last["donor"], last["batches"], last.get("reason", "")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
