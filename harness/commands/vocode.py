"""`run.py vocode SOURCE IN OUT`: a trained HiFi-GAN over speech or saved log-mels."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import add_inference, add_source, request_of


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vocode",
        help="vocode speech or saved log-mels with a trained HiFi-GAN",
        description="Turn log-mel spectrograms into waveforms with a trained HiFi-GAN: from an "
        "audio file (its log-mel computed exactly as training computes it; any format "
        "libsndfile reads) or a saved log-mel (.npy, the reference's layout [n_mels, frames]). "
        "IN is a file or a folder searched recursively; WAVs go under OUT at the same relative "
        "paths.",
    )
    add_source(p)
    p.add_argument("given_in", type=Path, metavar="IN", help="an audio or .npy file, or a folder")
    p.add_argument(
        "given_out", type=Path, metavar="OUT", help="output folder (or a .wav path for one file)"
    )
    add_inference(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.inference.jobs import ApplyRequest
    from harness.inference.vocode import vocode

    return vocode(request_of(ApplyRequest, args))
