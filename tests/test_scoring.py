"""Speech scores: the PESQ anchor, every pitfall rule, aggregation, the pool and `run.py score`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from harness.commands import score as score_command
from harness.scoring.checks import ScoringError, as_mono
from harness.scoring.pairs import ScorePair, score_pairs
from harness.scoring.pool import ScoringPool
from harness.scoring.speech import SI_SNR_CEILING, SI_SNR_FLOOR, resample, si_snr
from harness.scoring.utterance import WORST, score_pair

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pesq-reference"
needs_reference = pytest.mark.skipif(
    not REFERENCE_DIR.is_dir(), reason=f"shared PESQ reference pair not found at {REFERENCE_DIR}"
)
FAST = ("pesq", "si_snr")  # the cheap subset for tests about rules rather than values
# the intrusive signal metrics; DNSMOS and pitch have their own tests (test_objective_metrics.py)
CLASSIC = ("pesq", "stoi", "estoi", "si_snr", "mel_l1", "mrstft")


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, np.ndarray]:
    """The reference utterance and its 0 dB babble-noise version, 16 kHz float64."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"shared PESQ reference pair not found at {REFERENCE_DIR}")
    clean, _ = sf.read(REFERENCE_DIR / "speech.wav")
    noisy, _ = sf.read(REFERENCE_DIR / "speech_bab_0dB.wav")
    return clean, noisy


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """A stand-in log-magnitude feature ([1, T] -> [1, F, frames]) for the mel L1 tests."""
    window = torch.hann_window(256)
    return torch.stft(x, 256, 64, window=window, return_complex=True).abs().clamp(1e-5).log()


# ---------------------------------------------------------------- correctness anchors


@needs_reference
def test_pesq_matches_the_published_reference_scores(speech):
    clean, noisy = speech
    wb = score_pair(clean, noisy, 16000, metrics=("pesq",))["pesq"]
    nb = score_pair(clean, noisy, 16000, mode="nb", metrics=("pesq",))["pesq"]
    assert wb == pytest.approx(1.0832337, abs=1e-5)
    assert nb == pytest.approx(1.6072081, abs=1e-5)


@needs_reference
def test_int16_input_is_scaled_like_float():
    clean, _ = sf.read(REFERENCE_DIR / "speech.wav", dtype="int16")
    noisy, _ = sf.read(REFERENCE_DIR / "speech_bab_0dB.wav", dtype="int16")
    assert as_mono(np.array([-32768, 16384], dtype=np.int16)).tolist() == [-1.0, 0.5]
    scores = score_pair(clean, noisy, 16000, metrics=("pesq", "si_snr"))
    assert scores["pesq"] == pytest.approx(1.0832337, abs=1e-5)
    float_scores = score_pair(clean / 32768, noisy / 32768, 16000, metrics=("si_snr",))
    assert scores["si_snr"] == pytest.approx(float_scores["si_snr"], abs=1e-9)


