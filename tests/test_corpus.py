"""The built-in espeak-ng corpus: layout, determinism, variety, caching and concurrency."""

import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.audio.corpus import (
    GAIN,
    KEEP_SILENCE_S,
    PEAK,
    SAMPLE_RATE,
    SECONDS,
    CorpusError,
    check_voices,
    corpus_name,
    default_cache_dir,
    ensure_corpus,
)
from harness.audio.sentences import make_sentence

N = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_corpus(tmp_path_factory.mktemp("cache"), n_utterances=N, seed=0, progress=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _rows(path: Path) -> list[list[str]]:
    return [line.split("|") for line in path.read_text(encoding="utf-8").splitlines()]


def _median_f0(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Median autocorrelation pitch (60-400 Hz) over loud, clearly periodic 40 ms frames."""
    n, f0s = int(0.04 * sr), []
    for start in range(0, len(x) - n, n // 2):
        frame = x[start : start + n] - x[start : start + n].mean()
        if np.sqrt(np.mean(frame**2)) < 0.1 * np.abs(x).max():
            continue
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lag = sr // 400 + int(np.argmax(ac[sr // 400 : sr // 60]))
        if ac[lag] > 0.5 * ac[0]:
            f0s.append(sr / lag)
    return float(np.median(f0s))


def test_layout_is_ljspeech_with_trimmed_normalised_clips(corpus: Path) -> None:
    rows = _rows(corpus / "metadata.csv")
    wavs = sorted((corpus / "wavs").glob("*.wav"))
    assert len(rows) == len(wavs) == N
    assert [r[0] for r in rows] == [w.stem for w in wavs]
    keep = int(KEEP_SILENCE_S * SAMPLE_RATE)
    peaks = []
    for (_, text, normalised), wav in zip(rows, wavs, strict=True):
        assert text == normalised and re.fullmatch(r"[A-Z][a-zA-Z ]+[.?]", text)
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert SECONDS[0] <= info.duration <= SECONDS[1]
        x, _ = sf.read(wav)
        peak = np.abs(x).max()
        assert PEAK * GAIN[0] - 1e-3 <= peak <= PEAK * GAIN[1] + 1e-3
        loud = np.flatnonzero(np.abs(x) > 0.02 * peak)  # ~50 ms of quiet margin at each end
        assert keep - 1 <= loud[0] <= keep + 0.01 * SAMPLE_RATE
        assert keep - 1 <= len(x) - 1 - loud[-1] <= keep + 0.01 * SAMPLE_RATE
        peaks.append(peak)
    assert np.std(peaks) > 0.05  # levels vary with the seeded gain


def test_voices_pitches_and_rates_vary(corpus: Path) -> None:
    header, *voices = _rows(corpus / "voices.csv")
    assert header == ["id", "voice", "rate", "pitch", "range", "gain"]
    assert len({v[1] for v in voices}) >= N // 2
    assert len({v[1].split("+")[0] for v in voices}) >= 4  # several accents
    assert len({v[2] for v in voices}) >= N // 2
    f0 = [_median_f0(sf.read(w)[0]) for w in sorted((corpus / "wavs").glob("*.wav"))]
    male, female = np.median(f0[0::2]), np.median(f0[1::2])  # even clips male, odd female
    assert female > 1.4 * male
    assert max(f0) > 1.8 * min(f0)


def test_same_seed_is_byte_identical_another_seed_differs(corpus: Path, tmp_path: Path) -> None:
    again = ensure_corpus(tmp_path / "again", n_utterances=N, seed=0, progress=False)
    other = ensure_corpus(tmp_path / "other", n_utterances=N, seed=1, progress=False)
    reference = _files(corpus)
    assert _files(again) == reference
    assert other.name != corpus.name
    others = _files(other)
    assert others.keys() == reference.keys()
    assert all(others[k] != reference[k] for k in reference)


def test_second_call_returns_the_folder_without_regenerating(corpus: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    assert ensure_corpus(corpus.parent, n_utterances=N, seed=0, progress=False) == corpus
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == stamps


def test_stale_temp_folder_is_cleared_and_none_is_left(tmp_path: Path) -> None:
    name = corpus_name(3, 5)
    stale = tmp_path / f".{name}.tmp-1-deadbeef"  # as a killed generation would leave it
    (stale / "wavs").mkdir(parents=True)
    folder = ensure_corpus(tmp_path, n_utterances=3, seed=5, progress=False)
    assert folder == tmp_path / name
    assert len(list((folder / "wavs").glob("*.wav"))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{name}.lock", name]


def test_concurrent_callers_share_one_generation(tmp_path: Path) -> None:
    with ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(ensure_corpus, tmp_path, n_utterances=3, seed=7, progress=False)
            for _ in range(3)
        ]
        folders = {f.result() for f in futures}
    assert len(folders) == 1
    assert len(_rows(folders.pop() / "metadata.csv")) == 3
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_progress_goes_to_stderr_only_when_asked(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ensure_corpus(tmp_path / "loud", n_utterances=2, seed=0, progress=True)
    out, err = capfd.readouterr()
    assert "2/2 utterances" in err and out == ""
    ensure_corpus(tmp_path / "quiet", n_utterances=2, seed=0, progress=False)
    assert capfd.readouterr() == ("", "")


def test_missing_voice_or_bad_size_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="voice 'en-us' not found") as info:
        check_voices(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(CorpusError, match="n_utterances must be >= 1"):
        ensure_corpus(tmp_path, n_utterances=0)


def test_sentences_are_seeded_and_near_the_requested_length() -> None:
    for n_words in range(3, 16):
        a = make_sentence(random.Random(n_words), n_words)
        assert a == make_sentence(random.Random(n_words), n_words)
        assert abs(len(a.split()) - n_words) <= 3, a
        assert not re.search(r"\ba [aeiou]", a), a
    texts = {make_sentence(random.Random(s), 8) for s in range(50)}
    assert len(texts) == 50


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_HARNESS_CACHE", "/some/where")
    assert default_cache_dir() == Path("/some/where")
    monkeypatch.delenv("GAN_HARNESS_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "gan-harness"
