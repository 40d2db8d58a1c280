"""Hyperparameter search on Ray Tune with Optuna: the only module that imports ray and optuna.

One search is a Ray Tune experiment whose trials are :func:`harness.trial.run_trial`, the same
code path as ``run.py train`` and ``run.py rerun``.  Optuna's TPE (multivariate, grouped,
constant liar for parallel trials, seeded) proposes configurations; ASHA cuts weak trials at
validation rounds after the discriminator has switched on.

How a trial's end reaches Optuna (never as a good score unless it completed):

- completed                     -> COMPLETE with the objective (and cost) of its last validation
- cut by ASHA                   -> PRUNED, with the intermediate values it reported
- stopped itself (diverged/OOM) -> FAIL, status and reason as user attributes
- raised (after 2 retries)      -> FAIL

Everything lives in ``results/<name>/`` (see harness/results.py).  Running the same search
again restores the Ray experiment (``Tuner.restore``) and the Optuna study (SQLite): unfinished
and errored trials resume from their last checkpoint, and a trial whose training had already
ended before the interruption reports its recorded result instead of training again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before ray is imported: under `uv run`, Ray would otherwise ship the working tree to every
# worker and start each one through `uv run` (slow, and it moves relative paths).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import optuna  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.result import AUTO_RESULT_KEYS, DONE, SHOULD_CHECKPOINT  # noqa: E402
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from harness.config import TrialConfig  # noqa: E402
from harness.files import atomic_write, finite  # noqa: E402
from harness.health import stop_reason  # noqa: E402
from harness.metrics import SCORES  # noqa: E402
from harness.recipes import RECIPES  # noqa: E402
from harness.results import (  # noqa: E402
    LOST,
    TERMINAL,
    SearchFolder,
    SearchPlan,
    read_outcome,
    read_result,
    read_trials,
    write_outcome,
    write_trials,
)
from harness.space import Param, parse_space  # noqa: E402
from harness.trial import resolve_config, run_trial  # noqa: E402

STATUS = "trial_status"  # in every report: running | completed | stopped | pruned (a replay)
BOOKKEEPING = {"step", "epoch", "wall_s", STATUS, "reason", DONE, SHOULD_CHECKPOINT}
BOOKKEEPING |= set(AUTO_RESULT_KEYS)
REPO_ROOT = Path(__file__).resolve().parents[1]


class SearchError(ValueError):
    """A search cannot start or resume; the message is one line saying why."""


# ---------------------------------------------------------------------- one trial
@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a search shares; shipped to the Ray workers."""

    search: str
    folder: str  # absolute path of results/<name>
    recipe: str
    recipe_entry: str  # "module:Class", so recipes registered at run time work in workers
    budget: str
    data: str | None
    cpus: float
    gpus: float

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))

    def trial_config(self, sample: dict[str, Any]) -> TrialConfig:
        """Recipe defaults <- budget <- (torch threads = CPUs given) <- the trial's sample."""
        layer = {"threads": self.threads, **sample}
        return resolve_config(self.recipe, self.budget, sample=layer, data=self.data)

    def prepare_process(self) -> None:
        """Per-process limits Ray does not enforce itself."""
        RECIPES.setdefault(self.recipe, self.recipe_entry)
        torch.set_num_threads(self.threads)
        if 0 < self.gpus < 1 and torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(self.gpus)


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Ray trainable: run one configuration, report every validation to Tune."""
    trial_id = tune.get_context().get_trial_id()
    setup.prepare_process()
    folder = SearchFolder(Path(setup.folder))
    out_dir = folder.trial_dir(trial_id)
    ended = read_result(out_dir)
    if ended is not None:  # training ended before an interruption: report it, never retrain
        tune.report(final_metrics(ended))
        return
    cut = read_outcome(out_dir)
    if cut is not None and cut["status"] == "pruned":  # cut by ASHA before an interruption
        tune.report({STATUS: "pruned", "reason": cut["reason"], "step": cut["step"]})
        return
    facts: dict[str, float] = {}

    def on_report(kind: str, row: dict[str, Any], ckpt: Path | None) -> None:
        if kind != "eval":
            return
        metrics = {**numbers(row), **facts, STATUS: "running"}
        if ckpt is None:
            tune.report(metrics)
            return
        with ray_checkpoint(ckpt) as checkpoint:
            tune.report(metrics, checkpoint=checkpoint)

    with resume_point(tune.get_checkpoint()) as checkpoint_file:
        run_trial(
            setup.trial_config(config),
            out_dir,
            search=setup.search,
            trial_id=trial_id,
            diagnostics_root=folder.diagnostics,
            checkpoint=checkpoint_file,
            on_report=on_report,
            on_start=facts.update,
        )
    tune.report(final_metrics(read_result(out_dir)))


def numbers(row: dict[str, Any]) -> dict[str, Any]:
    """The finite numbers and flags of a row (what Tune, ASHA and Optuna may see)."""
    return {k: v for k, v in row.items() if isinstance(v, bool) or finite(v)}


def final_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The last report of a trial, from its result.json.  Scores only if it completed."""
    facts = {k: v for k, v in result.items() if k.startswith("params_")}
    metrics = {STATUS: result["status"], "reason": result["reason"], "step": result["step"]}
    if result["status"] == "completed":
        metrics.update(numbers(result["last_eval"]))
    return {**metrics, **numbers(facts)}


