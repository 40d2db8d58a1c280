"""A tiny paired (clean/ + noisy/) corpus for the enhancement recipe tests: synthetic voices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_pair_corpus(root: Path, pairs: int = 6, seconds: float = 1.5) -> Path:
    """``pairs`` harmonic 'voices' with a moving pitch, each with a white-noise copy at ~5 dB."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    for folder in ("clean", "noisy"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        f0 = 110 + 30 * i + 20 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(3 * t))
        voice = 0.3 * voice / np.abs(voice).max()
        noise = rng.standard_normal(t.size) * np.sqrt(np.mean(voice**2) / 10 ** (5 / 10))
        sf.write(root / "clean" / f"utt{i}.wav", voice.astype(np.float32), SR)
        sf.write(root / "noisy" / f"utt{i}.wav", (voice + noise).astype(np.float32), SR)
    return root
