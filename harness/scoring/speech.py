"""Intrusive speech scores of an estimate against its reference: PESQ, the composite measures,
(E)STOI and SI-SNR, on mono float64 signals of equal length at one sample rate.

A score its library cannot compute for this reference (PESQ finds no utterance, STOI too few
active frames) raises :class:`~harness.scoring.checks.Unscorable` with the reason, so the pair is
skipped rather than averaged in.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pesq as pesq_lib
import pystoi
import torch
import torchaudio.functional as AF

from harness.scoring.checks import Unscorable
from harness.scoring.composite import composite_scores

PESQ_RATE = 16000  # every rate but 8 kHz narrow-band is resampled to this for PESQ
SI_SNR_FLOOR = -50.0  # dB: an estimate with no component along the reference, or worse
SI_SNR_CEILING = 300.0  # dB: an exact copy; float64 rounding alone leaves about -300 dB of error
STOI_SENTINEL = 1e-5  # what pystoi returns (with a warning) when it finds < 30 active frames


def resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc), float64 in and out."""
    if orig == new:
        return x
    return AF.resample(torch.from_numpy(x), orig, new).numpy()


def pesq_rate(sample_rate: int, mode: str) -> int:
    """Narrow-band at 8 kHz is scored at 8 kHz; everything else at 16 kHz."""
    return 8000 if (mode == "nb" and sample_rate == 8000) else PESQ_RATE


def pesq_score(ref: np.ndarray, est: np.ndarray, sample_rate: int, mode: str = "wb") -> float:
    """PESQ (ITU-T P.862.2 wide-band or P.862 narrow-band) after resampling both to 16 kHz.

    Narrow-band at 8 kHz is scored at 8 kHz.  pesq's own errors (no utterance found, buffer too
    short) raise :class:`Unscorable` with the reason.
    """
    rate = pesq_rate(sample_rate, mode)
    ref, est = resample(ref, sample_rate, rate), resample(est, sample_rate, rate)
    try:
        return float(pesq_lib.pesq(rate, ref, est, mode))
    except pesq_lib.PesqError as err:
        raise Unscorable(f"pesq: {type(err).__name__}: {_text(err)}") from None


def composite(
    ref: np.ndarray, est: np.ndarray, sample_rate: int, mode: str, pesq: float | None = None
) -> dict[str, float]:
    """CSIG / CBAK / COVL (harness/scoring/composite.py) at PESQ's rate, composed with PESQ in
    ``mode`` (``pesq`` if already computed)."""
    if pesq is None:
        pesq = pesq_score(ref, est, sample_rate, mode)
    rate = pesq_rate(sample_rate, mode)
    return composite_scores(
        resample(ref, sample_rate, rate), resample(est, sample_rate, rate), rate, pesq
    )


def stoi_score(ref: np.ndarray, est: np.ndarray, sample_rate: int, extended: bool) -> float:
    """(E)STOI via pystoi; its 1e-5 "too few active frames" sentinel raises :class:`Unscorable`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(ref, est, sample_rate, extended=extended))
    if value == STOI_SENTINEL and any(
        "intermediate intelligibility" in str(w.message) for w in caught
    ):
        raise Unscorable("stoi: fewer than 30 active frames in the reference")
    return value


def si_snr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SNR in dB (Le Roux et al. 2019, "SDR - half-baked or well done?").

    Both signals are made zero-mean.  No epsilon enters the ratio, so a quiet estimate scores
    exactly what the same estimate scores loud; an estimate with no component along the
    reference (a constant one, say) gets :data:`SI_SNR_FLOOR`, as does anything worse than it,
    and an exact copy :data:`SI_SNR_CEILING`.  NaN for a constant reference (nothing to match).
    """
    ref, est = ref - ref.mean(), est - est.mean()
    ref_energy = _dot(ref, ref)
    if ref_energy == 0.0:
        return math.nan
    target = (_dot(est, ref) / ref_energy) * ref
    noise = est - target
    target_energy, noise_energy = _dot(target, target), _dot(noise, noise)
    if target_energy == 0.0:
        return SI_SNR_FLOOR
    ratio = target_energy / max(noise_energy, target_energy * 10 ** (-SI_SNR_CEILING / 10))
    return max(10.0 * math.log10(ratio), SI_SNR_FLOOR)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product without BLAS, whose threads thrash when every core already has a worker."""
    return float(np.sum(a * b))


def _text(err: BaseException) -> str:
    """pesq's messages are bytes; decode them for a readable reason."""
    arg = err.args[0] if err.args else ""
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
