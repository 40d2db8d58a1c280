"""What an inference command reads and writes: input files (one, or a folder searched
recursively) paired with output WAVs at the same relative paths, checked before anything is
written; and the WAV writer that leaves a complete file or none."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.files import atomic_output, unwritable_reason

SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


@dataclass(frozen=True)
class ApplyRequest:
    """The options of ``run.py enhance`` and ``run.py vocode``: the generator (SOURCE, and a
    search's trial by rank or id), the files in and out, where it runs and what it writes."""

    source: str
    given_in: Path
    given_out: Path
    rank_k: int | None = None
    trial_id: str | None = None
    results: str | None = None
    device: str = "cpu"
    subtype: str = "PCM_16"
    progress: bool = True
    chunk_seconds: float = 30.0  # enhance: audio enhanced at once, besides the recipe's context


class JobError(ValueError):
    """The input or output path of an inference command cannot be used; one line naming it."""


@dataclass(frozen=True)
class Job:
    """One input file and the WAV it becomes; ``name`` is its path relative to the input."""

    source: Path
    target: Path
    name: str


def plan_jobs(given_in: Path, given_out: Path, suffixes: Sequence[str], what: str) -> list[Job]:
    """Pair every input file with its output WAV.

    ``given_in`` is a file or a folder (searched recursively for ``suffixes``, hidden names
    left out); ``given_out`` is a folder, or for one input file a path ending in ``.wav``.  The
    output may not be an input, nor lie inside the input folder (its WAVs would be read as
    input the next time), and two inputs may not become the same WAV.
    """
    source, out = Path(given_in), Path(given_out)
    if not source.exists():
        raise JobError(f"{source}: no such file or folder")
    if source.is_file():
        if source.suffix.lower() not in suffixes:
            raise JobError(f"{source}: not {what} (reads {', '.join(suffixes)})")
        target = out if out.suffix.lower() == ".wav" else out / f"{source.stem}.wav"
        if target.resolve() == source.resolve():
            raise JobError(f"{target}: the output would overwrite its input")
        jobs = [Job(source, target, source.name)]
    else:
        if _inside(out, source):
            raise JobError(
                f"{out}: the output folder is inside the input folder {source}; its WAVs "
                "would be read as input next time, so pick a folder outside it"
            )
        found = sorted(
            p
            for p in source.rglob("*")
            if p.suffix.lower() in suffixes
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(source).parts)
        )
        if not found:
            raise JobError(f"{source}: holds no {what} (looked for {', '.join(suffixes)})")
        names = [p.relative_to(source) for p in found]
        jobs = [
            Job(p, out / name.with_suffix(".wav"), name.as_posix())
            for p, name in zip(found, names, strict=True)
        ]
        _refuse_collisions(jobs)
    problem = unwritable_reason(jobs[0].target.parent if source.is_file() else out)
    if problem:
        raise JobError(f"{out}: {problem}")
    return jobs


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _refuse_collisions(jobs: list[Job]) -> None:
    seen: dict[Path, Job] = {}
    for job in jobs:
        other = seen.setdefault(job.target, job)
        if other is not job:
            raise JobError(
                f"{job.target}: both {other.source} and {job.source} would be written to it"
            )


@dataclass
class Throughput:
    """Files done, seconds of audio they held, seconds it took."""

    files: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0

    def line(self) -> str:
        per_minute = 60 * self.wall_s / self.audio_s if self.audio_s else float("nan")
        return (
            f"{self.files} file(s), {self.audio_s / 60:.2f} min of audio in {self.wall_s:.1f} s: "
            f"{per_minute:.2f} s per minute of audio"
        )


def no_progress(line: str) -> None:
    """Where progress lines go under ``--quiet``."""


@contextmanager
def wav_writer(path: Path, sample_rate: int, subtype: str) -> Iterator[WavOut]:
    """A mono WAV written piece by piece; it replaces ``path`` only once the block succeeds."""
    if subtype not in SUBTYPES:
        raise JobError(f"--subtype {subtype}: not one of {', '.join(SUBTYPES)}")
    with (
        atomic_output(path) as handle,
        sf.SoundFile(
            handle, "w", samplerate=sample_rate, channels=1, subtype=subtype, format="WAV"
        ) as sound,
    ):
        yield WavOut(sound, clip=subtype != "FLOAT")


class WavOut:
    """Appends float audio to an open WAV, clipped to [-1, 1] for the integer formats."""

    def __init__(self, sound: sf.SoundFile, clip: bool) -> None:
        self.sound = sound
        self.clip = clip

    def write(self, audio: np.ndarray) -> None:
        audio = np.asarray(audio, dtype=np.float32)
        self.sound.write(np.clip(audio, -1.0, 1.0) if self.clip else audio)
