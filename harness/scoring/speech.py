"""Objective speech scores of (reference, estimate) pairs.

PESQ, (E)STOI, SI-SNR, mel L1 and MR-STFT here; pitch and periodicity error (harness/scoring/pitch.py)
and DNSMOS P.835 (harness/scoring/dnsmos.py) in their own modules, called from here.

Every pair goes through the same rules, so a number from one trial compares with another's:

- inputs are folded to mono float64 (int PCM scaled to [-1, 1), [frames, channels] averaged) and
  cropped to the shorter of the two;
- a pair whose *reference* cannot be scored (silent or constant, too short, non-finite, PESQ
  finds no utterance, STOI finds too few active frames, the pitch tracker finds no voiced frame)
  is **skipped and counted**, never averaged in;
- an *estimate* that is silent, constant, NaN or inf (a collapsed or diverged generator) gets
  the worst-case scores of :data:`WORST` (mel L1 and MR-STFT, which have no worst value, are
  computed against silence), so a broken trial can never look good.

:func:`score_pairs` fans pairs out over a process pool (pesq and pystoi are single-threaded C and
NumPy); :class:`ScoringPool` keeps one alive between validations, since starting a worker costs
seconds of imports.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from multiprocessing import forkserver
from typing import Any, NamedTuple

import numpy as np
import pesq as pesq_lib
import pystoi
import torch
import torchaudio.functional as AF

from harness.scoring import pitch
from harness.scoring.composite import composite_scores
from harness.scoring.dnsmos import NAMES as DNSMOS_NAMES
from harness.scoring.dnsmos import SAMPLE_RATE as DNSMOS_RATE
from harness.scoring.dnsmos import dnsmos
from harness.scoring.registry import SPEECH

METRICS = SPEECH  # every speech metric of the registry (harness/scoring/registry.py) is scored here
MODES = ("wb", "nb")
PESQ_RATE = 16000  # every rate but 8 kHz narrow-band is resampled to this for PESQ
MIN_SAMPLE_RATE = 8000
MIN_SECONDS = {  # shorter references cannot be scored
    "pesq": 0.25,
    "stoi": 0.4,
    "estoi": 0.4,
    **dict.fromkeys(pitch.NAMES, pitch.WINDOW / pitch.SAMPLE_RATE),  # one CREPE window
}
SILENT_PEAK = 1e-5  # a signal whose peak (after removing its mean) is below -100 dBFS is silence
WORST = {  # what a silent, constant or non-finite estimate scores
    "pesq": 1.0,  # PESQ-WB's floor is ~1.04
    "stoi": 0.0,
    "estoi": 0.0,
    "si_snr": -50.0,
    # the bottom of the MOS scale: measured white noise and 0 dB babble score 1.06-1.2, but
    # DNSMOS rates digital silence itself ~1.8 OVRL and 3.5 BAK, so it must not be asked
    **dict.fromkeys(DNSMOS_NAMES, 1.0),
    "pitch_rmse_cents": pitch.MAX_CENTS,  # 4160 cents, the widest interval CREPE can report
    "periodicity_rmse": 1.0,  # periodicity is 0-1
    "vuv_f1": 0.0,
    **dict.fromkeys(("csig", "cbak", "covl"), 1.0),  # the composite measures' floor
}
COMPOSITE = ("csig", "cbak", "covl")  # need PESQ and the signals at PESQ's rate
SI_SNR_FLOOR = WORST["si_snr"]
SI_SNR_CEILING = 300.0  # dB: an exact copy; float64 rounding alone leaves about -300 dB of error
# (n_fft, hop, win): three resolutions with 75% overlap for the Parallel WaveGAN distance
STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))
# native math libraries in the workers run one thread each: the pool already fills every core
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STOI_SENTINEL = 1e-5  # what pystoi returns (with a warning) when it finds < 30 active frames
REFERENCE_TRACKS_KEPT = 256  # pitch tracks of references remembered per process (~5 kB each)

MelFn = Callable[[torch.Tensor], torch.Tensor]


class ScoringError(ValueError):
    """Input that cannot be scored at all (bad rate, mode, metric or shape); one line."""


class ScorePair(NamedTuple):
    """One utterance to score; ``noisy`` is the enhancement input, scored too when given."""

    name: str
    reference: Any
    estimate: Any
    noisy: Any = None


@dataclass
class ScoreReport:
    """Per-utterance scores and their means over the pairs that were not skipped."""

    per_item: list[dict[str, Any]]  # {"id", metric..., "skipped", "worst_case"}
    mean: dict[str, float]
    n_valid: int
    n_skipped: int


class _Skip(Exception):
    """A pair that cannot be scored; the message is the reason stored in the report."""


# ---------------------------------------------------------------- input normalisation


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


def _is_silent(x: np.ndarray) -> bool:
    """No audible signal: empty, or nothing above :data:`SILENT_PEAK` but a constant (DC)."""
    return x.size == 0 or float(np.max(np.abs(x - x.mean()))) < SILENT_PEAK


def _min_samples(sample_rate: int, metrics: Sequence[str]) -> int:
    need = [math.ceil(MIN_SECONDS.get(m, 0.0) * sample_rate) for m in metrics]
    if "mrstft" in metrics:
        need.append(max(n_fft for n_fft, _, _ in STFT_RESOLUTIONS))
    return max([1, *need])


# ---------------------------------------------------------------- the metrics


def resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc), float64 in and out."""
    if orig == new:
        return x
    return AF.resample(torch.from_numpy(x), orig, new).numpy()


