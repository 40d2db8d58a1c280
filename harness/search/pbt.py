"""Population-based training on Ray Tune: ``run.py search RECIPE --scheduler pbt``.

The population is the search's ``--trials``: the space's points, then seeded random draws
(harness/results/population.py), all live at once as far as the resources allow (Ray pauses
trials in turn).  At a validation at least ``pbt.interval`` batches after its last one (and after
the discriminator has started), a trial is ranked against the rest; one in the bottom
``pbt.quantile``, or one whose health flags are raised, is *exploited*: it stops, and continues
the checkpoint of a trial of the top under a perturbation of that trial's configuration.

What this adds to Ray's :class:`PopulationBasedTraining`:

- **bounded exploration**: the mutable keys are perturbed inside the space's ranges (Ray's
  x0.8/x1.2 ignores them), integers and choices resampled with a probability
  (:func:`~harness.results.population.perturb`);
- **health-aware exploitation**: a flagged trial (harness/diagnostics) always ranks in the bottom
  and never donates; it is replaced from a healthy donor ("rescued") instead of stopped;
- **one-copy checkpoints stay safe**: the donor's checkpoint is hard-linked into the receiver's
  folder (``trials/<id>/donors/``) as it is copied, so Ray's ``num_to_keep`` deleting the
  donor's own copy cannot take it away before the receiver starts; a donor whose checkpoint is
  already gone, or that never checkpointed, is not copied;
- **the exploit really takes effect**: the receiver's config is the donor checkpoint's lineage
  plus a new segment (harness/runs/schedule.py), its weights the donor's checkpoint, and the
  trainer takes the new learning rates and betas over those stored in the checkpoint
  (:func:`~harness.training.setup.adopt_hyperparameters`);
- **asynchronous only**: Ray's ``synch=True`` waits for every live trial at each interval, which
  hangs on a trial that crashed for good and after a restore; it is not offered.

A trial's end is recorded (``outcome.json``) by :class:`PopulationEndings`, since no Optuna
study is kept: the trials follow schedules that no sampler proposed.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

from pyarrow.fs import LocalFileSystem
from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from harness.diagnostics.detectors import stop_reason
from harness.files import finite
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.population import (
    PopulationSettings,
    initial_population,
    perturb,
)
from harness.results.seeds import POPULATION, derive_seed
from harness.results.space import Param, SearchSpace
from harness.results.trial_files import read_outcome
from harness.runs.schedule import (
    RESCUE_PREFIX,
    SCHEDULE_KEY,
    Segment,
    read_lineage,
    with_schedule,
)
from harness.search.optuna_bridge import ENDINGS, outcome, record_ending
from harness.search.trainable import STATUS
from harness.status import Status

log = logging.getLogger(__name__)

CLOCK = "batches"  # the search's cost clock, ASHA's too (driver.COST)
PINS = "donors"  # trials/<id>/donors/<n>-<donor>/: the donor checkpoints a trial copied
DONATES = "newest"  # a trial's PBT state: it may donate its newest registered checkpoint
KEPT_PINS = 2
"""Donor checkpoints a receiver keeps: the one it continues, and the one before, which a search
restored after a kill may still name (Ray's snapshot can lag an exploit by a few seconds)."""


def pin_checkpoint(checkpoint: tune.Checkpoint | None, pins: Path, donor: str) -> Path | None:
    """The donor's checkpoint files, hard-linked (copied across file systems, downloaded from
    remote storage) into a new folder under ``pins``, the receiving trial's; None where the
    donor has none any more, or one without its lineage.  The newest :data:`KEPT_PINS` stay."""
    if checkpoint is None:
        return None
    pins.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.split("-", 1)[0]) for p in pins.iterdir() if p.name[:3].isdigit()]
    target = pins / f"{max(taken, default=0) + 1:03d}-{donor}"
    staging = pins / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if isinstance(checkpoint.filesystem, LocalFileSystem):
            files = [p for p in Path(checkpoint.path).iterdir() if p.is_file()]
            staging.mkdir()
            for source in files:
                try:
                    os.link(source, staging / source.name)
                except FileNotFoundError:
                    raise
                except OSError:  # another file system: the bytes once more
                    shutil.copy2(source, staging / source.name)
        else:
            checkpoint.to_directory(str(staging))
    except OSError:  # the donor's checkpoint was deleted meanwhile
        shutil.rmtree(staging, ignore_errors=True)
        return None
    if read_lineage(staging) is None or not any(staging.glob("step_*.pt")):
        shutil.rmtree(staging, ignore_errors=True)
        return None
    staging.rename(target)
    for old in sorted(p for p in pins.iterdir() if p.name[:3].isdigit())[:-KEPT_PINS]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def health_quantiles(
    scored: list[tuple[Any, float, bool]], quantile: float
) -> tuple[list[Any], list[Any]]:
    """(bottom, top) of trials given as (trial, score, flagged), a higher score better.

    Flagged trials are all in the bottom and never in the top; of the rest, the worst
    ``ceil(n * quantile)`` (at most half of the n ranked) join them and the best as many, at least
    one, make the top (so a donor is kept for a rescue even at quantile 0)."""
    if len(scored) <= 1:
        return [], []
    k = min(math.ceil(len(scored) * quantile), len(scored) // 2)
    healthy = [t for t, _, flagged in sorted(scored, key=lambda e: e[1]) if not flagged]
    top = healthy[len(healthy) - max(k, 1) :] if healthy else []
    bottom = [t for t, _, flagged in scored if flagged]
    bottom += [t for t in healthy[:k] if t not in top]
    return bottom, top


class PopulationMixin:
    """What :class:`HarnessPBT` and ``HarnessPB2`` add to Ray's population-based training
    (the module docstring); mixed in before Ray's class."""

    def _setup_population(
        self, plan: SearchPlan, space: SearchSpace, settings: PopulationSettings, folder: str
    ) -> None:
        self._folder = folder
        self._params: dict[str, Param] = {k: space.params[k] for k in settings.mutable}
        self._settings = settings
        self._objective = plan.objective
        self._worst = -math.inf if plan.mode == "max" else math.inf
        self._budget = plan.max_t
        self._health_aware = plan.stop_unhealthy
        self._rng = random.Random(derive_seed(plan.seed, POPULATION, 1))

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """A member of the population starts its schedule: one segment, trained by itself."""
        super().on_trial_add(tune_controller, trial)
        if SCHEDULE_KEY not in trial.config:
            values = {key: trial.config[key] for key in self._params}
            trial.config[SCHEDULE_KEY] = [Segment(0, values, trial=trial.trial_id).to_dict()]

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        """Validations only, and not the last (a trial at its budget is done, never copied);
        a validation without a finite objective ranks worst."""
        if result.get(STATUS) != Status.RUNNING or result.get(CLOCK, 0) >= self._budget:
            return TrialScheduler.CONTINUE
        if not finite(result.get(self._objective)):
            result = {**result, self._objective: self._worst}
        return super().on_trial_result(tune_controller, trial, result)

    def _quantiles(self) -> tuple[list[Trial], list[Trial]]:
        scored = [
            (trial, state.last_score, self._flagged(state.last_result))
            for trial, state in self._trial_state.items()
            if state.last_score is not None
            and not math.isnan(state.last_score)
            and not trial.is_finished()
        ]
        return health_quantiles(scored, self._settings.quantile)

    def _checkpoint_or_exploit(
        self, trial: Trial, tune_controller: Any, upper: list[Trial], lower: list[Trial]
    ) -> None:
        """A trial outside the bottom may donate (every healthy one, not only the top's, so
        that a rescue finds a donor); one in the bottom copies a top trial's newest checkpoint.

        Ray's own asks each top trial to save again here, which registers the checkpoint its
        validation already reported a second time: Ray then counts it twice against
        ``num_to_keep`` and deletes the checkpoint before it (a restore after a kill may need
        it), or the very one it holds twice.  The newest checkpoint Ray has registered is used
        instead; it is never deleted while it is the newest, and it is pinned as it is copied."""
        state = self._trial_state[trial]
        donates = trial not in lower and not self._flagged(state.last_result)
        state.last_checkpoint = DONATES if donates else None
        if trial not in lower:
            return
        donors = [t for t in upper if self._trial_state[t].last_checkpoint == DONATES]
        if donors:
            self._exploit(tune_controller, trial, self._rng.choice(donors))

    def _flagged(self, result: dict | None) -> bool:
        return self._health_aware and stop_reason(result or {}) is not None

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        """``trial`` continues ``trial_to_clone``'s checkpoint, pinned, under a new segment; not
        where that checkpoint is gone, or no later than the batch ``trial`` last copied at."""
        receiver, donor = self._trial_state[trial], self._trial_state[trial_to_clone]
        pins = SearchFolder(Path(self._folder)).trial_dir(trial.trial_id) / PINS
        pinned = pin_checkpoint(trial_to_clone.checkpoint, pins, trial_to_clone.trial_id)
        if pinned is None:
            log.warning(
                "[pbt] %s has no checkpoint to copy; %s trains on as it was",
                trial_to_clone.trial_id,
                trial.trial_id,
            )
            return
        lineage = read_lineage(pinned)
        position = int(lineage["batches"])
        current = Segment.from_dict(trial.config[SCHEDULE_KEY][-1])
        if current.donor is not None and position <= current.batches:
            # it copied at that batch already: going back again could repeat for ever while
            # the donor waits its turn (a population larger than the trials at once)
            shutil.rmtree(pinned)
            return
        new_config, done = self._get_new_config(trial, trial_to_clone)
        values = {key: new_config[key] for key in self._params}
        copy = Segment(
            batches=position,
            params=values,
            trial=trial.trial_id,
            donor=trial_to_clone.trial_id,
            reason=self._reason(receiver, donor),
            left_at=(receiver.last_result or {}).get(CLOCK),
            meta=done,
        )
        segments = [Segment.from_dict(s) for s in lineage[SCHEDULE_KEY]]
        if trial.status != Trial.PAUSED:
            tune_controller.pause_trial(trial, should_checkpoint=False)
        trial.set_experiment_tag(f"{receiver.orig_tag}@{trial_to_clone.trial_id}:{position}")
        trial.set_config(with_schedule(lineage["sample"], [*segments, copy]))
        trial.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
            checkpoint=tune.Checkpoint.from_directory(str(pinned)), metrics=donor.last_result
        )
        self._num_perturbations += 1
        receiver.last_perturbation_time = donor.last_perturbation_time
        receiver.last_train_time = donor.last_train_time

    def _reason(self, receiver: Any, donor: Any) -> str:
        """Why a trial copies: the health flag it is rescued from, or its rank."""
        why = stop_reason(receiver.last_result or {}) if self._health_aware else None
        if why:
            return RESCUE_PREFIX + why
        mine = (receiver.last_result or {}).get(self._objective, math.nan)
        theirs = (donor.last_result or {}).get(self._objective, math.nan)
        return f"bottom of the population: {self._objective} {mine:.4g}, donor's {theirs:.4g}"


