"""Autograd around the updates: a network's guarded optimizer step, D held out of the G update,
and the gradient G receives through D, measured on the generated batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from harness.training.guards import Guards
from harness.training.recipe import GeneratorLoss


def apply_update(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: Tensor,
    clip: float,
    guards: Guards,
    name: str,
    step: int,
) -> float | None:
    """Backward, unscale, record the pre-clip norm, clip, step ``net`` ("g" or "d" to
    ``guards``, which may skip it at ``step``).  The norm; None if skipped."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    params = [p for p in net.parameters() if p.grad is not None]
    norm = float(torch.nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
    if not guards.gradient_ok(name, norm, scaler.is_enabled(), step):
        opt.zero_grad(set_to_none=True)
        return None
    if clip > 0 and math.isfinite(norm):
        torch.nn.utils.clip_grads_with_norm_(params, clip, torch.tensor(norm))
    scaler.step(opt)
    scaler.update()
    guards.updated(name, norm)
    return norm if math.isfinite(norm) else None  # fp16: the scaler skipped this step


@contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """Hold ``net``'s trainable parameters out of autograd inside the block (as Lightning's
    ``toggle_optimizer`` does for the other network): the G update then computes no gradient for
    D's weights, which nothing reads, while gradients still flow through D to its input."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def gradient_norm_on(term: Tensor, fake: Tensor, loss_scale: float) -> float | None:
    """‖∂term/∂x̂‖₂ over the generated batch; None where ``term`` does not depend on it.

    ``loss_scale`` (fp16's GradScaler scale, else 1) keeps the gradient representable and is
    divided out again; G's graph is kept for its update.
    """
    if not (term.requires_grad and fake.requires_grad):
        return None
    (grad,) = torch.autograd.grad(
        term.float() * loss_scale, fake, retain_graph=True, allow_unused=True
    )
    return 0.0 if grad is None else float(grad.float().norm()) / loss_scale


def generator_gradients(
    out: GeneratorLoss, recon: Tensor, fake: Tensor, scale: float
) -> dict[str, float | None]:
    """What G is told, measured on its output: the adversarial term's gradient (the signal G
    actually receives from D), the reconstruction mean's, and their ratio (scale-free: both are
    gradients on the same batch)."""
    term = out.through_d if out.adversarial is None else out.adversarial
    adv = gradient_norm_on(term, fake, scale)
    rec = gradient_norm_on(recon.mean(), fake, scale)
    ratio = adv / rec if adv is not None and rec else None
    return {"adv_grad_norm": adv, "recon_grad_norm": rec, "adv_recon_ratio": ratio}
