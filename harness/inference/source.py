"""SOURCE: which trained run a command uses, and which of its checkpoints.

A SOURCE is a checkpoint file (``<run>/checkpoints/step_XXXXXXXX.pt``, its run's ``config.yaml``
two folders up), a training output folder (``config.yaml`` + ``checkpoints/``: its newest intact
checkpoint), or a search (its folder, or its name under the results root) with ``--rank K`` or
``--trial ID`` (default: rank 1 of its leaderboard).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.console import HarnessWarning
from harness.files import results_root
from harness.results.folder import ResultsError, SearchFolder, find_search
from harness.results.leaderboard import rank
from harness.results.plan import SearchPlan
from harness.results.rerun import pick_trial
from harness.results.trials import read_trials
from harness.runs.resolve import config_from_flat
from harness.training.checkpoints import (
    CheckpointError,
    UnsafeCheckpoint,
    load_checkpoint,
    resume_candidates,
)
from harness.training.config import TrialConfig


class SourceError(ValueError):
    """A SOURCE names no trained run, or one that cannot be used; one line naming it."""


class OlderCheckpoint(HarnessWarning):
    """A run's newest checkpoint is damaged and an older intact one is used."""


@dataclass(frozen=True)
class TrainedRun:
    """A trained run: its resolved configuration, its folder and the checkpoint to use."""

    config: TrialConfig
    folder: Path
    checkpoint: Path
    label: str  # how the run is named in messages: a folder, or search/trial
    named: bool = False  # the checkpoint file itself was the SOURCE


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's state (loaded with ``weights_only``) and where it came from."""

    run: TrainedRun
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))


def find_run(
    source: str, *, rank_k: int | None = None, trial_id: str | None = None, results: str | None
) -> TrainedRun:
    """The run ``source`` names (see the module docstring); ``rank_k`` / ``trial_id`` pick a
    trial of a search; ``results`` is the results root searches are looked up under."""
    path = Path(source)
    picks = rank_k is not None or trial_id is not None
    if path.is_file():
        if picks:
            raise SourceError(f"{source}: --rank and --trial pick a trial of a search, not a file")
        return _checkpoint_file(path)
    if path.is_dir() and not _is_search(path):
        if picks:
            raise SourceError(f"{source}: --rank and --trial pick a trial of a search folder")
        return _training_folder(path)
    if path.is_dir():
        folder = SearchFolder(path.resolve())
        if not folder.config.is_file():
            raise SourceError(f"{source}: not a search folder (no config.yaml)")
    else:
        try:
            folder = find_search(results_root(results), source)
        except ResultsError as err:
            raise SourceError(f"{source}: no such checkpoint or folder, and {err}") from None
    return _search_trial(folder, rank_k, trial_id)


def _is_search(folder: Path) -> bool:
    """Whether ``folder`` holds a search (trials, its Ray experiment or its study)."""
    return any((folder / part).exists() for part in ("trials", "tune", "optuna.db"))


def _checkpoint_file(path: Path) -> TrainedRun:
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return TrainedRun(_run_config(run, path), run, path, str(path), named=True)


def _training_folder(folder: Path) -> TrainedRun:
    config = _run_config(folder, folder)
    found = resume_candidates(folder / "checkpoints")
    if not found:
        raise SourceError(f"{folder}: no checkpoint in {folder / 'checkpoints'}")
    return TrainedRun(config, folder, found[0], str(folder))


def _search_trial(folder: SearchFolder, rank_k: int | None, trial_id: str | None) -> TrainedRun:
    plan = SearchPlan.load(folder)
    ranked = rank(read_trials(folder), plan)
    if ranked.empty:
        raise SourceError(f"search {folder.name!r} has no trials yet")
    row = pick_trial(ranked, 1 if rank_k is None else rank_k, trial_id, folder.name)
    trial = folder.trial_dir(row["trial_id"])
    label = f"{folder.name}/{row['trial_id']}"
    config = _run_config(trial, trial)
    found = resume_candidates(trial / "checkpoints")
    if not found:
        raise SourceError(f"{label} ({row['status']}): no checkpoint in {trial / 'checkpoints'}")
    return TrainedRun(config, trial, found[0], label)


def _run_config(run: Path, given: Path) -> TrialConfig:
    """The run's resolved configuration, from its ``config.yaml``."""
    path = run / "config.yaml"
    if not path.is_file():
        raise SourceError(f"{given}: no config.yaml of its run at {path}")
    try:
        flat = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SourceError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(flat, dict) or "recipe" not in flat or "budget" not in flat:
        raise SourceError(f"{path}: not a run's configuration (no recipe and budget)")
    return config_from_flat(flat)


def load_run(run: TrainedRun) -> Checkpoint:
    """The checkpoint of ``run``, loaded with ``weights_only`` onto the CPU.

    A checkpoint named by the user is loaded or refused; in a folder, a damaged newest
    checkpoint is passed over for the next older intact one, with a warning.
    """
    named = run.named
    candidates = [run.checkpoint] if named else resume_candidates(run.checkpoint.parent)
    problems = []
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate)
        except UnsafeCheckpoint:
            raise
        except CheckpointError as err:
            if named:
                raise
            problems.append(str(err))
            continue
        if problems:
            warnings.warn(f"{problems[0]}; using {candidate.name}", OlderCheckpoint, stacklevel=2)
        return Checkpoint(dataclasses.replace(run, checkpoint=candidate), state)
    raise SourceError(f"{run.label}: no intact checkpoint ({problems[0]})")
