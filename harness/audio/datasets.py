"""Speech corpora on disk: layout detection, audio loading, validation split, training crops.

Two layouts are recognised: LJSpeech (``metadata.csv`` + ``wavs/<id>.<ext>``) and a plain folder
of audio files (searched recursively).  Any format the installed libsndfile decodes is accepted
(:data:`AUDIO_EXTENSIONS`: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...).  Opening a corpus reads
only the file headers; samples are read when a batch or the validation set needs them, as float32
mono (channels averaged) at the requested sample rate.  Training batches are a pure function of
(seed, index), which is what makes resuming exact.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torchaudio.transforms import Resample

from harness.audio.scan import scan_files
from harness.audio.walk import UnreadableFolder, files_under, printable, utf8_name
from harness.console import HarnessWarning


class DataError(ValueError):
    """The corpus is missing, empty or holds a bad file; the message is one line naming it.

    ``details`` holds one line per bad file where there are several (the CLI prints them above
    the message).
    """

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = list(details)


class DataWarning(HarnessWarning):
    """Part of a corpus is left out (of training or validation); one line saying which."""


SHORT_NAMED = 5  # short clips named in drop_short's warning


# file extensions of the libsndfile major formats worth looking for, kept where this build has them
_FORMAT_EXTENSIONS = {
    "WAV": (".wav",),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",),
    "AIFF": (".aif", ".aiff", ".aifc"),
    "CAF": (".caf",),
    "AU": (".au", ".snd"),
    "W64": (".w64",),
    "RF64": (".rf64",),
}
AUDIO_EXTENSIONS: tuple[str, ...] = tuple(
    ext
    for name, exts in _FORMAT_EXTENSIONS.items()
    if name in sf.available_formats()
    for ext in exts
)


def audio_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively, symlinked folders followed once each, see
    harness/audio/walk.py) with an :data:`AUDIO_EXTENSIONS` suffix, sorted.

    A name that is not UTF-8 is refused, every such file listed: clip names become sample
    files, report entries and table cells, which must hold them as text.
    """
    try:
        paths = files_under(folder, AUDIO_EXTENSIONS)
    except UnreadableFolder as err:
        reason = f"cannot list this folder ({err.strerror})"
        raise DataError(f"{printable(err.filename)}: {reason}") from None
    odd = [printable(path) for path in paths if not utf8_name(path)]
    if odd:
        more = f" (and {len(odd) - 1} more, listed above)" if len(odd) > 1 else ""
        raise DataError(
            f"{odd[0]}: file name is not valid UTF-8{more}; rename to UTF-8 (e.g. convmv -f "
            f"latin1 -t utf-8 -r --notest {printable(folder)})",
            [f"{name}: file name is not valid UTF-8" for name in odd] if len(odd) > 1 else [],
        )
    return paths


@dataclass(frozen=True)
class AudioFile:
    """One clip as its header describes it (native rate, frame count, channels)."""

    path: Path
    sample_rate: int
    frames: int
    channels: int
    seekable: bool = True  # False where decoding must start at frame 0 to be exact (MP3)

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
        return hold_out(self.files, n_valid, seed, self.root, min_valid_seconds, "clips")


class _Timed(Protocol):
    @property
    def seconds(self) -> float: ...


Item = TypeVar("Item", bound=_Timed)


def hold_out(
    items: Sequence[Item],
    n_valid: int,
    seed: int,
    root: Path,
    min_valid_seconds: float,
    noun: str,
) -> tuple[list[Item], list[Item]]:
    """(train, valid): :func:`draw_validation` of ``items``, the rest in order for training;
    an error naming ``root`` if no ``noun`` are left to train on."""
    valid = draw_validation(items, n_valid, seed, root, min_valid_seconds)
    held_out = set(valid)
    train = [item for item in items if item not in held_out]
    if not train:
        raise DataError(f"{root}: no {noun} left for training after {n_valid} validation")
    return train, valid


def draw_validation(
    items: Sequence[Item], n_valid: int, seed: int, root: Path, min_valid_seconds: float = 1.0
) -> list[Item]:
    """``n_valid`` of ``items`` drawn by ``seed`` alone, among those of ``min_valid_seconds``+.

    The shorter ones are counted in one warning naming ``root``.
    """
    eligible = [item for item in items if item.seconds >= min_valid_seconds]
    n_short = len(items) - len(eligible)
    if n_short:
        warnings.warn(
            f"{root}: {n_short} of {len(items)} clips are shorter than "
            f"{min_valid_seconds:g} s and were skipped for validation",
            DataWarning,
            stacklevel=3,
        )
    if not 0 <= n_valid <= len(eligible):
        raise DataError(
            f"{root}: cannot hold out {n_valid} validation clips, "
            f"only {len(eligible)} are at least {min_valid_seconds:g} s long"
        )
    order = stream_rng(seed, "split").permutation(len(eligible))
    return [eligible[i] for i in order[:n_valid]]