def test_a_signal_against_itself_scores_best(speech):
    clean, _ = speech
    scores = score_pair(clean, clean, 16000, metrics=CLASSIC)
    assert scores["pesq"] == pytest.approx(4.64, abs=0.01)
    assert scores["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["si_snr"] > 60
    assert scores["mel_l1"] == 0.0 and scores["mrstft"] == 0.0
    assert scores["skipped"] is None and scores["worst_case"] is None


def test_noise_scores_worse_than_clean_on_every_metric(speech):
    clean, noisy = speech
    good = score_pair(clean, clean + 0.1 * (noisy - clean), 16000, metrics=CLASSIC)
    bad = score_pair(clean, noisy, 16000, metrics=CLASSIC)
    for higher_is_better in ("pesq", "stoi", "estoi", "si_snr"):
        assert good[higher_is_better] > bad[higher_is_better]
    for distance in ("mel_l1", "mrstft"):
        assert 0 < good[distance] < bad[distance]


def test_other_rates_are_resampled_to_16k_for_pesq(speech):
    clean, noisy = speech
    at_22k = score_pair(
        resample(clean, 16000, 22050), resample(noisy, 16000, 22050), 22050, metrics=("pesq",)
    )
    assert at_22k["pesq"] == pytest.approx(1.0832337, abs=0.05)
    at_8k = [resample(x, 16000, 8000) for x in (clean, noisy)]
    nb_8k = score_pair(*at_8k, 8000, mode="nb", metrics=("pesq",))["pesq"]
    wb_8k = score_pair(*at_8k, 8000, mode="wb", metrics=("pesq",))["pesq"]  # upsampled to 16k
    assert 1.0 < nb_8k < 4.6 and 1.0 < wb_8k < 4.6


def test_si_snr_is_scale_invariant_and_matches_a_constructed_snr():
    rng = np.random.default_rng(0)
    ref, noise = rng.standard_normal((2, 16000))
    ref, noise = ref - ref.mean(), noise - noise.mean()  # SI-SNR removes the mean first
    noise -= noise @ ref / (ref @ ref) * ref  # orthogonal to the reference
    noise *= np.sqrt((ref @ ref) / (noise @ noise) / 10)  # 10 dB below it
    assert si_snr(ref, ref + noise) == pytest.approx(10.0, abs=1e-6)
    assert si_snr(ref, 3.0 * (ref + noise)) == pytest.approx(10.0, abs=1e-6)
    assert si_snr(ref, ref + 0.7) == SI_SNR_CEILING  # zero-mean: a DC offset costs nothing
    assert si_snr(ref, rng.standard_normal(16000) * 1e-3 + 1e-6 * ref) >= SI_SNR_FLOOR
    assert math.isnan(si_snr(np.full(100, 0.3), rng.standard_normal(100))), "nothing to match"


def test_a_quiet_or_constant_estimate_never_beats_a_loud_wrong_one(speech):
    clean, _ = speech
    rng = np.random.default_rng(1)
    white = rng.uniform(-1.0, 1.0, clean.size)  # full-scale white noise
    unrelated = clean[::-1] / np.abs(clean).max()  # full-scale speech, not the reference's
    assert si_snr(clean, unrelated) == pytest.approx(-23.26, abs=0.01)  # above the floor
    for loud_wrong in (white, unrelated):
        loud = si_snr(clean, loud_wrong)
        assert si_snr(clean, 1e-4 * loud_wrong) == pytest.approx(loud, abs=1e-9)  # no eps bonus
        assert si_snr(clean, 3.0 * loud_wrong) == pytest.approx(loud, abs=1e-9)
        assert si_snr(clean, np.full(clean.size, 0.5)) == SI_SNR_FLOOR <= loud
    # through score_pair a constant estimate is a collapsed one: worst case on every metric
    constant = score_pair(clean, np.full(clean.size, 0.5), 16000, metrics=FAST)
    assert "constant" in constant["worst_case"]
    assert (constant["pesq"], constant["si_snr"]) == (WORST["pesq"], SI_SNR_FLOOR)


def test_mel_l1_uses_the_given_feature_and_defaults_to_hifigan_mel(speech):
    clean, noisy = speech
    scores = score_pair(clean, noisy, 16000, metrics=("mel_l1",), mel_fn=log_spectrum)
    by_hand = (
        (
            log_spectrum(torch.tensor(clean).float()[None])
            - log_spectrum(torch.tensor(noisy).float()[None])
        )
        .abs()
        .mean()
    )
    assert scores["mel_l1"] == pytest.approx(float(by_hand), rel=1e-6)
    default = score_pair(clean, noisy, 16000, metrics=("mel_l1",))["mel_l1"]
    assert default > 0 and default != pytest.approx(scores["mel_l1"])


# ---------------------------------------------------------------- pitfalls


def test_lengths_differ_both_are_cropped_to_the_shorter(speech):
    clean, noisy = speech
    longer = np.concatenate([noisy, np.ones(4000)])
    assert score_pair(clean, longer, 16000, metrics=FAST) == score_pair(
        clean, noisy, 16000, metrics=FAST
    )
    assert score_pair(clean[:-100], noisy, 16000, metrics=FAST) == score_pair(
        clean[:-100], noisy[:-100], 16000, metrics=FAST
    )


def test_silent_short_or_broken_references_are_skipped_with_a_reason(speech):
    clean, noisy = speech
    cases = [
        ("reference is silent", np.zeros_like(clean)),
        ("reference is silent", np.full_like(clean, 0.25)),  # constant: no signal either
        ("too short", clean[: int(0.2 * 16000)]),
        ("reference has NaN", np.where(np.arange(clean.size) == 500, np.nan, clean)),
    ]
    for reason, ref in cases:
        result = score_pair(ref, noisy, 16000)
        assert reason in result["skipped"]
        assert not set(result) - {"skipped", "worst_case"}, "a skipped pair carries no scores"
    # PESQ needs 0.25 s, STOI 0.4 s: the limit follows the metrics asked for
    ref, est = clean[16000:20800], noisy[16000:20800]  # 0.3 s of speech
    assert score_pair(ref, est, 16000, metrics=("pesq",))["skipped"] is None
    assert "too short" in score_pair(ref, est, 16000, metrics=("stoi",))["skipped"]


def test_pesq_errors_on_a_valid_looking_pair_skip_it_with_the_reason(speech):
    clean, noisy = speech
    blip = np.zeros_like(clean)
    blip[20000:20300] = clean[20000:20300]  # audible, but too short to be an utterance
    result = score_pair(blip, noisy, 16000, metrics=("pesq",))
    assert result["skipped"].startswith("pesq: NoUtterancesError")


def test_stoi_with_too_few_active_frames_is_skipped_not_scored_1e5(speech):
    clean, noisy = speech
    blip = np.zeros_like(clean)
    blip[20000:22000] = clean[20000:22000]  # 0.125 s of speech in 3 s of silence
    result = score_pair(blip, noisy, 16000, metrics=("stoi",))
    assert "fewer than 30 active frames" in result["skipped"]


@pytest.mark.parametrize(
    "broken, reason",
    [("zeros", "silent"), ("nan", "NaN or inf"), ("inf", "NaN or inf")],
)
def test_a_silent_or_diverged_estimate_gets_worst_case_scores(speech, broken, reason):
    clean, noisy = speech
    estimate = np.zeros_like(clean) if broken == "zeros" else noisy.copy()
    estimate[1000] = {"zeros": 0.0, "nan": np.nan, "inf": np.inf}[broken]  # one bad sample will do
    worst = score_pair(clean, estimate, 16000, mel_fn=log_spectrum)
    noisy_scores = score_pair(
        clean, noisy, 16000, mel_fn=log_spectrum, metrics=("mel_l1", "mrstft")
    )
    assert worst["skipped"] is None and reason in worst["worst_case"]
    assert (worst["pesq"], worst["stoi"], worst["estoi"]) == (1.0, 0.0, 0.0)
    assert worst["si_snr"] == SI_SNR_FLOOR
    assert {m: worst[m] for m in WORST} == WORST
    for metric in ("mel_l1", "mrstft"):
        assert math.isfinite(worst[metric]) and worst[metric] > noisy_scores[metric]


def test_stereo_frames_by_channels_is_folded_to_mono(speech):
    clean, noisy = speech
    stereo = np.stack([noisy, noisy], axis=1)  # soundfile's [frames, channels]
    assert score_pair(clean, stereo, 16000, metrics=FAST) == score_pair(
        clean, noisy, 16000, metrics=FAST
    )
    assert as_mono(noisy[None]).shape == noisy.shape  # [1, frames] too
    with pytest.raises(ScoringError, match=r"estimate: expected 1-D or \[frames, channels\]"):
        score_pair(clean, stereo.T, 16000)


def test_settings_no_pair_could_use_are_rejected_with_one_line():
    x = np.ones(8000)
    for kwargs, message in [
        ({"sample_rate": 4000}, "sample rate 4000 Hz is below 8000 Hz"),
        ({"sample_rate": 16000, "mode": "xb"}, "mode 'xb'"),
        ({"sample_rate": 16000, "metrics": ("pesq", "sdr")}, "choose from"),
    ]:
        with pytest.raises(ScoringError, match=message) as info:
            score_pair(x, x, **kwargs)
        assert "\n" not in str(info.value)


def test_noisy_input_is_scored_under_noisy_keys(speech):
    clean, noisy = speech
    enhanced = clean + 0.1 * (noisy - clean)
    result = score_pair(clean, enhanced, 16000, metrics=FAST, noisy=noisy)
    alone = score_pair(clean, noisy, 16000, metrics=FAST)
    assert result["noisy_pesq"] == alone["pesq"] and result["noisy_si_snr"] == alone["si_snr"]
    assert result["pesq"] > result["noisy_pesq"]


# ---------------------------------------------------------------- aggregation and the pool


def _mixed_pairs(clean: np.ndarray, noisy: np.ndarray) -> list[ScorePair]:
    return [
        ScorePair("good", clean, clean),
        ScorePair("noisy", clean, noisy),
        ScorePair("collapsed", clean, np.zeros_like(clean)),
        ScorePair("silent-ref", np.zeros_like(clean), noisy),
        ScorePair("short", clean[:1000], noisy[:1000]),
    ]


def test_report_counts_skips_and_averages_only_scored_pairs(speech):
    clean, noisy = speech
    report = score_pairs(_mixed_pairs(clean, noisy), 16000, workers=1, metrics=FAST)
    assert [item["id"] for item in report.per_item] == [
        "good",
        "noisy",
        "collapsed",
        "silent-ref",
        "short",
    ]
    assert (report.n_valid, report.n_skipped) == (3, 2)
    scored = report.per_item[:3]
    assert report.mean["pesq"] == pytest.approx(np.mean([i["pesq"] for i in scored]))
    assert report.per_item[2]["pesq"] == 1.0, "a collapsed estimate is averaged in at its worst"
    assert report.per_item[3]["skipped"] == "reference is silent"

    none_scored = score_pairs(_mixed_pairs(clean, noisy)[3:], 16000, workers=1, metrics=FAST)
    assert (none_scored.n_valid, none_scored.n_skipped) == (0, 2)
    assert list(none_scored.mean) == ["pesq", "si_snr"]
    assert all(math.isnan(v) for v in none_scored.mean.values()), "no score, not a sentinel"


def _worker_settings(_: object) -> tuple[int, str | None]:
    return torch.get_num_threads(), os.environ.get("OPENBLAS_NUM_THREADS")


def test_pool_matches_serial_and_survives_between_calls(speech):
    clean, noisy = speech
    pairs = _mixed_pairs(clean, noisy)
    serial = score_pairs(pairs, 16000, workers=1, metrics=("pesq", "stoi", "si_snr"))
    parallel = score_pairs(pairs, 16000, workers=2, metrics=("pesq", "stoi", "si_snr"))
    assert parallel == serial
    blas_before = os.environ.get("OPENBLAS_NUM_THREADS")
    with ScoringPool(2) as pool:
        assert set(pool.map(_worker_settings, range(4))) == {(1, "1")}
        first = score_pairs(pairs[:2], 16000, pool=pool, metrics=FAST)
        again = score_pairs(pairs[:2], 16000, pool=pool, metrics=FAST)
    assert first == again and first.n_valid == 2
    assert os.environ.get("OPENBLAS_NUM_THREADS") == blas_before, "parent environment restored"


def test_a_bad_pair_in_a_batch_is_named(speech):
    clean, _ = speech
    with pytest.raises(ScoringError, match="^wide: estimate: expected 1-D"):
        score_pairs([("wide", clean, np.ones((2, clean.size)))], 16000, workers=1)


# ---------------------------------------------------------------- run.py score


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="run.py")
    score_command.add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(["score", *map(str, argv)])
    return args.func(args)


