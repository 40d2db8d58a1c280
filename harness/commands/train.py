"""`run.py train RECIPE`: one training run, no Ray, with validation, checkpoints and samples."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import add_budget_and_overrides, add_tracking
from harness.recipes import RECIPES

if TYPE_CHECKING:
    from harness.tracking import TrainingTracking


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one configuration (no search)",
        description="Train one GAN configuration end to end: progress, validation at fixed "
        "intervals, checkpoints, sample WAVs and a Parquet diagnostics dataset.",
    )
    p.add_argument("recipe", choices=sorted(RECIPES), help="which GAN to train")
    p.add_argument(
        "--data",
        help="corpus folder: LJSpeech layout or a folder of audio files; for enhancement "
        "recipes the VoiceBank-DEMAND layout or clean/ + noisy/ (default: the built-in corpus)",
    )
    p.add_argument(
        "--noise",
        type=Path,
        help="folder of noise recordings (any format libsndfile reads) mixed into the built-in "
        "speech at the VoiceBank-DEMAND SNRs instead of the synthetic noises (enhancement "
        "recipes; sets their noise_dir)",
    )
    add_budget_and_overrides(p)
    p.add_argument("--out", type=Path, help="output folder (default results/train/<recipe>)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --out"
    )
    add_tracking(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.console import print_line
    from harness.files import unwritable_reason
    from harness.recipes import recipe_class
    from harness.runs.resolve import resolve_config
    from harness.runs.trial import run_trial
    from harness.training.checkpoints import resume_candidates
    from harness.training.config import ConfigError, parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.noise is not None:
        overrides["noise_dir"] = _noise_dir(args.recipe, args.noise, args.data)
    cfg = resolve_config(args.recipe, args.budget, overrides=overrides, data=args.data)
    out = args.out or Path("results") / "train" / args.recipe
    problem = unwritable_reason(out)
    if problem:
        raise ConfigError(f"--out {out}: {problem}")
    if args.resume and not resume_candidates(out / "checkpoints"):
        note = f"note: --resume: no checkpoint in {out / 'checkpoints'}; training from step 0"
        print(note, file=sys.stderr, flush=True)
    tracking = _tracking(args, cfg.flat(), out)
    print_line(f"training {args.recipe} ({cfg.budget} budget) -> {out}")
    if tracking is None:
        result = run_trial(cfg, out, resume=args.resume, echo=print_line)
    else:
        print_line(f"tracking: {tracking.tracker.where()}")
        with tracking:
            result = run_trial(
                cfg,
                out,
                resume=args.resume,
                echo=print_line,
                on_report=tracking.on_report,
                on_start=tracking.on_start,
            )
            tracking.finish(result.status, result.reason)
    first = _first_eval(out)
    print_line(f"\n{result.status}: {result.reason}")
    if cfg.trainer.compile:
        print_line(f"torch.compile: {result.compile_s:.1f} s (not in step_s)")
    if first:
        print_line("validation at step 0:     " + _fmt(first))
    print_line(f"validation at step {result.step}: " + _fmt(result.last_eval))
    for line in recipe_class(args.recipe).anchors:
        print_line(f"published:               {line}")
    print_line(f"config:      {out / 'config.yaml'}")
    print_line(f"checkpoint:  {result.checkpoint}")
    print_line(f"samples:     {out / 'samples'}")
    print_line(f"diagnostics: {out / 'diagnostics'} (Parquet)")
    return 0 if result.status == "completed" else 1


def _tracking(args: argparse.Namespace, params: dict, out: Path) -> TrainingTracking | None:
    """``--track``: the run's record in the experiment ``train``, its tracker opened (and so
    checked) before training starts; None without ``--track``."""
    from harness.results.folder import results_root
    from harness.tracking import TrackingError, TrackingTarget, TrainingTracking, open_tracker

    if args.track is None:
        if args.track_uri is not None:
            raise TrackingError(f"--track-uri {args.track_uri}: needs --track mlflow or wandb")
        return None
    tracker = open_tracker(TrackingTarget(args.track, args.track_uri), "train", results_root(), out)
    tags = {"recipe": params["recipe"], "budget": params["budget"], "out": str(out.resolve())}
    return TrainingTracking(tracker, out.name, params, tags)


def _noise_dir(recipe: str, noise: Path, data: str | None) -> str:
    """``--noise`` as the recipe's ``noise_dir`` key (absolute, so config.yaml reruns anywhere)."""
    from harness.recipes import recipe_class
    from harness.training.config import ConfigError, field_types

    if "noise_dir" not in field_types(recipe_class(recipe).config_cls):
        raise ConfigError(f"--noise: recipe {recipe!r} takes no noise recordings")
    if data is not None:
        raise ConfigError(f"--noise {noise}: mixes into the built-in speech, not --data {data}")
    if not noise.is_dir():
        raise ConfigError(f"--noise {noise}: no such folder")
    return str(noise.resolve())


def _first_eval(out: Path) -> dict:
    from harness.diagnostics.telemetry import read_diagnostics

    evals = read_diagnostics(out / "diagnostics", kind="eval")
    if evals.empty:
        return {}
    row = evals.sort_values("step").iloc[0]
    return row.dropna().to_dict() if int(row["step"]) == 0 else {}


def _fmt(metrics: dict) -> str:
    from harness.scoring.registry import SCORES

    return "  ".join(f"{k} {float(metrics[k]):.4g}" for k in SCORES if k in metrics)