def _pesq_rate(sample_rate: int, mode: str) -> int:
    """Narrow-band at 8 kHz is scored at 8 kHz; everything else at 16 kHz."""
    return 8000 if (mode == "nb" and sample_rate == 8000) else PESQ_RATE


def pesq_score(ref: np.ndarray, est: np.ndarray, sample_rate: int, mode: str = "wb") -> float:
    """PESQ (ITU-T P.862.2 wide-band or P.862 narrow-band) after resampling both to 16 kHz.

    Narrow-band at 8 kHz is scored at 8 kHz.  pesq's own errors (no utterance found, buffer too
    short) raise :class:`_Skip` with the reason.
    """
    rate = _pesq_rate(sample_rate, mode)
    ref, est = resample(ref, sample_rate, rate), resample(est, sample_rate, rate)
    try:
        return float(pesq_lib.pesq(rate, ref, est, mode))
    except pesq_lib.PesqError as err:
        raise _Skip(f"pesq: {type(err).__name__}: {_text(err)}") from None


def composite(
    ref: np.ndarray, est: np.ndarray, sample_rate: int, mode: str, pesq: float | None = None
) -> dict[str, float]:
    """CSIG / CBAK / COVL (harness/scoring/composite.py) at PESQ's rate, composed with PESQ in ``mode``
    (``pesq`` if already computed)."""
    if pesq is None:
        pesq = pesq_score(ref, est, sample_rate, mode)
    rate = _pesq_rate(sample_rate, mode)
    return composite_scores(
        resample(ref, sample_rate, rate), resample(est, sample_rate, rate), rate, pesq
    )


