"""The search itself: Ray up, the trials' share of the cluster, the Tuner, and the summary.

Everything lives in ``results/<name>/`` (see harness/results/folder.py).  Running the same search
again restores the Ray experiment (``Tuner.restore``) and the Optuna study (rebuilt from the
trials table first if it cannot be read, see harness/search/study_rebuild.py): unfinished
and errored trials resume from their last checkpoint, and a trial whose training had already
ended before the interruption reports its recorded result instead of training again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray._private import ray_constants
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from harness import interrupts
from harness.diagnostics.detectors import stop_reason
from harness.faults import fault_point
from harness.files import atomic_write
from harness.recipes import RECIPES
from harness.results.folder import SearchFolder
from harness.results.plan import Resources, SearchPlan
from harness.results.request import POPULATION_SCHEDULERS
from harness.results.space import SearchSpace
from harness.results.trials import read_trials, write_trials
from harness.scoped import scoped_environ
from harness.search.checkpoints import KEPT_CHECKPOINTS, OneCopyPerCheckpoint
from harness.search.environment import TUNE_DEFAULTS, TUNE_FORCED
from harness.search.graceful import GracefulStop
from harness.search.optuna_bridge import make_searcher, save_importances
from harness.search.pbt import (
    PopulationEndings,
    population_param_space,
    population_searcher,
)
from harness.search.population_scheduler import make_population_scheduler
from harness.search.reroot import mark, reroot
from harness.search.snapshot import SnapshotKeeper, heal
from harness.search.study_rebuild import repair_study
from harness.search.study_storage import journal_lock
from harness.search.tracking import open_trial_tracker, tracked_trials, tracking_target
from harness.search.trainable import TrialSetup, train_trial
from harness.search.trials_table import TrialsTable
from harness.status import TERMINAL, Status

REPO_ROOT = Path(__file__).resolve().parents[2]


class SearchError(ValueError):
    """A search cannot start or resume; the message is one line saying why."""


@dataclass(frozen=True)
class SearchOutcome:
    finished: bool
    wall_s: float
    trials: pd.DataFrame  # trials.parquet


def run_search(
    plan: SearchPlan,
    space: SearchSpace,
    folder: SearchFolder,
    *,
    address: str | None,
    echo: Callable[[str], None],
    progress: bool = True,
) -> SearchOutcome:
    """Start, or continue, the search ``plan`` over ``space`` in ``folder``; returns when it
    ends.  ``address`` is the Ray cluster to attach to (None: start a local Ray)."""
    t_start = time.perf_counter()
    started = connect(address)
    ray_start_s = time.perf_counter() - t_start
    try:
        fit_s = fit(plan, space, folder, address, echo, progress)
    finally:
        if started:
            ray.shutdown()
    wall_s = time.perf_counter() - t_start  # Ray start, trials, Ray shutdown
    outcome = finish(plan, folder, {"wall_s": wall_s, "ray_start_s": ray_start_s, "fit_s": fit_s})
    interrupts.stop_if_asked()  # stopped by a signal: the table is written, the command ends
    return outcome


def fit(
    plan: SearchPlan,
    space: SearchSpace,
    folder: SearchFolder,
    address: str | None,
    echo: Callable[[str], None],
    progress: bool,
) -> float:
    """Run the Ray experiment to its end (restored if Ray can, else new); its seconds."""
    storage_path, name = experiment_path(plan, folder)
    experiment = f"{storage_path.rstrip('/')}/{name}"
    resuming = tune.Tuner.can_restore(experiment)
    resources = Resources.load(folder) if resuming else start_fresh(plan, folder, address)
    setup = trial_setup(plan, resources, folder)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, setup=setup),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    with scoped_environ(forced=TUNE_FORCED, defaults=TUNE_DEFAULTS):
        if resuming:
            echo(f"resuming search {plan.name!r} from {experiment}")
            local = local_experiment(plan, folder)
            if local is not None:  # mended where a kill cut it short, re-rooted where it moved
                for note in (heal(local), reroot(local, folder.path)):
                    if note:
                        echo(note)
            if note := repair_study(plan, space, folder):
                echo(note)
            tuner = tune.Tuner.restore(
                experiment, trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = new_tuner(plan, space, resources, folder, setup, trainable, progress)
            if (local := local_experiment(plan, folder)) is not None:
                mark(local, folder.path)
        echo(f"TensorBoard (step and eval rows per trial): tensorboard --logdir {folder.tune}")
        target = tracking_target(plan)
        if target is not None:  # the tracker opened, so checked, before a trial starts
            echo(f"tracking: {open_trial_tracker(target, folder).where()}")
        t_fit = time.perf_counter()
        try:
            tuner.fit()
        finally:
            interrupts.route()  # Tune's SIGINT handler is gone with its run
        return time.perf_counter() - t_fit


def finish(plan: SearchPlan, folder: SearchFolder, seconds: dict[str, float]) -> SearchOutcome:
    """The final trials table and importances, and ``summary.json`` once every trial ended."""
    trials = write_trials(folder, [])
    save_importances(folder, plan)
    counted = trials[trials["status"] != Status.LOST]
    finished = len(counted) >= plan.trials and bool(trials["status"].isin(TERMINAL).all())
    if finished:
        summary = {
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            **seconds,
            "statuses": trials["status"].value_counts().to_dict(),
        }
        atomic_write(folder.summary, json.dumps(summary, indent=2))
    return SearchOutcome(finished, seconds["wall_s"], trials)


def experiment_path(plan: SearchPlan, folder: SearchFolder) -> tuple[str, str]:
    """(storage_path, experiment name) for Ray: results/<name>/tune unless --storage is set."""
    if plan.storage:
        return plan.storage, plan.name
    return str(folder.path), folder.tune.name


def local_experiment(plan: SearchPlan, folder: SearchFolder) -> Path | None:
    """The experiment's folder on this machine's file system; None where --storage is a URI."""
    storage_path, name = experiment_path(plan, folder)
    return None if "://" in storage_path else Path(storage_path, name)


def connect(address: str | None) -> bool:
    """Attach to ``address`` or start a local Ray; True if this call started it."""
    if ray.is_initialized():
        return False
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    common = dict(
        log_to_driver=False,
        logging_level="warning",
        runtime_env={"env_vars": {"PYTHONPATH": path, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}},
    )
    if address:
        try:
            ray.init(address=address, **common)
        except ConnectionError as err:
            raise SearchError(f"cannot reach Ray at {address!r}: {err}") from None
        interrupts.route()  # in place of the SIGTERM handlers ray.init installed
        return True

    def start_local() -> None:
        with machine_local():
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,  # an HTTP server that runs jobs: not wanted here
                object_store_memory=256 * 1024**2,
                **common,
            )

    for _ in range(LOCAL_RAY_ATTEMPTS - 1):
        try:
            start_local()
            break
        except Exception as err:  # Ray raises a bare Exception when its daemons start late
            if RAY_START_TIMEOUT not in str(err):
                raise
            ray.shutdown()  # the half-started node, before the next try
    else:
        start_local()  # the last try: what it raises is the answer
    interrupts.route()  # in place of the SIGTERM handlers ray.init installed
    return True


@contextmanager
def machine_local() -> Iterator[None]:
    """A Ray started in this block is a single-machine one: its node takes the loopback address,
    so its GCS, raylet, workers and agents listen on loopback only (docs/reliability.md,
    "Network"), with token authentication on as for any local ``ray.init()``.

    This is Ray's own switch for a cluster-less machine (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    on macOS and Windows), but Ray reads that variable once, when it is imported, and a driver
    that joins a cluster must not have it; so the constant it sets is held off for the start
    only.  tests/test_ray_loopback.py lists every listening socket to prove it still works.
    """
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


LOCAL_RAY_ATTEMPTS = 3
RAY_START_TIMEOUT = "timed out during startup"
"""Ray waits a fixed 30 s for its raylet to register; on a loaded machine that can pass while
nothing is wrong, so starting the local cluster is tried again (never for a remote --address)."""


def start_fresh(plan: SearchPlan, folder: SearchFolder, address: str | None) -> Resources:
    """Prepare a new search folder and fit the trials to the cluster; refuse to overwrite
    recorded trials Ray cannot restore."""
    recorded = len(read_trials(folder)) + len(list(folder.trials_dir.glob("*/result.json")))
    if recorded:
        raise SearchError(
            f"search {plan.name!r} has recorded trials but no restorable Ray experiment under "
            f"{folder.path}; start a new search with another --name"
        )
    have = ray.cluster_resources()
    resources = fit_to(plan, float(have.get("CPU", 0)), float(have.get("GPU", 0)), address)
    plan.save(folder, resources)
    fault_point("search_prepared")
    # whatever a start that never got to record a trial left behind
    study = (folder.optuna_journal, folder.optuna_db, journal_lock(folder.optuna_journal))
    for stale in (*study, folder.tune, folder.trials_dir, folder.diagnostics):
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)
    return resources


def fit_to(plan: SearchPlan, cpus: float, gpus: float, address: str | None = None) -> Resources:
    """GPUs per trial (1 where there are GPUs), and trials at once: what fits, at most
    ``--max-concurrent`` and ``--trials``; refuse a trial that cannot fit at all."""
    per_gpu = plan.gpus_per_trial
    if per_gpu is None:
        per_gpu = 1.0 if gpus >= 1 else 0.0
    slots = math.floor(cpus / plan.cpus_per_trial + 1e-9)
    if per_gpu > 0:
        slots = min(slots, math.floor(gpus / per_gpu + 1e-9))
    if slots < 1:
        raise SearchError(
            f"a trial needs {plan.cpus_per_trial:g} CPU and {per_gpu:g} GPU but the "
            f"cluster has {cpus:g} CPU and {gpus:g} GPU"
        )
    trials_at_once = min(plan.max_concurrent or slots, slots, plan.trials)
    return Resources(plan.cpus_per_trial, per_gpu, trials_at_once, address)


def trial_setup(plan: SearchPlan, resources: Resources, folder: SearchFolder) -> TrialSetup:
    return TrialSetup(
        search=plan.name,
        folder=str(folder.path),
        recipe=plan.recipe,
        recipe_entry=RECIPES[plan.recipe],
        budget=plan.budget,
        data=plan.data,
        cpus=resources.cpus_per_trial,
        gpus=resources.gpus_per_trial,
    )


class HealthStopper(tune.Stopper):
    """Ends a trial whose reported row raises a health flag (see harness.diagnostics.detectors)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return stop_reason(result) is not None

    def stop_all(self) -> bool:
        return False


