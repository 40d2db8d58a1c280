"""A run's configuration and recipe: budgets, layered config resolution, the recipe built from it.

Recipe defaults <- budget preset <- search sample <- ``--set`` overrides, resolved the same way for
``run.py train``, every search trial, a confirmation seed and a rerun.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.recipes import recipe_class
from harness.training import config as config_mod
from harness.training.config import TrialConfig
from harness.training.recipe import Recipe

BUDGETS = ("smoke", "small", "paper")


def default_budget() -> str:
    """smoke on a CPU-only machine, small where a GPU is present."""
    return "small" if torch.cuda.is_available() else "smoke"


def resolve_config(
    recipe: str,
    budget: str | None = None,
    sample: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    data: str | None = None,
) -> TrialConfig:
    """Recipe defaults <- budget preset <- search sample <- ``--set`` overrides."""
    cls = recipe_class(recipe)
    budget = budget or default_budget()
    if budget not in cls.budgets:
        raise config_mod.ConfigError(f"budget {budget!r}: not one of {', '.join(cls.budgets)}")
    layers = [cls.defaults, cls.budgets[budget], sample or {}, overrides or {}]
    return config_mod.build(recipe, budget, cls.config_cls, layers, data)


def config_from_flat(flat: dict[str, Any]) -> TrialConfig:
    """Rebuild a config from its flat form (:meth:`TrialConfig.flat`) exactly."""
    flat = dict(flat)
    recipe, budget, data = flat.pop("recipe"), flat.pop("budget"), flat.pop("data", None)
    cls = recipe_class(recipe)
    return config_mod.build(recipe, budget, cls.config_cls, [flat], data)


def check_data(cfg: TrialConfig) -> None:
    """Open ``cfg``'s training data as a trial would: a corpus with bad files is refused, and
    clips too short for a training segment are named, before anything starts."""
    recipe = make_recipe(cfg)
    try:
        recipe.train_data()
    finally:
        recipe.close()


def make_recipe(cfg: TrialConfig) -> Recipe:
    """The trial's recipe, holding its model settings, data folder, seed and batch size."""
    t = cfg.trainer
    return recipe_class(cfg.recipe)(cfg.model, cfg.data, t.seed, t.batch_size)
