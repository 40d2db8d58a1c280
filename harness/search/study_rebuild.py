"""A damaged or missing Optuna study rebuilt from what the search keeps beside it.

Everything Optuna needs to go on is on record outside the study: ``trials.parquet`` holds every
trial Ray started, with its sample, its training seed (derived from its Optuna trial number, so
the number is recovered by inverting :func:`~harness.search.optuna_bridge.trial_seed`), its
status, reason and last scores; the diagnostics hold every validation, which were the trial's
intermediate values.  The rebuilt study has the same trial numbers in the same order, so new
trials get fresh seeds and the trials still running keep their identities:

- completed -> COMPLETE with its last objective (and cost); pruned -> PRUNED; stopped ->
  PRUNED with a NaN value after its last validation; errored -> FAIL; each with its validations
  as intermediate values and the ``trial_id``, ``status`` and ``reason`` attributes;
- lost -> FAIL; running, pending or interrupted -> RUNNING (the resumed search tells its end);
- a number no recorded trial has: a ``points_to_evaluate`` point not yet run is queued again,
  any other was a trial lost before Ray knew it (FAIL, as it was).

The damaged file is kept beside it (``optuna.journal.damaged``); the new study is written to a
temp file and renamed into place, so a kill during the rebuild leaves the study missing, and
the next resume rebuilds it again.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from itertools import count
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from harness.diagnostics.telemetry import read_diagnostics
from harness.files import finite, fsync_dir
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.request import POPULATION_SCHEDULERS
from harness.results.space import SearchSpace
from harness.results.trials import read_trials
from harness.search.optuna_bridge import OPTUNA_STATE, distributions, trial_seed
from harness.search.study_storage import (
    REBUILT,
    StudyUnreadable,
    damage,
    journal_lock,
    journal_storage,
    load_study,
    tidy_journal,
)
from harness.status import Status

UNTOLD = (Status.RUNNING, Status.PENDING, Status.INTERRUPTED)


def repair_study(plan: SearchPlan, space: SearchSpace, folder: SearchFolder) -> str | None:
    """Make ``folder``'s study whole before the search holding its lock writes it again; a
    one-line note where it had to be rebuilt (None where it read whole, or where the search
    keeps no study: population-based training)."""
    if plan.scheduler in POPULATION_SCHEDULERS:
        return None
    tidy_journal(folder)
    why = unusable(folder, plan.name)
    if why is None:
        return None
    study_file = folder.study_file
    told, kept = rebuild_study(plan, space, folder)
    return (
        f"note: the Optuna study {study_file} could not be read ({why}); rebuilt it from "
        f"trials.parquet ({told} trials)"
        + (f"; the damaged file is kept as {kept.name}" if kept is not None else "")
    )


def unusable(folder: SearchFolder, name: str) -> str | None:
    """Why the study ``name`` of ``folder`` must be rebuilt before it is resumed, or None."""
    return damage(folder, name) or untold_trials(folder, name)


def untold_trials(folder: SearchFolder, name: str) -> str | None:
    """Where trials.parquet records trials the study has never heard of (a study cut short: a
    journal truncated, a copy cut off), which ones; None where it knows every one.  A healthy
    study always does: a trial is named to Optuna before Ray starts it and the table lists it."""
    study = load_study(folder, name)
    known = (
        {t.user_attrs.get("trial_id") for t in study.get_trials(deepcopy=False)} if study else set()
    )
    missing = sorted(set(read_trials(folder)["trial_id"]) - known)
    if not missing:
        return None
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return f"it lacks {len(missing)} trial(s) that trials.parquet records: {shown}"


def rebuild_study(
    plan: SearchPlan, space: SearchSpace, folder: SearchFolder
) -> tuple[int, Path | None]:
    """Write ``folder``'s study anew from its records (the same kind of file: journal or
    SQLite); (the number of recorded trials told to it, where the damaged file is kept)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = read_trials(folder)
    numbers = trial_numbers(trials, plan, space, folder)
    target = folder.study_file
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        storage = (
            optuna.storages.RDBStorage(f"sqlite:///{tmp}")
            if target == folder.optuna_db
            else journal_storage(tmp)
        )
        fill(storage, plan, space, folder, trials, numbers)
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.engine.dispose()
        kept = damaged_copy(target) if target.exists() else None
        if kept is not None:
            os.replace(target, kept)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
        journal_lock(tmp).unlink(missing_ok=True)
    return len(trials), kept


def damaged_copy(path: Path) -> Path:
    """Where the damaged study at ``path`` is kept: ``<name>.damaged``, or ``.damaged-2`` ...
    where an earlier one is kept already."""
    candidates = (
        path.with_name(f"{path.name}.damaged{f'-{n}' if n > 1 else ''}") for n in count(1)
    )
    return next(c for c in candidates if not c.exists())


