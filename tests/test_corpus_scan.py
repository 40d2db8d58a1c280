"""The scan when a corpus is opened: bad files refused by name, verdicts cached by (path, size,
mtime), clips too short for one training segment left out of training and counted."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.audio import scan
from harness.audio.datasets import DataError, DataWarning, drop_short, open_corpus
from harness.audio.pairs import open_pairs

SR = 16000


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Scan verdicts go to a cache folder of the test's own."""
    monkeypatch.setenv("GAN_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def clip(path: Path, seconds: float = 1.0, nan_at: int | None = None, inf: bool = False) -> Path:
    audio = (0.3 * np.sin(np.arange(int(seconds * SR)) * 0.05)).astype(np.float32)
    if nan_at is not None:
        audio[nan_at] = np.nan
    if inf:
        audio[-1] = np.inf
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR, subtype="FLOAT")
    return path


def test_a_nan_file_is_refused_by_name_and_the_verdict_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    for i in range(3):
        clip(data / f"ok{i}.wav")
    bad = clip(data / "late-nan.wav", seconds=2.0, nan_at=SR + 500)  # past any early crop
    with pytest.raises(DataError, match=r"late-nan\.wav: contains NaN or infinite samples$"):
        open_corpus(data, SR)
    verdicts = json.loads(scan.scan_cache_file(data).read_text())["files"]
    assert verdicts[str(bad.resolve())]["verdict"] == "contains NaN or infinite samples"
    assert sum(v["verdict"] == "ok" for v in verdicts.values()) == 3

    def no_reading(path: Path) -> str:
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(scan, "check_file", no_reading)
    with pytest.raises(DataError, match="late-nan.wav"):  # from the cache alone
        open_corpus(data, SR)
    monkeypatch.undo()

    clip(bad, seconds=2.0)  # repaired: a new size/mtime, so it is read again
    os.utime(bad, ns=(1, 1))
    assert len(open_corpus(data, SR)) == 4


def test_several_bad_files_are_listed_one_line_each(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clip(data / "ok.wav")
    clip(data / "a.wav", inf=True)
    clip(data / "b.wav", nan_at=3)
    with pytest.raises(DataError) as info:
        open_corpus(data, SR)
    assert str(info.value).startswith(f"{data}: 2 of 3 audio files are unfit for training")
    assert info.value.details == [
        f"{data / 'a.wav'}: contains NaN or infinite samples",
        f"{data / 'b.wav'}: contains NaN or infinite samples",
    ]


def test_paired_corpora_scan_both_sides(tmp_path: Path) -> None:
    for i in range(3):
        clip(tmp_path / "clean" / f"u{i}.wav")
        clip(tmp_path / "noisy" / f"u{i}.wav", nan_at=10 if i == 2 else None)
    with pytest.raises(DataError, match=r"noisy/u2\.wav: contains NaN"):
        open_pairs(tmp_path)


def test_clips_shorter_than_a_segment_are_left_out_and_counted() -> None:
    names = [f"c{i}.wav" for i in range(8)]
    lengths = [100, 5000, 90, 4096, 80, 70, 60, 50]
    with pytest.warns(DataWarning) as caught:
        kept = drop_short(names, lengths, names, 4096, SR)
    assert kept == ["c1.wav", "c3.wav"]
    [message] = [str(w.message) for w in caught]
    assert message == (
        "6 of 8 training clips are shorter than one training segment (4096 samples, 0.26 s at "
        "16000 Hz) and are left out of training: c0.wav, c2.wav, c4.wav, c5.wav, c6.wav and "
        "1 more"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert drop_short(names[:2], [4096, 5000], names[:2], 4096, SR) == names[:2]
    with pytest.raises(DataError, match=r"c0\.wav: every one of the 2 training clips is shorter"):
        drop_short(names[:2], [10, 20], names[:2], 4096, SR)
