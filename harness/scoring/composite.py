"""Composite speech-quality measures CSIG, CBAK, COVL (Hu & Loizou, 2008).

Each is a linear regression, fitted to listening tests, of four objective measures:

    CSIG = 3.093 - 1.029 LLR + 0.603 PESQ - 0.009 WSS
    CBAK = 1.634 + 0.478 PESQ - 0.007 WSS + 0.063 segSNR
    COVL = 1.594 + 0.805 PESQ - 0.512 LLR - 0.007 WSS

each clipped to [1, 5] (MOS scale: signal distortion, background intrusiveness, overall).
LLR, WSS and segSNR follow Loizou's ``composite.m`` as ported by pysepm
(schmiph2/pysepm, ``qualityMeasures.py``): 30 ms Hann frames (``0.5 - 0.5 cos(2 pi n /
(N + 1))``, n = 1..N) every 7.5 ms; LLR with LPC order 16 (10 below 10 kHz), not clipped, mean
of the best 95 % of frames; WSS over 25 critical bands with Klatt's weights (Kmax 20,
Klocmax 1), best 95 %; segSNR clipped to [-10, 35] dB per frame, all frames.  The last frame of
LLR and segSNR is dropped, as there.  PESQ is passed in: the harness uses wide-band PESQ
(P.862.2) at 16 kHz, as pysepm does at 16 kHz (``composite.m`` used narrow-band P.862, so its
numbers run lower).

Everything is vectorised over frames (the Levinson recursion runs once for all frames).
Degenerate frames: a digitally silent *reference* frame has no LPC model and is left out of LLR;
an estimate frame without one scores the reference's worst-case ratio (1000).
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.03
OVERLAP = 0.75
BEST_SHARE = 0.95  # LLR and WSS average the best 95 % of frames
SNR_RANGE = (-10.0, 35.0)  # dB, per frame
WORST_LLR_RATIO = 1000.0  # composite.m's value for a non-positive likelihood ratio
EPS = np.finfo(np.float64).eps

# Critical bands of composite.m (Hz): centre frequencies and bandwidths
CENTRES = np.array(
    [50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717, 904.128]
    + [1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71]
    + [2701.97, 2978.04, 3276.17, 3597.63]
)
BANDWIDTHS = np.array(
    [70.0] * 7
    + [77.3724, 86.0056, 95.3398, 105.411, 116.256, 127.914, 140.423, 153.823, 168.154]
    + [183.457, 199.776, 217.153, 235.631, 255.255, 276.072, 298.126, 321.465, 346.136]
)
K_MAX, K_LOCMAX = 20.0, 1.0  # Klatt (1982), p. 1280


def _frame_sizes(sample_rate: int) -> tuple[int, int]:
    """(window length, hop) in samples: 30 ms and a quarter of it (floored)."""
    return round(FRAME_SECONDS * sample_rate), int(
        np.floor((1 - OVERLAP) * FRAME_SECONDS * sample_rate)
    )


def _hann(length: int) -> np.ndarray:
    n = np.arange(1, length + 1)
    return 0.5 * (1 - np.cos(2 * np.pi * n / (length + 1)))


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Every complete frame of ``x`` [frames, length], windowed with :func:`_hann`."""
    count = (x.size - (length - hop)) // hop
    if count < 2:
        raise ValueError(f"signal of {x.size} samples is too short for composite measures")
    index = np.arange(length)[None, :] + hop * np.arange(count)[:, None]
    return x[index] * _hann(length)


def _best_share_mean(values: np.ndarray) -> float:
    kept = np.sort(values)[: int(round(values.size * BEST_SHARE))]
    return float(np.mean(kept))


