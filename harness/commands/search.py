"""`run.py search RECIPE`: a Ray Tune + Optuna search, resumable by name, ending in a leaderboard."""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from harness.recipes import RECIPES
from harness.runs.resolve import BUDGETS

if TYPE_CHECKING:
    from harness.results.folder import SearchFolder
    from harness.results.plan import Resources, SearchPlan
    from harness.results.space import SearchSpace
    from harness.training.config import TrialConfig

DEFAULT_TRIALS = {"smoke": 8, "small": 32, "paper": 64}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# options that define a search; given again on resume they must match what was launched
# (for the resources: what the search got on its cluster, see launched_options)
IDENTITY = (
    "budget",
    "objective",
    "multi_objective",
    "trials",
    "cpus_per_trial",
    "gpus_per_trial",
    "max_concurrent",
    "scheduler",
    "seed",
    "data",
    "storage",
)


class SearchArgsError(ValueError):
    """A search option is invalid; one line naming it."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="hyperparameter search (Ray Tune + Optuna), then the leaderboard",
        description="Search a recipe's hyperparameters with Optuna TPE on Ray Tune, ASHA cutting "
        "weak trials. Results go to results/<name>/. Running the same --name again continues an "
        "interrupted search.",
    )
    p.add_argument("recipe", choices=sorted(RECIPES), help="which GAN to search")
    p.add_argument("--name", help="search name (default <recipe>-<budget>)")
    p.add_argument("--space", type=Path, help="search space YAML (default search_spaces/RECIPE)")
    p.add_argument("--trials", type=int, help="number of trials (default 8 smoke, 32 small)")
    p.add_argument("--budget", choices=BUDGETS, help="per-trial size (default smoke on CPU)")
    p.add_argument("--data", help="corpus folder (default: the built-in espeak-ng corpus)")
    p.add_argument("--objective", help="metric to optimise (default: the space's objective)")
    p.add_argument(
        "--multi-objective",
        action="store_true",
        default=None,
        help="optimise the objective and the space's cost (params_g) together",
    )
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPUs per trial, may be 0.25 (default 1 if the cluster has GPUs, else 0)",
    )
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: what fits)")
    p.add_argument("--scheduler", choices=("asha", "none"), help="early stopping (default asha)")
    p.add_argument(
        "--stop-unhealthy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end a trial once its health flags (discriminator overpowering, collapse) are "
        "raised, recorded as stopped and told to Optuna as failed (default on)",
    )
    p.add_argument("--address", help="existing Ray cluster (default $RAY_ADDRESS, else local)")
    p.add_argument("--storage", help="Ray storage URI (s3://..., /mnt/nfs/...) for Tune state")
    p.add_argument(
        "--seed",
        type=int,
        help="search seed (default 0): seeds the sampler, and each trial trains with a seed "
        "derived from it and the trial's number (recorded in trials.parquet)",
    )
    p.add_argument(
        "--allow-trained-objective",
        action="store_true",
        help="optimise a metric the recipe trains on even though the space sweeps a weight of "
        "that loss term (refused by default: the winner would be whoever weakens the GAN)",
    )
    p.add_argument(
        "--confirm",
        type=int,
        default=0,
        metavar="K",
        help="after the search, retrain the top K configurations and the paper default with "
        "--confirm-seeds fresh seeds each and say whether the winner beats the default by more "
        "than seed noise (default 0: no confirmation; `run.py confirm NAME` does it later)",
    )
    p.add_argument(
        "--confirm-seeds",
        type=int,
        default=3,
        metavar="N",
        help="seeds per confirmed configuration",
    )
    p.add_argument("--results", help="results root (default $GAN_HARNESS_RESULTS or ./results)")
    p.add_argument("--quiet", action="store_true", help="no progress lines while it runs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.console import print_line
    from harness.files import unwritable_reason
    from harness.results.folder import SearchFolder, results_root
    from harness.results.leaderboard import render
    from harness.results.plan import Resources, SearchPlan
    from harness.results.space import parse_space
    from harness.runs.resolve import default_budget

    if args.confirm < 0 or args.confirm_seeds < 2:
        raise SearchArgsError(
            f"--confirm {args.confirm} --confirm-seeds {args.confirm_seeds}: need K >= 0 and N >= 2"
        )
    budget = args.budget or default_budget()
    name = args.name or f"{args.recipe}-{budget}"
    if not NAME.fullmatch(name):
        raise SearchArgsError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    folder = SearchFolder(results_root(args.results) / name)
    problem = unwritable_reason(folder.path)
    if problem:
        raise SearchArgsError(f"--results {folder.path.parent}: {problem}")
    if folder.config.is_file():
        plan, resources = SearchPlan.load(folder), Resources.load(folder)
        check_same_search(plan, resources, args)
        if folder.finished() and (not args.confirm or folder.confirmation_table.is_file()):
            print_line(f"search {name!r} has already finished; see `run.py leaderboard {name}`")
            print_line(render(folder, "table"))
            return 0
        space = parse_space(plan.space, plan.recipe, plan.space_file)
        address = args.address or resources.address
    else:
        plan, space = make_plan(args, name, budget)
        address = args.address or os.environ.get("RAY_ADDRESS") or None
    with held(folder, "pick another --name"):
        return execute(args, plan, space, folder, address)


@contextmanager
def held(folder: SearchFolder, advice: str = "") -> Iterator[None]:
    """Hold the search's lock for the block, one search or confirmation per folder at a time;
    a one-line error (ending in ``advice``, if given) if another process holds it.  The kernel
    releases it if this process dies; the temp file of a write that death cut short is cleared
    here."""
    from harness.files import exclusive_lock, remove_stale_temps

    busy = (
        f"search {folder.name!r} is already running in another process (it holds "
        f"{folder.lock}); wait for it to end" + (f", or {advice}" if advice else "")
    )
    with exclusive_lock(folder.lock, busy):
        remove_stale_temps(folder.path, [path.name for path in folder.search_writes()])
        yield


def execute(
    args: argparse.Namespace,
    plan: SearchPlan,
    space: SearchSpace,
    folder: SearchFolder,
    address: str | None,
) -> int:
    """Run (or continue) the search, confirm it if asked, print its leaderboard and report."""
    from harness.console import print_line
    from harness.results.leaderboard import render
    from harness.search import run_search

    name = plan.name
    print_line(
        f"search {name!r}: {plan.recipe} ({plan.budget} budget), {plan.trials} trials, "
        f"objective {plan.objective} -> {folder.path}"
    )
    outcome = run_search(
        plan, space, folder, address=address, echo=print_line, progress=not args.quiet
    )
    confirm_s = 0.0
    if outcome.finished and args.confirm:
        from harness.search.confirm import run_confirmation

        print_line("")
        started = time.monotonic()
        run_confirmation(
            plan,
            space,
            folder,
            top=args.confirm,
            seeds=args.confirm_seeds,
            address=address,
            echo=print_line,
        )
        confirm_s = time.monotonic() - started
    print_line("")
    print_line(render(folder, "table"))
    from harness.commands.report import write_search_report

    started = time.monotonic()
    report = write_search_report(folder)
    size = report.stat().st_size / 2**20
    print_line(f"\nreport: {report} ({size:.1f} MiB, {time.monotonic() - started:.0f} s)")
    if not outcome.finished:
        print_line(f"\nsearch {name!r} is unfinished; run the same command again to continue it")
        return 1
    took = f"search {outcome.wall_s:.0f} s" + (
        f", confirmation {confirm_s:.0f} s" if confirm_s else ""
    )
    print_line(f"\nfinished ({took}); rerun the best: `run.py rerun {name}`")
    return 0


def check_same_search(plan: SearchPlan, resources: Resources, args: argparse.Namespace) -> None:
    """On resume, options given again must match the launched search."""
    if args.recipe != plan.recipe:
        raise SearchArgsError(
            f"search {plan.name!r} searches {plan.recipe!r}, not {args.recipe!r}; use another --name"
        )
    launched = launched_options(plan, resources)
    given = {option: getattr(args, option) for option in IDENTITY}
    if given["data"] is not None:
        given["data"] = str(Path(given["data"]).resolve())
    if args.space is not None:
        given["space_file"] = str(Path(args.space).resolve())
    for option, value in given.items():
        if value is not None and value != launched[option]:
            flag = "--" + option.replace("_file", "").replace("_", "-")
            raise SearchArgsError(
                f"search {plan.name!r} was launched with {flag} {launched[option]!r}, not "
                f"{value!r}; run it without {flag} to continue it, or pick another --name"
            )


def launched_options(plan: SearchPlan, resources: Resources) -> dict[str, object]:
    """The options a search was launched with; its resources as fitted to the cluster."""
    launched = {option: getattr(plan, option) for option in (*IDENTITY, "space_file")}
    launched["cpus_per_trial"] = resources.cpus_per_trial
    launched["gpus_per_trial"] = resources.gpus_per_trial
    launched["max_concurrent"] = resources.trials_at_once
    return launched


def make_plan(args: argparse.Namespace, name: str, budget: str) -> tuple[SearchPlan, SearchSpace]:
    """Validate every option and the space before anything starts; the space file is read and
    parsed once here, and the plan keeps its document verbatim."""
    from harness.recipes import recipe_class
    from harness.results.plan import SearchPlan
    from harness.results.space import default_space_file, metric_mode, parse_space, read_space_file
    from harness.runs.resolve import check_data, resolve_config

    recipe = args.recipe
    if budget not in recipe_class(recipe).budgets:
        raise SearchArgsError(f"--budget {budget!r}: recipe {recipe!r} has no such budget")
    space_file = Path(args.space or default_space_file(recipe)).resolve()
    document = read_space_file(space_file)
    space = parse_space(document, recipe, str(space_file))
    objective = pick_objective(args, space, space_file)
    trials = args.trials if args.trials is not None else DEFAULT_TRIALS[budget]
    check_counts(args, trials)
    data = data_folder(args.data)
    for point in [{}, *space.points]:  # fixed values and known-good points must be valid configs
        resolve_config(recipe, budget, sample={**space.fixed, **point}, data=data)
    base = resolve_config(recipe, budget, sample=space.fixed, data=data)
    check_reported(objective, base)
    check_data(base)
    multi = bool(args.multi_objective)
    scheduler, grace, max_t = pick_scheduler(args.scheduler, multi, space, recipe, budget)
    plan = SearchPlan(
        name=name,
        recipe=recipe,
        budget=budget,
        space_file=str(space_file),
        space=document,
        swept=space.swept,
        objective=objective,
        mode=metric_mode(objective),
        trials=trials,
        seed=args.seed if args.seed is not None else 0,
        data=data,
        multi_objective=multi,
        cost=space.cost,
        cost_mode=metric_mode(space.cost),
        cpus_per_trial=args.cpus_per_trial if args.cpus_per_trial is not None else 1.0,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent or 0,
        scheduler=scheduler,
        stop_unhealthy=args.stop_unhealthy,
        grace_period=grace,
        max_t=max_t,
        storage=args.storage,
    )
    return plan, space


def pick_objective(args: argparse.Namespace, space: SearchSpace, space_file: Path) -> str:
    """``--objective`` or the space's; refused when the space sweeps a weight of that very
    loss term (the search would reward weakening the GAN) unless the user insists."""
    from harness.results.space import loss_weights_swept
    from harness.scoring.registry import SCORES

    objective = args.objective or space.objective
    if objective not in SCORES:
        raise SearchArgsError(f"--objective {objective!r}: not one of {', '.join(SCORES)}")
    gaming = loss_weights_swept(args.recipe, objective, space.swept)
    if gaming and not args.allow_trained_objective:
        raise SearchArgsError(
            f"{space_file}: objective {objective} is a loss term {args.recipe} trains on and the "
            f"space sweeps {', '.join(gaming)}, which weigh it, so the search would reward "
            "weakening the GAN; optimise a metric no loss term optimises, or pass "
            "--allow-trained-objective"
        )
    return objective


def check_reported(objective: str, cfg: TrialConfig) -> None:
    """The objective must be a metric the trials' validation reports."""
    from harness.recipes import recipe_class

    reported = recipe_class(cfg.recipe).reports(cfg.model)
    if objective not in reported:
        hint = ""
        if hasattr(cfg.model, "eval_metrics"):
            hint = "; add it to eval_metrics (a fixed value in the space)"
        raise SearchArgsError(
            f"objective {objective}: {cfg.recipe}'s validation reports only "
            f"{', '.join(reported)}{hint}"
        )