@pytest.fixture
def folders(tmp_path, speech) -> tuple[Path, Path]:
    """ref/ and est/ with two good pairs (one nested), a missing partner and a corrupt file."""
    clean, noisy = speech
    ref, est = tmp_path / "ref", tmp_path / "est"
    for folder in (ref / "sub", est / "sub"):
        folder.mkdir(parents=True)
    sf.write(ref / "a.wav", clean, 16000)
    sf.write(est / "a.wav", noisy, 16000)
    sf.write(ref / "sub" / "b.wav", clean, 16000)
    sf.write(est / "sub" / "b.wav", clean, 16000, subtype="PCM_16")
    sf.write(ref / "lonely.wav", clean, 16000)
    sf.write(ref / "broken.wav", clean, 16000)
    (est / "broken.wav").write_bytes(b"RIFF\x00\x00not a wav")
    return ref, est


def test_cli_scores_matched_files_and_lists_the_rest(folders, capsys):
    ref, est = folders
    assert run_cli(ref, est, "--workers", "1", "--metrics", "pesq,si_snr") == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["file", "pesq_wb", "si_snr", "note"]
    assert lines[2].split()[:2] == ["a.wav", "1.0832"]
    assert lines[3].split()[0] == "sub/b.wav"
    assert lines[-1].split()[0] == "mean" and lines[-1].endswith("n_valid=2 n_skipped=0")
    assert len({len(line.rstrip()) for line in lines[2:4]}) == 1, "rows are aligned"
    problems = err.splitlines()
    assert len(problems) == 2
    assert any("lonely.wav: no partner in" in p for p in problems)
    assert any("broken.wav: unreadable" in p for p in problems)


