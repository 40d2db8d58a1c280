"""Typed trial configuration: trainer policy + recipe settings, resolved from layered flat dicts.

A trial's configuration is a flat mapping of keys (``lr_g``, ``d_steps``, ``lambda_mel``...) whose
namespace is the union of :class:`TrainerConfig` and the recipe's own dataclass.  It is resolved
in layers: recipe defaults <- budget preset <- search sample <- ``--set key=value``.  Unknown keys
and values of the wrong type are errors that name the key and list the valid ones.

Every numeric key has a :class:`Range` (:data:`RANGES` for the trainer's keys, the ``RANGES`` of
a recipe's config class for its own), and a recipe's config may add a ``check()`` for rules that
tie keys together; :func:`build` applies them all, so ``--set``, a search space, a rerun and
every Ray trial are held to the same rules.  A value out of its range is refused, never clamped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.console import HarnessWarning
from harness.files import atomic_write

RENAMED_KEYS = {"steps": "batches"}
"""Former names of config keys: each is read as its current name, with a warning."""


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message is one line naming the culprit."""


class DeprecatedKey(HarnessWarning):
    """A config key was given under a former name."""


def renamed(key: str, where: str = "config") -> str:
    """``key`` under its current name; a former name is mapped, with one warning line."""
    new = RENAMED_KEYS.get(key)
    if new is None:
        return key
    warnings.warn(f"{where}: {key!r} is now called {new!r}; read as {new!r}", DeprecatedKey, 2)
    return new


@dataclass
class TrainerConfig:
    """The loop policy shared by every recipe (see harness/training/trainer.py)."""

    seed: int = 0
    # the budget: training batches drawn (one per iteration at D:G 1:1, d_steps + g_steps - 1 per
    # iteration otherwise), so trials of any D:G ratio stop and validate after the same data
    batches: int = 1000
    batch_size: int = 16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 = leave as is
    # D:G ratio and ordering
    d_steps: int = 1
    g_steps: int = 1
    disc_start_step: int = 0
    reevaluate_d: bool = True  # G loss sees D after its update (HiFi-GAN) instead of before
    # optimisers and schedulers, one of each per network
    optimizer: str = "adamw"  # adamw | adam
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    b1_g: float = 0.8
    b2_g: float = 0.99
    b1_d: float = 0.8
    b2_d: float = 0.99
    weight_decay: float = 0.01
    # torch's fused Adam/AdamW kernel, faster than its for-loop (benchmarks/README.md); false =
    # the for-loop, the same update up to the last bits
    fused_optimizer: bool = True
    scheduler: str = "exponential"  # exponential | constant
    lr_decay: float = 0.999
    scheduler_interval: str = "per_epoch"  # per_epoch | per_step (per iteration)
    epoch_samples: int = 0  # examples in a per_epoch schedule's epoch; 0 = the training corpus
    # discriminator regularisation
    label_smoothing: float = 0.0  # one-sided: real target becomes 1 - label_smoothing
    instance_noise: float = 0.0  # std of Gaussian noise added to every D input
    instance_noise_anneal_steps: int = 0  # linear decay to 0 over this many steps; 0 = constant
    r1_gamma: float = 0.0  # R1: D loss += r1_gamma/2 x its gradient penalty on real data; 0 = off
    health_window: int = 5  # consecutive log windows a health condition must hold to flag
    # numerics and robustness
    precision: str = "fp32"  # fp32 | bf16 | fp16
    clip_grad_g: float = 0.0  # max global grad norm after unscaling; 0 = off
    clip_grad_d: float = 0.0
    loss_upper_limit: float = 1e6  # a loss above this is treated as diverged and skipped
    max_consecutive_nonfinite: int = 25
    skip_oom: bool = True
    loss_threshold: float = 0.0  # per-example reconstruction losses below it leave the mean
    init: str = "default"  # default | normal | equalized
    compile: bool = False  # torch.compile G and D for training (compile time reported apart)
    # bookkeeping
    log_every: int = 10  # batches drawn between step rows (health windows are step rows)
    eval_every: int = 100  # batches drawn between validations
    checkpoint_every: int = 0  # batches drawn between checkpoints; 0 = at every evaluation
    keep_checkpoints: int = 2


