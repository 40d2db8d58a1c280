"""Weight initialisation schemes a recipe may offer: default, normal, equalized.

``normal`` draws every conv/linear weight from N(0, 1/fan_in) (std 1/sqrt(fan_in)).
``equalized`` is the equalized learning rate of Karras et al. (ProGAN): the stored weight is
N(0, 1) and is multiplied by 1/sqrt(fan_in) at run time, so it starts as the same function as
``normal`` but every weight sees the same effective step size under Adam.
Weights behind a parametrization (weight or spectral norm) are set through it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)


class RuntimeScale(nn.Module):
    """Parametrization multiplying a weight by a constant on every forward pass."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.scale


def fan_in(layer: nn.Module) -> int:
    """Inputs feeding one output unit (for transposed convs: per output sample)."""
    weight = layer.weight
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    if isinstance(layer, nn.ConvTranspose1d | nn.ConvTranspose2d):
        stride = math.prod(layer.stride)
        return max(1, weight.shape[0] * receptive // stride)
    return weight.shape[1] * receptive


def apply_init(module: nn.Module, scheme: str, generator: torch.Generator | None = None) -> None:
    """Re-initialise every conv/linear layer of ``module`` in place with ``scheme``."""
    if scheme == "default":
        return
    if scheme not in ("normal", "equalized"):
        raise ValueError(f"init: unknown scheme {scheme!r}; valid: default, normal, equalized")
    for layer in module.modules():
        if not isinstance(layer, _LAYERS):
            continue
        std = 1.0 / math.sqrt(fan_in(layer))
        shape = layer.weight.shape
        draw = torch.randn(shape, generator=generator)
        value = draw.to(layer.weight) * (std if scheme == "normal" else 1.0)
        with torch.no_grad():
            if parametrize.is_parametrized(layer, "weight"):
                layer.weight = value  # goes through the parametrization's right_inverse
            else:
                layer.weight.copy_(value)
            if layer.bias is not None:
                layer.bias.zero_()
        if scheme == "equalized":
            parametrize.register_parametrization(layer, "weight", RuntimeScale(std))