@contextmanager
def ray_checkpoint(trainer_checkpoint: Path) -> Iterator[tune.Checkpoint]:
    """A Ray checkpoint holding the trainer's exact checkpoint file (hard-linked, not copied)."""
    staging = trainer_checkpoint.parent / f".ray-{trainer_checkpoint.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            os.link(trainer_checkpoint, staging / trainer_checkpoint.name)
        except OSError:
            shutil.copy2(trainer_checkpoint, staging / trainer_checkpoint.name)
        yield tune.Checkpoint.from_directory(str(staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def resume_point(checkpoint: tune.Checkpoint | None) -> Iterator[Path | None]:
    """The trainer checkpoint file inside Ray's checkpoint (None for a fresh trial)."""
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as directory:
        found = sorted(Path(directory).glob("step_*.pt"))
        yield found[-1] if found else None


# ---------------------------------------------------------------------- Optuna
def distributions(params: dict[str, Param]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The YAML space as Optuna distributions."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, p in params.items():
        if p.kind == "choice":
            out[name] = optuna.distributions.CategoricalDistribution(list(p.choices))
        elif p.kind == "int":
            out[name] = optuna.distributions.IntDistribution(int(p.low), int(p.high))
        else:
            log = p.kind == "loguniform"
            out[name] = optuna.distributions.FloatDistribution(float(p.low), float(p.high), log=log)
    return out


class StatusAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna how each trial really ended (see the module docstring).

    Intermediate values are indexed by training step, once per step (a resumed trial repeats
    steps), and each Optuna trial carries the Ray trial id, status and reason as user attributes.
    The study, not Ray's snapshot, decides when ``max_trials`` have run: a trial that ended
    just before a crash and after Ray's last snapshot is known to Optuna only, and counts.
    """

    def __init__(self, *args: Any, max_trials: int, folder: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_trials = max_trials
        self._folder = folder
        self._reported: dict[str, set[int]] = {}

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._trials_run() >= self._max_trials:
            return Searcher.FINISHED
        params = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr("trial_id", trial_id)
        return params

    def _trials_run(self) -> int:
        """Trials started so far; a trial closed on restore as never known to Ray is not one."""
        trials = self._ot_study.get_trials(deepcopy=False)
        real = [t for t in trials if t.state != TrialState.FAIL or "status" in t.user_attrs]
        return len({t.user_attrs.get("trial_id", t.number) for t in real})

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or trial_id in self._completed_trials:
            return
        value, step = result.get(self.metric), result.get("step")
        if result.get(STATUS) != "running" or not finite(value) or step is None:
            return
        seen = self._reported.setdefault(trial_id, set())
        if int(step) not in seen:
            seen.add(int(step))
            self._ot_trials[trial_id].report(float(value), int(step))

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        result = result or {}
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [result.get(m) for m in metrics]
        status, reason = outcome(result, error)
        if status == "completed" and not all(finite(v) for v in values):
            status, reason = "stopped", f"no finite {', '.join(metrics)} at the end"
        state = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
            status, TrialState.FAIL
        )
        if status == "pruned":  # Tune skips the searcher for the result ASHA cut at
            self.on_trial_result(trial_id, result)
        if result.get(STATUS) != "pruned":  # a replayed cut: its folder already has it all
            self._record(trial_id, status, reason, result)
        ot_trial = self._ot_trials[trial_id]
        told = [float(v) for v in values] if state == TrialState.COMPLETE else None
        try:
            ot_trial.set_user_attr("status", status)
            ot_trial.set_user_attr("reason", reason)
            self._ot_study.tell(ot_trial, told, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:  # told before an interruption
            if state == TrialState.COMPLETE:
                self._add_resumed(ot_trial.number, trial_id, told, reason)
        self._completed_trials.add(trial_id)

    def _record(self, trial_id: str, status: str, reason: str, result: dict) -> None:
        """Write ``outcome.json`` before Optuna is told, so that a crash between the two
        still leaves the ending on disk for the trials table and for a replay on resume."""
        scores = {k: v for k, v in numbers(result).items() if k not in BOOKKEEPING}
        scores = {k: v for k, v in scores.items() if "/" not in k}  # not Tune's config/...
        doc = {"status": status, "reason": reason, "step": result.get("step"), **scores}
        write_outcome(self._trial_dir(trial_id), doc)

    def _add_resumed(self, number: int, trial_id: str, values: list[float], reason: str) -> None:
        """An errored trial that completed when resumed: add its result as a new Optuna trial
        (a finished one cannot change), unless Optuna already holds a result for it."""
        (old,) = [t for t in self._ot_study.get_trials(deepcopy=False) if t.number == number]
        if old.state != TrialState.FAIL:
            return  # completed or pruned before the interruption and replayed since
        attrs = {"trial_id": trial_id, "status": "completed", "reason": reason}
        self._ot_study.add_trial(
            optuna.trial.create_trial(
                params=old.params,
                distributions=old.distributions,
                values=values,
                user_attrs={**attrs, "resumed_after_error": old.number},
            )
        )

    def _trial_dir(self, trial_id: str) -> Path:
        return SearchFolder(Path(self._folder)).trial_dir(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """Restore, then close the Optuna trials asked for after Ray's last snapshot: Ray has
        forgotten them, so they failed, and their folders say they were lost."""
        super().restore(checkpoint_path)
        known = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in known:
                self._ot_study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)
                if "trial_id" in frozen.user_attrs:
                    trial_dir = self._trial_dir(frozen.user_attrs["trial_id"])
                    write_outcome(trial_dir, {"status": "lost", "reason": LOST})


class HealthStopper(tune.Stopper):
    """Ends a trial whose reported row raises a health flag (see harness.health)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return stop_reason(result) is not None

    def stop_all(self) -> bool:
        return False


def outcome(result: dict[str, Any], error: bool) -> tuple[str, str]:
    """(status, reason) of a finished trial from its last Tune result."""
    if error:
        return "errored", "raised an exception (see the trial's error.txt)"
    status = result.get(STATUS)
    if status in ("completed", "stopped", "pruned"):  # pruned: replayed after a resume
        return status, str(result.get("reason", ""))
    why = stop_reason(result)
    if why:  # ended by the HealthStopper at a flagged validation
        return "stopped", f"stopped: {why}"
    if not result:
        return "pruned", "removed before it started"
    return "pruned", f"cut by ASHA at step {result.get('step')}"


def make_searcher(plan: SearchPlan, folder: SearchFolder) -> StatusAwareOptunaSearch:
    """TPE (multivariate, grouped, constant liar, seeded) on a SQLite study in the folder."""
    space = parse_space(plan.space, plan.recipe, plan.space_file)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=plan.seed,
        multivariate=True,
        group=True,
        constant_liar=True,
        n_startup_trials=max(2, min(10, plan.trials // 3)),
    )
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder.optuna_db}")
    metric = plan.metrics if plan.multi_objective else plan.objective
    mode = plan.modes if plan.multi_objective else plan.mode
    return StatusAwareOptunaSearch(
        space=distributions(space.params),
        metric=metric,
        mode=mode,
        points_to_evaluate=space.points or None,
        sampler=sampler,
        study_name=plan.name,
        storage=storage,
        max_trials=plan.trials,
        folder=str(folder.path),
    )


def load_study(folder: SearchFolder, name: str) -> optuna.Study | None:
    """The search's Optuna study, or None if it has none yet."""
    if not folder.optuna_db.is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{folder.optuna_db}")
    except KeyError:
        return None


def param_importances(folder: SearchFolder, plan: SearchPlan, minimum: int = 4) -> dict[str, float]:
    """PED-ANOVA importances of the swept parameters for the objective ({} if too few trials)."""
    study = load_study(folder, plan.name)
    if study is None:
        return {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < minimum:
        return {}
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    target = (lambda t: t.values[0]) if plan.multi_objective else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), target=target
            )
        except (ValueError, RuntimeError):  # e.g. every trial had identical parameters
            return {}
    return {k: float(v) for k, v in found.items()}


def save_importances(folder: SearchFolder, plan: SearchPlan) -> None:
    """Write ``importances.json`` for the leaderboard (which then needs no Optuna import)."""
    found = param_importances(folder, plan)
    atomic_write(
        folder.importances,
        json.dumps({"objective": plan.objective, "importances": found}, indent=2),
    )


# ---------------------------------------------------------------------- trials.parquet
def trial_row(
    trial: Trial, setup: TrialSetup, swept: list[str], ended: bool = False
) -> dict[str, Any]:
    """One trials.parquet row from Ray's view of a trial and the ending the searcher recorded.

    A trial Ray terminated without an ending on record was stopped by an interrupted search
    (Ctrl-C): it is "interrupted" and resumes when the search is run again.
    """
    last = trial.last_result or {}
    recorded = read_outcome(Path(setup.folder) / "trials" / trial.trial_id)
    if trial.status == Trial.ERROR:
        status, reason = "errored", error_reason(trial)
    elif (ended or trial.status == Trial.TERMINATED) and recorded:
        status, reason = recorded["status"], recorded["reason"]
    elif ended:
        status, reason = outcome(last, error=False)
    elif trial.status == Trial.TERMINATED:
        status, reason = "interrupted", "the search was interrupted; run it again to continue"
    else:
        status = "running" if trial.status == Trial.RUNNING else "pending"
        reason = ""
    row: dict[str, Any] = {
        "search": setup.search,
        "trial_id": trial.trial_id,
        "status": status,
        "reason": reason,
        "retries": int(trial.num_failures),
        "step": last.get("step"),
        "train_s": trial.metric_analysis.get("wall_s", {}).get("max"),  # trainer time
        "time_s": last.get("time_total_s"),
    }
    for key, stats in trial.metric_analysis.items():
        if key in BOOKKEEPING or "/" in key:
            continue
        row[key] = stats.get("max" if key.startswith("flag_") else "last")  # flag: ever raised
        if key in SCORES:
            row[f"best_{key}"] = stats.get(SCORES[key].direction)
    row.update({f"config/{k}": trial.config.get(k) for k in swept})
    row["sample"] = json.dumps(trial.config)
    try:
        row["resolved_config"] = json.dumps(setup.trial_config(trial.config).flat())
    except ValueError:
        row["resolved_config"] = None
    return row


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

    def setup(self, **info) -> None:
        self.t0 = time.perf_counter()  # also on resume, where this object was unpickled

    def _write(self, trials: list[Trial], ended: Trial | None = None) -> list[dict[str, Any]]:
        rows = [trial_row(t, self.trial_setup, self.swept, ended=t is ended) for t in trials]
        write_trials(SearchFolder(Path(self.trial_setup.folder)), rows, every_live_trial=True)
        return rows

    def _say(self, text: str) -> None:
        if self.echo:
            print(f"[{time.perf_counter() - self.t0:6.0f}s] {text}", flush=True)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._write(trials)
        params = "  ".join(f"{k}={_short(trial.config.get(k))}" for k in self.swept)
        self._say(f"{trial.trial_id} started: {params}")

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info
    ) -> None:
        if result.get(STATUS) == "running":
            score = result.get(self.objective)
            shown = f"{score:.4g}" if finite(score) else "-"
            self._say(f"{trial.trial_id} step {result.get('step')}: {self.objective} {shown}")

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info):
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
        why = f" ({row['reason']})" if row["status"] != "completed" else ""
        self._say(
            f"{trial_id} {row['status']} at step {row['step']}: {self.objective} {shown}{why}"
            f"  [{done}/{self.total} done]"
        )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- the search