def test_cli_csv_and_json_parse_and_agree(folders, capsys):
    ref, est = folders
    run_cli(ref, est, "--workers", "1", "--metrics", "pesq,stoi", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["file"], r["status"]) for r in rows] == [
        ("a.wav", "ok"),
        ("sub/b.wav", "ok"),
        ("", "mean"),
    ]
    assert float(rows[0]["pesq_wb"]) == pytest.approx(1.0832337, abs=1e-5)

    run_cli(ref, est, "--workers", "1", "--metrics", "pesq,stoi", "--format", "json")
    doc = json.loads(capsys.readouterr().out)
    assert (doc["mode"], doc["n_valid"], doc["n_skipped"]) == ("wb", 2, 0)
    assert [item["id"] for item in doc["items"]] == ["a.wav", "sub/b.wav"]
    assert doc["mean"]["pesq"] == pytest.approx(float(rows[2]["pesq_wb"]))


def test_cli_two_files_skipped_pairs_and_bad_arguments(tmp_path, speech, capsys):
    clean, noisy = speech
    for name, audio, rate in [
        ("ref.wav", clean, 16000),
        ("est.wav", noisy, 16000),
        ("silent.wav", np.zeros_like(clean), 16000),
        ("est22k.wav", noisy, 22050),
        ("low.wav", clean[::4], 4000),
    ]:
        sf.write(tmp_path / name, audio, rate)
    assert run_cli(tmp_path / "ref.wav", tmp_path / "est.wav", "--metrics", "pesq") == 0
    assert "1.0832" in capsys.readouterr().out

    run_cli(tmp_path / "silent.wav", tmp_path / "est.wav", "--metrics", "pesq", "--format", "json")
    doc = json.loads(capsys.readouterr().out)
    assert (doc["n_valid"], doc["n_skipped"], doc["mean"]["pesq"]) == (0, 1, None)
    assert doc["items"][0]["skipped"] == "reference is silent"

    assert run_cli(tmp_path / "ref.wav", tmp_path / "est22k.wav") == 1
    assert "22050 Hz but its reference is 16000 Hz" in capsys.readouterr().err
    assert run_cli(tmp_path / "low.wav", tmp_path / "low.wav") == 1
    assert "low.wav: sample rate 4000 Hz is below 8000 Hz" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli(tmp_path / "empty", tmp_path / "empty") == 1
    assert f"error: no WAV files under {tmp_path / 'empty'}" in capsys.readouterr().err
    assert run_cli(tmp_path / "ref.wav", tmp_path) == 2
    assert "expected two WAV files or two folders" in capsys.readouterr().err
    assert run_cli(tmp_path / "ref.wav", tmp_path / "est.wav", "--metrics", "pesq,sdr") == 2
    assert "choose from" in capsys.readouterr().err


