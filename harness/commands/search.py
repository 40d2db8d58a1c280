"""`run.py search RECIPE`: a Ray Tune + Optuna search, resumable by name, ending in a leaderboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import (
    add_confirm_options,
    add_results,
    add_tracking,
    add_verbose,
    request_of,
)
from harness.recipes import RECIPES
from harness.runs.resolve import BUDGETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="hyperparameter search (Ray Tune + Optuna), then the leaderboard",
        description="Search a recipe's hyperparameters with Optuna TPE on Ray Tune, ASHA cutting "
        "weak trials. Results go to results/<name>/. Running the same --name again continues an "
        "interrupted search.",
    )
    _add_what(p)
    _add_how(p)
    _add_after(p)
    p.set_defaults(func=run)


def _add_what(p: argparse.ArgumentParser) -> None:
    """What is searched: the recipe, its space, budget, data and objective."""
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


def _add_how(p: argparse.ArgumentParser) -> None:
    """How it runs: resources, early stopping, the Ray cluster, the seed."""
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPUs per trial, may be 0.25 (default 1 if the cluster has GPUs, else 0)",
    )
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: what fits)")
    p.add_argument(
        "--scheduler",
        choices=("asha", "none", "pbt", "pbt2"),
        help="asha: cut weak trials early (default); none: train every trial to its budget; "
        "pbt: population-based training, the --trials train side by side and the weakest copy "
        "the best and perturb their hyperparameters (the space's pbt: section); pbt2: the same, "
        "new values chosen by PB2's Gaussian-process bandit",
    )
    p.add_argument(
        "--stop-unhealthy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="act on a trial's health flags (discriminator overpowering, collapse): end it, "
        "recorded as stopped and told to Optuna as pruned where it stopped, so the sampler learns "
        "the unstable region; under pbt, replace it from a healthy "
        "trial's checkpoint at its next perturbation (default on)",
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


def _add_after(p: argparse.ArgumentParser) -> None:
    """What follows the trials (confirmation), where results go, what the console shows."""
    p.add_argument(
        "--confirm",
        type=int,
        default=0,
        metavar="K",
        help="after the search, retrain the top K configurations and the paper default with "
        "fresh seeds and say whether the confirmed best beats the default by more than seed "
        "noise, or by at most how much (default 0: no confirmation; `run.py confirm NAME` does "
        "it later)",
    )
    add_confirm_options(p, "--confirm-")
    add_results(p)
    add_tracking(p)
    p.add_argument(
        "--quiet", dest="progress", action="store_false", help="no progress lines while it runs"
    )
    add_verbose(p)


def run(args: argparse.Namespace) -> int:
    from harness.report import write_search_report
    from harness.results.request import SearchRequest
    from harness.search.flow import search

    return search(
        request_of(SearchRequest, args),
        args.results,
        progress=args.progress,
        verbose=args.verbose,
        write_report=write_search_report,
    )