def segmental_snr(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Mean per-frame SNR of ``est`` against ``ref`` in dB, each frame clipped to [-10, 35]."""
    length, hop = _frame_sizes(sample_rate)
    clean, processed = _frames(ref, length, hop), _frames(est, length, hop)
    signal = np.sum(clean**2, axis=1)
    noise = np.sum((clean - processed) ** 2, axis=1)
    snr = 10 * np.log10(signal / (noise + EPS) + EPS)
    return float(np.mean(np.clip(snr, *SNR_RANGE)[:-1]))


def _autocorrelation(frames: np.ndarray, order: int) -> np.ndarray:
    """Lags 0..order of every frame [frames, order + 1]."""
    n = frames.shape[1]
    return np.stack(
        [np.sum(frames[:, : n - k] * frames[:, k:], axis=1) for k in range(order + 1)], 1
    )


def _levinson(r: np.ndarray) -> np.ndarray:
    """LPC polynomials [1, -a_1, ..., -a_p] from autocorrelations [frames, p + 1], all frames at
    once (the recursion of composite.m's ``lpcoeff``).  Frames with r0 = 0 give NaN."""
    frames, order = r.shape[0], r.shape[1] - 1
    a = np.zeros((frames, order))
    energy = r[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            past = a[:, :i].copy()
            k = (r[:, i + 1] - np.sum(past * r[:, i:0:-1], axis=1)) / energy
            a[:, i] = k
            a[:, :i] = past - k[:, None] * past[:, ::-1]
            energy = (1 - k * k) * energy
    return np.concatenate([np.ones((frames, 1)), -a], axis=1)


def log_likelihood_ratio(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Mean LLR over the best 95 % of frames (composite.m's variant: not clipped at 2)."""
    length, hop = _frame_sizes(sample_rate)
    order = 10 if sample_rate < 10000 else 16
    clean = _frames(ref, length, hop)[:-1]
    processed = _frames(est, length, hop)[:-1]
    r_clean = _autocorrelation(clean, order)
    r_proc = _autocorrelation(processed, order)
    modelled = r_clean[:, 0] > 0
    r_clean, r_proc = r_clean[modelled], r_proc[modelled]
    a_clean, a_proc = _levinson(r_clean), _levinson(r_proc)
    lags = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toeplitz = r_clean[:, lags]  # [frames, p + 1, p + 1]
    with np.errstate(invalid="ignore"):
        numerator = np.einsum("fi,fij,fj->f", a_proc, toeplitz, a_proc)
        denominator = np.einsum("fi,fij,fj->f", a_clean, toeplitz, a_clean)
        ratio = numerator / denominator
    ratio[~(ratio > 0)] = WORST_LLR_RATIO  # also NaN: an estimate frame with no LPC model
    return _best_share_mean(np.log(ratio))


def _critical_band_filters(n_half: int, sample_rate: int) -> np.ndarray:
    """Gaussian-shaped critical-band weights [25, n_half] over FFT bins, cut at -30 dB."""
    nyquist = sample_rate / 2
    bins = np.arange(n_half)
    centre = np.floor(CENTRES / nyquist * n_half)[:, None]
    width = (BANDWIDTHS / nyquist * n_half)[:, None]
    norm = (np.log(BANDWIDTHS[0]) - np.log(BANDWIDTHS))[:, None]
    filters = np.exp(-11 * ((bins[None, :] - centre) / width) ** 2 + norm)
    return filters * (filters > np.exp(-30.0 / (2.0 * 2.303)))


def _band_energies_db(x: np.ndarray, length: int, hop: int, n_fft: int, filters: np.ndarray):
    """Critical-band energies in dB [25, frames], floored at -100 dB."""
    spectrum = np.abs(np.fft.rfft(_frames(x, length, hop), n=n_fft, axis=1)) ** 2
    energy = filters @ spectrum[:, : n_fft // 2].T
    with np.errstate(divide="ignore"):
        return np.maximum(10 * np.log10(energy), -100.0)


def _nearest_peaks(slope: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """For each band, the energy at the spectral peak nearest to it (composite.m's search):
    up the bands while the slope rises, down them while it falls.  [bands - 1, frames]."""
    bands = slope.shape[0]
    next_fall = np.empty(slope.shape, dtype=int)  # first n >= i with slope[n] <= 0, else bands
    following = np.full(slope.shape[1], bands)
    for i in range(bands - 1, -1, -1):
        following = np.where(slope[i] <= 0, i, following)
        next_fall[i] = following
    last_rise = np.empty(slope.shape, dtype=int)  # last n <= i with slope[n] > 0, else -1
    preceding = np.full(slope.shape[1], -1)
    for i in range(bands):
        preceding = np.where(slope[i] > 0, i, preceding)
        last_rise[i] = preceding
    peak = np.where(slope > 0, next_fall - 1, last_rise + 1)
    return np.take_along_axis(energy, peak, axis=0)


def weighted_spectral_slope(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Mean WSS distance (Klatt 1982) over the best 95 % of frames."""
    length, hop = _frame_sizes(sample_rate)
    n_fft = int(2 ** np.ceil(np.log2(2 * length)))
    filters = _critical_band_filters(n_fft // 2, sample_rate)
    usable = int(ref.size / hop - length / hop) * hop + (length - hop)
    weights, slopes = [], []
    for x in (ref, est):
        energy = _band_energies_db(x[:usable] + EPS, length, hop, n_fft, filters)
        slope = np.diff(energy, axis=0)
        peak = _nearest_peaks(slope, energy)
        w_max = K_MAX / (K_MAX + energy.max(axis=0) - energy[:-1])
        w_local = K_LOCMAX / (K_LOCMAX + peak - energy[:-1])
        weights.append(w_max * w_local)
        slopes.append(slope)
    weight = (weights[0] + weights[1]) / 2
    distance = np.sum(weight * (slopes[0] - slopes[1]) ** 2, axis=0) / np.sum(weight, axis=0)
    return _best_share_mean(distance)


def composite_scores(
    ref: np.ndarray, est: np.ndarray, sample_rate: int, pesq: float
) -> dict[str, float]:
    """``{"csig", "cbak", "covl"}`` of ``est`` against ``ref`` (same rate, equal lengths, float
    in [-1, 1]) given their PESQ."""
    llr = log_likelihood_ratio(ref, est, sample_rate)
    wss = weighted_spectral_slope(ref, est, sample_rate)
    snr = segmental_snr(ref, est, sample_rate)
    scores = {
        "csig": 3.093 - 1.029 * llr + 0.603 * pesq - 0.009 * wss,
        "cbak": 1.634 + 0.478 * pesq - 0.007 * wss + 0.063 * snr,
        "covl": 1.594 + 0.805 * pesq - 0.512 * llr - 0.007 * wss,
    }
    return {k: float(np.clip(v, 1.0, 5.0)) for k, v in scores.items()}
