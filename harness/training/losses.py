"""Adversarial and feature-matching losses over lists of sub-discriminator outputs.

Every function takes one tensor (or one list of feature maps) per sub-discriminator and sums the
per-sub-discriminator means, as jik876/hifi-gan does.  ``real_target`` below 1 is one-sided label
smoothing.  ``feature_matching_loss`` returns the plain sum: jik876 multiplies it by 2 inside
``feature_loss``, so ``lambda_fm = 2`` reproduces the paper.  :func:`adversarial_loss` picks a
recipe's GAN objective (``lsgan`` or ``bce``) by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def lsgan_d_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], real_target: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """LSGAN discriminator loss: sum of mean((target - D(real))^2) + mean(D(fake)^2).

    Returns ``(loss, real_term, fake_term)``.
    """
    real_term = sum(torch.mean((real_target - dr) ** 2) for dr in real_logits)
    fake_term = sum(torch.mean(df**2) for df in fake_logits)
    return real_term + fake_term, real_term, fake_term


def lsgan_g_loss(fake_logits: Sequence[Tensor], target: float = 1.0) -> Tensor:
    """LSGAN generator loss: sum of mean((target - D(fake))^2)."""
    return sum(torch.mean((target - df) ** 2) for df in fake_logits)


def bce_d_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], real_target: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Standard (non-saturating) GAN discriminator loss on logits: BCE to ``real_target`` and 0.

    Returns ``(loss, real_term, fake_term)``.
    """
    real_term = sum(
        F.binary_cross_entropy_with_logits(dr, torch.full_like(dr, real_target))
        for dr in real_logits
    )
    fake_term = sum(
        F.binary_cross_entropy_with_logits(df, torch.zeros_like(df)) for df in fake_logits
    )
    return real_term + fake_term, real_term, fake_term


def bce_g_loss(fake_logits: Sequence[Tensor], target: float = 1.0) -> Tensor:
    """Non-saturating generator loss on logits: BCE of D(fake) to ``target``."""
    return sum(
        F.binary_cross_entropy_with_logits(df, torch.full_like(df, target)) for df in fake_logits
    )


def feature_matching_loss(
    real_fmaps: Sequence[Sequence[Tensor]], fake_fmaps: Sequence[Sequence[Tensor]]
) -> Tensor:
    """L1 between D's feature maps on real and generated audio, summed over layers and
    sub-discriminators; the real maps are detached so only the generator is pulled."""
    return sum(
        torch.mean(torch.abs(r.detach() - f))
        for real, fake in zip(real_fmaps, fake_fmaps, strict=True)
        for r, f in zip(real, fake, strict=True)
    )


@torch.no_grad()
def decision_accuracy(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], threshold: float
) -> float:
    """Share of D outputs on the right side: real above ``threshold``, fake below it.

    Use 0.5 for LSGAN outputs (targets 1 and 0) and 0 for BCE logits.
    """
    right = sum(int((dr > threshold).sum()) for dr in real_logits)
    right += sum(int((df < threshold).sum()) for df in fake_logits)
    total = sum(t.numel() for t in real_logits) + sum(t.numel() for t in fake_logits)
    return right / total


@dataclass(frozen=True)
class AdversarialLoss:
    """One GAN objective: its D and G losses and the threshold that splits D's real/fake calls."""

    d_loss: Callable[[Sequence[Tensor], Sequence[Tensor], float], tuple[Tensor, Tensor, Tensor]]
    g_loss: Callable[[Sequence[Tensor]], Tensor]
    threshold: float  # LSGAN targets 1 and 0 meet at 0.5; BCE logits at 0

    def accuracy(self, real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> float:
        """:func:`decision_accuracy` at this objective's threshold."""
        return decision_accuracy(real_logits, fake_logits, self.threshold)


ADVERSARIAL_LOSSES: dict[str, AdversarialLoss] = {
    "lsgan": AdversarialLoss(lsgan_d_loss, lsgan_g_loss, 0.5),
    "bce": AdversarialLoss(bce_d_loss, bce_g_loss, 0.0),
}


def adversarial_loss(name: str) -> AdversarialLoss:
    """The GAN objective called ``name`` (a recipe's ``loss`` setting)."""
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(f"loss: unknown {name!r}; valid: {', '.join(ADVERSARIAL_LOSSES)}")
    return ADVERSARIAL_LOSSES[name]
