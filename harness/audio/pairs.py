"""Paired (clean, noisy) speech corpora for enhancement: layouts, pairing, splits, training crops.

Layouts of a ``--data`` folder:

* VoiceBank-DEMAND: ``clean_trainset_*wav/`` + ``noisy_trainset_*wav/`` (every such pair of
  folders, e.g. 28spk and 56spk, is used) and ``clean_testset_wav/`` + ``noisy_testset_wav/``
  (the fixed test set; optional).  The built-in noisy corpus is written in this layout.
* ``clean/`` + ``noisy/``: pairs only; validation pairs are drawn from them by a seed.

Pairs are matched by file path relative to their folder, without the extension (so
``clean/a.flac`` pairs with ``noisy/a.wav``).  Any format libsndfile reads, any rate (resampled),
any channel count (averaged to mono).  Lengths are compared at the read rate: a difference up to
:data:`LENGTH_TOLERANCE_S` is cropped to the shorter (at the end), more is refused.  A
``manifest.csv`` beside the folders (``id,split,noise,snr_db,detail``, as the built-in corpus
writes) labels each pair with its noise and SNR.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from harness.audio.datasets import (
    AUDIO_EXTENSIONS,
    AudioFile,
    DataError,
    RandomCrops,
    audio_files,
    draw_validation,
    hold_out,
    load_audio,
    read_header,
    refuse_bad_files,
)
from harness.audio.noisy import MANIFEST, ensure_noisy_corpus
from harness.text import read_utf8

LENGTH_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Pair:
    """One clean/noisy pair, headers only; samples are read by :func:`load_pair` and
    :class:`PairBatches`."""

    id: str  # path relative to its folder, without the extension
    clean: AudioFile
    noisy: AudioFile
    sample_rate: int  # both are read at this rate
    length: int  # samples at sample_rate, both cropped to the shorter
    snr_db: float | None = None  # the mixture's SNR where known (manifest.csv)
    noise: str | None = None  # the noise type or recording where known (manifest.csv)

    @property
    def seconds(self) -> float:
        return self.length / self.sample_rate


@dataclass
class PairedCorpus:
    """The pairs of one data folder, in a fixed order."""

    root: Path
    layout: str  # "voicebank" | "pairs"
    train: list[Pair]  # the layout's training pairs (every pair for "pairs")
    test: list[Pair]  # the layout's own test set; empty for "pairs"
    sample_rate: int

    def split(
        self, n_valid: int | None = None, seed: int = 0, min_valid_seconds: float = 1.0
    ) -> tuple[list[Pair], list[Pair]]:
        """(train, valid).  With a test set: the training pairs, and ``n_valid`` test pairs drawn
        by ``seed`` (all of them when None).  Without: ``n_valid`` pairs drawn by ``seed`` are
        held out and the rest train."""
        if self.test:
            n_valid = len(self.test) if n_valid is None else n_valid
            return self.train, draw_validation(
                self.test, n_valid, seed, self.root, min_valid_seconds
            )
        if n_valid is None:
            raise DataError(f"{self.root}: has no test set; say how many pairs to hold out")
        return hold_out(self.train, n_valid, seed, self.root, min_valid_seconds, "pairs")


def open_pairs(
    data: str | Path | None,
    sample_rate: int = 16000,
    noise: str | Path | None = None,
    seed: int = 0,
    *,
    n_utterances: int = 320,
) -> PairedCorpus:
    """The paired corpus in ``data``, or with None the built-in noisy corpus (mixed and cached on
    first use; ``seed`` and ``n_utterances`` choose it, ``noise`` swaps its synthetic noises for
    the recordings in that folder).  Reads headers only."""
    if data is None:
        root = ensure_noisy_corpus(n_utterances=n_utterances, seed=seed, noise_dir=noise)
        return _open_folder(root, sample_rate)
    if noise is not None:
        raise DataError(
            f"--noise {noise}: mixes into the built-in speech and cannot be used with --data {data}"
        )
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    return _open_folder(root, sample_rate)


def load_pair(pair: Pair) -> tuple[Tensor, Tensor]:
    """(clean, noisy): the whole pair, float32 mono at ``pair.sample_rate``, ``pair.length`` long."""
    return _read_span(pair, 0, pair.length)


class PairBatches(RandomCrops):
    """Random crops of pairs, ``(clean [batch_size, segment], noisy [batch_size, segment])``.

    The same stretch of clean and noisy; pairs shorter than a segment are zero-padded at the end.
    Epoch order and crop offsets follow :class:`~harness.audio.datasets.RandomCrops`, so batch
    ``index`` is a pure function of (seed, index).
    """

    def __init__(self, pairs: Sequence[Pair], batch_size: int, segment: int, seed: int) -> None:
        super().__init__([p.length for p in pairs], segment, batch_size, seed)
        self.pairs = list(pairs)

    def batch(self, index: int) -> tuple[Tensor, Tensor]:
        clean = torch.zeros(self.batch_size, self.segment_size)
        noisy = torch.zeros(self.batch_size, self.segment_size)
        for row, (item, start) in enumerate(self.crops(index)):
            pair = self.pairs[item]
            c, n = _read_span(pair, start, min(pair.length, start + self.segment_size))
            clean[row, : c.numel()] = c
            noisy[row, : n.numel()] = n
        return clean, noisy


def _read_span(pair: Pair, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """Samples [start, stop) of both sides (stop <= pair.length, so both have them all)."""
    clean = load_audio(pair.clean, pair.sample_rate, start, stop)
    return clean, load_audio(pair.noisy, pair.sample_rate, start, stop)


# --------------------------------------------------------------------------- layouts


def _open_folder(root: Path, sample_rate: int) -> PairedCorpus:
    labels = _read_manifest(root)
    if (root / "clean").is_dir() or (root / "noisy").is_dir():
        pairs = _match(root / "clean", root / "noisy", sample_rate, labels)
        _refuse_bad_pairs(root, pairs)
        return PairedCorpus(root, "pairs", pairs, [], sample_rate)
    train_folders = sorted(root.glob("clean_trainset*wav"))
    test_folders = sorted(root.glob("clean_testset*wav"))
    if not train_folders:
        raise DataError(
            f"{root}: neither clean/ + noisy/ nor the VoiceBank-DEMAND layout "
            f"(clean_trainset_*wav/, noisy_trainset_*wav/, clean_testset_wav/, noisy_testset_wav/)"
        )
    train = [p for f in train_folders for p in _match(f, _noisy_twin(f), sample_rate, labels)]
    test = [p for f in test_folders for p in _match(f, _noisy_twin(f), sample_rate, labels)]
    _check_unique(root, train + test)
    _refuse_bad_pairs(root, train + test)
    return PairedCorpus(root, "voicebank", train, test, sample_rate)


def _refuse_bad_pairs(root: Path, pairs: list[Pair]) -> None:
    """Every clean and noisy file decoded once: see :func:`refuse_bad_files`."""
    refuse_bad_files(root, [file.path for pair in pairs for file in (pair.clean, pair.noisy)])


def _noisy_twin(clean_folder: Path) -> Path:
    return clean_folder.with_name("noisy" + clean_folder.name.removeprefix("clean"))


def _match(
    clean_dir: Path, noisy_dir: Path, sample_rate: int, labels: dict[str, tuple[str, float]]
) -> list[Pair]:
    """Pair the files of two folders by relative path without extension."""
    clean, noisy = _by_id(clean_dir), _by_id(noisy_dir)
    for ids, others, twin, other_dir in (
        (clean, noisy, "noisy", noisy_dir),
        (noisy, clean, "clean", clean_dir),
    ):
        unpaired = sorted(ids.keys() - others.keys())
        if unpaired:
            more = f" ({len(unpaired) - 1} more unpaired)" if len(unpaired) > 1 else ""
            first = unpaired[0]
            raise DataError(f"{ids[first]}: no {twin} partner {first}.* in {other_dir}{more}")
    pairs = []
    for clip_id, clean_path in clean.items():
        clean_file, noisy_file = read_header(clean_path), read_header(noisy[clip_id])
        length = _common_length(clean_file, noisy_file, sample_rate)
        noise, snr_db = labels.get(clip_id, (None, None))
        pairs.append(Pair(clip_id, clean_file, noisy_file, sample_rate, length, snr_db, noise))
    return pairs


def _by_id(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"folder {folder} is missing")
    paths = audio_files(folder)
    if not paths:
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {folder}")
    ids: dict[str, Path] = {}
    for path in paths:
        clip_id = path.relative_to(folder).with_suffix("").as_posix()
        if clip_id in ids:
            raise DataError(f"{path}: same name as {ids[clip_id]}; cannot tell which to pair")
        ids[clip_id] = path
    return ids


def _common_length(clean: AudioFile, noisy: AudioFile, sample_rate: int) -> int:
    a, b = clean.length_at(sample_rate), noisy.length_at(sample_rate)
    if abs(a - b) > LENGTH_TOLERANCE_S * sample_rate:
        raise DataError(
            f"{noisy.path}: {b} samples but its clean partner {clean.path} has {a} at "
            f"{sample_rate} Hz (more than {LENGTH_TOLERANCE_S:g} s apart)"
        )
    return min(a, b)


def _check_unique(root: Path, pairs: list[Pair]) -> None:
    seen: dict[str, Path] = {}
    for pair in pairs:
        if pair.id in seen:
            raise DataError(f"{pair.clean.path}: clip {pair.id!r} also in {seen[pair.id]}")
        seen[pair.id] = pair.clean.path


def _read_manifest(root: Path) -> dict[str, tuple[str, float]]:
    """id -> (noise, snr_db) from ``root/manifest.csv``, if there is one."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(io.StringIO(read_utf8(path), newline="")))
    labels = {}
    for number, row in enumerate(rows, 2):
        try:
            labels[row["id"]] = (row["noise"], float(row["snr_db"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}:{number}: expected id, noise and a numeric snr_db") from None
    return labels