COST = "batches"
"""ASHA's clock: training batches a trial has drawn, so a 3:1 trial and a 1:1 trial are compared
after the same data and generator passes, not after the same number of iterations."""


def make_scheduler(plan: SearchPlan) -> FIFOScheduler:
    """ASHA on the objective, its rungs at ``grace * 3**k`` batches strictly below the budget.

    Ray places a rung at ``max_t`` itself when ``max_t / grace`` is a power of the reduction
    factor, which would cut trials at their final validation; one batch less keeps every rung
    before it, so a trial that reaches its budget always completes.
    """
    if plan.scheduler != "asha":
        return FIFOScheduler()
    return AsyncHyperBandScheduler(
        time_attr=COST,
        metric=plan.objective,
        mode=plan.mode,
        max_t=plan.max_t - 1,
        grace_period=plan.grace_period,
        reduction_factor=3,
        stop_last_trials=False,
    )


def trial_dirname(trial: Trial) -> str:
    return trial.trial_id


def new_tuner(
    plan: SearchPlan,
    space: SearchSpace,
    resources: Resources,
    folder: SearchFolder,
    setup: TrialSetup,
    trainable: Any,
    progress: bool,
) -> tune.Tuner:
    storage_path, name = experiment_path(plan, folder)
    local = local_experiment(plan, folder)
    if plan.scheduler in POPULATION_SCHEDULERS:
        # the whole population live at once (Ray pauses members in turn), no sampler, and health
        # flags answered by a copy from a healthy donor (harness/search/pbt.py), not by a stop
        search_alg, scheduler = (
            population_searcher(plan, space),
            make_population_scheduler(plan, space, folder),
        )
        at_once, stopper = None, None
        endings: list[tune.Callback] = [PopulationEndings(folder, plan.objective)]
        param_space = population_param_space(space)
    else:
        search_alg, scheduler = make_searcher(plan, space, folder), make_scheduler(plan)
        at_once, endings = resources.trials_at_once, []
        stopper = HealthStopper() if plan.stop_unhealthy else None
        param_space = dict(space.fixed)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=plan.trials,
            max_concurrent_trials=at_once,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_CHECKPOINTS),
            callbacks=[
                *endings,
                TrialsTable(setup, plan, echo=progress),
                JsonLoggerCallback(),
                GracefulStop(),
                OneCopyPerCheckpoint(folder),
                *([SnapshotKeeper(local)] if local is not None else []),
                *tracked_trials(plan, setup, folder),
            ],
            verbose=0,  # progress lines come from TrialsTable
        ),
    )
