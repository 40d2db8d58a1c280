"""Optuna under Ray Tune: the space as distributions, the study, and how each ending reaches it.

How a trial's end reaches Optuna (never as a good score unless it completed):

- completed                        -> COMPLETE with the objective (and cost) of its last validation
- cut by ASHA                      -> PRUNED, with the intermediate values it reported
- stopped itself (diverged, OOM,   -> PRUNED, with a NaN intermediate value where it stopped, so
  or unhealthy)                       TPE counts it among the worst trials that got that far and
                                      learns where the unstable regions are (a FAIL it ignores)
- raised (after 2 retries)         -> FAIL: a crash says nothing about the configuration

Each trial also gets its own training seed, derived from the search seed and its Optuna trial
number (:func:`trial_seed`), so no single initialisation decides the ranking and the same
search seed reproduces every trial.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from harness.diagnostics.detectors import stop_reason
from harness.faults import fault_point
from harness.files import atomic_write, finite
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.seeds import TRIALS, derive_seed
from harness.results.space import Param, SearchSpace
from harness.results.trial_files import LOST, read_outcome, write_outcome
from harness.search.study_storage import REBUILT, load_study, open_storage
from harness.search.trainable import STATUS, TUNE_BOOKKEEPING_KEYS, numbers
from harness.status import Status

OPTUNA_STATE = {
    Status.COMPLETED: TrialState.COMPLETE,
    Status.PRUNED: TrialState.PRUNED,
    Status.STOPPED: TrialState.PRUNED,
}
"""The Optuna state of an ending; every other ending (errored, lost) is a FAIL."""


def trial_seed(search_seed: int, number: int) -> int:
    """The training seed of Optuna trial ``number`` in a search seeded ``search_seed``."""
    return derive_seed(search_seed, TRIALS, number)


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

    def __init__(
        self,
        *args: Any,
        max_trials: int,
        folder: str,
        search_seed: int,
        stop_unhealthy: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._stop_unhealthy = stop_unhealthy
        self._max_trials = max_trials
        self._search_seed = search_seed
        self._folder = folder
        self._reported: dict[str, set[int]] = {}

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._trials_run() >= self._max_trials:
            return Searcher.FINISHED
        params = super().suggest(trial_id)
        if trial_id not in self._ot_trials or not isinstance(params, dict):
            return params
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("trial_id", trial_id)
        return {**params, "seed": trial_seed(self._search_seed, ot_trial.number)}

    def _trials_run(self) -> int:
        """Trials started so far; a trial closed on restore as never known to Ray is not one."""
        trials = self._ot_study.get_trials(deepcopy=False)
        asked = [t for t in trials if t.state != TrialState.WAITING]  # not a queued point
        real = [t for t in asked if t.state != TrialState.FAIL or "status" in t.user_attrs]
        return len({t.user_attrs.get("trial_id", t.number) for t in real})

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or trial_id in self._completed_trials:
            return
        value, step = result.get(self.metric), result.get("step")
        if result.get(STATUS) != Status.RUNNING or not finite(value) or step is None:
            return
        if self._stop_unhealthy and stop_reason(result):
            return  # the row the HealthStopper ends the trial at: it is told as unstable there
        seen = self._reported.setdefault(trial_id, set())
        if int(step) not in seen:
            seen.add(int(step))
            self._ot_trials[trial_id].report(float(value), int(step))

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        recorded = read_outcome(self._trial_dir(trial_id)) if error else None
        if recorded and recorded["status"] in ENDINGS:
            # it ended before an interruption and Ray's resume of it failed (its checkpoint
            # already gone): the ending on record stands, the resume's error is not the trial's
            result, error = {**recorded, STATUS: recorded["status"]}, False
        result = result or {}
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [result.get(m) for m in metrics]
        status, reason = outcome(result, error)
        if status == Status.COMPLETED and not all(finite(v) for v in values):
            status, reason = Status.STOPPED, f"no finite {', '.join(metrics)} at the end"
        state = OPTUNA_STATE.get(status, TrialState.FAIL)
        if status == Status.PRUNED:  # Tune skips the searcher for the result ASHA cut at
            self.on_trial_result(trial_id, result)
        if result.get(STATUS) != Status.PRUNED:  # a replayed cut: its folder already has it all
            self._record(trial_id, status, reason, result)
        ot_trial = self._ot_trials[trial_id]
        told = [float(v) for v in values] if state == TrialState.COMPLETE else None
        try:
            if status == Status.STOPPED:
                self._report_unstable(trial_id, result)
            ot_trial.set_user_attr("status", status.value)
            ot_trial.set_user_attr("reason", reason)
            fault_point("before_optuna_tell")
            self._ot_study.tell(ot_trial, told, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:  # told before an interruption
            if state == TrialState.COMPLETE:
                self._add_resumed(ot_trial.number, trial_id, told, reason)
        self._completed_trials.add(trial_id)

    def _report_unstable(self, trial_id: str, result: dict) -> None:
        """A NaN intermediate value where a stopped trial ended: TPE ranks a pruned trial by
        how far it got, then by its last value, and a NaN last value ranks worst among the
        trials that got as far."""
        if isinstance(self.metric, list):
            return  # multi-objective studies keep no intermediate values
        seen = self._reported.setdefault(trial_id, set())
        step = int(result.get("step") or 0)
        step = max(step, max(seen, default=-1) + 1)
        seen.add(step)
        self._ot_trials[trial_id].report(math.nan, step)

    def _record(self, trial_id: str, status: Status, reason: str, result: dict) -> None:
        """Write ``outcome.json`` before Optuna is told, so that a crash between the two
        still leaves the ending on disk for the trials table and for a replay on resume."""
        record_ending(self._trial_dir(trial_id), status, reason, result)

    def _add_resumed(self, number: int, trial_id: str, values: list[float], reason: str) -> None:
        """An errored trial that completed when resumed: add its result as a new Optuna trial
        (a finished one cannot change), unless Optuna already holds a result for it."""
        (old,) = [t for t in self._ot_study.get_trials(deepcopy=False) if t.number == number]
        if old.state != TrialState.FAIL:
            return  # completed or pruned before the interruption and replayed since
        attrs = {"trial_id": trial_id, "status": Status.COMPLETED.value, "reason": reason}
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
        self._reopen_study()
        known = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in known:
                self._ot_study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)
                if "trial_id" in frozen.user_attrs:
                    trial_dir = self._trial_dir(frozen.user_attrs["trial_id"])
                    write_outcome(trial_dir, {"status": Status.LOST.value, "reason": LOST})

    def _reopen_study(self) -> None:
        """The study as the folder holds it now, in place of the one Ray pickled (whose journal
        reader keeps byte offsets of the file as it was, wrong once the study was rebuilt), and
        each of Ray's trials bound to its Optuna trial by Ray trial id.  In a rebuilt study a
        trial Ray had not started by its snapshot has no Optuna trial and is left untold."""
        old = self._ot_study
        storage = open_storage(SearchFolder(Path(self._folder)), create=True)
        study = optuna.load_study(
            study_name=old.study_name, storage=storage, sampler=old.sampler, pruner=old.pruner
        )
        rebuilt = REBUILT in study.user_attrs
        held = study.get_trials(deepcopy=False)
        by_id = {t.user_attrs["trial_id"]: t._trial_id for t in held if "trial_id" in t.user_attrs}
        ids = {t._trial_id for t in held}
        trials = {}
        for trial_id, trial in self._ot_trials.items():
            if trial_id in by_id:
                trials[trial_id] = optuna.trial.Trial(study, by_id[trial_id])
            elif not rebuilt and trial._trial_id in ids:
                trials[trial_id] = optuna.trial.Trial(study, trial._trial_id)
        self._ot_study, self._ot_trials = study, trials


def record_ending(trial_dir: Path, status: Status, reason: str, result: dict) -> None:
    """A trial's ending and the scores of its last result, as ``outcome.json``."""
    scores = {k: v for k, v in numbers(result).items() if k not in TUNE_BOOKKEEPING_KEYS}
    scores = {k: v for k, v in scores.items() if "/" not in k}  # not Tune's config/...
    doc = {"status": status.value, "reason": reason, "step": result.get("step"), **scores}
    write_outcome(trial_dir, doc)


