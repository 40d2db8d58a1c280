"""`run.py train RECIPE`: one training run, no Ray, with validation, checkpoints and samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import add_budget_and_overrides, add_tracking, request_of
from harness.recipes import RECIPES


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
    held = p.add_mutually_exclusive_group()
    held.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest checkpoint (same recipe and settings)",
    )
    held.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run in --out and train this one in its place",
    )
    add_tracking(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.train import TrainRequest, train

    return train(request_of(TrainRequest, args))
