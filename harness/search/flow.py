"""``run.py search`` and ``run.py confirm`` from start to end: plan, lock, run, confirm, print the
leaderboard, write the report.

Both hold the search's lock while they run (one search or confirmation per folder at a time)
and send Ray's and Optuna's output to the search's log (harness/search/chatter.py).  The report
writer is passed in because ``harness/report/`` sits above this package.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.console import print_line
from harness.files import results_root
from harness.results.confirmation import ConfirmRequest
from harness.results.folder import SearchFolder, find_search
from harness.results.leaderboard import render
from harness.results.plan import Resources, SearchPlan
from harness.results.request import POPULATION_SCHEDULERS, PlannedSearch, SearchRequest, plan_search
from harness.results.space import SearchSpace, parse_space
from harness.search.chatter import chatter_to_log
from harness.search.confirm import run_confirmation
from harness.search.driver import SearchError, run_search
from harness.search.reach import check_reachable
from harness.search.study_rebuild import repair_study, unusable

ReportWriter = Callable[[SearchFolder], Path]


def search(
    request: SearchRequest,
    results: str | None,
    *,
    progress: bool,
    verbose: bool,
    write_report: ReportWriter,
) -> int:
    """Run (or continue) the requested search under the results root ``results``; its exit
    status: 0 once it has finished, 1 while it is unfinished (running it again continues it)."""
    planned = plan_search(request, results)
    folder = planned.folder
    if planned.space is None:
        see = f"see `run.py leaderboard {folder.name}`"
        print_line(f"search {folder.name!r} has already finished; {see}")
        mend_finished_study(folder)
        print_line(render(folder, "table"))
        return 0
    check_reachable(planned.address)
    with folder.hold("pick another --name"), chatter_to_log(folder.log, verbose):
        return run_to_report(planned, planned.space, request, progress, write_report)


def mend_finished_study(folder: SearchFolder) -> None:
    """Rebuild a finished search's study from its trials table if it cannot be read (what
    the report's warning about a damaged study says to do); a whole one is only read."""
    plan = SearchPlan.load(folder)
    if plan.scheduler in POPULATION_SCHEDULERS or unusable(folder, plan.name) is None:
        return
    with folder.hold():
        note = repair_study(plan, parse_space(plan.space, plan.recipe, plan.space_file), folder)
    if note:
        print_line(note)


def run_to_report(
    planned: PlannedSearch,
    space: SearchSpace,
    request: SearchRequest,
    progress: bool,
    write_report: ReportWriter,
) -> int:
    """Run the planned search, confirm it if asked, print its leaderboard and write its report."""
    plan, folder, address = planned.plan, planned.folder, planned.address
    print_line(
        f"search {plan.name!r}: {plan.recipe} ({plan.budget} budget), {plan.trials} trials, "
        f"objective {plan.objective} -> {folder.path}"
    )
    outcome = run_search(plan, space, folder, address=address, echo=print_line, progress=progress)
    confirm_s = 0.0
    if outcome.finished and request.confirm:
        print_line("")
        started = time.monotonic()
        run_confirmation(
            plan, space, folder, request.confirmation(), address=address, echo=print_line
        )
        confirm_s = time.monotonic() - started
    print_line("")
    print_line(render(folder, "table"))
    started = time.monotonic()
    report = write_report(folder)
    size = report.stat().st_size / 2**20
    print_line(f"\nreport: {report} ({size:.1f} MiB, {time.monotonic() - started:.0f} s)")
    if not outcome.finished:
        print_line(
            f"\nsearch {folder.name!r} is unfinished; run the same command again to continue it"
        )
        return 1
    took = f"search {outcome.wall_s:.0f} s" + (
        f", confirmation {confirm_s:.0f} s" if confirm_s else ""
    )
    print_line(f"\nfinished ({took}); rerun the best: `run.py rerun {folder.name}`")
    return 0


def confirm(
    results: str | None,
    name: str | None,
    request: ConfirmRequest,
    *,
    address: str | None,
    verbose: bool,
    write_report: ReportWriter,
) -> int:
    """Confirm the finished search ``name`` (None: the most recent) under the results root
    ``results`` as ``request`` asks (its top configurations and the paper default, fresh seeds,
    at the search's budget or another), then print the leaderboard with the verdict and write
    the report."""
    request.check(CONFIRM_FLAGS)
    folder = find_search(results_root(results), name)
    if not folder.finished():
        raise SearchError(
            f"search {folder.name!r} has not finished; finish it first (run the same search again)"
        )
    plan = SearchPlan.load(folder)
    space = parse_space(plan.space, plan.recipe, plan.space_file)
    address = address or Resources.load(folder).address
    check_reachable(address)
    with folder.hold(), chatter_to_log(folder.log, verbose):
        started = time.monotonic()
        run_confirmation(
            plan,
            space,
            folder,
            request,
            address=address,
            echo=print_line,
        )
        took = time.monotonic() - started
        print_line("")
        print_line(render(folder, "table"))
        print_line(f"\nreport: {write_report(folder)}")
        print_line(f"\nconfirmation finished ({took:.0f} s)")
    return 0


CONFIRM_FLAGS = {
    "top": "--top",
    "seeds": "--seeds",
    "max_seeds": "--max-seeds",
    "margin": "--margin",
    "batches": "--batches",
}