class HarnessPBT(PopulationMixin, PopulationBasedTraining):
    """Population-based training (Jaderberg et al. 2017) with bounded exploration."""

    def __init__(
        self,
        plan: SearchPlan,
        space: SearchSpace,
        settings: PopulationSettings,
        folder: str,
        **pbt: Any,
    ) -> None:
        mutations = {key: ray_domain(space.params[key]) for key in settings.mutable}
        super().__init__(
            hyperparam_mutations=mutations, resample_probability=settings.resample, **pbt
        )
        self._setup_population(plan, space, settings, folder)

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict, dict]:
        values, done = perturb(trial_to_clone.config, self._params, self._settings, self._rng)
        return {**trial_to_clone.config, **values}, done


def ray_domain(param: Param) -> Any:
    """A space parameter as Ray's search domain (what Ray's PBT lists as its mutations)."""
    if param.kind == "choice":
        return tune.choice(list(param.choices))
    if param.kind == "int":
        return tune.randint(int(param.low), int(param.high) + 1)
    if param.kind == "loguniform":
        return tune.loguniform(param.low, param.high)
    return tune.uniform(param.low, param.high)


def population_searcher(plan: SearchPlan, space: SearchSpace) -> BasicVariantGenerator:
    """The population as Ray's points to evaluate (no sampler: PBT refuses one)."""
    return BasicVariantGenerator(
        points_to_evaluate=initial_population(space, plan.trials, plan.seed)
    )


