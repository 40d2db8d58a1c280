"""Population-based training without Ray: the space's ``pbt:`` section, the initial population
and the bounded perturbation of a configuration.

A space file may say how a population-based search (``run.py search --scheduler pbt``) treats it::

    pbt:
      mutable: [lr_g, lr_d, label_smoothing]  # perturbed while a trial trains; default: every
                                              # swept key that may change mid-run
      interval: 300     # batches between a trial's perturbations (default: one validation round)
      quantile: 0.25    # the bottom share of the population copies the top share (0: only the
                        # unhealthy are replaced)
      resample: 0.25    # chance that a mutable key is redrawn from its range, not perturbed

Keys that may change mid-run are the trainer's :data:`~harness.training.config.MID_RUN_KEYS`
and a recipe's ``mid_run`` (its loss weights); every other swept key (sizes, the loss, the D:G
ratio unless listed) stays fixed along a trial's lineage and passes to a trial with the donor's
checkpoint.  The search code (harness/search/pbt.py) drives Ray's scheduler with these.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from harness.recipes import recipe_class
from harness.results.seeds import POPULATION, TRIALS, derive_seed
from harness.results.space import Param, SearchSpace, SpaceError
from harness.runs.resolve import resolve_config
from harness.training.config import MID_RUN_KEYS

FIELDS = ("mutable", "interval", "quantile", "resample")
FACTORS = (0.8, 1.2)
"""A perturbation multiplies a log-uniform value by one of these, or moves a uniform value by
(factor - 1) of its range, then clamps it to the range."""


@dataclass(frozen=True)
class PopulationSettings:
    """How a population-based search perturbs and replaces its trials."""

    mutable: tuple[str, ...]
    interval: int  # batches between a trial's perturbations
    quantile: float = 0.25
    resample: float = 0.25


def mid_run_keys(recipe: str) -> tuple[str, ...]:
    """The config keys of ``recipe`` a trial may change while it trains."""
    return (*MID_RUN_KEYS, *recipe_class(recipe).mid_run)


def population_settings(space: SearchSpace, budget: str) -> PopulationSettings:
    """The space's ``pbt:`` section, checked; one line naming the key for anything wrong."""
    section = space.pbt

    def fail(key: str, message: str) -> SpaceError:
        return SpaceError(f"{space.source}: pbt.{key}: {message}")

    for key in section:
        if key not in FIELDS:
            raise fail(key, f"unknown key; valid keys: {', '.join(FIELDS)}")
    allowed = mid_run_keys(space.recipe)
    mutable = section.get("mutable")
    if mutable is None:
        mutable = [key for key in space.params if key in allowed]
    if not isinstance(mutable, list) or not all(isinstance(k, str) for k in mutable):
        raise fail("mutable", f"expected a list of swept keys, got {mutable!r}")
    for key in mutable:
        if key not in space.params:
            swept = ", ".join(space.params)
            raise fail("mutable", f"{key} is not swept (a distribution in space); swept: {swept}")
        if key not in allowed:
            can = ", ".join(k for k in space.params if k in allowed) or "none of the swept keys"
            raise fail("mutable", f"{key} cannot change while a trial trains; can: {can}")
    interval = section.get("interval", default_interval(space, budget))
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise fail("interval", f"expected a number of batches >= 1, got {interval!r}")
    quantile = _share(section, "quantile", 0.25, 0.5, fail)
    resample = _share(section, "resample", 0.25, 1.0, fail)
    return PopulationSettings(tuple(dict.fromkeys(mutable)), interval, quantile, resample)


def _share(section: dict, key: str, default: float, most: float, fail: Any) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= most:
        raise fail(key, f"expected a number in [0, {most}], got {value!r}")
    return float(value)


def default_interval(space: SearchSpace, budget: str) -> int:
    """One validation round: ``eval_every`` of the space's fixed values under ``budget``."""
    return resolve_config(space.recipe, budget, sample=space.fixed).trainer.eval_every


def draw(param: Param, rng: random.Random) -> Any:
    """A value of ``param`` drawn uniformly from its range (log-uniformly where it says so)."""
    if param.kind == "choice":
        return rng.choice(param.choices)
    if param.kind == "int":
        return rng.randint(int(param.low), int(param.high))
    if param.kind == "loguniform":
        return math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
    return rng.uniform(param.low, param.high)


def initial_population(space: SearchSpace, size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` configurations: the space's points first, then random draws seeded by the search
    seed, each with its training seed (as a search's trial number would give it)."""
    rng = random.Random(derive_seed(seed, POPULATION, 0))
    members = [dict(point) for point in space.points[:size]]
    while len(members) < size:
        members.append({name: draw(param, rng) for name, param in space.params.items()})
    return [{**member, "seed": derive_seed(seed, TRIALS, n)} for n, member in enumerate(members)]


def perturb(
    values: dict[str, Any],
    params: dict[str, Param],
    settings: PopulationSettings,
    rng: random.Random,
) -> tuple[dict[str, Any], dict[str, str]]:
    """New values of the mutable keys from ``values`` (the donor's), and what was done to each.

    With probability ``settings.resample`` a key is redrawn from its range; otherwise a
    log-uniform value is multiplied by 0.8 or 1.2 and a uniform one moved by -20 % or +20 % of its
    range, then clamped to the range, and an integer or choice key is kept.  No value ever leaves
    the space.
    """
    new, done = {}, {}
    for key in settings.mutable:
        param, value = params[key], values[key]
        if rng.random() < settings.resample:
            new[key], done[key] = draw(param, rng), "resampled"
            continue
        if param.kind in ("int", "choice"):
            new[key], done[key] = value, "kept"
            continue
        factor = rng.choice(FACTORS)
        if param.kind == "loguniform":
            moved, how = value * factor, f"x{factor:g}"
        else:
            step = (factor - 1) * (param.high - param.low)
            moved, how = value + step, f"{step:+.3g}"
        new[key] = float(min(max(moved, param.low), param.high))
        done[key] = how if new[key] == moved else f"{how}, clamped"
    return new, done
