"""`run.py enhance SOURCE IN OUT`: a trained MetricGAN+ or SEGAN over noisy recordings."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import add_inference, add_source, request_of


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enhance",
        help="enhance noisy speech with a trained MetricGAN+ or SEGAN",
        description="Enhance a file, or every audio file under a folder (any format libsndfile "
        "reads, any rate and channel count), with a trained enhancer; writes WAVs at the "
        "recipe's rate (16 kHz) under OUT at the same relative paths. Long files are enhanced "
        "in chunks with the recipe's own framing, so memory stays bounded.",
    )
    add_source(p)
    p.add_argument(
        "given_in", type=Path, metavar="IN", help="a noisy recording, or a folder of them"
    )
    p.add_argument(
        "given_out", type=Path, metavar="OUT", help="output folder (or a .wav path for one file)"
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=30.0,
        help="audio enhanced at once, besides the recipe's context (default 30)",
    )
    add_inference(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.inference.enhance import enhance
    from harness.inference.jobs import ApplyRequest

    return enhance(request_of(ApplyRequest, args))