def population_param_space(space: SearchSpace) -> dict[str, Any]:
    """Ray's param space of a population: the fixed values, and every key a member sets (Ray
    refuses a point with a key its space lacks; the points set them all, so none is drawn)."""
    swept = {name: ray_domain(param) for name, param in space.params.items()}
    return {**space.fixed, **swept, "seed": tune.randint(0, 2**31)}


class PopulationEndings(tune.Callback):
    """Records how each trial of a population-based search ended (``outcome.json``), as the
    Optuna bridge does for other searches; placed before the trials table, which reads it.
    A completed trial's pinned donor checkpoints are deleted: no restore will need them."""

    def __init__(self, folder: SearchFolder, objective: str) -> None:
        self.folder = folder
        self.objective = objective

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info) -> None:
        self._record(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info) -> None:
        self._record(trial, error=True)

    def _record(self, trial: Trial, error: bool) -> None:
        trial_dir = self.folder.trial_dir(trial.trial_id)
        recorded = read_outcome(trial_dir)
        if recorded and recorded["status"] in ENDINGS:  # ended before an interruption
            return
        result = trial.last_result or {}
        status, reason = outcome(result, error)
        if status == Status.COMPLETED and not finite(result.get(self.objective)):
            status, reason = Status.STOPPED, f"no finite {self.objective} at the end"
        record_ending(trial_dir, status, reason, result)
        if status in ENDINGS:
            shutil.rmtree(trial_dir / PINS, ignore_errors=True)