@dataclass(frozen=True)
class Range:
    """The values a numeric config key may take: finite, from ``low`` to ``high`` (None: no
    bound), each end included unless ``low_open`` / ``high_open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``..."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_bound(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_bound(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_bound(self.low)}, {_bound(self.high)}{right}"

    def check(self, key: str, value: float) -> None:
        """Raise :class:`ConfigError` naming ``key`` when ``value`` is outside the range."""
        if not self.admits(value):
            finite = "" if math.isfinite(value) else "a finite number "
            raise ConfigError(f"{key}: must be {finite}{self.describe()}, got {value!r}")


def _bound(value: float | None) -> str:
    """A bound as written: whole numbers in full (2**32 as 4294967296), others as %g."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


COUNT = Range(1)  # a count that must be at least one
NON_NEGATIVE = Range(0)  # a count, weight or size where 0 means none or off
POSITIVE = Range(0, low_open=True)
BETA = Range(0, 1, high_open=True)  # Adam's moment decay rates
SPEECH_DATA_RANGES: dict[str, Range] = {  # the corpus and validation keys of the speech recipes
    "data_seed": NON_NEGATIVE,
    "n_valid": COUNT,  # a validation must score something
    "valid_max_seconds": NON_NEGATIVE,
    "samples_per_eval": NON_NEGATIVE,
    "keep_sample_evals": COUNT,
    "corpus_utterances": COUNT,
    "score_workers": NON_NEGATIVE,
}

RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32, high_open=True),
    "batches": COUNT,
    "batch_size": COUNT,
    "threads": NON_NEGATIVE,
    "d_steps": COUNT,
    "g_steps": COUNT,
    "disc_start_step": NON_NEGATIVE,
    "lr_g": POSITIVE,
    "lr_d": POSITIVE,
    "b1_g": BETA,
    "b2_g": BETA,
    "b1_d": BETA,
    "b2_d": BETA,
    "weight_decay": NON_NEGATIVE,
    "lr_decay": Range(0, 1, low_open=True),  # the learning rate's factor per tick: it decays
    "epoch_samples": NON_NEGATIVE,
    "label_smoothing": Range(0, 0.5, high_open=True),
    "instance_noise": NON_NEGATIVE,
    "instance_noise_anneal_steps": NON_NEGATIVE,
    "r1_gamma": NON_NEGATIVE,
    "health_window": COUNT,
    "clip_grad_g": NON_NEGATIVE,
    "clip_grad_d": NON_NEGATIVE,
    "loss_upper_limit": POSITIVE,
    "max_consecutive_nonfinite": COUNT,
    "loss_threshold": NON_NEGATIVE,
    "log_every": COUNT,
    "eval_every": COUNT,
    "checkpoint_every": NON_NEGATIVE,
    "keep_checkpoints": COUNT,
}
"""The range of every numeric key of :class:`TrainerConfig`."""

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICES = "auto, cpu, cuda, cuda:N"


MID_RUN_KEYS: tuple[str, ...] = (
    "lr_g",
    "lr_d",
    "b1_g",
    "b2_g",
    "b1_d",
    "b2_d",
    "weight_decay",
    "lr_decay",
    "label_smoothing",
    "instance_noise",
    "r1_gamma",
    "clip_grad_g",
    "clip_grad_d",
    "loss_threshold",
    "d_steps",
    "g_steps",
)
"""Trainer keys a run may change where it continues from a checkpoint (population-based
training): the optimizers and schedulers take their learning rates, betas, weight decay and decay
rate from the new config (:func:`~harness.training.setup.adopt_hyperparameters`), and the loop
reads the rest at every iteration.  Every other key (network sizes, the optimizer and scheduler
kind, precision, the budget and its clocks, the seed) stays as the run began."""


CHOICES: dict[str, tuple[str, ...]] = {
    "device": (),  # a pattern (DEVICE), checked in build(); whether it exists, when a run starts
    "optimizer": ("adamw", "adam"),
    "scheduler": ("exponential", "constant"),
    "scheduler_interval": ("per_epoch", "per_step"),
    "precision": ("fp32", "bf16", "fp16"),
    "init": ("default", "normal", "equalized"),
}