# ---------------------------------------------------------------- short estimates


def test_an_estimate_too_short_to_score_gets_worst_case_scores_not_a_skip(speech):
    """Cropping the reference to a 1-sample estimate would skip the pair as "too short" and
    leave a broken generator's output out of the mean, raising it."""
    clean, noisy = speech
    for estimate in (noisy[:1], noisy[:3000]):  # 1 sample; 0.19 s, below STOI's 0.4 s
        result = score_pair(clean, estimate, 16000, metrics=("pesq", "stoi", "si_snr"))
        assert result["skipped"] is None
        assert result["worst_case"].startswith("estimate is too short: ")
        assert (result["pesq"], result["stoi"], result["si_snr"]) == (1.0, 0.0, SI_SNR_FLOOR)
    # long enough, but it covers only the silence before the speech
    late = np.concatenate([np.zeros(16000), clean])
    result = score_pair(late, noisy[:12000], 16000, metrics=FAST)
    assert "the part it covers: reference is silent" in result["worst_case"]
    # a slightly short estimate is still scored on the common part
    assert score_pair(clean, noisy[:-100], 16000, metrics=FAST)["worst_case"] is None
    # and a reference too short for the metrics is the reference's fault: skipped
    assert "too short" in score_pair(clean[:3000], noisy, 16000, metrics=("stoi",))["skipped"]


