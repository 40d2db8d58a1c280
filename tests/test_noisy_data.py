"""Speech-enhancement data: the built-in noisy corpus, --noise recordings, paired layouts, formats."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pair_corpus import write_pair_corpus
from torchaudio.functional import resample

from harness.audio import corpus
from harness.audio.babble import TALKER_VARIANTS, TALKERS_CSV
from harness.audio.datasets import (
    DataError,
    SegmentBatches,
    load_utterances,
    open_corpus,
    read_header,
)
from harness.audio.noisy import (
    BABBLE_FOLDER,
    MANIFEST,
    NOISE_TYPES,
    TEST_SNRS_DB,
    TRAIN_SNRS_DB,
    coloured_noise,
    ensure_noisy_corpus,
    mains_hum,
    modulated_noise,
    white_noise,
)
from harness.audio.pairs import LENGTH_TOLERANCE_S, PairBatches, load_pair, open_pairs
from harness.runs.resolve import resolve_config
from harness.runs.trial import run_trial

N = 20  # clips in the test corpus: 18 train (every noise type 3 times), 2 test
SR = 16000


def write(path: Path, audio: np.ndarray, sr: int = SR, **kwargs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, **kwargs)
    return path


def tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(
        np.float32
    )


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2)))


def manifest(root: Path) -> list[dict[str, str]]:
    with open(root / MANIFEST, newline="") as handle:
        return list(csv.DictReader(handle))


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder that ``open_pairs(None)`` uses (through $GAN_HARNESS_CACHE)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_HARNESS_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def builtin(cache: Path) -> Path:
    return open_pairs(None, n_utterances=N).root


# --- the built-in noisy corpus -------------------------------------------------------------


def test_builtin_corpus_layout_manifest_and_pairs(builtin: Path) -> None:
    rows = manifest(builtin)
    assert len(rows) == N
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "test")}
    assert len(by_split["test"]) == 2
    assert {float(r["snr_db"]) for r in by_split["train"]} == set(TRAIN_SNRS_DB)
    assert {float(r["snr_db"]) for r in by_split["test"]} <= set(TEST_SNRS_DB)
    counts = [sum(r["noise"] == kind for r in by_split["train"]) for kind in NOISE_TYPES]
    assert counts == [3] * len(NOISE_TYPES)  # balanced
    for split, folders in (("train", "trainset"), ("test", "testset")):
        for row in by_split[split]:
            for side in ("clean", "noisy"):
                info = sf.info(builtin / f"{side}_{folders}_wav" / f"{row['id']}.wav")
                assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")

    paired = open_pairs(None, n_utterances=N)
    assert paired.layout == "voicebank" and paired.root == builtin
    train, valid = paired.split()
    assert [p.id for p in valid] == sorted(r["id"] for r in by_split["test"])
    labels = {r["id"]: (r["noise"], float(r["snr_db"])) for r in rows}
    assert all((p.noise, p.snr_db) == labels[p.id] for p in train + valid)


def test_clean_side_is_the_espeak_speech_resampled(builtin: Path, cache: Path) -> None:
    original = next(cache.glob("espeak-n20-*")) / "wavs" / "espeak-00001.wav"
    speech, rate = sf.read(original, dtype="float32")
    expected = resample(torch.from_numpy(speech), rate, SR).numpy()
    clean, _ = sf.read(builtin / "clean_trainset_wav" / "espeak-00001.wav", dtype="float32")
    assert len(clean) == len(expected)
    gain = float(np.dot(clean, expected) / np.dot(expected, expected))  # < 1 where the mix peaked
    assert 0.3 < gain <= 1.0
    assert np.abs(clean - gain * expected).max() < 2 / 32767


def test_mixture_snr_is_the_requested_one_for_every_noise_type(builtin: Path) -> None:
    seen = set()
    for row in manifest(builtin):
        folder = "trainset" if row["split"] == "train" else "testset"
        clean, _ = sf.read(builtin / f"clean_{folder}_wav" / f"{row['id']}.wav")
        noisy, _ = sf.read(builtin / f"noisy_{folder}_wav" / f"{row['id']}.wav")
        assert abs(snr_db(clean, noisy) - float(row["snr_db"])) < 0.1, row
        assert np.abs(noisy).max() <= corpus.PEAK + 1e-4
        seen.add(row["noise"])
    assert seen == set(NOISE_TYPES)


def test_babble_talkers_are_held_out_of_the_clean_speech(builtin: Path, cache: Path) -> None:
    assert not set(TALKER_VARIANTS) & set(corpus.MALE_VARIANTS + corpus.FEMALE_VARIANTS)
    with open(builtin / BABBLE_FOLDER / TALKERS_CSV, newline="") as handle:
        talkers = list(csv.DictReader(handle))
    assert [t["voice"].split("+")[1] for t in talkers] == list(TALKER_VARIANTS)
    clean_dir = next(cache.glob("espeak-n20-*"))
    clean_voices = {line.split("|")[1] for line in (clean_dir / "voices.csv").read_text().split()}
    assert not {t["voice"] for t in talkers} & clean_voices
    clean_texts = {line.split("|")[1] for line in (clean_dir / "metadata.csv").open()}
    assert not {s for t in talkers for s in t["text"].split(" / ")} & clean_texts


def test_same_seed_is_byte_identical_another_seed_differs(
    builtin: Path, cache: Path, tmp_path: Path
) -> None:
    clean_dir = next(cache.glob("espeak-n20-*"))
    shutil.copytree(clean_dir, tmp_path / clean_dir.name)  # reuse the clean speech, remix
    again = ensure_noisy_corpus(tmp_path, n_utterances=N, seed=0, progress=False)
    assert again.name == builtin.name
    assert tree_bytes(again) == tree_bytes(builtin)
    other = ensure_noisy_corpus(tmp_path, n_utterances=N, seed=1, progress=False)
    assert other.name != builtin.name
    ids = [r["id"] for r in manifest(builtin)]
    differ = [
        (other / f"noisy_{s}_wav" / f"{i}.wav").read_bytes()
        != (builtin / f"noisy_{s}_wav" / f"{i}.wav").read_bytes()
        for i in ids
        for s in ("trainset", "testset")
        if (builtin / f"noisy_{s}_wav" / f"{i}.wav").exists()
        and (other / f"noisy_{s}_wav" / f"{i}.wav").exists()
    ]
    assert differ and all(differ)
    assert not list(tmp_path.glob(".noisy-*.tmp-*"))


def test_second_call_reuses_the_corpus(builtin: Path) -> None:
    stamp = (builtin / MANIFEST).stat().st_mtime_ns
    assert open_pairs(None, n_utterances=N).root == builtin
    assert (builtin / MANIFEST).stat().st_mtime_ns == stamp


# --- the synthetic noises ------------------------------------------------------------------


def spectral_slope(noise: np.ndarray) -> float:
    """Slope of log10 power against log10 frequency over 100-4000 Hz (0 white, -1 pink)."""
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / SR)
    edges = np.geomspace(100, 4000, 12)
    centres = np.sqrt(edges[:-1] * edges[1:])
    bands = [
        power[(freqs >= lo) & (freqs < hi)].mean() for lo, hi in zip(edges, edges[1:], strict=False)
    ]
    return float(np.polyfit(np.log10(centres), np.log10(bands), 1)[0])


@pytest.mark.parametrize(
    ("make", "slope"),
    [
        (white_noise, 0.0),
        (lambda rng, n: coloured_noise(rng, n, exponent=1.0), -1.0),
        (lambda rng, n: coloured_noise(rng, n, exponent=2.0), -2.0),
    ],
)
def test_coloured_noises_have_their_spectral_slope(make, slope: float) -> None:  # noqa: ANN001
    noise, _ = make(np.random.default_rng(0), 2**17 + 123)
    assert len(noise) == 2**17 + 123
    assert abs(spectral_slope(noise) - slope) < 0.1


def test_hum_lies_on_mains_harmonics_and_am_noise_is_modulated() -> None:
    rng = np.random.default_rng(3)
    mains = set()
    for _ in range(6):
        hum, detail = mains_hum(rng, SR * 2 + 7)
        frequency = int(detail.split()[0])
        mains.add(frequency)
        power = np.abs(np.fft.rfft(hum[: SR * 2])) ** 2  # 0.5 Hz bins
        on_harmonics = power[:: 2 * frequency].sum()
        assert on_harmonics / power.sum() > 0.999
    assert mains == {50, 60}

    for seed in range(4):  # the carrier is the pink noise the same generator draws first
        am, detail = modulated_noise(np.random.default_rng(seed), SR * 4)
        carrier, _ = coloured_noise(np.random.default_rng(seed), SR * 4, exponent=1.0)
        rate, depth = float(detail.split()[0]), float(detail.split()[-1])
        envelope = am / carrier
        assert envelope.max() == pytest.approx(1 + depth, abs=0.01)
        assert envelope.min() == pytest.approx(1 - depth, abs=0.01)
        spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
        assert abs(np.argmax(spectrum) / 4 - rate) <= 0.25  # 0.25 Hz bins


# --- --noise: the user's recordings ------------------------------------------------------------


def test_recorded_noise_is_mixed_at_the_snr_tables(builtin: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    long = rng.standard_normal((5 * 48000, 2)).astype(np.float32) * 0.1  # 48 kHz stereo FLAC
    write(tmp_path / "noise" / "street.flac", long, sr=48000)
    short = rng.uniform(-0.3, 0.3, int(0.3 * SR)).astype(np.float32)  # loops under every clip
    write(tmp_path / "noise" / "short.wav", short, subtype="FLOAT")
    paired = open_pairs(None, noise=str(tmp_path / "noise"), n_utterances=N)
    assert paired.root != builtin and paired.root.name.startswith("noisy-recorded-")
    rows = manifest(paired.root)
    assert {r["noise"] for r in rows} == {"street.flac", "short.wav"}
    for pair in paired.train + paired.test:
        assert pair.noise in {"street.flac", "short.wav"}
        clean, noisy = (x.double().numpy() for x in load_pair(pair))
        assert abs(snr_db(clean, noisy) - pair.snr_db) < 0.1
        table = TRAIN_SNRS_DB if pair in paired.train else TEST_SNRS_DB
        assert pair.snr_db in table
    # the residual of a short-noise clip is that recording, looped from the manifest's offset
    row = next(r for r in rows if r["noise"] == "short.wav")
    pair = next(p for p in paired.train + paired.test if p.id == row["id"])
    clean, noisy = (x.double().numpy() for x in load_pair(pair))
    start = int(row["detail"].split()[-1])
    looped = np.take(short, np.arange(start, start + len(clean)), mode="wrap")
    assert np.corrcoef(noisy - clean, looped)[0, 1] > 0.999


def test_noise_folder_errors_name_the_folder_or_file(builtin: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="noise folder .*nowhere does not exist"):
        open_pairs(None, noise=str(tmp_path / "nowhere"), n_utterances=N)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files .* under .*empty"):
        open_pairs(None, noise=str(tmp_path / "empty"), n_utterances=N)
    write(tmp_path / "quiet" / "zeros.wav", np.zeros(SR, np.float32))
    with pytest.raises(DataError, match=r"zeros\.wav: silent") as info:
        open_pairs(None, noise=str(tmp_path / "quiet"), n_utterances=N)
    assert "\n" not in str(info.value)
    write(tmp_path / "pairs" / "clean" / "a.wav", tone(1.0))
    write(tmp_path / "pairs" / "noisy" / "a.wav", tone(1.0))
    with pytest.raises(DataError, match="cannot be used with --data"):
        open_pairs(str(tmp_path / "pairs"), noise=str(tmp_path / "quiet"))


# --- --data layouts ------------------------------------------------------------------------


def test_voicebank_layout_pairs_by_name_and_folds_48k_stereo(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = {"p226_001": 1.2, "p226_002": 1.5, "p287_010": 1.1}
    noisy_stereo = None
    for i, (name, seconds) in enumerate(clips.items()):
        speech = tone(seconds, 48000, freq=300 + 50 * i)
        write(tmp_path / "clean_trainset_28spk_wav" / f"{name}.wav", speech, sr=48000)
        noisy = speech[:, None] + 0.05 * rng.standard_normal((len(speech), 2)).astype(np.float32)
        write(tmp_path / "noisy_trainset_28spk_wav" / f"{name}.wav", noisy, 48000, subtype="FLOAT")
        noisy_stereo = noisy if name == "p226_002" else noisy_stereo
    for name in ("p232_001", "p257_003"):
        write(tmp_path / "clean_testset_wav" / f"{name}.wav", tone(1.3, 48000), sr=48000)
        write(tmp_path / "noisy_testset_wav" / f"{name}.wav", tone(1.3, 48000) * 1.1, sr=48000)

    paired = open_pairs(str(tmp_path), sample_rate=SR)
    assert paired.layout == "voicebank"
    assert [p.id for p in paired.train] == list(clips)
    assert [p.id for p in paired.test] == ["p232_001", "p257_003"]
    assert [p.length for p in paired.train] == [int(s * SR) for s in clips.values()]
    assert all(p.snr_db is None and p.noise is None for p in paired.train)

    stereo = next(p for p in paired.train if p.id == "p226_002")
    assert (stereo.noisy.channels, stereo.noisy.sample_rate) == (2, 48000)
    _, noisy = load_pair(stereo)
    folded = torch.from_numpy(noisy_stereo.mean(axis=1))
    torch.testing.assert_close(noisy, resample(folded, 48000, SR), atol=1e-5, rtol=0)

    train, valid = paired.split(n_valid=1, seed=0)
    assert train == paired.train and len(valid) == 1 and valid[0] in paired.test
    assert paired.split(seed=0)[1] == paired.test


def test_clean_noisy_layout_crops_small_length_differences(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path / "clean" / "spk1" / f"u{i}.flac", tone(1.2 + 0.1 * i))
        trimmed = tone(1.2 + 0.1 * i)[: -int(0.02 * SR)]  # 20 ms short: within tolerance
        write(tmp_path / "noisy" / "spk1" / f"u{i}.wav", trimmed)
    paired = open_pairs(str(tmp_path))
    assert paired.layout == "pairs" and paired.test == []
    assert [p.id for p in paired.train] == [f"spk1/u{i}" for i in range(5)]
    for pair in paired.train:
        clean, noisy = load_pair(pair)
        assert pair.length == pair.noisy.frames == len(clean) == len(noisy)
    train, valid = paired.split(n_valid=2, seed=3)
    assert len(valid) == 2 and len(train) == 3 and not set(train) & set(valid)
    assert paired.split(n_valid=2, seed=3) == (train, valid)
    with pytest.raises(DataError, match="has no test set"):
        paired.split()


def one_line_error(path: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        open_pairs(path)
    assert "\n" not in str(info.value)


def test_bad_pair_folders_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "d"
    one_line_error(str(root), "data folder .*d does not exist")
    write(root / "readme.wav", tone(0.5))
    one_line_error(str(root), "neither clean/ \\+ noisy/ nor the VoiceBank-DEMAND layout")
    (root / "clean").mkdir()
    (root / "noisy").mkdir()
    one_line_error(str(root), r"no audio files .* in .*d/clean$")
    write(root / "clean" / "a.wav", tone(1.0))
    write(root / "clean" / "b.wav", tone(1.0))
    write(root / "noisy" / "a.wav", tone(1.0))
    one_line_error(str(root), r"clean/b\.wav: no noisy partner b\.\* in .*d/noisy$")
    write(root / "noisy" / "b.wav", tone(1.0))
    write(root / "noisy" / "c.wav", tone(1.0))
    one_line_error(str(root), r"noisy/c\.wav: no clean partner c\.\* in .*d/clean$")
    (root / "noisy" / "c.wav").unlink()
    write(root / "noisy" / "b.wav", tone(1.0 + 2 * LENGTH_TOLERANCE_S))
    one_line_error(
        str(root), r"noisy/b\.wav: 17600 samples but its clean partner .*b\.wav has 16000"
    )
    (root / "noisy" / "b.wav").write_bytes(np.random.default_rng(0).bytes(2048))
    one_line_error(str(root), r"noisy/b\.wav: unreadable audio")
    write(root / "noisy" / "b.flac", tone(1.0))
    (root / "noisy" / "b.wav").unlink()
    write(root / "clean" / "b.flac", tone(1.0))
    one_line_error(str(root), r"clean/b\.wav: same name as .*clean/b\.flac")

    vb = tmp_path / "vb"
    write(vb / "clean_trainset_wav" / "p1.wav", tone(1.0))
    one_line_error(str(vb), r"folder .*vb/noisy_trainset_wav is missing")


# --- formats, for the vocoder corpus and the pair path ------------------------------------------

FORMATS = [
    pytest.param("flac", 22050, 1, {"format": "FLAC"}, 1e-4, id="flac"),
    pytest.param("ogg", 22050, 1, {"format": "OGG", "subtype": "VORBIS"}, None, id="ogg"),
    pytest.param("wav", 48000, 2, {"subtype": "FLOAT"}, 1e-5, id="wav-48k-stereo"),
    pytest.param(
        "mp3",
        44100,
        1,
        {"format": "MP3", "subtype": "MPEG_LAYER_III"},
        None,
        id="mp3",
        marks=pytest.mark.skipif(
            "MP3" not in sf.available_formats(), reason="libsndfile built without MP3"
        ),
    ),
]


def signal(seconds: float, sr: int, channels: int, freq: float) -> np.ndarray:
    mono = tone(seconds, sr, freq)
    return mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)


def expected_at(audio: np.ndarray, sr: int, target: int) -> torch.Tensor:
    mono = torch.from_numpy(audio if audio.ndim == 1 else audio.mean(axis=1))
    return resample(mono, sr, target) if sr != target else mono


def assert_decodes_to(got: torch.Tensor, want: torch.Tensor, exact_tol: float | None) -> None:
    assert got.shape == want.shape
    if exact_tol is not None:
        torch.testing.assert_close(got, want, atol=exact_tol, rtol=0)
    else:  # lossy codecs: aligned and close (no delay, no gain change)
        residual = float(((got - want) ** 2).sum() / (want**2).sum())
        assert residual < 0.01


@pytest.mark.parametrize(("ext", "sr", "channels", "kwargs", "tol"), FORMATS)
def test_every_format_reads_through_the_vocoder_and_pair_paths(
    tmp_path: Path, ext: str, sr: int, channels: int, kwargs: dict[str, str], tol: float | None
) -> None:
    clips = {f"c{i}": signal(1.0 + 0.25 * i, sr, channels, 300.0 + 100 * i) for i in range(3)}
    for name, audio in clips.items():
        write(tmp_path / "corpus" / f"{name}.{ext}", audio, sr, **kwargs)
        write(tmp_path / "pairs" / "clean" / f"{name}.{ext}", audio, sr, **kwargs)
        write(tmp_path / "pairs" / "noisy" / f"{name}.{ext}", 0.5 * audio, sr, **kwargs)

    vocoder = open_corpus(tmp_path / "corpus", 22050)
    assert [f.path.name for f in vocoder.files] == [f"{n}.{ext}" for n in clips]
    for got, audio in zip(load_utterances(vocoder.files, 22050), clips.values(), strict=True):
        assert_decodes_to(got, expected_at(audio, sr, 22050), tol)
    segment = SegmentBatches(vocoder.files, 4096, 2, seed=0, sample_rate=22050).batch(1)[0]
    assert segment.shape == (2, 4096) and segment.abs().sum(dim=1).min() > 0

    paired = open_pairs(str(tmp_path / "pairs"), sample_rate=SR)
    for pair, audio in zip(paired.train, clips.values(), strict=True):
        clean, noisy = load_pair(pair)
        assert_decodes_to(clean, expected_at(audio, sr, SR), tol)
        assert_decodes_to(noisy, expected_at(0.5 * audio, sr, SR), tol)
    clean, noisy = PairBatches(paired.train, 2, 8000, seed=0).batch(0)
    assert_decodes_to(noisy, 0.5 * clean, tol)


@pytest.mark.parametrize(
    ("ext", "sr", "channels", "kwargs", "tol"), [p for p in FORMATS if p.id != "mp3"]
)
def test_a_vocoder_and_an_enhancer_train_on_every_format(
    tmp_path: Path, ext: str, sr: int, channels: int, kwargs: dict[str, str], tol: float | None
) -> None:
    """FLAC, OGG/Vorbis and 48 kHz stereo WAV corpora: a few steps of HiFi-GAN on the clean
    side and of SEGAN on the pairs, validated and checkpointed like any other run."""
    root = write_pair_corpus(
        tmp_path / "pairs", pairs=4, sample_rate=sr, ext=ext, channels=channels, **kwargs
    )
    tiny = {"batch_size": 2, "batches": 2, "eval_every": 2, "n_valid": 2, "score_workers": 1}
    runs = {
        "hifigan": resolve_config(
            "hifigan",
            "smoke",
            overrides={**tiny, "generator": "tiny", "segment_size": 1024, "eval_metrics": "[stoi]"},
            data=str(root / "clean"),
        ),
        "segan": resolve_config(
            "segan",
            "smoke",
            overrides={**tiny, "width": 1 / 16, "segment_size": 4096},
            data=str(root),
        ),
    }
    for name, cfg in runs.items():
        result = run_trial(cfg, tmp_path / name)
        assert result.status == "completed" and result.step == 2, (name, result.reason)
        assert result.checkpoint is not None and result.checkpoint.is_file()
        assert result.last_eval["n_valid"] == 2 and np.isfinite(result.last_eval["stoi"]), name


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile built without MP3")
def test_truncated_file_is_named_when_opened_and_when_read(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.mp3", tone(2.0), format="MP3", subtype="MPEG_LAYER_III")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the header still says 2 s
    with pytest.raises(DataError, match=r"cut\.mp3: decoded \d+ of the 32000 frames"):
        open_corpus(tmp_path, SR)  # the scan when the corpus is opened
    files = [read_header(path)]
    with pytest.raises(DataError, match=r"cut\.mp3: decoded \d+ of the 32000 frames") as info:
        load_utterances(files, SR)
    assert "\n" not in str(info.value)


def test_ljspeech_layout_finds_flac_clips(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("LJ001|One.|One.\nLJ002|Two.|Two.\n")
    write(tmp_path / "wavs" / "LJ001.flac", tone(1.0, 22050), sr=22050)
    write(tmp_path / "wavs" / "LJ002.wav", tone(1.0, 22050), sr=22050)
    found = open_corpus(tmp_path, 22050)
    assert found.layout == "ljspeech"
    assert [f.path.name for f in found.files] == ["LJ001.flac", "LJ002.wav"]


# --- training batches ------------------------------------------------------------------------


def test_pair_batches_crop_both_sides_alike_and_are_pure(tmp_path: Path) -> None:
    for i, seconds in enumerate((0.3, 0.9, 1.4, 2.0, 0.6)):  # 0.3 s is shorter than a segment
        ramp = (np.arange(int(seconds * SR)) + 1) / SR / 4
        write(tmp_path / "clean" / f"k{i}.wav", ramp.astype(np.float32), subtype="FLOAT")
        write(tmp_path / "noisy" / f"k{i}.wav", (2 * ramp).astype(np.float32), subtype="FLOAT")
    pairs = open_pairs(str(tmp_path)).train
    source = PairBatches(pairs, batch_size=2, segment=SR // 2, seed=4)
    assert source.batches_per_epoch == 2
    starts = set()
    for index in range(6):
        clean, noisy = source.batch(index)
        assert clean.shape == noisy.shape == (2, SR // 2)
        assert torch.equal(noisy, 2 * clean)  # the same stretch of both
        for row in clean:
            used = row[row > 0]
            assert torch.all(row[: used.numel()] > 0)  # padding only at the end
            starts.add(round(float(used[0]) * 4 * SR))
        fresh = PairBatches(pairs, batch_size=2, segment=SR // 2, seed=4).batch(index)
        assert all(torch.equal(a, b) for a, b in zip(fresh, (clean, noisy), strict=True))
    assert len(starts) > 3  # crops land at different offsets
    other = PairBatches(pairs, batch_size=2, segment=SR // 2, seed=5)
    assert any(not torch.equal(other.batch(i)[0], source.batch(i)[0]) for i in range(4))


# --- run.py train --noise ----------------------------------------------------------------------


def test_train_noise_flag_is_refused_where_it_cannot_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    (tmp_path / "noise").mkdir()
    out = tmp_path / "out"
    assert main(["train", "hifigan", "--noise", str(tmp_path / "noise"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "error: --noise: recipe 'hifigan' takes no noise recordings\n"
    assert not out.exists()
