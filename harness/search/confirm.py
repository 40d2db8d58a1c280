"""The confirmation stage on Ray: the top K configurations and the paper default, in rounds of
fresh seeds until the verdict is decided (or a fixed number each).

Every run is an ordinary trial (:func:`~harness.search.trainable.train_trial`) at the setting's
budget and the search's resources, in the confirmation's own folder (``confirm/`` at the search's
budget, ``confirm-<budget>-<batches>/`` at another), with its own ``tune/``, ``trials/`` and
``diagnostics/``.  Each round is recorded in ``rounds.yaml`` before it starts and runs as its own
Tune experiment (``tune/`` for the first, ``tune-<r>/`` after), so an interrupted confirmation
resumes like a search: run the same command again; the round in flight is restored, and the
rounds after it are decided from the same runs as before.  Which seeds come next and what the runs
mean is computed by :mod:`harness.results.confirmation`, which needs no Ray.
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
from harness.recipes import recipe_class
from harness.results.confirmation import (
    FINISHED_FILE,
    PLAN_FILE,
    Candidate,
    ConfirmRequest,
    Setting,
    confirm_folder,
    confirmation_seeds,
    confirmation_spec,
    guard_metrics,
    pick_candidates,
    progress_of,
    read_confirmation,
    scores_of,
    search_batches,
    setting_for,
)
from harness.results.confirmation_summary import summarise_confirmation
from harness.results.folder import SearchFolder
from harness.results.leaderboard import rank
from harness.results.plan import Resources, SearchPlan
from harness.results.sequential import Design, Progress
from harness.results.space import SearchSpace
from harness.results.trial_files import PROGRESS_KEYS, read_outcome, read_result, write_outcome
from harness.results.trials import read_trials
from harness.results.verdict import verdict_line
from harness.runs.resolve import resolve_config
from harness.runs.schedule import SCHEDULE_KEY
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
from harness.search.tracking import tracked_trials
from harness.search.trainable import TrialSetup, train_trial
from harness.search.trials_table import error_reason
from harness.status import Status

RUN_FILE = "run.json"  # in each confirmation trial's folder: which candidate and seed it is
ROUNDS_FILE = "rounds.yaml"  # in a confirmation's folder: the runs of each round, as started
UNFINISHED = {"status": Status.ERRORED.value, "reason": "did not finish (see confirm/tune)"}


def confirm_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """One confirmation run: the candidate's sample with one of the confirmation seeds."""
    trial_dir = SearchFolder(Path(setup.folder)).trial_dir(tune.get_context().get_trial_id())
    atomic_write(trial_dir / RUN_FILE, json.dumps(config["run"]))
    train_trial(config["run"]["sample"], setup)


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """One confirmation ready to run: what it trains, where, and how it decides."""

    plan: SearchPlan
    folder: SearchFolder  # the search's
    confirm: SearchFolder  # this confirmation's
    setting: Setting
    candidates: list[Candidate]
    design: Design
    seeds: list[int]  # seed r of every candidate, up to the design's maximum
    samples: dict[str, dict[str, Any]]  # candidate label -> what each of its runs trains

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.candidates]


def prepare(
    plan: SearchPlan, space: SearchSpace, folder: SearchFolder, request: ConfirmRequest
) -> Confirmation:
    """Everything a confirmation needs, checked before anything trains; a second call with a
    different request for the same setting is refused (the same one resumes)."""
    setting = setting_for(plan, request.budget, request.batches)
    default = {**space.fixed, **space.points[0]} if space.points else None
    candidates = pick_candidates(rank(read_trials(folder), plan), default, request.top)
    if not candidates:
        raise SearchError(f"search {plan.name!r} has no completed trial to confirm")
    design = request.design(plan.objective, candidates)
    seeds = confirmation_seeds(plan.seed, design.max_seeds)
    confirm = confirm_folder(folder, setting)
    check_same_confirmation(confirm, confirmation_spec(candidates, seeds, design, setting))
    samples = {c.label: run_sample(plan, setting, c) for c in candidates}
    return Confirmation(plan, folder, confirm, setting, candidates, design, seeds, samples)


def run_sample(plan: SearchPlan, setting: Setting, candidate: Candidate) -> dict[str, Any]:
    """The candidate's sample at the setting's batches, its validation also scoring the
    recipe's guard metrics where it does not already (checked as a trial would resolve it; a
    population-based winner's schedule stays in the sample, and the run replays it)."""
    sample = dict(candidate.sample)
    if not setting.search:
        sample["batches"] = setting.batches
    static = {k: v for k, v in sample.items() if k != SCHEDULE_KEY}  # a PBT winner's schedule
    cfg = resolve_config(plan.recipe, setting.budget, sample=static, data=plan.data)
    return {**sample, **recipe_class(plan.recipe).measuring(cfg.model, guard_metrics(plan))}


