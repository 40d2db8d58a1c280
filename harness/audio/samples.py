"""Listening samples a validation leaves behind: fixed inputs once, generated audio per round.

Layout under ``out_dir`` (a trial's ``samples/``)::

    reference/<name>.wav       the target audio, written once
    noisy/<name>.wav           an enhancement recipe's input, written once
    step_XXXXXXXX/<name>.wav   what the generator made at that step; the newest rounds are kept
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf


class Sample(NamedTuple):
    """One validation clip: its name, the reference, the generated audio and (optionally) the
    input the generator was given."""

    name: str
    reference: np.ndarray
    generated: np.ndarray
    noisy: np.ndarray | None = None


def save_samples(
    out_dir: Path, step: int, samples: Sequence[Sample], sample_rate: int, keep_rounds: int
) -> None:
    """Write one validation round of ``samples`` (PCM 16, clipped to [-1, 1]) and prune all but
    the newest ``keep_rounds`` rounds."""
    out_dir = Path(out_dir)
    step_dir = out_dir / f"step_{step:08d}"
    step_dir.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        _write_once(out_dir / "reference", sample.name, sample.reference, sample_rate)
        if sample.noisy is not None:
            _write_once(out_dir / "noisy", sample.name, sample.noisy, sample_rate)
        _write(step_dir / f"{sample.name}.wav", sample.generated, sample_rate)
    for old in sorted(out_dir.glob("step_*"))[: -max(1, keep_rounds)]:
        shutil.rmtree(old, ignore_errors=True)


def _write_once(folder: Path, name: str, audio: np.ndarray, sample_rate: int) -> None:
    path = folder / f"{name}.wav"
    if not path.exists():
        _write(path, audio, sample_rate)


def _write(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # names may hold folders (nested corpora)
    sf.write(path, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16")
