"""Nonsense refused or named: corpora without signal, folders reached through links, names and
text in other encodings, and a run whose validation scores nothing."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.audio.datasets import DataError, _ljspeech_paths, open_corpus
from harness.audio.pairs import open_pairs
from harness.audio.walk import files_under, printable
from harness.recipes.ring import RingRecipe
from harness.runs.resolve import resolve_config
from harness.status import Status
from harness.text import NotUtf8
from harness.training.trainer import Trainer

SR = 16000


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scan verdicts go to a cache folder of the test's own."""
    monkeypatch.setenv("GAN_HARNESS_CACHE", str(tmp_path / "cache"))


def tone(seconds: float = 1.0, k: int = 0) -> np.ndarray:
    return (0.3 * np.sin(np.arange(int(seconds * SR)) * (0.05 + 0.01 * k))).astype(np.float32)


def write(path: Path | bytes, audio: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, audio, SR, subtype="FLOAT")


# ---------------------------------------------------------------- corpora without signal


@pytest.mark.parametrize(
    "audio,reason",
    [
        (np.zeros(SR, np.float32), "silent: every sample is 0"),
        (np.full(SR, 1e-7, np.float32), "silent: every sample is 0"),
        (np.full(SR, 0.25, np.float32), "every sample is 0.25 (a constant DC offset)"),
    ],
    ids=["zeros", "below -100 dBFS", "dc"],
)
def test_a_clip_without_signal_is_refused_by_name(tmp_path: Path, audio, reason) -> None:
    for k in range(3):
        write(tmp_path / "data" / f"ok{k}.wav", tone(k=k))
    write(tmp_path / "data" / "flat.wav", audio)
    with pytest.raises(DataError) as err:
        open_corpus(tmp_path / "data", SR)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'data' / 'flat.wav'}: ") and reason in message


def test_a_corpus_of_silent_clips_is_refused_each_named(tmp_path: Path) -> None:
    for k in range(4):
        write(tmp_path / "data" / f"z{k}.wav", np.zeros(SR, np.float32))
    with pytest.raises(DataError) as err:
        open_corpus(tmp_path / "data", SR)
    assert "4 of 4 audio files are unfit for training" in str(err.value)
    assert len(err.value.details) == 4 and all("silent" in line for line in err.value.details)


def test_a_quiet_clip_with_signal_is_kept(tmp_path: Path) -> None:
    """-80 dBFS is quiet, not silent: only a file with no signal at all is refused."""
    write(tmp_path / "data" / "quiet.wav", 1e-4 * tone())
    assert len(open_corpus(tmp_path / "data", SR)) == 1


def test_pairs_with_a_silent_clean_side_are_refused(tmp_path: Path) -> None:
    for k in range(3):
        write(tmp_path / "data" / "clean" / f"u{k}.wav", np.zeros(SR, np.float32) if k else tone())
        write(tmp_path / "data" / "noisy" / f"u{k}.wav", tone(k=k))
    with pytest.raises(DataError, match="2 of 6 audio files are unfit") as err:
        open_pairs(tmp_path / "data", SR)
    assert [line.split("/")[-2:] for line in err.value.details] == [
        ["clean", "u1.wav: silent: every sample is 0 (to within -100 dBFS)"],
        ["clean", "u2.wav: silent: every sample is 0 (to within -100 dBFS)"],
    ]


# ---------------------------------------------------------------- folders reached through links


def speakers(store: Path, n: int = 2, clips: int = 3) -> list[Path]:
    for s in range(n):
        for k in range(clips):
            write(store / f"spk{s}" / f"c{k}.wav", tone(k=s * clips + k))
    return [store / f"spk{s}" for s in range(n)]


def test_symlinked_speaker_folders_are_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for folder in speakers(tmp_path / "store"):
        (data / folder.name).symlink_to(folder, target_is_directory=True)
    corpus = open_corpus(data, SR)
    names = [f.path.relative_to(data).as_posix() for f in corpus.files]
    assert names == [f"spk{s}/c{k}.wav" for s in range(2) for k in range(3)]


def test_a_link_loop_or_a_second_link_adds_nothing_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (spk0, spk1) = speakers(data)
    (spk0 / "up").symlink_to(data, target_is_directory=True)  # a loop back to the top
    (data / "again").symlink_to(spk1, target_is_directory=True)  # spk1 a second time
    found = [p.relative_to(data).as_posix() for p in files_under(data, (".wav",))]
    assert sorted(Path(name).name for name in found) == sorted(["c0.wav", "c1.wav", "c2.wav"] * 2)
    assert len(open_corpus(data, SR)) == 6