def run_confirmation(
    plan: SearchPlan,
    space: SearchSpace,
    folder: SearchFolder,
    request: ConfirmRequest,
    *,
    address: str | None,
    echo: Callable[[str], None],
) -> pd.DataFrame:
    """Confirm the search in ``folder`` as ``request`` asks; returns this confirmation's rows
    (also merged into ``confirmation.parquet``)."""
    job = prepare(plan, space, folder, request)
    echo(
        f"confirming {len(job.candidates)} configurations of {plan.name!r} at "
        f"{job.setting.describe()}: {', '.join(job.labels)}; {job.design.describe()}"
    )
    if (job.confirm.path / FINISHED_FILE).is_file():  # decided before: nothing to train
        return save_rows(job)
    resources = Resources.load(folder)
    setup = dataclasses.replace(
        trial_setup(plan, resources, job.confirm),
        search=f"{plan.name}-confirm",
        budget=job.setting.budget,
    )
    started = connect(address)
    try:
        with scoped_environ(forced=TUNE_FORCED, defaults=TUNE_DEFAULTS):
            return run_rounds(job, resources, setup, echo)
    finally:
        if started:
            ray.shutdown()


def run_rounds(
    job: Confirmation, resources: Resources, setup: TrialSetup, echo: Callable[[str], None]
) -> pd.DataFrame:
    """Finish the round in flight, then run rounds until the procedure has its verdict."""
    rounds = read_rounds(job.confirm)
    if rounds:
        fit_round(job, resources, setup, len(rounds), rounds[-1], echo)
    while True:
        frame = save_rows(job)
        progress = progress_of(frame, job.plan, job.design, job.labels)
        if rounds:
            summary = summarise_confirmation(
                frame, job.plan, None, job.setting, job.design, job.labels
            )
            echo(f"after round {len(rounds)}: {verdict_line(summary)}")
        if progress.finished:
            atomic_write(
                job.confirm.path / FINISHED_FILE,
                json.dumps({"outcome": progress.outcome, "seeds": progress.seeds}),
            )
            return frame
        runs = next_runs(job, frame, progress, len(rounds) + 1)
        rounds.append(runs)
        atomic_write(job.confirm.path / ROUNDS_FILE, yaml.safe_dump(rounds, sort_keys=False))
        fit_round(job, resources, setup, len(rounds), runs, echo)


def next_runs(
    job: Confirmation, frame: pd.DataFrame, progress: Progress, number: int
) -> list[dict[str, Any]]:
    """The runs of round ``number``: each candidate ``progress`` wants, from the seeds it has
    run up to the seeds it should have."""
    scores = scores_of(frame, job.plan.objective, job.labels)
    sources = {c.label: c.source_trial for c in job.candidates}
    return [
        {
            "candidate": label,
            "source_trial": sources[label],
            "sample": {**job.samples[label], "seed": seed},
            "round": number,
        }
        for label, wanted in progress.wanted.items()
        for seed in job.seeds[len(scores[label]) : wanted]
    ]


