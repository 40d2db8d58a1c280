"""Speech corpora on disk: layout detection, audio loading, validation split, training crops.

Two layouts are recognised: LJSpeech (``metadata.csv`` + ``wavs/<id>.wav``) and a plain folder
of WAVs (searched recursively).  Opening a corpus reads only the file headers; samples are read
when a batch or the validation set needs them, as float32 mono at the requested sample rate.
Training batches are a pure function of (seed, index), which is what makes resuming exact.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torchaudio.transforms import Resample

from harness.batches import BatchSource


class DataError(ValueError):
    """The corpus is missing, empty or holds a bad file; the message is one line naming it."""


@dataclass(frozen=True)
class AudioFile:
    """One clip as its header describes it (native rate, frame count, channels)."""

    path: Path
    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    def length_at(self, sample_rate: int) -> int:
        """Samples after resampling to ``sample_rate`` (torchaudio's rounding: ceil)."""
        return math.ceil(self.frames * sample_rate / self.sample_rate)


@dataclass
class Corpus:
    """The clips of one data folder, in a fixed order, to be read at ``sample_rate``."""

    root: Path
    layout: str  # "ljspeech" | "folder"
    files: list[AudioFile]
    sample_rate: int

    def __len__(self) -> int:
        return len(self.files)

    def split(
        self, n_valid: int, seed: int, min_valid_seconds: float = 1.0
    ) -> tuple[list[AudioFile], list[AudioFile]]:
        """(train, valid): ``n_valid`` clips drawn by ``seed`` alone; the rest train, in order.

        Only clips of at least ``min_valid_seconds`` may be drawn for validation; the shorter
        ones stay in training and are counted in one warning.
        """
        eligible = [f for f in self.files if f.seconds >= min_valid_seconds]
        n_short = len(self.files) - len(eligible)
        if n_short:
            warnings.warn(
                f"{self.root}: {n_short} of {len(self.files)} clips are shorter than "
                f"{min_valid_seconds:g} s and were skipped for validation",
                stacklevel=2,
            )
        if not 0 <= n_valid <= len(eligible):
            raise DataError(
                f"{self.root}: cannot hold out {n_valid} validation clips, "
                f"only {len(eligible)} are at least {min_valid_seconds:g} s long"
            )
        order = _rng(seed, "split").permutation(len(eligible))
        valid = [eligible[i] for i in order[:n_valid]]
        held_out = set(valid)
        train = [f for f in self.files if f not in held_out]
        if not train:
            raise DataError(f"{self.root}: no clips left for training after {n_valid} validation")
        return train, valid


def open_corpus(path: str | Path, sample_rate: int) -> Corpus:
    """Detect the layout of ``path`` and read every clip's header (cheap, no samples)."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder")
    if (root / "metadata.csv").is_file() and (root / "wavs").is_dir():
        layout, paths = "ljspeech", _ljspeech_paths(root)
    else:
        layout = "folder"
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    if not paths:
        raise DataError(f"no .wav files under {root}")
    return Corpus(root, layout, [_header(p) for p in paths], sample_rate)


def _ljspeech_paths(root: Path) -> list[Path]:
    """``wavs/<id>.wav`` for each ``id|text|normalized`` line of metadata.csv, in order."""
    metadata = root / "metadata.csv"
    paths = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        clip_id = line.split("|", 1)[0].strip()
        if not clip_id:
            raise DataError(f"{metadata}:{number}: line has no clip id")
        wav = root / "wavs" / f"{clip_id}.wav"
        if not wav.is_file():
            raise DataError(f"{metadata}:{number}: clip {clip_id!r} has no file {wav}")
        paths.append(wav)
    return paths


def _header(path: Path) -> AudioFile:
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise DataError(f"{path}: unreadable audio ({_reason(err)})") from None
    if info.frames <= 0:
        raise DataError(f"{path}: holds no audio samples")
    return AudioFile(path, int(info.samplerate), int(info.frames), int(info.channels))


def _reason(err: Exception) -> str:
    return str(getattr(err, "error_string", err)).splitlines()[0]


def _read(path: Path, start: int = 0, stop: int | None = None) -> Tensor:
    """Frames [start, stop) of ``path`` as float32 mono at the file's own rate."""
    try:
        data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise DataError(f"{path}: unreadable audio ({_reason(err)})") from None
    return torch.from_numpy(data.mean(axis=1, dtype=np.float32))


@functools.lru_cache(maxsize=8)
def _resampler(native_rate: int, sample_rate: int) -> Resample:
    """torchaudio's sinc resampler with its kernel built once per rate pair."""
    return Resample(native_rate, sample_rate)


def _read_resampled(file: AudioFile, sample_rate: int, start: int, stop: int) -> Tensor:
    """Samples [start, stop) at ``sample_rate``, resampling only the input window they need.

    torchaudio maps each block of ``new`` output samples to a block of ``orig`` input samples
    (rates divided by their gcd) and looks ``width`` samples past it on either side.  Reading
    whole blocks plus enough margin blocks gives the same samples as resampling the whole clip.
    """
    resampler = _resampler(file.sample_rate, sample_rate)
    gcd = math.gcd(file.sample_rate, sample_rate)
    orig, new = file.sample_rate // gcd, sample_rate // gcd
    margin = -(-resampler.width // orig)  # ceil: blocks covering the kernel's reach
    first = max(0, start // new - margin)
    last = (stop - 1) // new + 1 + margin  # one past
    window = _read(file.path, first * orig, min(file.frames, last * orig))
    return resampler(window)[start - first * new : stop - first * new]


def load_audio(
    file: AudioFile, sample_rate: int, start: int = 0, stop: int | None = None
) -> Tensor:
    """Samples [start, stop) of ``file`` at ``sample_rate``, float32 mono, checked finite.

    Only the frames needed are read, also when the clip has to be resampled.
    """
    if file.sample_rate == sample_rate:
        audio = _read(file.path, start, stop)
    else:
        length = file.length_at(sample_rate)
        stop = length if stop is None else min(stop, length)
        audio = _read_resampled(file, sample_rate, min(start, stop), stop)
    if not torch.isfinite(audio).all():
        raise DataError(f"{file.path}: contains NaN or infinite samples")
    return audio


def load_utterances(
    files: Sequence[AudioFile], sample_rate: int, max_seconds: float | None = None
) -> list[Tensor]:
    """Full clips (or their first ``max_seconds``) at ``sample_rate``, in the given order."""
    stop = None if max_seconds is None else max(1, int(max_seconds * sample_rate))
    return [load_audio(f, sample_rate, 0, stop) for f in files]


class SegmentBatches(BatchSource):
    """Random fixed-length crops, ``(audio [batch_size, segment_size],)`` per batch.

    Batch ``index`` lies in epoch ``index // batches_per_epoch``; each epoch visits the files in
    its own seeded order, and the crop offsets come from a generator seeded by (seed, index).
    Clips shorter than a segment are zero-padded at the end.
    """

    def __init__(
        self,
        files: Sequence[AudioFile],
        segment_size: int,
        batch_size: int,
        seed: int,
        sample_rate: int,
    ) -> None:
        if not files:
            raise DataError("no training clips to draw segments from")
        if segment_size < 1 or batch_size < 1:
            raise ValueError(
                f"segment_size and batch_size must be >= 1, got {segment_size}, {batch_size}"
            )
        self.files = list(files)
        self.segment_size = segment_size
        self.batch_size = batch_size
        self.seed = seed
        self.sample_rate = sample_rate
        self.batches_per_epoch = max(1, len(self.files) // batch_size)

    def batch(self, index: int) -> tuple[Tensor]:
        epoch, position = divmod(index, self.batches_per_epoch)
        order = _rng(self.seed, "epoch", epoch).permutation(len(self.files))
        offsets = _rng(self.seed, "crop", index).random(self.batch_size)
        audio = torch.zeros(self.batch_size, self.segment_size)
        for row in range(self.batch_size):
            file = self.files[order[(position * self.batch_size + row) % len(self.files)]]
            crop = self._crop(file, float(offsets[row]))
            audio[row, : crop.numel()] = crop
        return (audio,)

    def _crop(self, file: AudioFile, u: float) -> Tensor:
        """A segment starting at fraction ``u`` of the valid start range (whole clip if short)."""
        length = file.length_at(self.sample_rate)
        start = int(u * (max(0, length - self.segment_size) + 1))
        return load_audio(file, self.sample_rate, start, start + self.segment_size)


_STREAMS = {"split": 0, "epoch": 1, "crop": 2}


def _rng(seed: int, stream: str, *key: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, key): no stream shares state with another."""
    return np.random.default_rng([seed % 2**64, _STREAMS[stream], *key])