def stoi_score(ref: np.ndarray, est: np.ndarray, sample_rate: int, extended: bool) -> float:
    """(E)STOI via pystoi; its 1e-5 "too few active frames" sentinel raises :class:`_Skip`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(ref, est, sample_rate, extended=extended))
    if value == STOI_SENTINEL and any(
        "intermediate intelligibility" in str(w.message) for w in caught
    ):
        raise _Skip("stoi: fewer than 30 active frames in the reference")
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
    from harness.audio.mel import LogMel, MelConfig

    return LogMel(MelConfig(sample_rate=sample_rate, f_max=min(8000.0, sample_rate / 2))).eval()


# ---------------------------------------------------------------- one pair


def _score_signal(
    ref: np.ndarray,
    est: np.ndarray,
    sample_rate: int,
    mode: str,
    metrics: Sequence[str],
    mel_fn: MelFn | None,
    ref_pitch: pitch.PitchTrack | None,
) -> tuple[dict[str, float], str | None]:
    """Scores of one estimate against a checked reference, and why they are worst-case (if so).

    ``ref_pitch`` is the reference's pitch track, needed when a pitch metric is asked for.
    """
    worst_case = None
    if not np.all(np.isfinite(est)):
        worst_case = "estimate has NaN or inf samples"
    elif _is_silent(est):
        worst_case = "estimate is silent (or constant)"
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
        elif metric == "pesq":
            scores[metric] = pesq_score(ref, est, sample_rate, mode)
        elif metric in COMPOSITE:
            if metric not in scores:  # one computation gives all three
                scores |= composite(ref, est, sample_rate, mode, scores.get("pesq"))
        elif metric in ("stoi", "estoi"):
            scores[metric] = stoi_score(ref, est, sample_rate, extended=metric == "estoi")
        elif metric == "si_snr":
            scores[metric] = si_snr(ref, est)
        elif metric == "mel_l1":
            scores[metric] = mel_l1(ref, est, mel_fn or default_mel_fn(sample_rate))
        elif metric == "mrstft":
            scores[metric] = mrstft_distance(ref, est)
    return {metric: scores[metric] for metric in metrics}, worst_case


def _check_reference(ref: np.ndarray, sample_rate: int, metrics: Sequence[str]) -> None:
    need = _min_samples(sample_rate, metrics)
    if ref.size < need:
        raise _Skip(f"too short: {ref.size / sample_rate:.3f} s < {need / sample_rate:.3f} s")
    if not np.all(np.isfinite(ref)):
        raise _Skip("reference has NaN or inf samples")
    if _is_silent(ref):
        raise _Skip("reference is silent")


# Every validation scores the same references: their tracks (half the pitch cost) are kept,
# least recently used first out, in each process, keyed by a digest of the samples.
_reference_tracks: OrderedDict[tuple[bytes, int], pitch.PitchTrack] = OrderedDict()


def _reference_pitch(
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
        raise _Skip("pitch: no voiced frame in the reference")
    return track


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
    the reference under ``noisy_``-prefixed keys.  All signals are cropped to the shortest.
    """
    check_settings(sample_rate, mode, metrics)
    signals = [as_mono(ref, "reference"), as_mono(est, "estimate")]
    if noisy is not None:
        signals.append(as_mono(noisy, "noisy"))
    length = min(s.size for s in signals)
    ref, est, *rest = (s[:length] for s in signals)
    out: dict[str, Any] = {"skipped": None, "worst_case": None}
    try:
        _check_reference(ref, sample_rate, metrics)
        ref_pitch = _reference_pitch(ref, sample_rate, metrics)
        score = partial(
            _score_signal,
            sample_rate=sample_rate,
            mode=mode,
            metrics=metrics,
            mel_fn=mel_fn,
            ref_pitch=ref_pitch,
        )
        scores, out["worst_case"] = score(ref, est)
        if rest:
            noisy_scores, _ = score(ref, rest[0])
            scores |= {f"noisy_{k}": v for k, v in noisy_scores.items()}
    except _Skip as skip:
        return {"skipped": str(skip), "worst_case": None}
    return scores | out


# ---------------------------------------------------------------- many pairs


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch single-threaded for a while: 3-second FFTs only lose to thread hand-offs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker() -> None:
    """One thread per worker: the pool already uses every core."""
    torch.set_num_threads(1)


