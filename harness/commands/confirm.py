"""`run.py confirm [NAME]`: retrain a finished search's top configurations and the paper default
with fresh seeds, and say whether the winner beats the default by more than seed noise."""

from __future__ import annotations

import argparse

from harness.commands import add_results, add_verbose


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "confirm",
        help="retrain the best configurations with several seeds (winner vs paper default)",
        description="Retrain the top K configurations of a finished search and the space's first "
        "point (the paper default) with N fresh seeds each, at the search's budget and through "
        "the same trial code, on Ray; then print the leaderboard with mean ± std, the 95%% "
        "interval and a one-sided Welch test of the winner against the default. Running it "
        "again continues an interrupted confirmation.",
    )
    p.add_argument("name", nargs="?", help="search name (default: the most recent search)")
    p.add_argument("--top", type=int, default=2, metavar="K", help="configurations (default 2)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds each (default 3)")
    p.add_argument("--address", help="existing Ray cluster (default: the search's)")
    add_results(p)
    add_verbose(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report import write_search_report
    from harness.search.flow import confirm

    return confirm(
        args.results,
        args.name,
        top=args.top,
        seeds=args.seeds,
        address=args.address,
        verbose=args.verbose,
        write_report=write_search_report,
    )
