"""`run.py preflight RECIPE`: can the generator fit one fixed batch, and at which lr_g?"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import add_budget_and_overrides
from harness.recipes import RECIPES

EPILOG = """\
G alone (no discriminator) is trained on one fixed training batch with its reconstruction loss,
from the same seeded initialisation for every learning rate.  Verdicts: "learns" (ends at least
10 % below its start), "stalls" (less), "diverges" (non-finite, ends above 1.1x its start or
rebounds above 3x its best).  Exit status 1 when no learning rate learns.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preflight",
        help="generator-only sanity run over a grid of lr_g",
        description="Before an adversarial run: check that the generator can fit one fixed "
        "batch with its reconstruction loss alone, find the generator learning rates that learn "
        "steadily, stall or diverge, and suggest the lr_g range to search.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", choices=sorted(RECIPES), help="which GAN's generator to check")
    p.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        metavar="LR",
        help="generator learning rates to try (default: 7 half-decade steps from lr_g/100 "
        "to lr_g*10)",
    )
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per rate (100)")
    p.add_argument("--data", help="corpus folder (default: the built-in corpus)")
    add_budget_and_overrides(p)
    p.add_argument(
        "--write-space",
        type=Path,
        metavar="FILE",
        help="write the suggested lr_g range into this search-space YAML (created from "
        "search_spaces/RECIPE.yaml if missing)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.console import print_line
    from harness.results.space import write_lr_range
    from harness.runs.preflight import preflight

    span = preflight(
        args.recipe, args.budget, args.overrides, args.data, args.lrs, args.steps, print_line
    )
    if span is not None and args.write_space:
        write_lr_range(args.write_space, args.recipe, *span)
        print_line(f"wrote lr_g to {args.write_space}")
    return 0 if span is not None else 1
