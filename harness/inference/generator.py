"""A trained generator ready for inference: built from its run's configuration, its weights from
the checkpoint (``weights_only``), in eval mode, weight norm folded into plain weights (as the
reference HiFi-GAN's ``remove_weight_norm``), on the device asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from harness.inference.source import Checkpoint, SourceError, TrainedRun, load_run
from harness.recipes import RECIPES, recipe_class
from harness.runs.resolve import make_recipe
from harness.training.recipe import Recipe
from harness.training.setup import pick_device


@dataclass
class LoadedGenerator:
    """A generator in eval mode on ``device``, the recipe that says how to apply it, and the
    checkpoint it came from."""

    checkpoint: Checkpoint
    recipe: Recipe
    generator: nn.Module
    device: torch.device

    @property
    def run(self) -> TrainedRun:
        return self.checkpoint.run

    @property
    def step(self) -> int:
        return self.checkpoint.step

    def describe(self) -> str:
        """One line: which run, recipe, budget and step."""
        cfg = self.run.config
        return (
            f"{self.run.label}: {cfg.recipe} ({cfg.budget} budget), step {self.step}, "
            f"{self.run.checkpoint.name}, on {self.device}"
        )


def require_recipe(run: TrainedRun, kind: type[Recipe], task: str) -> None:
    """Refuse a run of a recipe ``task`` cannot use, naming those it can."""
    if not issubclass(recipe_class(run.config.recipe), kind):
        fit = [name for name in sorted(RECIPES) if issubclass(recipe_class(name), kind)]
        raise SourceError(
            f"{run.label}: a {run.config.recipe} run (its config.yaml); {task} needs a "
            f"{' or '.join(fit)} one"
        )


def trained_generator(checkpoint: Checkpoint, recipe: Recipe) -> nn.Module:
    """The checkpoint's generator as the recipe builds it, its weights loaded; train mode, on the
    CPU, weight norm as trained (what ``export`` saves)."""
    state = checkpoint.state.get("generator")
    where = checkpoint.run.checkpoint
    if not isinstance(state, dict):
        raise SourceError(f"{where}: holds no generator weights")
    generator = recipe.build_generator()
    mismatch = state_mismatch(generator.state_dict(), state)
    if mismatch:
        cfg = checkpoint.run.config
        raise SourceError(
            f"{where}: its generator does not fit the {cfg.recipe} ({cfg.budget}) network its "
            f"config.yaml builds: {mismatch}"
        )
    generator.load_state_dict(state)
    return generator


def state_mismatch(expected: dict[str, Any], given: dict[str, Any]) -> str | None:
    """Why ``given`` cannot be loaded where ``expected`` is the model's state dict (missing and
    unexpected keys, the first shape that differs), or None when it can."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (first {extra[0]})")
    for key, value in expected.items():
        other = given.get(key)
        if isinstance(other, torch.Tensor) and other.shape != value.shape:
            parts.append(f"{key} is {list(other.shape)}, not {list(value.shape)}")
            break
    return "; ".join(parts) or None


def fold_parametrizations(module: nn.Module) -> nn.Module:
    """Replace every parametrized weight (weight norm) by the plain tensor it computes; the
    output is unchanged, inference skips recomputing it at every call."""
    for part in list(module.modules()):
        if parametrize.is_parametrized(part):
            for name in list(part.parametrizations):
                parametrize.remove_parametrizations(part, name, leave_parametrized=True)
    return module


def load_generator(run: TrainedRun, device: str = "cpu") -> LoadedGenerator:
    """The run's generator for inference on ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
    where = pick_device(device)
    checkpoint = load_run(run)
    recipe = make_recipe(run.config)
    generator = fold_parametrizations(trained_generator(checkpoint, recipe).eval())
    generator.requires_grad_(False).to(where)
    recipe.to(where)
    return LoadedGenerator(checkpoint, recipe, generator, where)
