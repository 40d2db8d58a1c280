"""The Ray trainable: one trial of a search is :func:`harness.runs.trial.run_trial` under Tune.

Every validation is reported to Tune with the trainer's exact checkpoint inside a Ray
checkpoint, so a trial that raises is retried from its last checkpoint.  A trial whose training
had already ended before an interruption reports its recorded ending instead of training again.

Ray copies a reported checkpoint into its storage, and keeps the last one (all a retry or a
resumed search reads); :class:`~harness.search.checkpoints.OneCopyPerCheckpoint` then makes that
copy a hard link to the trainer's file, and the trainer keeps only its newest checkpoint.

A trial of a population-based search follows the schedule in its config
(harness/runs/schedule.py): each checkpoint it reports carries its lineage, and it continues a
checkpoint (its own, or a donor's after an exploit) only where that lineage is its schedule's.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS, DONE, SHOULD_CHECKPOINT

from harness.diagnostics.tensorboard import TensorBoardWriter
from harness.files import finite
from harness.recipes import RECIPES
from harness.results.folder import SearchFolder
from harness.results.lineage import note_copy
from harness.results.trial_files import PROGRESS_KEYS, read_outcome, read_result
from harness.runs.resolve import resolve_config
from harness.runs.schedule import (
    LINEAGE_FILE,
    SCHEDULE_KEY,
    ScheduleError,
    Segment,
    covering,
    lineage_problem,
    lineage_record,
    read_lineage,
    run_schedule,
    split_sample,
    stages_of,
)
from harness.runs.trial import run_trial
from harness.search.checkpoints import KEPT_CHECKPOINTS
from harness.status import Status
from harness.training.config import TrialConfig
from harness.training.setup import set_threads

STATUS = "trial_status"  # in every report: running | completed | stopped | pruned (a replay)
TUNE_BOOKKEEPING_KEYS = frozenset(
    {*PROGRESS_KEYS, STATUS, "reason", DONE, SHOULD_CHECKPOINT, *AUTO_RESULT_KEYS}
)
"""Keys of a Tune result that say where a trial stands or how Tune ran it, not what it measured
(left out of ``outcome.json`` and of the value columns of ``trials.parquet``)."""


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
        """Recipe defaults <- budget <- (torch threads = CPUs given; the trainer keeps the
        checkpoints Ray keeps, the same files) <- the trial's sample (its schedule aside)."""
        sample = {k: v for k, v in sample.items() if k != SCHEDULE_KEY}
        layer = {"threads": self.threads, "keep_checkpoints": KEPT_CHECKPOINTS, **sample}
        return resolve_config(self.recipe, self.budget, sample=layer, data=self.data)

    def prepare_process(self) -> None:
        """Per-process limits Ray does not enforce itself."""
        RECIPES.setdefault(self.recipe, self.recipe_entry)
        set_threads(self.threads)
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
    if cut is not None and cut["status"] == Status.PRUNED:  # cut by ASHA before an interruption
        tune.report({STATUS: Status.PRUNED, "reason": cut["reason"], "step": cut["step"]})
        return
    sample, segments = split_sample(config)
    facts: dict[str, float] = {}
    board = TensorBoardWriter(folder.tune / trial_id)  # Ray's trial folder (trial_dirname)

    def on_report(kind: str, row: dict[str, Any], ckpt: Path | None) -> None:
        board.write(kind, row)  # step rows too: losses, D outputs, gradients, health
        if kind != "eval":
            return
        metrics = {**numbers(row), **facts, STATUS: Status.RUNNING}
        if ckpt is None:
            tune.report(metrics)
            return
        lineage = None
        if segments is not None:
            lineage = lineage_record(trial_id, sample, segments, row["batches"], row["step"])
        with ray_checkpoint(ckpt, lineage) as checkpoint:
            tune.report(metrics, checkpoint=checkpoint)

    run = dict(
        search=setup.search,
        trial_id=trial_id,
        diagnostics_root=folder.diagnostics,
        on_report=on_report,
        on_start=facts.update,
    )
    with resume_point(tune.get_checkpoint()) as (checkpoint_file, lineage), board:
        if segments is None:
            run_trial(setup.trial_config(sample), out_dir, checkpoint=checkpoint_file, **run)
        else:
            position = continued_position(trial_id, out_dir, sample, segments, lineage)
            stages = stages_of(sample, segments, setup.trial_config)
            run_schedule(stages, out_dir, position=position, checkpoint=checkpoint_file, **run)
    tune.report(final_metrics(read_result(out_dir)))