def test_a_link_to_a_missing_clip_is_named(tmp_path: Path) -> None:
    speakers(tmp_path / "data")
    (tmp_path / "data" / "gone.wav").symlink_to(tmp_path / "elsewhere.wav")
    with pytest.raises(DataError, match=r"data/gone.wav: unreadable audio"):
        open_corpus(tmp_path / "data", SR)


# ---------------------------------------------------------------- names and text in other encodings


def test_a_file_name_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    speakers(tmp_path / "data", n=1)
    write(os.fsencode(tmp_path / "data") + b"/caf\xe9.wav", tone())
    with pytest.raises(DataError) as err:
        open_corpus(tmp_path / "data", SR)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'data'}/caf\\xe9.wav: file name is not valid UTF-8")
    assert message.encode("utf-8"), "the message itself prints anywhere"


def test_ljspeech_transcripts_in_any_encoding_are_read_and_odd_ids_refused(tmp_path) -> None:
    root = tmp_path / "lj"
    for k in range(3):
        write(root / "wavs" / f"LJ{k}.wav", tone(k=k))
    lines = [f"LJ{k}|caf\xe9 cr\xe8me {k}|caf\xe9" for k in range(3)]
    (root / "metadata.csv").write_bytes("\n".join(lines).encode("latin-1"))
    assert [p.name for p in _ljspeech_paths(root)] == ["LJ0.wav", "LJ1.wav", "LJ2.wav"]
    (root / "metadata.csv").write_bytes(b"LJ0|a|a\nLJ\xe91|b|b\n")
    with pytest.raises(DataError, match=r"metadata.csv:2: clip id 'LJ\\xe91' is not valid UTF-8"):
        _ljspeech_paths(root)


def test_a_manifest_that_is_not_utf8_is_refused_at_its_line(tmp_path: Path) -> None:
    for k in range(2):
        write(tmp_path / "data" / "clean" / f"u{k}.wav", tone(k=k))
        write(tmp_path / "data" / "noisy" / f"u{k}.wav", tone(k=k + 2))
    rows = "id,split,noise,snr_db,detail\nu0,train,cafe,5,x\nu1,train,caf\xe9,5,x\n"
    (tmp_path / "data" / "manifest.csv").write_bytes(rows.encode("latin-1"))
    with pytest.raises(NotUtf8, match=r"manifest.csv:3: not valid UTF-8 \(byte 0xe9\)"):
        open_pairs(tmp_path / "data", SR)


def test_printable_shows_the_odd_bytes() -> None:
    assert printable(os.fsdecode(b"/d/caf\xe9.wav")) == "/d/caf\\xe9.wav"
    assert printable("/d/café.wav") == "/d/café.wav"


# ---------------------------------------------------------------- a run that scores nothing


class Unscored(RingRecipe):
    """Its validation scores nothing: every metric NaN (``skipped`` set: as a speech recipe
    whose every reference is skipped reports it, ``n_valid`` 0)."""

    skipped = False

    def validate(self, generator, step, out_dir):
        if self.skipped:
            return {"n_valid": 0, "n_skipped": 3, "modes_covered": 0.0}
        return dict.fromkeys(self.reports(self.cfg), math.nan)


@pytest.mark.parametrize("skipped", [False, True], ids=["all-nan", "all-skipped"])
def test_a_run_whose_validation_scores_nothing_is_stopped_not_completed(tmp_path, skipped):
    settings = {"batches": 20, "batch_size": 32, "eval_every": 10, "g_hidden": 8, "d_hidden": 8}
    cfg = resolve_config("ring", "smoke", overrides=settings)
    recipe = Unscored(cfg.model, None, cfg.trainer.seed, cfg.trainer.batch_size)
    recipe.skipped = skipped
    rows: list[tuple[str, dict]] = []
    result = Trainer(recipe, cfg.trainer, tmp_path, lambda k, r, c: rows.append((k, r))).fit()
    assert result.status == Status.STOPPED and result.step == 0
    expected = "could score none of its 3 utterances" if skipped else "every metric of the"
    assert result.reason.startswith("no score: ") and expected in result.reason
    assert [kind for kind, _ in rows] == ["eval"], "its one validation is still reported"
    assert result.checkpoint is not None and result.checkpoint.is_file()
