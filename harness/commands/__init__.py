"""One module per `run.py` subcommand; each exposes ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def call(fn: Callable[..., T], args: argparse.Namespace) -> T:
    """``fn`` called with each of its parameters from the option of the same name in ``args``:
    a command's one call, its options passed through by name."""
    names = inspect.signature(fn).parameters
    return fn(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def request_of(cls: type[T], args: argparse.Namespace) -> T:
    """The dataclass ``cls`` from the options of the same names in ``args`` (a field the command
    has no option for keeps its default)."""
    fields = [f.name for f in dataclasses.fields(cls)]
    return cls(**{name: getattr(args, name) for name in fields if hasattr(args, name)})


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


def add_name(p: argparse.ArgumentParser) -> None:
    """NAME, the search a command reads; the most recent one when left out."""
    p.add_argument("name", nargs="?", help="search name (default: the most recent search)")


def add_results(p: argparse.ArgumentParser) -> None:
    """``--results DIR``: the folder that holds the searches."""
    p.add_argument("--results", help="results root (default $GAN_HARNESS_RESULTS or ./results)")


def add_confirm_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """How a confirmation decides: ``{prefix}seeds``, ``{prefix}max-seeds``, ``{prefix}margin``
    (``--confirm-`` on ``search``, ``--`` on ``confirm``); stored as ``confirm_seeds`` ... on
    ``search``, ``seeds`` ... on ``confirm``."""
    from harness.results.confirmation import AUTO, parse_seeds
    from harness.results.sequential import DEFAULT_MAX_SEEDS

    dest = prefix.strip("-").replace("-", "_")
    dest = f"{dest}_" if dest else ""

    def seeds(text: str) -> int | str:
        try:
            return parse_seeds(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    def option(name: str, **how: Any) -> None:
        p.add_argument(f"{prefix}{name}", dest=dest + name.replace("-", "_"), **how)

    option(
        "seeds",
        type=seeds,
        default=AUTO,
        metavar="auto|N",
        help="seeds per configuration: auto (default) adds rounds of seeds to the confirmed best "
        "and the paper default until the verdict is decided, up to the maximum; N: that many "
        "each, one look",
    )
    max_help = f"seeds per configuration at the last look of auto (default {DEFAULT_MAX_SEEDS})"
    option("max-seeds", type=int, default=DEFAULT_MAX_SEEDS, metavar="N", help=max_help)
    option(
        "margin",
        type=float,
        metavar="X",
        help="the smallest gain on the objective worth finding: the verdict may end 'not better "
        "by more than X' (default: the objective's, e.g. 0.02 STOI, 0.1 PESQ)",
    )


def add_verbose(p: argparse.ArgumentParser) -> None:
    """``--verbose``: Ray's and Optuna's output on the console too, not only in the search's log."""
    shown = "show Ray's and Optuna's own output on the console too (always in its search.log)"
    p.add_argument("--verbose", action="store_true", help=shown)


def renamed_option(new: str) -> type[argparse.Action]:
    """An option's old name: stores its value as ``new`` does, with one warning line."""

    class Renamed(argparse.Action):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "help": argparse.SUPPRESS})

        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            from harness.training.config import DeprecatedKey

            warnings.warn(f"{option} is now called {new}", DeprecatedKey, stacklevel=2)
            setattr(namespace, self.dest, values)

    return Renamed


def add_source(p: argparse.ArgumentParser) -> None:
    """SOURCE and how a search's trial is picked: what ``enhance``, ``vocode`` and ``export``
    use."""
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a checkpoint file (RUN/checkpoints/step_*.pt), a training folder (e.g. "
        "results/train/segan: its newest checkpoint), or a search (its name or folder)",
    )
    pick = p.add_mutually_exclusive_group()
    pick.add_argument(
        "--rank",
        dest="rank_k",
        type=int,
        metavar="K",
        help="a search's trial by leaderboard rank (default 1)",
    )
    pick.add_argument("--trial", dest="trial_id", metavar="ID", help="a search's trial by id")
    add_results(p)


def add_inference(p: argparse.ArgumentParser) -> None:
    """Where the generator runs and how its WAVs are written."""
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--subtype",
        choices=("PCM_16", "PCM_24", "FLOAT"),
        default="PCM_16",
        help="sample format of the WAVs written (default PCM_16)",
    )
    p.add_argument(
        "--quiet",
        dest="progress",
        action="store_false",
        help="no line per file, only the summary",
    )


def add_tracking(p: argparse.ArgumentParser) -> None:
    """``--track mlflow|wandb`` and ``--track-uri``: experiment tracking (``uv sync --extra
    tracking``)."""
    p.add_argument(
        "--track",
        choices=("mlflow", "wandb"),
        help="log parameters, every validation's metrics and health flags, and each run's "
        "final status to MLflow (default store results/mlruns) or W&B (offline unless you are "
        "logged in); needs `uv sync --extra tracking`",
    )
    p.add_argument(
        "--track-uri",
        metavar="URI",
        help="MLflow tracking URI (e.g. http://host:5000) or W&B server URL (default: the "
        "local store, or W&B's cloud)",
    )
