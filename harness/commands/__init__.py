"""One module per `run.py` subcommand; each exposes ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse


def add_budget_and_overrides(p: argparse.ArgumentParser) -> None:
    """The ``--budget`` and repeatable ``--set KEY=VALUE`` options shared by training commands."""
    from harness.runs.resolve import BUDGETS

    p.add_argument(
        "--budget", choices=BUDGETS, help="size preset (default: smoke on CPU, small on GPU)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (repeatable), e.g. --set lr_g=1e-4",
    )
