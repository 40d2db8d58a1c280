"""Every config value checked against its range before anything starts, the same way for
``--set``, a search space, a rerun's stored configuration and every trial; nothing clamped."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from harness.recipes import RECIPES, recipe_class
from harness.runs.resolve import config_from_flat, resolve_config
from harness.training.config import (
    RANGES,
    ConfigError,
    Range,
    TrainerConfig,
    field_types,
    ranges_of,
)
from harness.training.setup import pick_device


def numeric_keys(cls: type) -> set[str]:
    return {k for k, kind in field_types(cls).items() if kind in (int, float)}


def test_every_numeric_key_of_every_config_has_a_range() -> None:
    assert numeric_keys(TrainerConfig) == set(RANGES)
    for name in RECIPES:
        own = recipe_class(name).config_cls
        missing = numeric_keys(own) - set(ranges_of(own))
        assert not missing, f"{name}: no range for {sorted(missing)}"


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_default_and_budget_is_in_range(recipe: str) -> None:
    for budget in recipe_class(recipe).budgets:
        resolve_config(recipe, budget)  # raises on a value out of its range


def test_ranges_read_as_they_check() -> None:
    cases = [
        (Range(1), ">= 1", [1, 7], [0, -1, math.inf]),
        (Range(0, low_open=True), "> 0", [1e-9, 5.0], [0.0, -1e-3, math.nan, math.inf]),
        (Range(0, 1, high_open=True), "in [0, 1)", [0.0, 0.999], [1.0, 1.5, -0.1, math.nan]),
        (Range(0, 1, low_open=True), "in (0, 1]", [1.0, 0.5], [0.0, 1.0001]),
        (Range(0, 2**32, high_open=True), "in [0, 4294967296)", [0, 2**32 - 1], [2**32, -1]),
    ]
    for rule, text, inside, outside in cases:
        assert rule.describe() == text
        assert all(rule.admits(v) for v in inside), text
        assert not any(rule.admits(v) for v in outside), text


REFUSED = [
    ("ring", {"lr_g": "nan"}, "lr_g: must be a finite number > 0, got nan"),
    ("ring", {"lr_d": "inf"}, "lr_d: must be a finite number > 0, got inf"),
    ("ring", {"b1_g": 1.5}, "b1_g: must be in [0, 1), got 1.5"),
    ("ring", {"b2_d": 1.0}, "b2_d: must be in [0, 1), got 1.0"),
    ("ring", {"weight_decay": -1}, "weight_decay: must be >= 0, got -1.0"),
    ("ring", {"keep_checkpoints": 0}, "keep_checkpoints: must be >= 1, got 0"),
    ("ring", {"checkpoint_every": -5}, "checkpoint_every: must be >= 0, got -5"),
    ("ring", {"lr_decay": 0}, "lr_decay: must be in (0, 1], got 0.0"),
    ("ring", {"max_consecutive_nonfinite": 0}, "max_consecutive_nonfinite: must be >= 1"),
    ("ring", {"seed": -1}, "seed: must be in [0, 4294967296), got -1"),
    ("ring", {"device": "tpu"}, "device: 'tpu' is not one of auto, cpu, cuda, cuda:N"),
    ("ring", {"device": ""}, "device: '' is not one of auto, cpu, cuda, cuda:N"),
    ("ring", {"pack": 0}, "pack: must be >= 1, got 0"),
    ("hifigan", {"n_valid": 0}, "n_valid: must be >= 1, got 0"),
    ("hifigan", {"d_width": 0}, "d_width: must be > 0, got 0.0"),
    ("hifigan", {"keep_sample_evals": 0}, "keep_sample_evals: must be >= 1, got 0"),
    ("hifigan", {"segment_size": 1000}, "segment_size: 1000 is not a multiple of hop 256"),
    ("metricgan", {"n_valid": 0}, "n_valid: must be >= 1, got 0"),
    ("metricgan", {"max_slope": 0}, "max_slope: must be > 0, got 0.0"),
    ("metricgan", {"min_mask": 2.0}, "min_mask: must be in [0, 1.2), got 2.0"),
    ("segan", {"preemph": 1.5}, "preemph: must be in [0, 1), got 1.5"),
    ("segan", {"segment_size": 1000}, "segment_size: 1000 is not a multiple of 2048"),
]


@pytest.mark.parametrize("recipe,overrides,message", REFUSED, ids=[m for _, _, m in REFUSED])
def test_a_value_out_of_its_range_is_refused_by_name(recipe, overrides, message) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config(recipe, "smoke", overrides=overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_stored_configuration_out_of_range_is_refused_when_rebuilt() -> None:
    """A rerun rebuilds the trial's flat config: an edited or foreign value is held to the
    same ranges as ``--set``."""
    flat = resolve_config("ring", "smoke").flat()
    assert dataclasses.asdict(config_from_flat(flat).trainer) == dataclasses.asdict(
        resolve_config("ring", "smoke").trainer
    )
    with pytest.raises(ConfigError, match=r"^keep_checkpoints: must be >= 1, got 0$"):
        config_from_flat({**flat, "keep_checkpoints": 0})


def test_a_cuda_device_this_machine_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU cannot be counted here: torch's CUDA queries are the boundary mocked."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"^device: 'cuda:2' requested but this machine has 2"):
        pick_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        pick_device("cuda")
