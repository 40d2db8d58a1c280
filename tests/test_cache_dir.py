"""A corpus cache (``$GAN_HARNESS_CACHE``) that cannot be written: one line where the built-in
corpus must be made there, one warning where it only keeps the scan's verdicts.  The CLI cases
are ``env-cache-*`` in test_bad_inputs.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.audio import scan
from harness.audio.corpus import CorpusError, build_once
from harness.console import HarnessWarning


def test_a_corpus_cache_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file where the cache should be")
    root = tmp_path / "cache" / "corpora"
    monkeypatch.setenv("GAN_HARNESS_CACHE", str(root))
    built = []
    with pytest.raises(CorpusError) as raised:
        build_once(root, "espeak", built.append)
    assert str(raised.value) == (
        f"corpus cache {root} ($GAN_HARNESS_CACHE): {tmp_path / 'cache'} is a file, not a "
        "folder; point GAN_HARNESS_CACHE at a folder this user can write"
    )
    assert built == []


def test_a_corpus_already_in_the_cache_is_used_without_writing(tmp_path):
    (tmp_path / "espeak").mkdir()
    assert build_once(tmp_path, "espeak", lambda tmp: pytest.fail("built again")) == (
        tmp_path / "espeak"
    )


def test_scan_verdicts_the_cache_cannot_keep_are_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_HARNESS_CACHE", "/proc/nope/cache")
    good, bad = tmp_path / "data" / "good.wav", tmp_path / "data" / "bad.wav"
    good.parent.mkdir()
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    sf.write(good, tone.astype(np.float32), 16000, subtype="FLOAT")
    sf.write(bad, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = scan.scan_files(good.parent, [good, bad])
    assert found == {bad: "contains NaN or infinite samples"}  # the scan itself stands
    (warning,) = [w for w in caught if issubclass(w.category, HarnessWarning)]
    assert str(warning.message) == (
        "corpus cache /proc/nope/cache ($GAN_HARNESS_CACHE): cannot keep the scan's verdicts "
        "(cannot create folders in /proc (No such file or directory)); the corpus is decoded "
        "again next time, unless you point GAN_HARNESS_CACHE at a folder this user can write"
    )
    assert not Path("/proc/nope").exists()
