"""`run.py report [NAME]`: write results/<name>/report.html, one self-contained page of a search."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.results.folder import SearchFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report of a search (leaderboard, course, diagnostics, audio)",
        description="Write results/<name>/report.html: the sortable leaderboard, the search's "
        "course with Optuna's plots, the diagnostics of the best trials and of the paper "
        "default, and their validation audio with spectrograms.  One file, works offline.",
    )
    p.add_argument("name", nargs="?", help="search name (default: the most recent search)")
    p.add_argument(
        "--trials",
        metavar="ID,ID",
        help="the trials to show in detail (default: the best --top and the paper default)",
    )
    p.add_argument("--top", type=int, help="best trials shown in detail (default 3)")
    p.add_argument("--results", help="results root (default $GAN_HARNESS_RESULTS or ./results)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.results.folder import find_search, results_root

    folder = find_search(results_root(args.results), args.name)
    trial_ids = [t.strip() for t in args.trials.split(",") if t.strip()] if args.trials else None
    print(write_search_report(folder, trial_ids=trial_ids, top=args.top))
    return 0


def write_search_report(
    folder: SearchFolder, trial_ids: list[str] | None = None, top: int | None = None
) -> Path:
    """The report of the search in ``folder``, with Optuna's plots of its study."""
    from harness.report import DEFAULT_TOP, write_report
    from harness.results.plan import SearchPlan
    from harness.search.figures import study_figures

    figures, numbers = study_figures(folder, SearchPlan.load(folder))
    return write_report(
        folder,
        trial_ids=trial_ids,
        top=DEFAULT_TOP if top is None else top,
        study_figures=figures,
        study_trials=numbers,
    )
