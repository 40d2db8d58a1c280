"""`run.py export SOURCE OUT`: a trained generator alone, in formats other tools load."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import add_source, call


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a trained generator alone, in formats other tools load",
        description="Write SOURCE's generator (no discriminator, optimizers or RNG state) to the "
        "folder OUT: generator.pt (its state_dict) and config.yaml for every recipe; for "
        "HiFi-GAN also the reference implementation's g_XXXXXXXX and config.json, which its "
        "inference.py loads unchanged; with --torchscript, generator.torchscript.pt.",
    )
    add_source(p)
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    p.add_argument(
        "--torchscript",
        action="store_true",
        help="also write the generator traced for inference (TorchScript)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.inference.export import export

    return call(export, args)
