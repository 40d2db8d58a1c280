"""Known answers for DNSMOS P.835 and CARGAN's pitch metrics on real speech, and their worst cases.

The reference pair is /work/shared/data/pesq-reference (speech.wav and its 0 dB babble mix,
16 kHz, 3.1 s).  Pitch-shifted copies are stretched by a phase vocoder, then resampled back to
the original duration, so frame i of the copy still lines up with frame i of the reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from harness.scoring import dnsmos, pitch, utterance
from harness.scoring.pairs import ScorePair, score_pairs
from harness.scoring.pool import ScoringPool
from harness.scoring.registry import METRICS, SPEECH
from harness.scoring.speech import resample
from harness.scoring.utterance import WORST, score_pair

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pesq-reference"
DNSMOS = dnsmos.NAMES
PITCH = pitch.NAMES
NEW = (*DNSMOS, *PITCH)
BIN_CENTS = 20  # CREPE's pitch resolution: the tolerance of a pitch-shift answer
# measured on speech.wav / speech_bab_0dB.wav with the speechmos 0.0.1.1 model, and equal (to
# 1e-6) to speechmos.dnsmos.run on the same audio
CLEAN_DNSMOS = {"dnsmos_sig": 3.5518, "dnsmos_bak": 4.0475, "dnsmos_ovrl": 3.2458}
BABBLE_DNSMOS = {"dnsmos_sig": 1.2047, "dnsmos_bak": 1.1683, "dnsmos_ovrl": 1.0889}


SHIFTS = {"+99 cents": (18, 17), "+204 cents": (9, 8)}  # pitch ratios, as up/down


def cents(up: int, down: int) -> float:
    return 1200.0 * math.log2(up / down)


def shifted(audio: np.ndarray, up: int, down: int) -> np.ndarray:
    """``audio`` with its pitch raised by ``up / down`` and its duration kept.

    A phase-vocoder stretch by ``up / down``, then resampling by ``down / up`` (small integers,
    so cheap: torchaudio's own ``pitch_shift`` resamples 14254 -> 16000 Hz, a minute per call).
    """
    n_fft, hop = 512, 128
    x = torch.from_numpy(audio)
    window = torch.hann_window(n_fft, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2], dtype=x.dtype)[:, None]
    stretched = AF.phase_vocoder(spec, down / up, advance)
    longer = torch.istft(stretched, n_fft, hop, window=window, length=round(x.numel() * up / down))
    return AF.resample(longer, up, down)[: audio.size].numpy()


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"shared PESQ reference pair not found at {REFERENCE_DIR}")
    return sf.read(REFERENCE_DIR / "speech.wav")[0]


@pytest.fixture(scope="module")
def scores(clean: np.ndarray) -> dict[str, dict]:
    """Every new metric of a range of estimates against the clean reference (computed once)."""
    babble = sf.read(REFERENCE_DIR / "speech_bab_0dB.wav")[0]
    white = np.random.default_rng(0).uniform(-1.0, 1.0, clean.size)  # full-scale white noise
    estimates = {
        "clean": clean,
        "babble": babble,
        "white": white,
        **{name: shifted(clean, *ratio) for name, ratio in SHIFTS.items()},
        "silence": np.zeros_like(clean),
        "constant": np.full_like(clean, 0.5),
    }
    return {name: score_pair(clean, est, 16000, metrics=NEW) for name, est in estimates.items()}


def better_or_equal(metric: str, a: float, b: float) -> bool:
    return a >= b if METRICS[metric].higher_is_better else a <= b


# ---------------------------------------------------------------- DNSMOS


def test_dnsmos_of_the_reference_pair_is_pinned(scores):
    for name, pinned in (("clean", CLEAN_DNSMOS), ("babble", BABBLE_DNSMOS)):
        for metric, value in pinned.items():
            assert scores[name][metric] == pytest.approx(value, abs=2e-3), (name, metric)


def test_dnsmos_rates_clean_speech_clearly_above_babble_and_white_noise(scores):
    for metric in DNSMOS:
        assert scores["clean"][metric] > scores["babble"][metric] + 1.5
        assert scores["clean"][metric] > scores["white"][metric] + 1.5
        assert scores["white"][metric] >= WORST[metric], "noise is never worse than silence"


def test_dnsmos_calibration_is_that_of_the_reference_implementation():
    from speechmos.dnsmos import DNSMOS as Speechmos  # imports librosa and requests

    raw = np.linspace(0.5, 5.5, 41)
    theirs = Speechmos.get_polyfit_val(None, raw, raw, raw, False)  # (sig, bak, ovrl); self unused
    ours = [dnsmos.CALIBRATION[name](raw) for name in DNSMOS]
    np.testing.assert_array_equal(ours, theirs)


def test_dnsmos_cuts_the_windows_of_the_reference_script():
    second = dnsmos.SAMPLE_RATE
    window = int(dnsmos.WINDOW_SECONDS * second)
    counts = {
        seconds: len(dnsmos.windows(np.ones(int(seconds * second))))
        for seconds in (1.5, 3, 4, 5, 20)
    }
    # 1.5 s and 3 s double to 12 s (3 windows), 4 s to 16 s (7), 5 s to 10 s (1); a 20 s clip
    # would have 12 windows, but the script's float index arithmetic drops those from the 8th on
    assert counts == {1.5: 3, 3: 3, 4: 7, 5: 1, 20: 7}
    cuts = dnsmos.windows(np.arange(3 * second, dtype=np.float64))
    assert cuts.shape == (3, window) and cuts.dtype == np.float32
    assert cuts[1, 0] == second and cuts[0, 3 * second] == 0.0  # 1 s hop; repeats of the clip


def test_dnsmos_of_a_short_excerpt_is_close_to_that_of_the_whole_and_loud_input_is_clipped(
    clean, scores
):
    excerpt = dnsmos.dnsmos(clean[: int(1.25 * dnsmos.SAMPLE_RATE)])  # scored as 10 s of repeats
    assert excerpt["dnsmos_ovrl"] == pytest.approx(scores["clean"]["dnsmos_ovrl"], abs=0.05)
    loud = 4.0 * clean  # peaks at 1.3: speechmos refuses it, a PCM file would clip it
    assert dnsmos.dnsmos(loud) == dnsmos.dnsmos(np.clip(loud, -1.0, 1.0))


# ---------------------------------------------------------------- pitch


def test_the_worst_pitch_error_is_the_widest_interval_torchcrepe_can_report():
    import torchcrepe

    lowest = torchcrepe.convert.frequency_to_bins(torch.tensor(pitch.FMIN))
    past_highest = torchcrepe.convert.frequency_to_bins(torch.tensor(pitch.FMAX), torch.ceil)
    assert pitch.MAX_CENTS == torchcrepe.CENTS_PER_BIN * int(past_highest - 1 - lowest) == 4160


def test_speech_against_itself_has_no_pitch_error(scores):
    assert scores["clean"]["pitch_rmse_cents"] == 0.0
    assert scores["clean"]["periodicity_rmse"] == 0.0
    assert scores["clean"]["vuv_f1"] == 1.0


@pytest.mark.parametrize("shift", SHIFTS)
def test_a_pitch_shifted_copy_scores_the_shift_within_one_crepe_bin(scores, shift):
    result = scores[shift]
    assert abs(result["pitch_rmse_cents"] - cents(*SHIFTS[shift])) <= BIN_CENTS
    assert result["vuv_f1"] > 0.85  # voicing is kept by a pitch shift


def test_noise_has_large_pitch_errors_and_hardly_any_voicing(scores):
    white, babble = scores["white"], scores["babble"]
    assert white["pitch_rmse_cents"] > 500 and white["vuv_f1"] < 0.3
    assert white["periodicity_rmse"] > 0.3
    assert scores["+99 cents"]["vuv_f1"] > babble["vuv_f1"] > white["vuv_f1"]


def test_pitch_at_another_rate_is_resampled_to_16k(clean):
    excerpt = clean[8000:32000]  # 1.5 s of speech
    at_22k = resample(excerpt, 16000, 22050)
    same = score_pair(at_22k, at_22k, 22050, metrics=PITCH)
    assert (same["pitch_rmse_cents"], same["vuv_f1"]) == (0.0, 1.0)
    up = resample(shifted(excerpt, 9, 8), 16000, 22050)
    result = score_pair(at_22k, up, 22050, metrics=PITCH)
    assert abs(result["pitch_rmse_cents"] - cents(9, 8)) <= BIN_CENTS


def test_reference_tracks_are_remembered_without_changing_scores(clean):
    ref, est = clean[8000:32000], shifted(clean[8000:32000], 18, 17)
    utterance._reference_tracks.clear()
    first = score_pair(ref, est, 16000, metrics=PITCH)
    (track,) = utterance._reference_tracks.values()
    assert score_pair(ref, est, 16000, metrics=PITCH) == first
    (again,) = utterance._reference_tracks.values()
    assert again is track, "the second call used the first one's track"


def test_a_reference_with_no_voiced_frame_is_skipped_only_when_pitch_is_asked(clean):
    hiss = 1e-4 * np.random.default_rng(2).standard_normal(clean.size)  # -68 dBFS: not silent,
    # but below CARGAN's -60 dB loudness gate, so never voiced
    result = score_pair(hiss, clean, 16000, metrics=("si_snr", "vuv_f1"))
    assert result["skipped"] == "pitch: no voiced frame in the reference"
    assert score_pair(hiss, clean, 16000, metrics=("si_snr",))["skipped"] is None


# ---------------------------------------------------------------- worst cases


def test_every_speech_metric_has_a_worst_value_or_is_a_distance_against_silence():
    assert set(SPEECH) - set(WORST) == {"mel_l1", "mrstft"}
    assert set(WORST) <= set(SPEECH)


@pytest.mark.parametrize("broken", ["silence", "constant"])
def test_silence_and_constants_get_the_worst_values_never_better_than_noise(scores, broken):
    result = scores[broken]
    assert "silent (or constant)" in result["worst_case"]
    for metric in NEW:
        assert result[metric] == WORST[metric]
        for noise in ("white", "babble"):
            assert better_or_equal(metric, scores[noise][metric], result[metric]), (noise, metric)


# ---------------------------------------------------------------- the pool


def _session_threads(_: object) -> tuple[int, int]:
    options = dnsmos._session().get_session_options()
    return options.intra_op_num_threads, options.inter_op_num_threads


def test_one_single_threaded_dnsmos_session_per_process_not_per_clip(clean):
    dnsmos._session.cache_clear()
    pairs = [ScorePair(f"clip{i}", clean, clean[::-1]) for i in range(2)]
    score_pairs(pairs, 16000, workers=1, metrics=("dnsmos_ovrl",))  # serial: in this process
    info = dnsmos._session.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert _session_threads(None) == (1, 1)


def test_pool_scores_match_serial_and_workers_run_one_thread_each(clean):
    excerpt = clean[8000:48000]  # 2.5 s: one DNSMOS window
    pairs = [ScorePair("same", excerpt, excerpt), ScorePair("up", excerpt, shifted(excerpt, 9, 8))]
    serial = score_pairs(pairs, 16000, workers=1, metrics=NEW)
    with ScoringPool(2) as pool:
        parallel = score_pairs(pairs, 16000, pool=pool, metrics=NEW)
        assert set(pool.map(_session_threads, range(4))) == {(1, 1)}
    assert parallel == serial
