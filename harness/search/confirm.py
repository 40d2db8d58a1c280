"""The confirmation stage on Ray: the top K configurations and the paper default, N seeds each.

Every run is an ordinary trial (:func:`~harness.search.trainable.train_trial`) at the search's
budget and resources, in ``results/<name>/confirm/`` (its own ``tune/``, ``trials/`` and
``diagnostics/``), so an interrupted confirmation resumes like a search: run the same command
again.  What the runs mean is computed by :mod:`harness.results.confirmation`, which needs no Ray.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import ray
import yaml
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback

from harness import interrupts
from harness.diagnostics.telemetry import write_table_atomic
from harness.files import atomic_write, finite
from harness.results.confirmation import Candidate, confirmation_seeds, pick_candidates
from harness.results.folder import SearchFolder
from harness.results.leaderboard import rank
from harness.results.plan import Resources, SearchPlan
from harness.results.space import SearchSpace
from harness.results.trial_files import PROGRESS_KEYS, read_outcome, read_result, write_outcome
from harness.results.trials import read_trials
from harness.scoped import scoped_environ
from harness.search.checkpoints import KEPT_CHECKPOINTS, OneCopyPerCheckpoint
from harness.search.driver import (
    SearchError,
    connect,
    trial_dirname,
    trial_setup,
)
from harness.search.environment import TUNE_DEFAULTS, TUNE_FORCED
from harness.search.graceful import GracefulStop
from harness.search.optuna_bridge import outcome
from harness.search.reroot import mark, reroot
from harness.search.trainable import TrialSetup, train_trial
from harness.search.trials_table import error_reason
from harness.status import Status

RUN_FILE = "run.json"  # in each confirmation trial's folder: which candidate and seed it is
UNFINISHED = {"status": Status.ERRORED.value, "reason": "did not finish (see confirm/tune)"}


def confirm_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """One confirmation run: the candidate's sample with one of the confirmation seeds."""
    trial_dir = SearchFolder(Path(setup.folder)).trial_dir(tune.get_context().get_trial_id())
    atomic_write(trial_dir / RUN_FILE, json.dumps(config["run"]))
    train_trial(config["run"]["sample"], setup)


def run_confirmation(
    plan: SearchPlan,
    space: SearchSpace,
    folder: SearchFolder,
    *,
    top: int,
    seeds: int,
    address: str | None,
    echo: Callable[[str], None],
) -> pd.DataFrame:
    """Confirm the search in ``folder``; returns (and writes) ``confirmation.parquet``."""
    if top < 1 or seeds < 2:
        raise SearchError(f"confirmation needs --confirm >= 1 and >= 2 seeds, got {top}, {seeds}")
    default = {**space.fixed, **space.points[0]} if space.points else None
    candidates = pick_candidates(rank(read_trials(folder), plan), default, top)
    if not candidates:
        raise SearchError(f"search {plan.name!r} has no completed trial to confirm")
    seed_list = confirmation_seeds(plan.seed, seeds)
    confirm = SearchFolder(folder.confirm_dir)
    check_same_confirmation(confirm, candidates, seed_list)
    resources = Resources.load(folder)
    setup = dataclasses.replace(
        trial_setup(plan, resources, confirm), search=f"{plan.name}-confirm"
    )
    runs = [
        {"candidate": c.label, "source_trial": c.source_trial, "sample": {**c.sample, "seed": s}}
        for c in candidates
        for s in seed_list
    ]
    echo(
        f"confirming {len(candidates)} configurations x {seeds} seeds ({len(runs)} runs) of "
        f"{plan.name!r}: {', '.join(c.label for c in candidates)}"
    )
    started = connect(address)
    try:
        with scoped_environ(forced=TUNE_FORCED, defaults=TUNE_DEFAULTS):
            tuner = confirmation_tuner(plan, resources, confirm, setup, runs, echo)
            try:
                tuner.fit()
            finally:
                interrupts.route()  # Tune's SIGINT handler is gone with its run
    finally:
        if started:
            ray.shutdown()
    interrupts.stop_if_asked()  # stopped by a signal: resumed by the same command
    frame = collect(confirm, [c.label for c in candidates], plan.objective)
    write_table_atomic(folder.confirmation_table, pa.Table.from_pandas(frame, preserve_index=False))
    return frame


