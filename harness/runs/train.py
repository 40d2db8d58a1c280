"""``run.py train RECIPE``: one configuration trained end to end in its own folder, no Ray.

The run's folder is claimed first (:class:`~harness.runs.run_folder.RunFolder`): one run per
folder, and a folder holding another run is refused unless ``--resume`` continues it (same
recipe and configuration) or ``--overwrite`` replaces it, which happens only once the device and
the corpus have been checked, so a refused corpus never costs the old run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.console import print_line
from harness.diagnostics.telemetry import read_diagnostics
from harness.files import results_root, unwritable_reason
from harness.recipes import recipe_class
from harness.runs.resolve import check_data, resolve_config
from harness.runs.run_folder import RunFolder
from harness.runs.trial import run_trial
from harness.scoring.registry import SCORES
from harness.tracking import TrackingError, TrackingTarget, TrainingTracking, open_tracker
from harness.training.config import ConfigError, TrialConfig, field_types, parse_overrides
from harness.training.reporting import TrainResult
from harness.training.setup import pick_device


@dataclass(frozen=True)
class TrainRequest:
    """The options of ``run.py train``."""

    recipe: str
    budget: str | None = None
    data: str | None = None
    noise: Path | None = None
    overrides: list[str] = field(default_factory=list)
    out: Path | None = None
    resume: bool = False
    overwrite: bool = False
    track: str | None = None
    track_uri: str | None = None


def train(request: TrainRequest) -> int:
    """Train the requested configuration; 0 if it completed, else 1."""
    overrides = parse_overrides(request.overrides)
    if request.noise is not None:
        overrides["noise_dir"] = noise_dir(request.recipe, request.noise, request.data)
    cfg = resolve_config(request.recipe, request.budget, overrides=overrides, data=request.data)
    out = request.out or Path("results") / "train" / request.recipe
    problem = unwritable_reason(out)
    if problem:
        raise ConfigError(f"--out {out}: {problem}")
    folder = RunFolder(out)
    with folder.claim(cfg, resume=request.resume, overwrite=request.overwrite):
        if request.overwrite:
            pick_device(cfg.trainer.device)
            check_data(cfg)
            folder.clear()
        if request.resume and not folder.has_checkpoint():
            note = f"note: --resume: no checkpoint in {out / 'checkpoints'}; training from step 0"
            print(note, file=sys.stderr, flush=True)
        print_line(f"training {request.recipe} ({cfg.budget} budget) -> {out}")
        result = tracked_run(cfg, out, request)
    first = first_eval(out)
    print_line(f"\n{result.status}: {result.reason}")
    if cfg.trainer.compile:
        print_line(f"torch.compile: {result.compile_s:.1f} s (not in step_s)")
    if first:
        print_line("validation at step 0:     " + scores(first))
    print_line(f"validation at step {result.step}: " + scores(result.last_eval))
    for line in recipe_class(request.recipe).anchors:
        print_line(f"published:               {line}")
    print_line(f"config:      {out / 'config.yaml'}")
    print_line(f"checkpoint:  {result.checkpoint}")
    print_line(f"samples:     {out / 'samples'}")
    print_line(f"diagnostics: {out / 'diagnostics'} (Parquet)")
    return 0 if result.status == "completed" else 1


def tracked_run(cfg: TrialConfig, out: Path, request: TrainRequest) -> TrainResult:
    """The run, logged to the experiment ``train`` of ``--track``'s tracker when asked for; the
    tracker is opened (and so checked) before training starts."""
    if request.track is None:
        if request.track_uri is not None:
            raise TrackingError(f"--track-uri {request.track_uri}: needs --track mlflow or wandb")
        return run_trial(cfg, out, resume=request.resume, echo=print_line)
    params = cfg.flat()
    target = TrackingTarget(request.track, request.track_uri)
    tracker = open_tracker(target, "train", results_root(), out)
    tags = {"recipe": params["recipe"], "budget": params["budget"], "out": str(out.resolve())}
    tracking = TrainingTracking(tracker, out.name, params, tags)
    print_line(f"tracking: {tracker.where()}")
    with tracking:
        result = run_trial(
            cfg,
            out,
            resume=request.resume,
            echo=print_line,
            on_report=tracking.on_report,
            on_start=tracking.on_start,
        )
        tracking.finish(result.status, result.reason)
    return result


def noise_dir(recipe: str, noise: Path, data: str | None) -> str:
    """``--noise`` as the recipe's ``noise_dir`` key (absolute, so config.yaml reruns anywhere)."""
    if "noise_dir" not in field_types(recipe_class(recipe).config_cls):
        raise ConfigError(f"--noise: recipe {recipe!r} takes no noise recordings")
    if data is not None:
        raise ConfigError(f"--noise {noise}: mixes into the built-in speech, not --data {data}")
    if not noise.is_dir():
        raise ConfigError(f"--noise {noise}: no such folder")
    return str(noise.resolve())


def first_eval(out: Path) -> dict:
    """The run's step-0 validation row, if it has one."""
    evals = read_diagnostics(out / "diagnostics", kind="eval")
    if evals.empty:
        return {}
    row = evals.sort_values("step").iloc[0]
    return row.dropna().to_dict() if int(row["step"]) == 0 else {}


def scores(metrics: dict) -> str:
    """The registry's scores in ``metrics``, on one line."""
    return "  ".join(f"{k} {float(metrics[k]):.4g}" for k in SCORES if k in metrics)
