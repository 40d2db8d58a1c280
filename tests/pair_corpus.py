"""A tiny paired (clean/ + noisy/) corpus for the enhancement recipe tests: synthetic voices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_pair_corpus(
    root: Path,
    pairs: int = 6,
    seconds: float = 1.5,
    sample_rate: int = SR,
    ext: str = "wav",
    channels: int = 1,
    **soundfile_kwargs: str,
) -> Path:
    """``pairs`` harmonic 'voices' with a moving pitch, each with a white-noise copy at ~5 dB,
    written as ``ext`` files at ``sample_rate`` (a second channel at half level if stereo)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for folder in ("clean", "noisy"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        f0 = 110 + 30 * i + 20 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(3 * t))
        voice = 0.3 * voice / np.abs(voice).max()
        noise = rng.standard_normal(t.size) * np.sqrt(np.mean(voice**2) / 10 ** (5 / 10))
        for folder, audio in (("clean", voice), ("noisy", voice + noise)):
            data = audio if channels == 1 else np.stack([audio, 0.5 * audio], axis=1)
            path = root / folder / f"utt{i}.{ext}"
            sf.write(path, data.astype(np.float32), sample_rate, **soundfile_kwargs)
    return root
