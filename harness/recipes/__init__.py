"""Recipe registry: name -> recipe class, imported lazily so a toy run never loads audio code."""

from __future__ import annotations

import importlib

from harness.training.recipe import Recipe

RECIPES: dict[str, str] = {
    "hifigan": "harness.recipes.hifigan:HifiganRecipe",
    "metricgan": "harness.recipes.metricgan:MetricganRecipe",
    "segan": "harness.recipes.segan:SeganRecipe",
    "ring": "harness.recipes.ring:RingRecipe",
    "grid": "harness.recipes.ring:GridRecipe",
}


class UnknownRecipe(ValueError):
    pass


def recipe_class(name: str) -> type[Recipe]:
    """The recipe class registered under ``name``."""
    if name not in RECIPES:
        raise UnknownRecipe(f"unknown recipe {name!r}; valid: {', '.join(sorted(RECIPES))}")
    module, _, attr = RECIPES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
