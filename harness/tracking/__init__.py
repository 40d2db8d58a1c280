"""Experiment tracking: a run's parameters, every validation's metrics and health flags, and how
it ended, sent to MLflow or Weights & Biases (``--track mlflow|wandb`` on ``train`` and
``search``).

Both are optional (``uv sync --extra tracking``) and imported only when asked for.  A tracker is
opened, and so checked, before any training starts; after that a tracking call that fails is
one warning and the run trains on untracked: a lost connection never costs a trial.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.console import HarnessWarning
from harness.status import Status

TRACKERS = {"mlflow": "MLflow", "wandb": "Weights & Biases"}
STEP_KEYS = ("batches", "step")
"""The x-axis of a row's metrics: training batches drawn (the budget's clock), else the step."""
PROGRESS_KEYS = frozenset({"step", "batches", "epoch"})


class TrackingError(ValueError):
    """A tracker cannot be used (not installed, unreachable, refused); one line."""


class TrackingWarning(HarnessWarning):
    """A tracking call failed after the run started; the run goes on untracked."""


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs are tracked: ``kind`` (mlflow or wandb) and ``uri``, the MLflow tracking URI or
    the W&B server's URL (None: MLflow's store under the results folder, W&B's cloud)."""

    kind: str
    uri: str | None = None

    def check(self) -> None:
        """Refuse an unknown tracker, or one whose package is not installed."""
        if self.kind not in TRACKERS:
            raise TrackingError(f"--track {self.kind}: not one of {', '.join(TRACKERS)}")
        if importlib.util.find_spec(self.kind) is None:
            raise TrackingError(
                f"--track {self.kind}: {TRACKERS[self.kind]} is not installed; run "
                "`uv sync --extra tracking`"
            )


def first_line(err: BaseException) -> str:
    """An exception's first line (its type where it says nothing)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def metrics_of(row: Mapping[str, Any]) -> dict[str, float]:
    """A row's finite numbers and flags (as 0 / 1), its step keys left out."""
    return {
        key: float(value)
        for key, value in row.items()
        if key not in PROGRESS_KEYS and isinstance(value, numbers.Real) and math.isfinite(value)
    }


def step_of(row: Mapping[str, Any]) -> int:
    """Where a row lies on the run's x-axis (:data:`STEP_KEYS`)."""
    return int(next((row[k] for k in STEP_KEYS if row.get(k) is not None), 0))


class TrackedRun(ABC):
    """One run in the tracker.  Every call after the start is guarded: the first failure is one
    warning, and the run is tracked no further."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.broken = False

    def log_row(self, row: Mapping[str, Any]) -> None:
        """A validation's metrics and health flags (or any row's numbers) at its step."""
        metrics = {k: v for k, v in metrics_of(row).items() if not k.startswith("params_")}
        self._guarded(self._log, metrics, step_of(row))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._guarded(self._params, dict(params))

    def finish(self, status: str, reason: str) -> None:
        """How the run ended (a :class:`~harness.status.Status` value and its reason)."""
        self._guarded(self._finish, Status(status), reason)

    def _guarded(self, call: Any, *args: Any) -> None:
        if self.broken:
            return
        try:
            call(*args)
        except Exception as err:  # a tracker's failure must never end the training
            self.broken = True
            warnings.warn(
                f"tracking {self.name}: {first_line(err)}; the run goes on untracked",
                TrackingWarning,
                stacklevel=3,
            )

    @abstractmethod
    def _log(self, metrics: dict[str, float], step: int) -> None: ...

    @abstractmethod
    def _params(self, params: dict[str, Any]) -> None: ...

    @abstractmethod
    def _finish(self, status: Status, reason: str) -> None: ...


class Tracker(ABC):
    """One experiment (a search, or the ``train`` runs) in a tracking backend."""

    @abstractmethod
    def start(
        self, name: str, params: Mapping[str, Any], tags: Mapping[str, str], key: str | None = None
    ) -> TrackedRun:
        """A run called ``name`` with its parameters and tags; ``key`` names a run that may be
        started again (a search's trial after a restart), which then continues its record."""

    @abstractmethod
    def where(self) -> str:
        """One line: where the runs go and how to look at them."""


def open_tracker(target: TrackingTarget, experiment: str, results: Path, run_dir: Path) -> Tracker:
    """The tracker for ``experiment``: MLflow's store defaults to ``results/mlruns``; W&B keeps
    its run folders in ``run_dir/wandb``.  Checked (installed, reachable) here."""
    target.check()
    if target.kind == "mlflow":
        from harness.tracking.mlflow_backend import MlflowTracker

        return MlflowTracker(target.uri, experiment, results)
    from harness.tracking.wandb_backend import WandbTracker

    return WandbTracker(target.uri, experiment, run_dir)


class TrainingTracking:
    """One training run's record: it starts when training does (``on_start``, with the
    parameter counts the models report), every validation row is logged (``on_report``), and
    ``finish`` records the ending; used as a context, a run the block leaves by an exception is
    finished as errored, or interrupted on Ctrl-C.  A run that cannot start is one warning, and
    training goes on untracked."""

    def __init__(
        self, tracker: Tracker, name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> None:
        self.tracker, self.name, self.params, self.tags = tracker, name, dict(params), dict(tags)
        self.run: TrackedRun | None = None

    def on_start(self, facts: Mapping[str, Any]) -> None:
        try:
            self.run = self.tracker.start(self.name, {**self.params, **facts}, self.tags)
        except TrackingError as err:
            warnings.warn(f"{err}; the run goes on untracked", TrackingWarning, stacklevel=2)

    def on_report(self, kind: str, row: Mapping[str, Any], checkpoint: Any = None) -> None:
        if kind == "eval" and self.run is not None:
            self.run.log_row(row)

    def finish(self, status: str, reason: str) -> None:
        if self.run is not None:
            self.run.finish(status, reason)
            self.run = None

    def __enter__(self) -> TrainingTracking:
        return self

    def __exit__(self, kind: Any, err: BaseException | None, trace: Any) -> None:
        if err is not None:
            interrupted = isinstance(err, KeyboardInterrupt)
            self.finish(Status.INTERRUPTED if interrupted else Status.ERRORED, first_line(err))