@dataclass
class SearchOutcome:
    finished: bool
    wall_s: float
    trials: Any  # pandas DataFrame of trials.parquet


def experiment_path(plan: SearchPlan, folder: SearchFolder) -> tuple[str, str]:
    """(storage_path, experiment name) for Ray: results/<name>/tune unless --storage is set."""
    if plan.storage:
        return plan.storage, plan.name
    return str(folder.path), folder.tune.name


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
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                object_store_memory=256 * 1024**2,
                **common,
            )
    except ConnectionError as err:
        raise SearchError(f"cannot reach Ray at {address!r}: {err}") from None
    return True


def fit_resources(plan: SearchPlan) -> None:
    """Fill in GPUs per trial and concurrency from the cluster's resources."""
    have = ray.cluster_resources()
    fit_to(plan, float(have.get("CPU", 0)), float(have.get("GPU", 0)))


def fit_to(plan: SearchPlan, cpus: float, gpus: float) -> None:
    """GPUs per trial (1 where there are GPUs), and trials at once: what fits, at most
    ``--max-concurrent`` and ``--trials``; refuse a trial that cannot fit at all."""
    if plan.gpus_per_trial is None:
        plan.gpus_per_trial = 1.0 if gpus >= 1 else 0.0
    slots = math.floor(cpus / plan.cpus_per_trial + 1e-9)
    if plan.gpus_per_trial > 0:
        slots = min(slots, math.floor(gpus / plan.gpus_per_trial + 1e-9))
    if slots < 1:
        raise SearchError(
            f"a trial needs {plan.cpus_per_trial:g} CPU and {plan.gpus_per_trial:g} GPU but the "
            f"cluster has {cpus:g} CPU and {gpus:g} GPU"
        )
    plan.max_concurrent = min(plan.max_concurrent or slots, slots, plan.trials)