def test_cli_counts_a_short_estimate_at_worst_case_and_names_its_file(tmp_path, speech, capsys):
    clean, noisy = speech
    (tmp_path / "ref").mkdir()
    (tmp_path / "est").mkdir()
    for name in ("a", "b"):
        sf.write(tmp_path / "ref" / f"{name}.wav", clean, 16000)
        sf.write(tmp_path / "est" / f"{name}.wav", noisy, 16000)
    args = ("--workers", "1", "--metrics", "pesq,si_snr", "--format", "json")
    assert run_cli(tmp_path / "ref", tmp_path / "est", *args) == 0
    whole = json.loads(capsys.readouterr().out)["mean"]["pesq"]
    sf.write(tmp_path / "est" / "b.wav", noisy[:1], 16000)
    assert run_cli(tmp_path / "ref", tmp_path / "est", *args) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert (doc["n_valid"], doc["n_skipped"]) == (2, 0)
    assert doc["mean"]["pesq"] == pytest.approx((whole + 1.0) / 2), "the broken one counts"
    assert captured.err.splitlines() == [
        f"note: {tmp_path / 'est' / 'b.wav'}: worst-case scores: estimate is too short: "
        "0.000 s of its reference's 3.100 s (the part it covers: too short: 0.000 s < 0.250 s)"
    ]
    # one pair: the estimate is named, not the reference
    assert run_cli(tmp_path / "ref" / "b.wav", tmp_path / "est" / "b.wav", *args) == 0
    assert capsys.readouterr().err.startswith(f"note: {tmp_path / 'est' / 'b.wav'}: worst-case")


def test_cli_reads_names_that_are_not_utf8_and_follows_linked_folders(tmp_path, speech, capsys):
    clean, noisy = speech
    for side, audio in (("ref", clean), ("est", noisy)):
        folder = os.fsencode(tmp_path / "store" / side)
        os.makedirs(folder)
        sf.write(folder + b"/caf\xe9.wav", audio, 16000)
        (tmp_path / side).symlink_to(tmp_path / "store" / side, target_is_directory=True)
    args = ("--workers", "1", "--metrics", "si_snr", "--format", "csv")
    assert run_cli(tmp_path / "ref", tmp_path / "est", *args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["file"], r["status"]) for r in rows] == [("caf\\xe9.wav", "ok"), ("", "mean")]
