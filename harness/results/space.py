"""Search spaces: a small YAML grammar, validated against a recipe's config before anything runs.

A space file looks like this (``search_spaces/ring.yaml``)::

    objective: reverse_kl          # default metric to optimise (default: the recipe's shipped one)
    cost: params_g                 # second objective of --multi-objective (default params_g)
    space:
      lr_g: {loguniform: [1.0e-4, 3.0e-3]}
      d_steps: {int: [1, 3]}       # bounds inclusive
      label_smoothing: {uniform: [0.0, 0.2]}
      loss: {choice: [bce, lsgan]}
      g_hidden: 128                # a fixed value: every trial gets it, nothing is sampled
    points_to_evaluate:            # complete known-good configurations, tried first
      - {lr_g: 1.0e-3, d_steps: 1, label_smoothing: 0.0, loss: bce}
    pbt:                           # population-based training only (harness/results/population.py)
      mutable: [lr_g, label_smoothing]

Every problem is a :class:`SpaceError` whose one-line message names the file and the key.
This module knows nothing of Ray or Optuna; ``harness/search/`` converts a :class:`SearchSpace`.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from harness.files import atomic_write
from harness.recipes import recipe_class
from harness.scoring.registry import COSTS, SCORES
from harness.text import read_utf8
from harness.training import config as config_mod
from harness.training.config import ConfigError, Range, TrainerConfig, renamed

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
TOP_LEVEL = ("objective", "cost", "space", "points_to_evaluate", "pbt", "description")
RESERVED = ("recipe", "budget", "data")  # set by the search itself, never sampled


class SpaceError(ValueError):
    """A search space file is invalid; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class Param:
    """One swept parameter: ``kind`` is a distribution name, bounds inclusive."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice {list(self.choices)}"
        return f"{self.kind} [{self.low}, {self.high}]"


@dataclass(frozen=True)
class SearchSpace:
    """A validated space: what is swept, what is fixed, what is tried first, what is optimised."""

    source: str
    recipe: str
    params: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    objective: str = ""
    cost: str = "params_g"
    pbt: dict[str, Any] = field(default_factory=dict)  # read by harness/results/population.py

    @property
    def swept(self) -> list[str]:
        return list(self.params)


def metric_mode(metric: str) -> str:
    """'max' or 'min' for a known metric or cost."""
    known = {**SCORES, **COSTS}
    if metric not in known:
        raise SpaceError(f"unknown metric {metric!r}; valid: {', '.join(known)}")
    return known[metric].direction


def default_space_file(recipe: str) -> Path:
    """``search_spaces/<recipe>.yaml`` in the repository."""
    return SPACES_DIR / f"{recipe}.yaml"


def default_objective(recipe: str) -> str | None:
    """The objective of ``recipe``'s shipped space: what a space without one optimises."""
    document = read_space_file(default_space_file(recipe))
    return document.get("objective") if isinstance(document, dict) else None


def load_space(path: Path, recipe: str) -> SearchSpace:
    """Read and validate a space file for ``recipe``."""
    return parse_space(read_space_file(path), recipe, str(path))


