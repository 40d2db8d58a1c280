"""`run.py rerun [NAME]`: train a searched configuration again, through the same trial code path
(harness/results/rerun.py); ``--seeds`` adds seeds, ``--budget``/``--batches`` train longer,
``--data`` trains on another corpus."""

from __future__ import annotations

import argparse

from harness.commands import add_name, add_results, call, renamed_option
from harness.runs.resolve import BUDGETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rerun",
        help="train a searched configuration again (more seeds, longer, other data)",
        description="Rerun a trial of a search with its stored configuration through the same "
        "trial code as the search; prints per-seed and mean ± std scores beside the score the "
        "search recorded.",
    )
    add_name(p)
    pick = p.add_mutually_exclusive_group()
    pick.add_argument(
        "--rank",
        dest="rank_k",
        type=int,
        default=1,
        metavar="K",
        help="leaderboard rank to rerun (default 1)",
    )
    pick.add_argument("--trial", dest="trial_id", metavar="ID", help="trial id to rerun")
    p.add_argument("--seeds", type=int, default=1, help="seeds: the trial's own, then +1, +2...")
    p.add_argument("--budget", choices=BUDGETS, help="another budget preset (default: as searched)")
    p.add_argument("--batches", type=int, help="training batches (default: as searched)")
    p.add_argument("--steps", dest="batches", type=int, action=renamed_option("--batches"))
    p.add_argument("--data", help="train on another corpus folder")
    add_results(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.results.rerun import rerun

    return call(rerun, args)