def make_scheduler(plan: SearchPlan) -> FIFOScheduler:
    if plan.scheduler != "asha":
        return FIFOScheduler()
    return AsyncHyperBandScheduler(
        time_attr="step",
        metric=plan.objective,
        mode=plan.mode,
        max_t=plan.max_t,
        grace_period=plan.grace_period,
        reduction_factor=3,
        stop_last_trials=False,
    )


def trial_dirname(trial: Trial) -> str:
    return trial.trial_id


def run_search(
    plan: SearchPlan, folder: SearchFolder, *, echo: Callable[[str], None], progress: bool = True
) -> SearchOutcome:
    """Start, or continue, the search ``plan`` in ``folder``; returns when it ends."""
    t_start = time.perf_counter()
    started = connect(plan.address)
    ray_start_s = time.perf_counter() - t_start
    try:
        storage_path, name = experiment_path(plan, folder)
        experiment = f"{storage_path.rstrip('/')}/{name}"
        resuming = tune.Tuner.can_restore(experiment)
        if not resuming:
            start_fresh(plan, folder)
        setup = TrialSetup(
            search=plan.name,
            folder=str(folder.path),
            recipe=plan.recipe,
            recipe_entry=RECIPES[plan.recipe],
            budget=plan.budget,
            data=plan.data,
            cpus=plan.cpus_per_trial,
            gpus=plan.gpus_per_trial,
        )
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, setup=setup),
            {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial},
        )
        # Our rows are heterogeneous by design: a stopped trial's last row has no score.
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
        # Snapshot the experiment often, so a crash loses (almost) no trial bookkeeping; the
        # snapshots Tune forces after every second trial checkpoint are wanted, not a warning.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        if resuming:
            echo(f"resuming search {plan.name!r} from {experiment}")
            tuner = tune.Tuner.restore(
                experiment, trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = new_tuner(plan, folder, setup, trainable, storage_path, name, progress)
        t_fit = time.perf_counter()
        tuner.fit()
        fit_s = time.perf_counter() - t_fit
    finally:
        if started:
            ray.shutdown()
    wall_s = time.perf_counter() - t_start
    trials = write_trials(folder, [])
    save_importances(folder, plan)
    counted = trials[trials["status"] != "lost"]
    finished = len(counted) >= plan.trials and bool(trials["status"].isin(TERMINAL).all())
    if finished:
        summary = {
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_s": wall_s,  # this run of the search: Ray start, trials, Ray shutdown
            "ray_start_s": ray_start_s,
            "fit_s": fit_s,
            "statuses": trials["status"].value_counts().to_dict(),
        }
        atomic_write(folder.summary, json.dumps(summary, indent=2))
    return SearchOutcome(finished, wall_s, trials)


def start_fresh(plan: SearchPlan, folder: SearchFolder) -> None:
    """Prepare a new search folder; refuse to overwrite recorded trials Ray cannot restore."""
    recorded = len(read_trials(folder)) + len(list(folder.trials_dir.glob("*/result.json")))
    if recorded:
        raise SearchError(
            f"search {plan.name!r} has recorded trials but no restorable Ray experiment under "
            f"{folder.path}; start a new search with another --name"
        )
    fit_resources(plan)
    plan.save(folder)
    # whatever a start that never got to record a trial left behind
    for stale in (folder.optuna_db, folder.tune, folder.trials_dir, folder.diagnostics):
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)


def new_tuner(
    plan: SearchPlan,
    folder: SearchFolder,
    setup: TrialSetup,
    trainable: Any,
    storage_path: str,
    name: str,
    progress: bool,
) -> tune.Tuner:
    space = parse_space(plan.space, plan.recipe, plan.space_file)
    return tune.Tuner(
        trainable,
        param_space=dict(space.fixed),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(plan, folder),
            scheduler=make_scheduler(plan),
            num_samples=plan.trials,
            max_concurrent_trials=plan.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            stop=HealthStopper() if plan.stop_unhealthy else None,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[TrialsTable(setup, plan, echo=progress)],
            verbose=0,  # progress lines come from TrialsTable
        ),
    )