def continued_position(
    trial_id: str,
    out_dir: Path,
    sample: dict[str, Any],
    segments: list[Segment],
    lineage: dict[str, Any] | None,
) -> int:
    """The batch a scheduled trial continues from (0: it starts); refuses a checkpoint whose
    lineage is not the trial's schedule.  A checkpoint another trial trained is an exploit: the
    copy is noted in the trial's ``copies.json`` and the trial's own checkpoints, of the lineage
    it leaves, are deleted, so that nothing can fall back on them."""
    if lineage is None:
        return 0
    problem = lineage_problem(lineage, sample, segments)
    if problem:
        raise ScheduleError(f"trial {trial_id} will not continue its checkpoint: {problem}")
    position = int(lineage["batches"])
    if lineage["trial"] != trial_id:
        segment = segments[covering([s.batches for s in segments], position)]
        copied = segment.batches == position
        note_copy(
            out_dir,
            {
                "batches": position,
                "donor": lineage["trial"],
                "donor_step": lineage["step"],
                "reason": segment.reason if copied else "",
                "left_at": segment.left_at if copied else None,
                "params": segment.params,
            },
        )
        for own in (out_dir / "checkpoints").glob("step_*.pt"):
            own.unlink()
    return position


def numbers(row: dict[str, Any]) -> dict[str, Any]:
    """The finite numbers and flags of a row (what Tune, ASHA and Optuna may see)."""
    return {k: v for k, v in row.items() if isinstance(v, bool) or finite(v)}


def final_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The last report of a trial, from its result.json.  Scores only if it completed."""
    facts = {k: v for k, v in result.items() if k.startswith("params_")}
    metrics = {STATUS: result["status"], "reason": result["reason"], "step": result["step"]}
    if result["status"] == Status.COMPLETED:
        metrics.update(numbers(result["last_eval"]))
    return {**metrics, **numbers(facts)}


@contextmanager
def ray_checkpoint(
    trainer_checkpoint: Path, lineage: dict[str, Any] | None = None
) -> Iterator[tune.Checkpoint]:
    """A Ray checkpoint of the trainer's exact checkpoint file (a hard link in a staging folder
    beside it, which Ray copies from and which is removed afterwards), with the ``lineage`` of a
    scheduled trial beside it."""
    staging = trainer_checkpoint.parent / f".ray-{trainer_checkpoint.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            os.link(trainer_checkpoint, staging / trainer_checkpoint.name)
        except OSError:
            shutil.copy2(trainer_checkpoint, staging / trainer_checkpoint.name)
        if lineage is not None:
            (staging / LINEAGE_FILE).write_text(json.dumps(lineage))
        yield tune.Checkpoint.from_directory(str(staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def resume_point(
    checkpoint: tune.Checkpoint | None,
) -> Iterator[tuple[Path | None, dict[str, Any] | None]]:
    """The trainer checkpoint file inside Ray's checkpoint and its lineage (None, None for a
    fresh trial; None for the lineage of an unscheduled trial's)."""
    if checkpoint is None:
        yield None, None
        return
    with checkpoint.as_directory() as directory:
        found = sorted(Path(directory).glob("step_*.pt"))
        yield (found[-1], read_lineage(Path(directory))) if found else (None, None)
