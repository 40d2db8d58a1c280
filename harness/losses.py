"""Adversarial and feature-matching losses over lists of sub-discriminator outputs.

Every function takes one tensor (or one list of feature maps) per sub-discriminator and sums the
per-sub-discriminator means, as jik876/hifi-gan does.  ``real_target`` below 1 is one-sided label
smoothing.  ``feature_matching_loss`` returns the plain sum: jik876 multiplies it by 2 inside
``feature_loss``, so ``lambda_fm = 2`` reproduces the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

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
