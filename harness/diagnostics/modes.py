"""Mode statistics of the toy recipes: how generated 2-D samples cover a Gaussian mixture's modes.

Measured in each validation of the ring and grid on fixed samples, they are the toy recipes'
scores and the collapse detector's evidence (harness/diagnostics/detectors.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_statistics(samples: Tensor, means: Tensor, std: float) -> dict[str, float]:
    """VEEGAN / PacGAN mixture metrics of generated 2-D ``samples`` against mode ``means``.

    A sample is high-quality when within 3 std of its nearest mode; a mode is covered when it is
    the nearest mode of at least one high-quality sample; the reverse KL compares the histogram
    of high-quality samples over modes with the uniform mixture weights.
    """
    dist = torch.cdist(samples.detach().double().cpu(), means.double())
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= 3 * std
    k = len(means)
    counts = torch.bincount(nearest[good], minlength=k).double()
    if counts.sum() > 0:
        p = counts / counts.sum()
        nz = p > 0
        reverse_kl = float((p[nz] * (p[nz] * k).log()).sum())
    else:
        reverse_kl = math.log(k)  # no high-quality sample at all: as bad as a single mode
    return {
        "modes_covered": float((counts > 0).sum()),
        "modes_total": float(k),
        "high_quality": float(good.double().mean()),
        "reverse_kl": reverse_kl,
    }
