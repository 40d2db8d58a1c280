"""Health signals a recipe computes from a batch of real and generated audio.

:func:`diversity_ratio`, :func:`energy_ratio`, :func:`highband_ratio` and :func:`flatness_ratio`
compare what a conditional generator made with the real audio of the same batch (through
:meth:`Recipe.health` at log steps); the collapse and over-smoothing detectors
(harness/diagnostics/detectors.py) read them.  Formulas in docs/diagnostics.md, "Health columns".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _as_batch(audio: Tensor) -> Tensor:
    """[B, T] or [B, 1, T] -> [B, T] float32."""
    return (audio.squeeze(1) if audio.dim() == 3 else audio).float()


def _mean_pairwise_l1(features: Tensor) -> float:
    flat = features.flatten(1).double()
    pairs = torch.cdist(flat, flat, p=1) / flat.shape[1]
    n = flat.shape[0]
    return float(pairs.sum() / (n * (n - 1)))


def diversity_ratio(
    real: Tensor, fake: Tensor, log_mel: Callable[[Tensor], Tensor]
) -> float | None:
    """Mean pairwise log-mel L1 distance among generated clips over the same among real clips.

    Near 1 when G follows its condition; 0 when every output is the same (a generator that
    ignores its input).  None for a batch of one clip or identical real clips.
    """
    if real.shape[0] < 2:
        return None
    spread_real = _mean_pairwise_l1(log_mel(_as_batch(real)))
    if spread_real <= 0:
        return None
    return _mean_pairwise_l1(log_mel(_as_batch(fake))) / spread_real


def energy_ratio(real: Tensor, fake: Tensor) -> float | None:
    """RMS of the generated batch over RMS of the real batch (0 = silence, >> 1 = blow-up)."""
    rms_real = float(_as_batch(real).double().pow(2).mean().sqrt())
    if rms_real <= 0:
        return None
    return float(_as_batch(fake).double().pow(2).mean().sqrt()) / rms_real


def highband_share(audio: Tensor, sample_rate: int, cutoff_hz: float = 4000.0) -> float:
    """Share of a batch's spectral energy above ``cutoff_hz`` (one FFT over each whole clip)."""
    power = torch.fft.rfft(_as_batch(audio).double(), dim=-1).abs().pow(2)
    freqs = torch.fft.rfftfreq(audio.shape[-1], d=1.0 / sample_rate)
    total = float(power.sum())
    return float(power[..., freqs > cutoff_hz].sum()) / total if total > 0 else 0.0


def highband_ratio(
    real: Tensor, fake: Tensor, sample_rate: int, cutoff_hz: float = 4000.0
) -> float | None:
    """High-band energy share of generated over real audio (< 1 muffled, > 1 hiss/artefacts)."""
    share_real = highband_share(real, sample_rate, cutoff_hz)
    if share_real <= 0:
        return None
    return highband_share(fake, sample_rate, cutoff_hz) / share_real


def spectral_flatness(audio: Tensor, n_fft: int = 1024) -> float:
    """Mean over active frames of geometric / arithmetic mean of the power spectrum: near 1
    for noise, near 0 for a few pure tones (buzz).  Frames 40 dB below the loudest are left out."""
    x = _as_batch(audio).double()
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    power = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs().pow(2)
    power = power.transpose(1, 2).reshape(-1, power.shape[1]) + 1e-12  # [frames, bins]
    energy = power.mean(dim=1)
    active = energy >= energy.max() * 1e-4
    if not bool(active.any()):
        return 0.0
    flat = power[active].log().mean(dim=1).exp() / energy[active]
    return float(flat.mean())


def flatness_ratio(real: Tensor, fake: Tensor) -> float | None:
    """Spectral flatness of the generated batch over the real batch's (< 1 buzzy / tonal,
    > 1 noisy)."""
    flat_real = spectral_flatness(real)
    if flat_real <= 0:
        return None
    return spectral_flatness(fake) / flat_real
