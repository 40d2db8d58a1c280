"""Listening: reference and generated validation clips side by side, with log-mel spectrograms.

A trial keeps ``samples/reference/<clip>.wav`` and ``samples/step_XXXXXXXX/<clip>.wav`` for its
newest few validations (harness/recipes/hifigan.py, ``_save_samples``).  For each clip the page
shows the reference beside every chosen trial's earliest kept and newest validation, each with
an audio player and a log-mel spectrogram on one colour scale per clip.  WAVs are embedded as
they are on disk (base64) up to :data:`AUDIO_BUDGET` bytes, then linked by relative path.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from harness.audio.mel import LogMel, MelConfig
from harness.report import page

MAX_CLIPS = 2  # clips per trial and round shown (the smoke budget writes 2 per validation)
AUDIO_BUDGET = 10 * 2**20  # WAV bytes embedded in the page; later clips are linked instead
DB_PER_NEPER = 20 / np.log(10)  # log-mel is ln(magnitude); x this = dB


@dataclass(frozen=True)
class Listened:
    """A trial to listen to and how the page names it."""

    trial_id: str
    label: str  # e.g. "#1 a1b2c3d4" or "#5 a1b2c3d4 (paper default)"
    samples: Path  # the trial's samples/ folder


def rounds(samples: Path) -> list[tuple[str, Path]]:
    """(caption, folder) of the earliest kept and the newest validation with audio."""
    kept = sorted(p for p in samples.glob("step_*") if p.is_dir() and any(p.glob("*.wav")))
    if not kept:
        return []
    picked = [kept[0], kept[-1]] if len(kept) > 1 else kept
    names = ["early", "newest"] if len(picked) > 1 else ["newest"]
    steps = [int(p.name.removeprefix("step_")) for p in picked]
    return [(f"{n}: step {s}", p) for n, s, p in zip(names, steps, picked, strict=True)]


class AudioSources:
    """``src`` values for <audio>: data URIs while the budget lasts, then relative links."""

    def __init__(self, report_dir: Path, budget: int = AUDIO_BUDGET) -> None:
        self.report_dir = report_dir
        self.left = budget
        self.linked = 0

    def __call__(self, wav: Path) -> str:
        size = wav.stat().st_size
        if size <= self.left:
            self.left -= size
            return "data:audio/wav;base64," + base64.b64encode(wav.read_bytes()).decode()
        self.linked += 1
        return Path(os.path.relpath(wav, self.report_dir)).as_posix()


def log_mel_db(wav: Path, mels: dict[int, LogMel]) -> tuple[np.ndarray, float]:
    """The clip's log-mel in whole dB as int8 [n_mels, frames], and seconds per frame."""
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    if rate not in mels:
        mels[rate] = LogMel(MelConfig(sample_rate=rate, f_max=min(8000.0, rate / 2)))
    mel = mels[rate]
    with torch.no_grad():
        nepers = mel(torch.from_numpy(audio.mean(axis=1)).unsqueeze(0))[0].numpy()
    db = np.clip(np.rint(nepers * DB_PER_NEPER), -128, 127).astype(np.int8)
    return db, mel.config.hop_length / rate


def spectrogram(db: np.ndarray, frame_s: float, z_range: tuple[int, int], scale: bool) -> str:
    """A small heatmap of one clip (mel bin over seconds) on the clip's colour scale."""
    heatmap = {
        "type": "heatmap",
        "z": db,
        "x0": 0.0,
        "dx": frame_s,
        "zmin": z_range[0],
        "zmax": z_range[1],
        "colorscale": "Viridis",
        "showscale": scale,
        "colorbar": {"title": {"text": "dB"}, "thickness": 10},
        "hovertemplate": "%{x:.2f} s, mel bin %{y}: %{z} dB<extra></extra>",
    }
    layout = {
        "margin": {"l": 45, "r": 10, "t": 5, "b": 25},
        "xaxis": {"ticksuffix": " s"},
        "yaxis": {"title": {"text": "mel bin"}},
    }
    figure = {"data": [heatmap], "layout": layout}
    return page.figure(figure, height=170, width=420 if scale else 340, modebar=False)


def listening_html(
    chosen: list[Listened], report_dir: Path, recipe: str, audio_budget: int = AUDIO_BUDGET
) -> str:
    """The section body: one table per clip (reference | trial | early | newest); WAVs are
    embedded up to ``audio_budget`` bytes, then linked relative to ``report_dir``."""
    with_audio = [t for t in chosen if any((t.samples / "reference").glob("*.wav"))]
    if not with_audio:
        return page.note(
            f"Nothing to listen to: no audio in these trials' samples/ folders (the {recipe} "
            "recipe writes none, or its trials never reached a validation)."
        )
    sources = AudioSources(report_dir, audio_budget)
    mels: dict[int, LogMel] = {}
    clips = sorted({p.stem for t in with_audio for p in (t.samples / "reference").glob("*.wav")})
    parts = [clip_html(clip, with_audio, sources, mels) for clip in clips[:MAX_CLIPS]]
    if sources.linked:
        parts.append(
            page.note(
                f"{sources.linked} clips are linked, not embedded (over the page's audio "
                "budget): keep the report beside its search folder to play them."
            )
        )
    return "".join(parts)


def clip_html(
    clip: str, trials: list[Listened], sources: AudioSources, mels: dict[int, LogMel]
) -> str:
    """One clip: its reference beside every trial's early and newest generated version."""
    reference = next(
        wav for t in trials if (wav := t.samples / "reference" / f"{clip}.wav").is_file()
    )
    versions = []  # (trial, [(caption, wav)])
    for trial in trials:
        found = [(caption, d / f"{clip}.wav") for caption, d in rounds(trial.samples)]
        versions.append((trial, [(caption, wav) for caption, wav in found if wav.is_file()]))
    spectra = {reference: log_mel_db(reference, mels)}
    spectra.update({wav: log_mel_db(wav, mels) for _, found in versions for _, wav in found})
    peak = max(int(db.max()) for db, _ in spectra.values())
    z_range = (peak - 80, peak)  # 80 dB down from the loudest bin of any version of this clip

    def player(wav: Path, caption: str, scale: bool = False) -> str:
        db, frame_s = spectra[wav]
        return (
            f"<div>{page.esc(caption)}</div>"
            f'<audio controls preload="metadata" src="{sources(wav)}"></audio>'
            + spectrogram(db, frame_s, z_range, scale)
        )

    rows = []
    for i, (trial, found) in enumerate(versions):
        first = ""
        if i == 0:
            first = f'<td rowspan="{len(versions)}">{player(reference, "reference", True)}</td>'
        generated = "".join(f"<td>{player(wav, caption)}</td>" for caption, wav in found)
        rows.append(f"<tr>{first}<th>{page.esc(trial.label)}</th>{generated}</tr>")
    header = "<tr><th>reference</th><th>trial</th><th colspan=2>generated</th></tr>"
    return (
        f"<h3>clip {page.esc(clip)}</h3>"
        f'<div class="scroll"><table class="listen">{header}{"".join(rows)}</table></div>'
    )
