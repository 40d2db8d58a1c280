"""Scoring throughput: a serial loop against a 2-worker process pool on 32 vocoder-like pairs.

Each pair is a 3 s crop of the shared reference speech resampled to 22.05 kHz (the reference)
and the same crop plus babble noise at 0-20 dB SNR (the estimate).  All six metrics are scored.
The pool is started once and warmed up, as a trial keeps it between validations; its start-up
is timed separately.

    uv run python benchmarks/scoring.py [--pairs 32] [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import os

# the serial baseline gets single-threaded BLAS too, as the pool's workers do (set before numpy)
os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from harness.scoring.pairs import ScorePair, score_pairs  # noqa: E402
from harness.scoring.pool import ScoringPool  # noqa: E402
from harness.scoring.speech import resample  # noqa: E402

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pesq-reference"
RATE = 22050


def make_pairs(n: int, seconds: float = 3.0, seed: int = 0) -> list[ScorePair]:
    """``n`` (clean crop, noisy crop) pairs at 22.05 kHz from the shared reference recording."""
    clean, rate = sf.read(REFERENCE_DIR / "speech.wav")
    babble = sf.read(REFERENCE_DIR / "speech_bab_0dB.wav")[0] - clean  # the noise alone
    clean, babble = resample(clean, rate, RATE), resample(babble, rate, RATE)
    rng = np.random.default_rng(seed)
    length = int(seconds * RATE)
    pairs = []
    for i in range(n):
        start = int(rng.integers(0, clean.size - length + 1))
        ref = clean[start : start + length]
        noise = np.roll(babble, int(rng.integers(babble.size)))[:length]
        snr_db = rng.uniform(0.0, 20.0)
        gain = np.sqrt(np.mean(ref**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
        pairs.append(ScorePair(f"utt{i:02d}", ref, ref + gain * noise))
    return pairs


def timings(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds (this process only) of ``fn()`` over ``repeats`` runs.

    Serial wall time above its CPU time means other processes held the core meanwhile.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not REFERENCE_DIR.is_dir():
        sys.exit(f"{REFERENCE_DIR}: missing; the benchmark needs the shared reference speech")
    pairs = make_pairs(args.pairs)

    serial, serial_cpu = timings(lambda: score_pairs(pairs, RATE, workers=1), args.repeats)
    start = time.perf_counter()
    with ScoringPool(args.workers) as pool:
        first = score_pairs(pairs, RATE, pool=pool)
        cold = time.perf_counter() - start
        warm, _ = timings(lambda: score_pairs(pairs, RATE, pool=pool), args.repeats)

    print(f"{args.pairs} pairs x 3 s at {RATE} Hz, metrics: {', '.join(first.mean)}")
    print(
        f"serial, 1 process        median of {args.repeats}: {serial:6.2f} s ({serial_cpu:.2f} s CPU)"
    )
    print(f"pool of {args.workers}, warm          median of {args.repeats}: {warm:6.2f} s")
    print(f"pool start + first call               {cold:6.2f} s")
    print(f"speed-up serial / warm pool: {serial / warm:.2f}x")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
