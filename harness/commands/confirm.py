"""`run.py confirm [NAME]`: retrain a finished search's top configurations and the paper default
with fresh seeds, at its budget or a longer one, and say whether the confirmed best beats the
default by more than seed noise, and whether the search's ranking held."""

from __future__ import annotations

import argparse

from harness.commands import add_confirm_options, add_name, add_results, add_verbose


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.runs.resolve import BUDGETS

    p = sub.add_parser(
        "confirm",
        help="retrain the best configurations with fresh seeds (winner vs paper default)",
        description="Retrain the top K configurations of a finished search and the space's first "
        "point (the paper default) with fresh seeds, through the same trial code, on Ray; by "
        "default in rounds until a sequential test (Pocock-corrected one-sided Welch, the best "
        "of K) decides whether the confirmed best beats the default, or bounds its gain below "
        "the margin. --batches or --budget confirms at another budget, to see whether the "
        "search's ranking holds there. Then print the leaderboard with the verdict, the guard "
        "metrics and the ranking check. Running it again continues an interrupted confirmation.",
    )
    add_name(p)
    p.add_argument("--top", type=int, default=2, metavar="K", help="configurations (default 2)")
    add_confirm_options(p, "--")
    p.add_argument(
        "--budget", choices=BUDGETS, help="budget preset to confirm at (default: the search's)"
    )
    p.add_argument(
        "--batches",
        type=int,
        metavar="N",
        help="batches each run trains (default: the budget's; the search's at its budget)",
    )
    p.add_argument("--address", help="existing Ray cluster (default: the search's)")
    add_results(p)
    add_verbose(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report import write_search_report
    from harness.results.confirmation import ConfirmRequest
    from harness.search.flow import confirm

    request = ConfirmRequest(
        top=args.top,
        seeds=args.seeds,
        max_seeds=args.max_seeds,
        margin=args.margin,
        budget=args.budget,
        batches=args.batches,
    )
    return confirm(
        args.results,
        args.name,
        request,
        address=args.address,
        verbose=args.verbose,
        write_report=write_search_report,
    )