ENDINGS = {Status.COMPLETED, Status.STOPPED, Status.PRUNED}
"""The endings a trial cannot leave: once one is on record, a later error does not replace it."""


def outcome(result: dict[str, Any], error: bool) -> tuple[Status, str]:
    """(status, reason) of a finished trial from its last Tune result."""
    if error:
        return Status.ERRORED, "raised an exception (see the trial's error.txt)"
    status = result.get(STATUS)
    if status in ENDINGS:  # pruned: a replay
        return Status(status), str(result.get("reason", ""))
    why = stop_reason(result)
    if why:  # ended by the HealthStopper at a flagged validation
        return Status.STOPPED, why
    if not result:
        return Status.PRUNED, "removed before it started"
    return Status.PRUNED, f"cut by ASHA at step {result.get('step')}"


def make_searcher(
    plan: SearchPlan, space: SearchSpace, folder: SearchFolder
) -> StatusAwareOptunaSearch:
    """TPE (multivariate, grouped, constant liar, seeded) on the folder's study (a journal
    file for a new search, see harness/search/study_storage.py)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=plan.seed,
        multivariate=True,
        group=True,
        constant_liar=True,
        n_startup_trials=max(2, min(10, plan.trials // 3)),
    )
    storage = open_storage(folder, create=True)
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
        search_seed=plan.seed,
        stop_unhealthy=plan.stop_unhealthy,
    )


IMPORTANCE_MINIMUM = 4  # completed trials before parameter importances mean anything


def param_importances(
    folder: SearchFolder, plan: SearchPlan, minimum: int = IMPORTANCE_MINIMUM
) -> dict[str, float]:
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