def _score_item(item: ScorePair, **kwargs: Any) -> dict[str, Any]:
    name, ref, est, noisy = item
    try:
        return {"id": str(name)} | score_pair(ref, est, noisy=noisy, **kwargs)
    except ScoringError as err:
        raise ScoringError(f"{name}: {err}") from None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's core count)."""
    return len(os.sched_getaffinity(0))


class ScoringPool:
    """Worker processes that outlive one :func:`score_pairs` call (each costs seconds to start).

    Workers are forked from a forkserver, never from this process: forking a process whose
    torch has run OpenMP threads, or whose Ray runtime holds threads, can deadlock the child.
    The forkserver is started with :data:`WORKER_ENV` and has the main script and this module
    preloaded, so each worker starts in milliseconds, with single-threaded BLAS (threaded BLAS
    made pystoi's small matmuls 70x slower on a loaded machine).  A forkserver that other code
    already started in this process is reused as it is.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or available_cpus()
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", __name__])
        with _environment(WORKER_ENV):
            forkserver.ensure_running()
        self._executor = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_worker
        )

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return list(self._executor.map(fn, items))

    def submit(self, fn: Callable[[Any], Any], item: Any) -> Future:
        """Start ``fn(item)`` in a worker and return at once; the future holds the result."""
        return self._executor.submit(fn, item)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a while (what child processes started meanwhile see)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def summarize(per_item: list[dict[str, Any]], keys: Sequence[str]) -> ScoreReport:
    """Mean of each score over the items that were not skipped (NaN where none has it)."""
    valid = [item for item in per_item if not item.get("skipped")]
    mean: dict[str, float] = {}
    for key in keys:
        values = [item[key] for item in valid if key in item]
        mean[key] = float(np.mean(values)) if values else math.nan
    return ScoreReport(per_item, mean, len(valid), len(per_item) - len(valid))


def score_pairs(
    pairs: Iterable[ScorePair | tuple],
    sample_rate: int,
    *,
    workers: int | None = None,
    pool: ScoringPool | None = None,
    mode: str = "wb",
    metrics: Sequence[str] = METRICS,
    mel_fn: MelFn | None = None,
) -> ScoreReport:
    """Score ``(name, reference, estimate[, noisy])`` pairs, in parallel, into a report.

    ``pool`` reuses live workers; otherwise ``workers`` processes are started for this call
    (default: every CPU this process may use; 1 runs serially in-process).  ``mel_fn`` must be
    picklable to cross into the workers.
    """
    check_settings(sample_rate, mode, metrics)
    items = [ScorePair(*p) for p in pairs]
    fn = partial(_score_item, sample_rate=sample_rate, mode=mode, metrics=metrics, mel_fn=mel_fn)
    workers = min(workers or available_cpus(), len(items))
    if pool is not None:
        per_item = pool.map(fn, items)
    elif workers <= 1:
        with single_threaded_torch():
            per_item = [fn(item) for item in items]
    else:
        with ScoringPool(workers) as own:
            per_item = own.map(fn, items)
    noisy_keys = [f"noisy_{m}" for m in metrics] if any(i.noisy is not None for i in items) else []
    return summarize(per_item, [*metrics, *noisy_keys])


def submit_pairs(
    pool: ScoringPool,
    pairs: Iterable[ScorePair | tuple],
    sample_rate: int,
    *,
    mode: str = "wb",
    metrics: Sequence[str] = METRICS,
) -> list[Future]:
    """Start scoring every pair in ``pool`` without waiting: one future per pair, whose result
    is that pair's :func:`score_pair` dict (with ``"id"``), under the same rules."""
    check_settings(sample_rate, mode, metrics)
    fn = partial(_score_item, sample_rate=sample_rate, mode=mode, metrics=metrics, mel_fn=None)
    return [pool.submit(fn, ScorePair(*p)) for p in pairs]


def _text(err: BaseException) -> str:
    """pesq's messages are bytes; decode them for a readable reason."""
    arg = err.args[0] if err.args else ""
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