def read_space_file(path: Path) -> Any:
    """The YAML document of a space file, not yet validated (see :func:`parse_space`)."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"{path}: search space file not found")
    try:
        return yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None


def parse_space(doc: Any, recipe: str, source: str = "<space>") -> SearchSpace:
    """Validate a parsed YAML document against ``recipe``'s config keys and types."""

    def fail(where: str, message: str) -> SpaceError:
        return SpaceError(f"{source}: {where}: {message}")

    def at(where: str) -> typing.Callable[[str], SpaceError]:
        return lambda message: fail(where, message)

    if not isinstance(doc, dict):
        raise SpaceError(f"{source}: expected a mapping with keys {', '.join(TOP_LEVEL)}")
    for key in doc:
        if key not in TOP_LEVEL:
            raise fail(key, f"unknown key; valid keys: {', '.join(TOP_LEVEL)}")
    kinds = config_field_types(recipe)
    allowed = config_choices(recipe)
    ranges = config_mod.ranges_of(recipe_class(recipe).config_cls)

    objective = doc.get("objective")
    if objective is None:  # a user's space may leave it to the recipe (or to --objective)
        objective = default_objective(recipe)
    if not isinstance(objective, str) or objective not in SCORES:
        raise fail("objective", f"{objective!r} is not one of {', '.join(SCORES)}")
    cost = doc.get("cost", "params_g")
    if cost not in COSTS:
        raise fail("cost", f"{cost!r} is not one of {', '.join(COSTS)}")

    entries = doc.get("space")
    if not isinstance(entries, dict) or not entries:
        raise fail("space", "expected a non-empty mapping of config key -> distribution or value")
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    for name, spec in entries.items():
        name = renamed(name, f"{source}: space")
        where = f"space.{name}"
        if name == "seed":
            raise fail(where, "each trial's seed is derived from --seed and its trial number")
        if name in RESERVED or name not in kinds:
            valid = ", ".join(sorted(k for k in kinds if k not in RESERVED))
            raise fail(where, f"unknown config key for recipe {recipe!r}; valid keys: {valid}")
        key = Key(name, kinds[name], allowed.get(name, ()), ranges)
        if isinstance(spec, dict):
            params[name] = _parse_param(key, spec, at(where))
        else:
            fixed[name] = _value(key, spec, at(where))
    if not params:
        raise fail("space", "nothing is swept: give at least one distribution")

    points = doc.get("points_to_evaluate") or []
    if not isinstance(points, list):
        raise fail("points_to_evaluate", "expected a list of mappings")
    checked = [_check_point(i, p, params, fixed, kinds, fail) for i, p in enumerate(points)]
    pbt = doc.get("pbt") or {}
    if not isinstance(pbt, dict):
        raise fail("pbt", "expected a mapping (mutable, interval, quantile, resample)")
    return SearchSpace(source, recipe, params, fixed, checked, objective, cost, pbt)


def config_field_types(recipe: str) -> dict[str, Any]:
    """Every config key of ``recipe`` (trainer and recipe settings) with its type."""
    cls = recipe_class(recipe)
    return {**config_mod.field_types(TrainerConfig), **config_mod.field_types(cls.config_cls)}


def config_choices(recipe: str) -> dict[str, tuple[str, ...]]:
    """The allowed values of ``recipe``'s enumerated settings (loss, precision...)."""
    own = getattr(recipe_class(recipe).config_cls, "CHOICES", {})
    return {k: v for k, v in {**config_mod.CHOICES, **own}.items() if v}