def read_rounds(confirm: SearchFolder) -> list[list[dict[str, Any]]]:
    path = confirm.path / ROUNDS_FILE
    return (yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def fit_round(
    job: Confirmation,
    resources: Resources,
    setup: TrialSetup,
    number: int,
    runs: list[dict[str, Any]],
    echo: Callable[[str], None],
) -> None:
    """Run round ``number`` to its end: its Tune experiment restored if an earlier call started
    it (the runs that ended are not trained again), else started."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["candidate"]] = counts.get(run["candidate"], 0) + 1
    plan = ", ".join(f"{label} {n} seed{'s' if n > 1 else ''}" for label, n in counts.items())
    echo(f"round {number}: {plan}")
    trainable = tune.with_resources(
        tune.with_parameters(confirm_trial, setup=setup),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    name = job.confirm.tune.name if number == 1 else f"{job.confirm.tune.name}-{number}"
    experiment = job.confirm.path / name
    if tune.Tuner.can_restore(str(experiment)):
        echo(f"resuming round {number} from {experiment}")
        if note := reroot(experiment, job.confirm.path):
            echo(note)
        tuner = tune.Tuner.restore(
            str(experiment), trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        callbacks = [
            ConfirmationProgress(job.plan.objective, echo, len(runs), job.confirm),
            JsonLoggerCallback(),
            GracefulStop(),
            OneCopyPerCheckpoint(job.confirm),
            *tracked_trials(
                job.plan, setup, SearchFolder(job.confirm.path.parent), confirmation=True
            ),
        ]
        tuner = round_tuner(trainable, runs, resources, experiment, callbacks)
        mark(experiment, job.confirm.path)
    try:
        tuner.fit()
    finally:
        interrupts.route()  # Tune's SIGINT handler is gone with its run
    interrupts.stop_if_asked()  # stopped by a signal: resumed by the same command


def round_tuner(
    trainable: Any,
    runs: list[dict[str, Any]],
    resources: Resources,
    experiment: Path,
    callbacks: list[tune.Callback],
) -> tune.Tuner:
    """A new round: one Tune trial per run, into ``experiment``."""
    return tune.Tuner(
        trainable,
        param_space={"run": tune.grid_search(runs)},
        tune_config=tune.TuneConfig(
            num_samples=1,
            max_concurrent_trials=resources.trials_at_once,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment.name,
            storage_path=str(experiment.parent),
            stop=None,  # every seed trains to the budget: stopping the unhealthy ones would
            # leave the statistics with the survivors only (flags stay in the diagnostics)
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_CHECKPOINTS),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def check_same_confirmation(confirm: SearchFolder, spec: dict[str, Any]) -> None:
    """Record what is confirmed; a second call must ask for the same (it then resumes)."""
    path = confirm.path / PLAN_FILE
    if path.is_file():
        if yaml.safe_load(path.read_text()) != spec:
            raise SearchError(
                f"{confirm.path}: a confirmation of other configurations or seeds is on record "
                "(or of another maximum or margin); run it with the same --confirm, "
                "--confirm-seeds, --confirm-max-seeds and --confirm-margin (run.py confirm: "
                "--top, --seeds, --max-seeds, --margin), or delete that folder"
            )
        return
    atomic_write(path, yaml.safe_dump(spec, sort_keys=False))


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
        self.ended += 1  # in this call (a resumed round counts its remaining runs)
        self.echo(
            f"  {run['candidate']} seed {run['sample']['seed']}: {self.objective} {shown}"
            f"  [{self.ended} of {self.total} runs ended in this call]"
        )


def collect(
    confirm: SearchFolder, labels: list[str], objective: str, setting: Setting | None = None
) -> pd.DataFrame:
    """One row per run from the trial folders: which run it is, how it ended, its scores, and
    (given the ``setting``) the budget and batches it trained at."""
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
        if setting is not None:
            row.update(budget=setting.budget, batches=setting.batches, round=run.get("round", 1))
        if result and result["status"] == Status.COMPLETED:
            last = result["last_eval"]
            row.update({k: v for k, v in last.items() if finite(v) and k not in PROGRESS_KEYS})
        rows.append(row)
    frame = pd.DataFrame(rows)
    columns = ["candidate", "source_trial", "seed", "trial_id", "status", "reason", objective]
    columns += ["budget", "batches", "round"] if setting is not None else []
    numbers = {"seed": "int64", "batches": "int64", "round": "int64", objective: float}
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype=numbers.get(column, object))
    frame["_order"] = frame["candidate"].map({label: i for i, label in enumerate(labels)})
    return frame.sort_values(["_order", "seed"]).drop(columns="_order").reset_index(drop=True)


def save_rows(job: Confirmation) -> pd.DataFrame:
    """This confirmation's rows, written into ``confirmation.parquet`` in place of its earlier
    ones; the other confirmations' rows are kept (a table from before the ``budget`` and
    ``batches`` columns is the search's budget).  The search's budget first, then by batches."""
    frame = collect(job.confirm, job.labels, job.plan.objective, job.setting)
    table = read_confirmation(job.folder)
    own = search_batches(job.plan)
    merged = frame
    if table is not None and len(table):
        if "batches" not in table:
            table = table.assign(budget=job.plan.budget, batches=own)
        same = (table["budget"] == job.setting.budget) & (table["batches"] == job.setting.batches)
        kept = [part for part in (table[~same], frame) if len(part)]
        if len(kept) > 1:
            merged = pd.concat(kept, ignore_index=True)
            other = (merged["budget"] != job.plan.budget) | (merged["batches"] != own)
            order = pd.DataFrame({"other": other, "batches": merged["batches"]})
            merged = merged.loc[order.sort_values(["other", "batches"], kind="stable").index]
            merged = merged.reset_index(drop=True)
        elif kept:
            merged = kept[0]
    write_table_atomic(
        job.folder.confirmation_table, pa.Table.from_pandas(merged, preserve_index=False)
    )
    return frame
