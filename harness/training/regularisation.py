"""How the loop regularises D: the R1 gradient penalty on real data, one-sided label smoothing
and instance noise (optionally annealed to zero), each off unless its config key sets it."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness.training.config import TrainerConfig
from harness.training.recipe import DiscriminatorSmoothing, Recipe


def r1_penalty(recipe: Recipe, discriminator: nn.Module, batch: Any) -> Tensor:
    """Mean over real examples of ‖∇ₓ Σ D(x)‖², differentiable (Mescheder et al. 2018)."""
    real = recipe.real_input(batch).detach().requires_grad_(True)
    outputs = recipe.discriminator_outputs(discriminator, real)
    total = sum(o.float().sum() for o in outputs)
    (grad,) = torch.autograd.grad(total, real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def smoothing_at(
    cfg: TrainerConfig, step: int, generator: torch.Generator
) -> DiscriminatorSmoothing:
    """Label smoothing and instance noise at ``step``: the noise decays linearly to zero over
    ``instance_noise_anneal_steps`` when that is set, drawn from ``generator``."""
    noise = cfg.instance_noise
    if noise > 0 and cfg.instance_noise_anneal_steps > 0:
        noise *= max(0.0, 1.0 - step / cfg.instance_noise_anneal_steps)
    return DiscriminatorSmoothing(1.0 - cfg.label_smoothing, noise, generator)
