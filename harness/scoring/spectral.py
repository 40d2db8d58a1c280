"""Spectral distances of an estimate from its reference: log-mel L1 and multi-resolution STFT.

Neither has a worst value: a silent or non-finite estimate is scored as silence against the
reference (harness/scoring/utterance.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from harness.audio.mel import LogMel, MelConfig

# (n_fft, hop, win): three resolutions with 75% overlap for the Parallel WaveGAN distance
STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))

MelFn = Callable[[torch.Tensor], torch.Tensor]


def mel_l1(ref: np.ndarray, est: np.ndarray, mel_fn: MelFn) -> float:
    """Mean absolute difference of the log-mel spectrograms ``mel_fn`` computes ([1, T] in)."""
    with torch.no_grad():
        a = mel_fn(torch.from_numpy(ref).float().unsqueeze(0))
        b = mel_fn(torch.from_numpy(est).float().unsqueeze(0))
    return float((a - b).abs().mean())


def mrstft_distance(ref: np.ndarray, est: np.ndarray) -> float:
    """Spectral convergence + log-magnitude L1, averaged over :data:`STFT_RESOLUTIONS`.

    The distance of Parallel WaveGAN's multi-resolution STFT loss (Yamamoto et al. 2020),
    magnitudes floored at sqrt(1e-7) as there.
    """
    x = torch.from_numpy(ref).float()
    y = torch.from_numpy(est).float()
    total = 0.0
    for n_fft, hop, win in STFT_RESOLUTIONS:
        window = torch.hann_window(win)
        mags = [
            torch.stft(s, n_fft, hop, win, window, return_complex=True).abs().pow(2) for s in (x, y)
        ]
        ref_mag, est_mag = (m.clamp(min=1e-7).sqrt() for m in mags)
        convergence = torch.linalg.norm(ref_mag - est_mag) / torch.linalg.norm(ref_mag)
        log_l1 = (ref_mag.log() - est_mag.log()).abs().mean()
        total += float(convergence + log_l1)
    return total / len(STFT_RESOLUTIONS)


@cache
def default_mel_fn(sample_rate: int) -> MelFn:
    """HiFi-GAN's log-mel (harness.audio.mel) at ``sample_rate``, f_max capped at Nyquist."""
    return LogMel(MelConfig(sample_rate=sample_rate, f_max=min(8000.0, sample_rate / 2))).eval()