def _base(kind: Any) -> Any:
    """``float | None`` -> ``float``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _number(value: Any) -> float | int | None:
    """A YAML number, also from strings such as ``1e-4`` (which YAML 1.1 reads as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Key:
    """A config key a space sets: its name, its type, the values it allows (empty: any) and the
    ranges its recipe checks values against."""

    name: str
    kind: Any
    allowed: tuple[str, ...] = ()
    ranges: dict[str, Range] = field(default_factory=dict)


def _value(key: Key, value: Any, fail: typing.Callable[[str], SpaceError]) -> Any:
    """Coerce a fixed value or choice to the key's type (and its allowed values and range)."""
    try:
        value = config_mod.coerce(key.name, value, key.kind)
        config_mod.check_value(key.name, value, key.ranges)
    except ConfigError as err:
        raise fail(str(err).removeprefix(f"{key.name}: ")) from None
    if key.allowed and value not in key.allowed:
        raise fail(f"{value!r} is not one of {', '.join(key.allowed)}")
    return value


def _parse_param(key: Key, spec: dict, fail: typing.Callable[[str], SpaceError]) -> Param:
    """One distribution; every value it can give must be a valid setting (its choices, or both
    bounds, within the key's range)."""
    keys = list(spec)
    if len(keys) != 1 or keys[0] not in DISTRIBUTIONS:
        raise fail(f"expected one of {', '.join(DISTRIBUTIONS)} as the only key, got {keys}")
    dist = keys[0]
    arg = spec[dist]
    name = key.name
    base = _base(key.kind)
    if dist == "choice":
        if not isinstance(arg, list) or not arg:
            raise fail("choice needs a non-empty list of values")
        values = tuple(_value(key, v, fail) for v in arg)
        if len(set(map(repr, values))) != len(values):
            raise fail(f"choice has repeated values {list(values)}")
        return Param(name, dist, choices=values)
    if not isinstance(arg, list) or len(arg) != 2:
        raise fail(f"{dist} needs [lo, hi], got {arg!r}")
    lo, hi = (_number(v) for v in arg)
    if lo is None or hi is None:
        raise fail(f"{dist} bounds must be numbers, got {arg!r}")
    if dist == "int":
        if base not in (int, float):
            raise fail(f"int distribution for a {_type_name(base)} setting")
        if not (float(lo).is_integer() and float(hi).is_integer()):
            raise fail(f"int bounds must be integers, got {arg!r}")
        lo, hi = int(lo), int(hi)
    elif base is not float:
        hint = "; use int: [lo, hi]" if base is int else ""
        raise fail(f"{dist} gives real numbers but {name} is a {_type_name(base)} setting{hint}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise fail(f"{dist} bounds must be finite, got {arg!r}")
    if lo >= hi:
        raise fail(f"{dist} lower bound {lo} must be < upper bound {hi}")
    if dist == "loguniform" and lo <= 0:
        raise fail(f"loguniform bounds must be > 0, got [{lo}, {hi}]")
    for bound in (lo, hi):  # a bound must itself be a valid setting (any allowed value aside)
        _value(replace(key, allowed=()), bound, lambda m: fail(f"{dist} [{lo}, {hi}]: {m}"))
    return Param(name, dist, lo, hi)


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def _check_point(
    index: int,
    point: Any,
    params: dict[str, Param],
    fixed: dict[str, Any],
    kinds: dict[str, Any],
    fail: typing.Callable[[str, str], SpaceError],
) -> dict[str, Any]:
    where = f"points_to_evaluate[{index}]"
    if not isinstance(point, dict):
        raise fail(where, "expected a mapping of swept key -> value")
    point = {renamed(key, f"{where}"): value for key, value in point.items()}
    for key in point:
        if key in fixed:
            raise fail(f"{where}.{key}", "is fixed in space, not swept; drop it from the point")
        if key not in params:
            raise fail(f"{where}.{key}", f"not a swept key; swept: {', '.join(params)}")
    missing = [k for k in params if k not in point]
    if missing:
        raise fail(where, f"missing swept keys {', '.join(missing)} (points must be complete)")
    out: dict[str, Any] = {}
    for key, param in params.items():
        value = _value(Key(key, kinds[key]), point[key], lambda m, k=key: fail(f"{where}.{k}", m))
        if param.kind == "int":
            value = int(value) if float(value).is_integer() else value
        if not param.contains(value):
            raise fail(f"{where}.{key}", f"{value!r} is outside {param.describe()}")
        out[key] = value
    return out


def loss_weights_swept(recipe: str, objective: str, swept: list[str]) -> list[str]:
    """The swept keys that weigh ``objective`` in ``recipe``'s training loss (see
    :attr:`Recipe.trains_on`); a search optimising it would reward weakening the GAN."""
    weights = recipe_class(recipe).trains_on.get(objective, ())
    return [key for key in swept if key in weights]


_LR_LINE = re.compile(r"^(\s+)lr_g:.*$", re.MULTILINE)


def write_lr_range(path: Path, recipe: str, low: float, high: float) -> None:
    """Set ``space.lr_g`` to ``loguniform [low, high]`` in the space file ``path`` (starting from
    the recipe's own space when ``path`` does not exist), for ``run.py preflight --write-space``.

    Comments and other entries are kept; the result is validated before anything is written.
    """
    path = Path(path)
    source = path if path.is_file() else default_space_file(recipe)
    if not source.is_file():
        raise SpaceError(f"--write-space: no {path} and no {source} to start from")
    text = source.read_text()
    entry = f"lr_g: {{loguniform: [{low:.3g}, {high:.3g}]}}  # from run.py preflight"
    if _LR_LINE.search(text):
        text = _LR_LINE.sub(lambda m: m.group(1) + entry, text, count=1)
    elif re.search(r"^space:\s*$", text, re.MULTILINE):
        text = re.sub(r"^space:\s*$", "space:\n  " + entry, text, count=1, flags=re.MULTILINE)
    else:
        raise SpaceError(f"--write-space: {source} has no 'space:' block to put lr_g in")
    try:
        parse_space(yaml.safe_load(text), recipe, str(path))
    except SpaceError as err:
        raise SpaceError(f"--write-space: the updated space is invalid: {err}") from None
    atomic_write(path, text)
