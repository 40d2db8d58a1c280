"""The scores of one utterance: every asked metric of an estimate (and of an enhancement
recipe's noisy input) against its reference, under rules that make trials comparable.

- signals are folded to mono (harness/scoring/checks.py) and cropped to the shortest;
- a pair whose *reference* cannot be scored (silent or constant, too short, non-finite, PESQ
  finds no utterance, STOI finds too few active frames, the pitch tracker finds no voiced frame)
  is **skipped** with its reason, never averaged in;
- an *estimate* that is silent, constant, NaN or inf (a collapsed or diverged generator), or
  too short to score (cut off where the part of the reference it covers cannot be scored), gets
  the worst-case scores of :data:`WORST` (mel L1 and MR-STFT, which have no worst value, are
  computed against silence), so a broken trial can never look good.

PESQ, (E)STOI and SI-SNR are in harness/scoring/speech.py, the spectral distances in
harness/scoring/spectral.py, pitch and periodicity error in harness/scoring/pitch.py and DNSMOS
P.835 in harness/scoring/dnsmos.py.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from harness.scoring import pitch
from harness.scoring.checks import (
    METRICS,
    Unscorable,
    as_mono,
    check_reference,
    check_settings,
    is_silent,
)
from harness.scoring.dnsmos import NAMES as DNSMOS_NAMES
from harness.scoring.dnsmos import SAMPLE_RATE as DNSMOS_RATE
from harness.scoring.dnsmos import dnsmos
from harness.scoring.spectral import MelFn, default_mel_fn, mel_l1, mrstft_distance
from harness.scoring.speech import (
    SI_SNR_FLOOR,
    composite,
    pesq_score,
    resample,
    si_snr,
    stoi_score,
)

WORST = {  # what a silent, constant or non-finite estimate scores
    "pesq": 1.0,  # PESQ-WB's floor is ~1.04
    "stoi": 0.0,
    "estoi": 0.0,
    "si_snr": SI_SNR_FLOOR,
    # the bottom of the MOS scale: measured white noise and 0 dB babble score 1.06-1.2, but
    # DNSMOS rates digital silence itself ~1.8 OVRL and 3.5 BAK, so it must not be asked
    **dict.fromkeys(DNSMOS_NAMES, 1.0),
    "pitch_rmse_cents": pitch.MAX_CENTS,  # 4160 cents, the widest interval CREPE can report
    "periodicity_rmse": 1.0,  # periodicity is 0-1
    "vuv_f1": 0.0,
    **dict.fromkeys(("csig", "cbak", "covl"), 1.0),  # the composite measures' floor
}
COMPOSITE = ("csig", "cbak", "covl")  # need PESQ and the signals at PESQ's rate
REFERENCE_TRACKS_KEPT = 256  # pitch tracks of references remembered per process (~5 kB each)

# Every validation scores the same references: their tracks (half the pitch cost) are kept,
# least recently used first out, in each process, keyed by a digest of the samples.
_reference_tracks: OrderedDict[tuple[bytes, int], pitch.PitchTrack] = OrderedDict()


def score_pair(
    ref: Any,
    est: Any,
    sample_rate: int,
    *,
    mode: str = "wb",
    metrics: Sequence[str] = METRICS,
    mel_fn: MelFn | None = None,
    noisy: Any = None,
) -> dict[str, Any]:
    """Score one utterance: ``{metric: value, ..., "skipped": reason|None, "worst_case": ...}``.

    With ``noisy`` (an enhancement recipe's input) the same metrics are computed for it against
    the reference under ``noisy_``-prefixed keys.  The whole reference is checked first (a
    reference that cannot be scored skips the pair); an estimate too short to score, or whose
    length leaves no scorable part of the reference, gets the worst-case scores like a silent
    one; then all signals are cropped to the shortest.
    """
    check_settings(sample_rate, mode, metrics)
    ref, est = as_mono(ref, "reference"), as_mono(est, "estimate")
    rest = [] if noisy is None else [as_mono(noisy, "noisy")]
    try:
        check_reference(ref, sample_rate, metrics)
    except Unscorable as skip:
        return {"skipped": str(skip), "worst_case": None}
    cut = _cut_short(ref, est, sample_rate, metrics)
    if cut:
        est = np.zeros_like(ref)
    length = min(s.size for s in (ref, est, *rest))
    ref, est, *rest = (s[:length] for s in (ref, est, *rest))
    out: dict[str, Any] = {"skipped": None, "worst_case": None}
    try:
        check_reference(ref, sample_rate, metrics)
        score = partial(
            score_estimate,
            sample_rate=sample_rate,
            mode=mode,
            metrics=metrics,
            mel_fn=mel_fn,
            ref_pitch=reference_pitch(ref, sample_rate, metrics),
        )
        scores, out["worst_case"] = score(ref, est, broken=cut)
        if rest:
            noisy_scores, _ = score(ref, rest[0])
            scores |= {f"noisy_{k}": v for k, v in noisy_scores.items()}
    except Unscorable as skip:
        return {"skipped": str(skip), "worst_case": None}
    return scores | out


def _cut_short(
    ref: np.ndarray, est: np.ndarray, sample_rate: int, metrics: Sequence[str]
) -> str | None:
    """Why an estimate shorter than its (scorable) reference is scored as broken, or None:
    too short for ``metrics``, or covering only a part of the reference that cannot be scored
    (silence before the speech).  Cropping the reference instead would skip the pair and so
    drop a broken generator's output from the mean, raising it."""
    if est.size >= ref.size:
        return None
    try:
        check_reference(ref[: est.size], sample_rate, metrics)
    except Unscorable as why:
        return (
            f"estimate is too short: {est.size / sample_rate:.3f} s of its reference's "
            f"{ref.size / sample_rate:.3f} s (the part it covers: {why})"
        )
    return None


def score_estimate(
    ref: np.ndarray,
    est: np.ndarray,
    sample_rate: int,
    mode: str,
    metrics: Sequence[str],
    mel_fn: MelFn | None,
    ref_pitch: pitch.PitchTrack | None,
    broken: str | None = None,
) -> tuple[dict[str, float], str | None]:
    """Scores of one estimate against a checked reference, and why they are worst-case (if so).

    ``ref_pitch`` is the reference's pitch track, needed when a pitch metric is asked for;
    ``broken`` is a reason found earlier to score the estimate as worst-case.
    """
    worst_case = broken or _broken(est)
    if worst_case:
        est = np.zeros_like(ref)
    scores: dict[str, float] = {}
    for metric in metrics:
        if worst_case and metric in WORST:
            scores[metric] = WORST[metric]
        elif metric in scores:  # computed with the rest of its family
            continue
        elif metric in pitch.NAMES:
            est_pitch = pitch.track(resample(est, sample_rate, pitch.SAMPLE_RATE))
            scores |= pitch.pitch_errors(ref_pitch, est_pitch)
        elif metric in DNSMOS_NAMES:
            scores |= dnsmos(resample(est, sample_rate, DNSMOS_RATE))
        elif metric in COMPOSITE:  # one computation gives all three
            scores |= composite(ref, est, sample_rate, mode, scores.get("pesq"))
        else:
            scores[metric] = _single_score(metric, ref, est, sample_rate, mode, mel_fn)
    return {metric: scores[metric] for metric in metrics}, worst_case


def _broken(est: np.ndarray) -> str | None:
    """Why an estimate gets the worst-case scores (non-finite or silent), or None."""
    if not np.all(np.isfinite(est)):
        return "estimate has NaN or inf samples"
    if is_silent(est):
        return "estimate is silent (or constant)"
    return None


def _single_score(
    metric: str,
    ref: np.ndarray,
    est: np.ndarray,
    sample_rate: int,
    mode: str,
    mel_fn: MelFn | None,
) -> float:
    """One metric that is computed on its own (not with a family of others)."""
    if metric == "pesq":
        return pesq_score(ref, est, sample_rate, mode)
    if metric in ("stoi", "estoi"):
        return stoi_score(ref, est, sample_rate, extended=metric == "estoi")
    if metric == "si_snr":
        return si_snr(ref, est)
    if metric == "mel_l1":
        return mel_l1(ref, est, mel_fn or default_mel_fn(sample_rate))
    if metric == "mrstft":
        return mrstft_distance(ref, est)
    raise AssertionError(f"no scorer for metric {metric!r}")


def reference_pitch(
    ref: np.ndarray, sample_rate: int, metrics: Sequence[str]
) -> pitch.PitchTrack | None:
    """The reference's pitch track when a pitch metric is asked for; skip it if never voiced."""
    if not set(metrics) & set(pitch.NAMES):
        return None
    key = (hashlib.blake2b(ref.tobytes(), digest_size=16).digest(), sample_rate)
    track = _reference_tracks.get(key)
    if track is None:
        track = pitch.track(resample(ref, sample_rate, pitch.SAMPLE_RATE))
        _reference_tracks[key] = track
        if len(_reference_tracks) > REFERENCE_TRACKS_KEPT:
            _reference_tracks.popitem(last=False)
    _reference_tracks.move_to_end(key)
    if not track.voiced.any():
        raise Unscorable("pitch: no voiced frame in the reference")
    return track