def trial_numbers(
    trials: pd.DataFrame, plan: SearchPlan, space: SearchSpace, folder: SearchFolder
) -> dict[int, int]:
    """Optuna trial number -> row of ``trials``, from each trial's training seed."""
    limit = 10 * (plan.trials + len(space.points)) + 100  # lost trials leave gaps in numbers
    by_seed = {trial_seed(plan.seed, n): n for n in range(limit)}
    numbers: dict[int, int] = {}
    seeds = trials["seed"].tolist() if "seed" in trials else []
    for row, seed in enumerate(seeds):
        number = by_seed.get(int(seed)) if finite(seed) else None
        if number is None or number in numbers:
            raise StudyUnreadable(
                folder.study_file,
                f"the Optuna study cannot be rebuilt from trials.parquet: the seed of trial "
                f"{trials['trial_id'].iloc[row]} ({seed}) is no trial number's under search "
                f"seed {plan.seed}",
                "start the search again under another --name",
            )
        numbers[number] = row
    return numbers


def fill(
    storage: optuna.storages.BaseStorage,
    plan: SearchPlan,
    space: SearchSpace,
    folder: SearchFolder,
    trials: pd.DataFrame,
    numbers: dict[int, int],
) -> None:
    """Create the study in ``storage`` and add its trials in number order."""
    directions = ["minimize" if m == "min" else "maximize" for m in plan.modes]
    study = optuna.create_study(storage=storage, study_name=plan.name, directions=directions)
    study.set_user_attr(REBUILT, "trials.parquet")
    evals = validations(folder, plan)
    dists = distributions(space.params)
    rows = trials.to_dict("records")
    last = max([*numbers, len(space.points) - 1], default=-1)
    for number in range(last + 1):
        if number in numbers:
            row = rows[numbers[number]]
            study.add_trial(recorded_trial(row, plan, dists, evals.get(row["trial_id"], {})))
        elif number < len(space.points):
            study.enqueue_trial(space.points[number], skip_if_exists=False)
        else:
            study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))


def validations(folder: SearchFolder, plan: SearchPlan) -> dict[str, dict[int, float]]:
    """Trial id -> {step: objective} of its validations (its intermediate values)."""
    if plan.multi_objective:
        return {}  # a multi-objective study keeps no intermediate values
    rows = read_diagnostics(folder.diagnostics, kind="eval")
    if plan.objective not in rows:
        return {}
    found: dict[str, dict[int, float]] = {}
    columns = (rows["trial_id"], rows["step"].tolist(), rows[plan.objective].tolist())
    for trial_id, step, value in zip(*columns, strict=True):
        if finite(value):
            found.setdefault(str(trial_id), {})[int(step)] = float(value)
    return found


def recorded_trial(
    row: dict[str, Any],
    plan: SearchPlan,
    dists: dict[str, optuna.distributions.BaseDistribution],
    evals: dict[int, float],
) -> FrozenTrial:
    """One row of ``trials.parquet`` as the Optuna trial the search had told."""
    sample = json.loads(row["sample"]) if isinstance(row.get("sample"), str) else {}
    params = {name: sample[name] for name in dists if name in sample}
    status = Status(row["status"])
    attrs: dict[str, Any] = {"trial_id": row["trial_id"]}
    values = None
    if status in UNTOLD:
        state = TrialState.RUNNING
    else:
        state = OPTUNA_STATE.get(status, TrialState.FAIL)
        if status != Status.LOST:  # a lost trial was never told an ending
            attrs.update(status=status.value, reason=str(row.get("reason") or ""))
        if state == TrialState.COMPLETE:
            values = [row.get(m) for m in plan.metrics]
            if not all(finite(v) for v in values):
                state, values = TrialState.PRUNED, None
    intermediate = dict(evals)
    if status == Status.STOPPED and not plan.multi_objective:
        # the validation it stopped at was not told (a health flag ended it there); a NaN was,
        # at that step or, where none, the one after the last told
        step = int(row["step"]) if finite(row.get("step")) else 0
        intermediate = {s: v for s, v in intermediate.items() if s < step}
        intermediate[max(step, max(intermediate, default=-1) + 1)] = math.nan
    if state == TrialState.PRUNED and intermediate:  # as Optuna tells a pruned trial
        value = intermediate[max(intermediate)]
        values = [value] if finite(value) else None
    return optuna.trial.create_trial(
        state=state,
        values=[float(v) for v in values] if values is not None else None,
        params=params,
        distributions={name: dists[name] for name in params},
        user_attrs=attrs,
        intermediate_values=intermediate,
    )