def check_counts(args: argparse.Namespace, trials: int) -> None:
    """Trials, CPUs, GPUs and concurrency that a search can run with."""
    if trials < 1:
        raise SearchArgsError(f"--trials {trials}: must be >= 1")
    if args.cpus_per_trial is not None and args.cpus_per_trial <= 0:
        raise SearchArgsError(f"--cpus-per-trial {args.cpus_per_trial:g}: must be > 0")
    gpus = args.gpus_per_trial
    if gpus is not None and (gpus < 0 or (gpus > 1 and not float(gpus).is_integer())):
        raise SearchArgsError(f"--gpus-per-trial {gpus:g}: use a fraction <= 1 or a whole number")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise SearchArgsError(f"--max-concurrent {args.max_concurrent}: must be >= 1")


def data_folder(given: str | None) -> str | None:
    """``--data`` as an absolute folder that exists (None: the recipe's built-in data)."""
    if not given:
        return None
    if not Path(given).is_dir():
        raise SearchArgsError(f"--data {given}: no such folder")
    return str(Path(given).resolve())


def pick_scheduler(
    asked: str | None, multi: bool, space: SearchSpace, recipe: str, budget: str
) -> tuple[str, int, int]:
    """(scheduler, grace, max_t): ASHA for single-objective searches unless no validation falls
    between the discriminator's start and the budget."""
    from harness.console import print_line

    grace, max_t = asha_window(space, recipe, budget)
    scheduler = asked or ("none" if multi else "asha")
    if scheduler == "asha" and grace >= max_t:
        print_line(
            f"note: ASHA off: no validation between the discriminator start and {max_t} batches"
        )
        scheduler = "none"
    return scheduler, grace, max_t


def asha_window(space: SearchSpace, recipe: str, budget: str) -> tuple[int, int]:
    """(grace period, max_t) in batches drawn: ASHA may cut a trial only at a validation after
    the discriminator has started, whatever disc_start_step and g_steps the sampler picks
    (before D starts, an iteration draws g_steps batches)."""
    from harness.runs.resolve import resolve_config

    trainer = resolve_config(recipe, budget, sample=space.fixed).trainer

    def upper(key: str) -> int:
        param = space.params.get(key)
        if param is None:
            return int(getattr(trainer, key))
        return int(max(param.choices) if param.kind == "choice" else param.high)

    every = upper("eval_every")
    d_starts = upper("disc_start_step") * upper("g_steps")
    grace = (d_starts // every + 1) * every
    return grace, upper("batches")