def check_same_confirmation(
    confirm: SearchFolder, candidates: list[Candidate], seeds: list[int]
) -> None:
    """Record what is confirmed; a second call must ask for the same (it then resumes)."""
    spec = {"seeds": seeds, "candidates": [dataclasses.asdict(c) for c in candidates]}
    path = confirm.path / "plan.yaml"
    if path.is_file():
        if yaml.safe_load(path.read_text()) != spec:
            raise SearchError(
                f"{confirm.path}: a confirmation of other configurations or seeds is on record; "
                "run it with the same --confirm and --confirm-seeds, or delete that folder"
            )
        return
    atomic_write(path, yaml.safe_dump(spec, sort_keys=False))


def confirmation_tuner(
    plan: SearchPlan,
    resources: Resources,
    confirm: SearchFolder,
    setup: TrialSetup,
    runs: list[dict[str, Any]],
    echo: Callable[[str], None],
) -> tune.Tuner:
    """A grid of (candidate, seed) runs, restored if an earlier call was interrupted."""
    trainable = tune.with_resources(
        tune.with_parameters(confirm_trial, setup=setup),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    experiment = str(confirm.tune)
    if tune.Tuner.can_restore(experiment):
        echo(f"resuming the confirmation from {experiment}")
        if note := reroot(confirm.tune, confirm.path):
            echo(note)
        return tune.Tuner.restore(
            experiment, trainable, resume_unfinished=True, resume_errored=True
        )
    tuner = tune.Tuner(
        trainable,
        param_space={"run": tune.grid_search(runs)},
        tune_config=tune.TuneConfig(
            num_samples=1,
            max_concurrent_trials=resources.trials_at_once,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=confirm.tune.name,
            storage_path=str(confirm.path),
            stop=None,  # every seed trains to the budget: stopping the unhealthy ones would
            # leave the statistics with the survivors only (flags stay in the diagnostics)
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_CHECKPOINTS),
            callbacks=[
                ConfirmationProgress(plan.objective, echo, len(runs), confirm),
                JsonLoggerCallback(),
                GracefulStop(),
                OneCopyPerCheckpoint(confirm),
            ],
            verbose=0,
        ),
    )
    mark(confirm.tune, confirm.path)
    return tuner


class ConfirmationProgress(tune.Callback):
    """Records how each confirmation run ended that left no ``result.json`` (it errored, or
    stopped itself), and prints a line as each run ends."""

    def __init__(
        self, objective: str, echo: Callable[[str], None], total: int, confirm: SearchFolder
    ) -> None:
        self.objective = objective
        self.echo = echo
        self.total = total
        self.confirm = confirm
        self.ended = 0

    def _record(self, trial: Trial, status: Status, reason: str) -> None:
        trial_dir = self.confirm.trial_dir(trial.trial_id)
        if read_result(trial_dir) is None:
            write_outcome(trial_dir, {"status": status.value, "reason": reason})

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info):
        self._record(trial, Status.ERRORED, error_reason(trial))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info):
        run = trial.config["run"]
        self._record(trial, *outcome(trial.last_result or {}, error=False))
        value = (trial.last_result or {}).get(self.objective)
        shown = f"{value:.4g}" if finite(value) else "-"
        self.ended += 1  # in this call (a resumed confirmation counts its remaining runs)
        self.echo(
            f"  {run['candidate']} seed {run['sample']['seed']}: {self.objective} {shown}"
            f"  [{self.ended} of {self.total} runs ended in this call]"
        )


def collect(confirm: SearchFolder, labels: list[str], objective: str) -> pd.DataFrame:
    """One row per run from the trial folders: which run it is, how it ended, its scores."""
    rows = []
    for run_file in sorted(confirm.trials_dir.glob(f"*/{RUN_FILE}")):
        run, result = json.loads(run_file.read_text()), read_result(run_file.parent)
        ended = result or read_outcome(run_file.parent) or UNFINISHED
        row: dict[str, Any] = {
            "candidate": run["candidate"],
            "source_trial": run["source_trial"] or "",
            "seed": run["sample"]["seed"],
            "trial_id": run_file.parent.name,
            "status": ended["status"],
            "reason": ended["reason"],
        }
        if result and result["status"] == Status.COMPLETED:
            last = result["last_eval"]
            row.update({k: v for k, v in last.items() if finite(v) and k not in PROGRESS_KEYS})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("candidate", "source_trial", "seed", "trial_id", "status", "reason", objective):
        if column not in frame:
            frame[column] = pd.Series(dtype=float if column in (objective, "seed") else object)
    frame["_order"] = frame["candidate"].map({label: i for i, label in enumerate(labels)})
    return frame.sort_values(["_order", "seed"]).drop(columns="_order").reset_index(drop=True)
