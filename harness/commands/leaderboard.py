"""`run.py leaderboard [NAME]`: the ranked trials of a search (default: the most recent one)."""

from __future__ import annotations

import argparse

from harness.commands import add_name, add_results, call
from harness.results.leaderboard import FORMATS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="rank the trials of a search",
        description="Rank a search's trials: completed first by objective, then cut, stopped "
        "and errored ones with their reasons; parameter importances and, for multi-objective "
        "searches, the Pareto front below the table.",
    )
    add_name(p)
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="table", help="output format")
    p.add_argument("--top", type=int, help="show only the first N trials")
    p.add_argument("--sort", metavar="METRIC[:asc|:desc]", help="rank by another column")
    p.add_argument(
        "--healthy-only",
        action="store_true",
        help="leave out trials that raised a health flag (collapse, D overpowering)",
    )
    p.add_argument(
        "--wide",
        action="store_true",
        help="the table with every column (default: what fits 120 characters)",
    )
    p.add_argument(
        "--list",
        dest="listing",
        action="store_true",
        help="list the searches in the results folder",
    )
    add_results(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.results.leaderboard import leaderboard

    print(call(leaderboard, args))
    return 0
