"""What may be scored: settings, signal shape, and the references a pair is skipped for.

Inputs are folded to mono float64 (int PCM scaled to [-1, 1), [frames, channels] averaged).  A
rate, mode or metric no pair could be scored with raises :class:`ScoringError`; a reference that
cannot be scored (silent or constant, too short, non-finite) raises :class:`Unscorable`, and the
pair is skipped and counted, never averaged in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.scoring import pitch
from harness.scoring.registry import SPEECH
from harness.scoring.spectral import STFT_RESOLUTIONS

METRICS = SPEECH  # every speech metric of the registry (harness/scoring/registry.py) is scored
MODES = ("wb", "nb")
MIN_SAMPLE_RATE = 8000
MIN_SECONDS = {  # shorter references cannot be scored
    "pesq": 0.25,
    "stoi": 0.4,
    "estoi": 0.4,
    **dict.fromkeys(pitch.NAMES, pitch.WINDOW / pitch.SAMPLE_RATE),  # one CREPE window
}
SILENT_PEAK = 1e-5  # a signal whose peak (after removing its mean) is below -100 dBFS is silence


class ScoringError(ValueError):
    """Input that cannot be scored at all (bad rate, mode, metric or shape); one line."""


class Unscorable(Exception):
    """A pair that cannot be scored; the message is the reason stored in the report."""


def as_mono(x: Any, what: str = "signal") -> np.ndarray:
    """1-D float64 from 1-D, [frames, channels] (averaged) or [1, frames]; int PCM scaled."""
    a = np.asarray(x)
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        offset = (int(info.max) + 1) // 2 if a.dtype.kind == "u" else 0
        a = (a.astype(np.float64) - offset) / (int(info.max) + 1 - offset)
    elif a.dtype.kind != "f":
        raise ScoringError(f"{what}: expected numeric audio, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 2 and a.shape[1] <= a.shape[0]:
        a = a.mean(axis=1)
    if a.ndim != 1:
        raise ScoringError(f"{what}: expected 1-D or [frames, channels] audio, got {a.shape}")
    return a


def check_settings(sample_rate: int, mode: str, metrics: Sequence[str]) -> None:
    """Raise :class:`ScoringError` for a rate, mode or metric no pair could be scored with."""
    if sample_rate < MIN_SAMPLE_RATE:
        raise ScoringError(
            f"sample rate {sample_rate} Hz is below {MIN_SAMPLE_RATE} Hz, the lowest PESQ accepts"
        )
    if mode not in MODES:
        raise ScoringError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ScoringError(f"metrics {list(metrics)!r}: choose from {', '.join(METRICS)}")


def is_silent(x: np.ndarray) -> bool:
    """No audible signal: empty, or nothing above :data:`SILENT_PEAK` but a constant (DC)."""
    return x.size == 0 or float(np.max(np.abs(x - x.mean()))) < SILENT_PEAK


def check_reference(ref: np.ndarray, sample_rate: int, metrics: Sequence[str]) -> None:
    """Raise :class:`Unscorable` for a reference too short for ``metrics``, non-finite or silent."""
    need = _min_samples(sample_rate, metrics)
    if ref.size < need:
        raise Unscorable(f"too short: {ref.size / sample_rate:.3f} s < {need / sample_rate:.3f} s")
    if not np.all(np.isfinite(ref)):
        raise Unscorable("reference has NaN or inf samples")
    if is_silent(ref):
        raise Unscorable("reference is silent")


def _min_samples(sample_rate: int, metrics: Sequence[str]) -> int:
    """The shortest reference every metric of ``metrics`` can score (MR-STFT: its largest FFT)."""
    need = [math.ceil(MIN_SECONDS.get(m, 0.0) * sample_rate) for m in metrics]
    if "mrstft" in metrics:
        need.append(max(n_fft for n_fft, _, _ in STFT_RESOLUTIONS))
    return max([1, *need])