def open_corpus(path: str | Path, sample_rate: int) -> Corpus:
    """Detect the layout of ``path`` and read every clip's header (cheap, no samples)."""
    root = Path(path)
    if not utf8_name(root.resolve()):
        raise DataError(f"data folder {printable(root)}: its path is not valid UTF-8; rename it")
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder")
    if (root / "metadata.csv").is_file() and (root / "wavs").is_dir():
        layout, paths = "ljspeech", _ljspeech_paths(root)
    else:
        layout, paths = "folder", audio_files(root)
    if not paths:
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
    files = [read_header(p) for p in paths]
    refuse_bad_files(root, paths)
    return Corpus(root, layout, files, sample_rate)


def refuse_bad_files(root: Path, paths: Sequence[Path]) -> None:
    """Decode every file once (verdicts cached, see harness/audio/scan.py) and refuse the corpus
    if any holds NaN or infinite samples, cannot be decoded to its end or is cut short.

    Refused, not left out: a corrupt file usually means a broken export or copy, and training
    on the rest without it would quietly change the experiment.
    """
    bad = scan_files(root, paths)
    if len(bad) == 1:
        [(path, reason)] = bad.items()
        raise DataError(f"{path}: {reason}")
    if bad:
        (path, reason), *_ = bad.items()
        raise DataError(
            f"{root}: {len(bad)} of {len(paths)} audio files are unfit for training, listed "
            f"above (first: {path}: {reason}); fix or remove them",
            [f"{path}: {reason}" for path, reason in bad.items()],
        )


def drop_short(
    items: Sequence[Item],
    lengths: Sequence[int],
    names: Sequence[str],
    segment_size: int,
    sample_rate: int,
) -> list[Item]:
    """The training ``items`` that hold one ``segment_size`` crop; the others are left out.

    Left out, not zero-padded into mostly silent crops, and named in one :class:`DataWarning`
    (how many, the segment length, the first few names); none left is a :class:`DataError`.
    """
    kept = [item for item, n in zip(items, lengths, strict=True) if n >= segment_size]
    short = [name for name, n in zip(names, lengths, strict=True) if n < segment_size]
    segment = f"{segment_size} samples, {segment_size / sample_rate:.2f} s at {sample_rate} Hz"
    if not kept:
        raise DataError(
            f"{names[0]}: every one of the {len(items)} training clips is shorter than one "
            f"training segment ({segment})"
        )
    if short:
        more = f" and {len(short) - SHORT_NAMED} more" if len(short) > SHORT_NAMED else ""
        warnings.warn(
            f"{len(short)} of {len(items)} training clips are shorter than one training segment "
            f"({segment}) and are left out of training: {', '.join(short[:SHORT_NAMED])}{more}",
            DataWarning,
            stacklevel=2,
        )
    return kept


def _ljspeech_paths(root: Path) -> list[Path]:
    """``wavs/<id>.<ext>`` for each ``id|text|normalized`` line of metadata.csv, in order
    (``.wav`` first, then the other :data:`AUDIO_EXTENSIONS`).

    Only the ids are read, so the transcripts may be in any encoding; an id that is not UTF-8
    is refused (it names a file, see :func:`audio_files`)."""
    metadata = root / "metadata.csv"
    paths = []
    text = metadata.read_bytes().decode("utf-8", "surrogateescape")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        clip_id = line.split("|", 1)[0].strip()
        if not clip_id:
            raise DataError(f"{metadata}:{number}: line has no clip id")
        if not utf8_name(clip_id):
            raise DataError(
                f"{metadata}:{number}: clip id '{printable(clip_id)}' is not valid UTF-8; "
                "save metadata.csv and name the clips in UTF-8"
            )
        candidates = (root / "wavs" / f"{clip_id}{ext}" for ext in AUDIO_EXTENSIONS)
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            stem = root / "wavs" / clip_id
            raise DataError(
                f"{metadata}:{number}: clip {clip_id!r} has no file {stem}.wav (nor .flac, ...)"
            )
        paths.append(found)
    return paths