def field_types(cls: type) -> dict[str, Any]:
    """Map each dataclass field name to its resolved type annotation."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(key: str, value: Any, kind: Any) -> Any:
    """Check ``value`` against the annotation ``kind``; accept ints for floats and YAML strings."""
    if isinstance(value, str) and kind is not str and not _admits_str(kind):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"{key}: cannot parse {value!r}: {err}") from None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        origin = typing.get_origin(kind)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(kind) or (Any,)
        items = [coerce(key, v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as text
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _admits_str(kind: Any) -> bool:
    """``str`` or an optional/union that includes it (a ``tuple[str, ...]`` is parsed as YAML)."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    return kind is str or (union and str in typing.get_args(kind))


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn ``["lr_g=1e-4", "d_steps=3"]`` into a dict; values stay strings until coerced."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


@dataclass
class TrialConfig:
    """One trial's resolved configuration: which recipe, the loop policy and the recipe settings."""

    recipe: str
    budget: str
    trainer: TrainerConfig
    model: Any  # the recipe's own config dataclass
    data: str | None = None  # corpus folder; None = the recipe's built-in data

    def flat(self) -> dict[str, Any]:
        """All settings as one flat dict (the form saved, searched and overridden)."""
        out: dict[str, Any] = {"recipe": self.recipe, "budget": self.budget, "data": self.data}
        out.update(dataclasses.asdict(self.trainer))
        out.update(dataclasses.asdict(self.model))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def save(self, path: Path) -> None:
        """Write the flat config as YAML, atomically."""
        atomic_write(path, yaml.safe_dump(self.flat(), sort_keys=False))


def build(
    recipe: str,
    budget: str,
    model_cls: type,
    layers: list[dict[str, Any]],
    data: str | None = None,
) -> TrialConfig:
    """Resolve ``layers`` (applied in order, later wins) into a :class:`TrialConfig`."""
    trainer_types = field_types(TrainerConfig)
    model_types = field_types(model_cls)
    clash = set(trainer_types) & set(model_types)
    assert not clash, f"recipe config redefines trainer keys: {sorted(clash)}"
    valid = {**trainer_types, **model_types}
    reserved = {"recipe", "budget", "data"}
    trainer_kw: dict[str, Any] = {}
    model_kw: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            key = renamed(key)
            if key in reserved:
                if key == "data" and value is not None:
                    data = str(value)
                continue
            if key not in valid:
                raise ConfigError(
                    f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid))}"
                )
            value = coerce(key, value, valid[key])
            choices = CHOICES.get(key) or getattr(model_cls, "CHOICES", {}).get(key)
            if choices and value not in choices:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
            (trainer_kw if key in trainer_types else model_kw)[key] = value
    trainer, model = TrainerConfig(**trainer_kw), model_cls(**model_kw)
    check_values(trainer, model)
    return TrialConfig(recipe, budget, trainer, model, data)


def ranges_of(model_cls: type) -> dict[str, Range]:
    """The range of every numeric key of a trial with the recipe config ``model_cls``."""
    return {**RANGES, **getattr(model_cls, "RANGES", {})}


def check_value(key: str, value: Any, ranges: dict[str, Range]) -> None:
    """Raise :class:`ConfigError` when ``value`` of ``key`` is outside its range or, for
    ``device``, not a device name."""
    if key == "device" and not DEVICE.fullmatch(str(value)):
        raise ConfigError(f"device: {value!r} is not one of {DEVICES}")
    if key in ranges and isinstance(value, int | float) and not isinstance(value, bool):
        ranges[key].check(key, value)


def check_values(trainer: TrainerConfig, model: Any) -> None:
    """Every key of a resolved trial in its range, then the recipe config's own ``check()``
    (rules that tie keys together); the first problem is a :class:`ConfigError`."""
    ranges = ranges_of(type(model))
    for part in (trainer, model):
        for key, value in dataclasses.asdict(part).items():
            check_value(key, value, ranges)
    check = getattr(model, "check", None)
    if check is not None:
        check()
