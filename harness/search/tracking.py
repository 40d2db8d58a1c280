"""``search --track``: every trial as a run of the search's experiment in MLflow or W&B, from the
driver (a Tune callback), so the trial processes need neither package.

A trial's run gets its resolved configuration as parameters when it starts, every validation's
metrics and health flags as it reports them (at its batches drawn), and the status and reason
``trials.parquet`` records when it ends, also for trials ASHA cut or that errored.  A trial
started again (a retry, a resumed search) continues its run.  Confirmation runs are runs of the
same experiment, named ``confirm-<trial>``.
"""

from __future__ import annotations

import warnings
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.trial_files import PROGRESS_KEYS
from harness.search.trainable import STATUS, TUNE_BOOKKEEPING_KEYS, TrialSetup
from harness.search.trials_table import trial_status
from harness.status import Status
from harness.tracking import (
    TrackedRun,
    Tracker,
    TrackingError,
    TrackingTarget,
    TrackingWarning,
    open_tracker,
)

NOT_MEASURED = TUNE_BOOKKEEPING_KEYS - set(PROGRESS_KEYS)
"""What Tune adds to a trial's report and our own status keys; the row's clock stays."""


class TrackedTrials(tune.Callback):
    """Sends each trial of a Tune experiment to the tracker of ``target``."""

    def __init__(
        self,
        target: TrackingTarget,
        setup: TrialSetup,
        search: SearchFolder,
        confirmation: bool = False,
    ) -> None:
        self.target = target
        self.trial_setup = setup
        self.experiment = search.name
        self.search = search
        self.confirmation = confirmation
        self._tracker: Tracker | None = None
        self._runs: dict[str, TrackedRun] = {}
        self._with_facts: set[str] = set()  # trials whose parameter counts are logged

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the experiment (Ray restores callbacks with it): settings only."""
        return {**self.__dict__, "_tracker": None, "_runs": {}, "_with_facts": set()}

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = open_trial_tracker(self.target, self.search)
        return self._tracker

    def _sample(self, trial: Trial) -> dict[str, Any]:
        return trial.config["run"]["sample"] if self.confirmation else dict(trial.config)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        if trial.trial_id in self._runs:  # a retry in this process: the run goes on
            return
        setup, sample = self.trial_setup, self._sample(trial)
        try:
            params = setup.trial_config(sample).flat()
        except ValueError:  # the trial itself will say what is wrong with it
            params = sample
        tags = {"search": self.experiment, "trial_id": trial.trial_id, "recipe": setup.recipe}
        if self.confirmation:
            tags["candidate"] = str(trial.config["run"]["candidate"])
        name = f"confirm-{trial.trial_id}" if self.confirmation else trial.trial_id
        try:
            run = self.tracker.start(name, params, tags, key=f"{self.experiment}/{name}")
        except TrackingError as err:  # the search goes on; this trial is not tracked
            warnings.warn(f"{err}; trial {trial.trial_id} goes on untracked", TrackingWarning, 2)
            return
        self._runs[trial.trial_id] = run

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info
    ) -> None:
        run = self._runs.get(trial.trial_id)
        if run is None or result.get(STATUS) != Status.RUNNING:
            return  # a trial's last report repeats its last validation
        facts = {k: v for k, v in result.items() if k.startswith("params_")}
        if facts and trial.trial_id not in self._with_facts:
            run.log_params(facts)
            self._with_facts.add(trial.trial_id)
        run.log_row({k: v for k, v in result.items() if k not in NOT_MEASURED})

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info):
        self._finish(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._finish(trial)

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        for trial in trials:  # still open: the search was interrupted
            if trial.trial_id in self._runs:
                self._runs.pop(trial.trial_id).finish(Status.INTERRUPTED, "interrupted")

    def _finish(self, trial: Trial) -> None:
        run = self._runs.pop(trial.trial_id, None)
        if run is not None:
            status, reason = trial_status(trial, self.trial_setup, ended=True)
            run.finish(status, reason)


def open_trial_tracker(target: TrackingTarget, search: SearchFolder) -> Tracker:
    """The tracker of a search's trials: the experiment is the search, MLflow's local store
    sits in its results folder, W&B's run folders in the search's folder."""
    return open_tracker(target, search.name, search.path.parent, search.path)


def tracking_target(plan: SearchPlan) -> TrackingTarget | None:
    """Where a search's trials are tracked; None where it was launched without ``--track``."""
    return None if plan.track is None else TrackingTarget(plan.track, plan.track_uri)


def tracked_trials(
    plan: SearchPlan, setup: TrialSetup, search: SearchFolder, confirmation: bool = False
) -> list[TrackedTrials]:
    """The callback that tracks the trials of ``search`` (or of its confirmation), where it
    was launched with ``--track``."""
    target = tracking_target(plan)
    return [] if target is None else [TrackedTrials(target, setup, search, confirmation)]