# libsndfile seeks MP3 to the right frame but decodes the next few thousand samples wrongly (the
# bit reservoir of the frames before is missing), so MP3 is always decoded from its start
_INEXACT_SEEK = {"MP3"}


def read_header(path: Path) -> AudioFile:
    """The clip's header; a file libsndfile cannot open is a DataError naming it."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise DataError(f"{path}: unreadable audio ({_reason(err)})") from None
    if info.frames <= 0:
        raise DataError(f"{path}: holds no audio samples")
    seekable = info.format not in _INEXACT_SEEK
    return AudioFile(path, int(info.samplerate), int(info.frames), int(info.channels), seekable)


def _reason(err: Exception) -> str:
    return str(getattr(err, "error_string", err)).splitlines()[0]


def _read(file: AudioFile, start: int = 0, stop: int | None = None) -> Tensor:
    """Frames [start, stop) of ``file`` as float32 mono (channels averaged) at its own rate."""
    first = start if file.seekable else 0
    try:
        data, _ = sf.read(str(file.path), start=first, stop=stop, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise DataError(f"{file.path}: unreadable audio ({_reason(err)})") from None
    declared = min(file.frames, file.frames if stop is None else stop) - first
    if len(data) < declared:
        raise DataError(
            f"{file.path}: decoded {len(data)} of the {declared} frames its header declares "
            f"from frame {first} (truncated?)"
        )
    return torch.from_numpy(data[start - first :].mean(axis=1, dtype=np.float32))


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
    window = _read(file, first * orig, min(file.frames, last * orig))
    return resampler(window)[start - first * new : stop - first * new]


def load_audio(
    file: AudioFile, sample_rate: int, start: int = 0, stop: int | None = None
) -> Tensor:
    """Samples [start, stop) of ``file`` at ``sample_rate``, float32 mono, checked finite.

    Only the frames needed are read, also when the clip has to be resampled.
    """
    if file.sample_rate == sample_rate:
        audio = _read(file, start, stop)
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


class RandomCrops:
    """Which items, and where in them, batch ``index`` crops: the schedule shared by the sources.

    Batch ``index`` lies in epoch ``index // batches_per_epoch``; each epoch visits the items in
    its own seeded order, and the crop offsets come from a generator seeded by (seed, index).
    """

    def __init__(
        self, lengths: Sequence[int], segment_size: int, batch_size: int, seed: int
    ) -> None:
        if not lengths:
            raise DataError("no training clips to draw segments from")
        if segment_size < 1 or batch_size < 1:
            raise ValueError(
                f"segment_size and batch_size must be >= 1, got {segment_size}, {batch_size}"
            )
        self.lengths = list(lengths)
        self.segment_size = segment_size
        self.batch_size = batch_size
        self.seed = seed
        self.batches_per_epoch = max(1, len(self.lengths) // batch_size)

    def crops(self, index: int) -> list[tuple[int, int]]:
        """(item, start) per row: a segment starting at a seeded fraction of the item's valid
        start range (at 0 when the item is shorter than a segment)."""
        n_items = len(self.lengths)
        epoch, position = divmod(index, self.batches_per_epoch)
        order = stream_rng(self.seed, "epoch", epoch).permutation(n_items)
        offsets = stream_rng(self.seed, "crop", index).random(self.batch_size)
        rows = []
        for row in range(self.batch_size):
            item = int(order[(position * self.batch_size + row) % n_items])
            spare = max(0, self.lengths[item] - self.segment_size)
            rows.append((item, int(float(offsets[row]) * (spare + 1))))
        return rows


class SegmentBatches(RandomCrops):
    """Random fixed-length crops, ``(audio [batch_size, segment_size],)`` per batch.

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
        super().__init__([f.length_at(sample_rate) for f in files], segment_size, batch_size, seed)
        self.files = list(files)
        self.sample_rate = sample_rate

    def batch(self, index: int) -> tuple[Tensor]:
        audio = torch.zeros(self.batch_size, self.segment_size)
        for row, (item, start) in enumerate(self.crops(index)):
            crop = load_audio(self.files[item], self.sample_rate, start, start + self.segment_size)
            audio[row, : crop.numel()] = crop
        return (audio,)


_STREAMS = {"split": 0, "epoch": 1, "crop": 2, "noise-plan": 3, "noise-mix": 4}


def stream_rng(seed: int, stream: str, *key: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, key): no stream shares state with another."""
    return np.random.default_rng([seed % 2**64, _STREAMS[stream], *key])
