"""`run.py report [NAME]`: write results/<name>/report.html, one self-contained page of a search."""

from __future__ import annotations

import argparse

from harness.commands import add_name, add_results


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report of a search (leaderboard, course, diagnostics, audio)",
        description="Write results/<name>/report.html: the sortable leaderboard, the search's "
        "course with Optuna's plots, the diagnostics of the best trials and of the paper "
        "default, and their validation audio with spectrograms.  One file, works offline.",
    )
    add_name(p)
    p.add_argument(
        "--trials",
        type=trial_ids,
        metavar="ID,ID",
        help="the trials to show in detail (default: the best --top and the paper default)",
    )
    p.add_argument("--top", type=int, help="best trials shown in detail (default 3)")
    add_results(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.files import results_root
    from harness.report import write_search_report
    from harness.results.folder import find_search

    folder = find_search(results_root(args.results), args.name)
    print(write_search_report(folder, trial_ids=args.trials, top=args.top))
    return 0


def trial_ids(text: str) -> list[str] | None:
    """``--trials ID,ID`` as a list of ids (None when it names none)."""
    return [t.strip() for t in text.split(",") if t.strip()] or None
