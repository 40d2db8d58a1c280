"""The built-in noisy speech corpus: the espeak-ng speech at 16 kHz mixed with noise at the
VoiceBank-DEMAND SNRs, written in the VoiceBank-DEMAND layout.

Why: speech enhancement trains on (clean, noisy) pairs; with no ``--data`` the harness mixes its
own from the built-in clean corpus (harness/audio/corpus.py), without downloads.  A tenth of the
clips (drawn by the seed) form the test set, mixed at the VoiceBank-DEMAND test SNRs
{2.5, 7.5, 12.5, 17.5} dB; the rest train at its training SNRs {0, 5, 10, 15} dB.  Each clip gets
one noise, balanced over :data:`NOISE_TYPES`: white, pink and brown noise, babble of talkers held
out of the clean corpus (espeak-ng voice variants it never uses), 50/60 Hz mains hum with
harmonics, and amplitude-modulated pink noise.  ``noise_dir`` swaps the synthetic noises for the
user's own recordings (any format libsndfile reads, a random stretch of one per clip, looped if
short).

SNR is measured over the whole clip, ``10 log10(sum clean^2 / sum noise^2)`` (the clips carry
only 50 ms of silence at each end).  Where the mixture would peak above :data:`PEAK`, clean and
noisy are scaled down together, which leaves the SNR unchanged.  Files are 16-bit PCM.

Layout: ``clean_trainset_wav/``, ``noisy_trainset_wav/``, ``clean_testset_wav/``,
``noisy_testset_wav/`` (``<id>.wav`` in each), :data:`MANIFEST` (``id,split,noise,snr_db,detail``
per clip) and ``babble/`` (the talkers and how each was spoken).  Like the clean corpus it is
cached under a name hashing every setting, built once under a lock into a temp folder renamed into
place.  The talkers are spoken in a fresh process (espeak-ng keeps state across calls) and the
mixing runs on one torch thread, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.audio import babble, corpus
from harness.audio.corpus import CorpusError, build_once, ensure_corpus
from harness.audio.datasets import (
    AUDIO_EXTENSIONS,
    AudioFile,
    DataError,
    audio_files,
    draw_validation,
    load_audio,
    open_corpus,
    read_header,
    stream_rng,
)
from harness.scoped import single_threaded_torch

SAMPLE_RATE = 16000
NOISY_VERSION = 1  # bump when the noises, the plan or the mixing change
TRAIN_SNRS_DB = (0.0, 5.0, 10.0, 15.0)  # VoiceBank-DEMAND training set
TEST_SNRS_DB = (2.5, 7.5, 12.5, 17.5)  # VoiceBank-DEMAND test set
NOISE_TYPES = ("white", "pink", "brown", "babble", "hum", "am")
TEST_SHARE = 0.1  # of the clips, held out as the test set
PEAK = corpus.PEAK  # the mixture's peak is kept at or below this
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("id", "split", "noise", "snr_db", "detail")
FOLDERS = {  # split -> (clean folder, noisy folder), the VoiceBank-DEMAND names
    "train": ("clean_trainset_wav", "noisy_trainset_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
}

BABBLE_FOLDER = "babble"  # the held-out talkers (harness/audio/babble.py), kept for listening
BABBLE_TALKERS_PER_CLIP = (4, 8)
COLOUR_FLOOR_HZ = 20.0  # pink/brown spectra stop rising below this
MAINS_HZ = (50, 60)
HUM_HARMONICS = 12
AM_RATE_HZ = (0.5, 8.0)
AM_DEPTH = (0.5, 1.0)


def ensure_noisy_corpus(
    root: Path | None = None,
    n_utterances: int = 320,
    seed: int = 0,
    noise_dir: str | Path | None = None,
    n_test: int | None = None,
    progress: bool = True,
) -> Path:
    """Return the noisy corpus folder for these settings under ``root``, mixing it once if missing.

    The clean corpus (``n_utterances`` clips, corpus seed 0) is generated first if needed, in the
    same ``root``.  ``seed`` draws the test set, the noise and SNR of each clip and the noise
    samples.  ``n_test`` defaults to :data:`TEST_SHARE` of the clips.
    """
    root = Path(root) if root is not None else corpus.default_cache_dir()
    n_test = max(1, round(TEST_SHARE * n_utterances)) if n_test is None else n_test
    if not 1 <= n_test < n_utterances:
        raise CorpusError(f"n_test must be in [1, {n_utterances}), got {n_test}")
    noise = _noise_folder(noise_dir) if noise_dir is not None else None
    clean = ensure_corpus(root, n_utterances, seed=0, progress=progress)
    name = noisy_name(clean.name, n_utterances, seed, n_test, _noise_key(noise))
    return build_once(
        root, name, lambda tmp: write_noisy_corpus(tmp, clean, seed, n_test, noise, progress)
    )


def noisy_name(clean_name: str, n_utterances: int, seed: int, n_test: int, noise_key: str) -> str:
    """Folder name: readable settings plus a hash of everything the bytes depend on."""
    versions = f"torchaudio {metadata.version('torchaudio')}, numpy {np.__version__}"
    key = f"{NOISY_VERSION}|{clean_name}|{seed}|{n_test}|{noise_key}|{versions}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    kind = "synthetic" if noise_key == "synthetic" else "recorded"
    return f"noisy-{kind}-n{n_utterances}-s{seed}-{digest}"


def _noise_folder(noise_dir: str | Path) -> Path:
    """The recordings' folder, resolved, once every file in it has a readable header."""
    folder = Path(noise_dir).resolve()
    if not folder.is_dir():
        raise DataError(f"noise folder {noise_dir} does not exist or is not a folder")
    RecordedNoise(folder)  # raises on an empty folder or an unreadable file, naming it
    return folder


def _noise_key(folder: Path | None) -> str:
    """``synthetic``, or a hash of the recordings' names and bytes (new recordings, new corpus)."""
    if folder is None:
        return "synthetic"
    digest = hashlib.sha256()
    for path in audio_files(folder):
        digest.update(f"{path.relative_to(folder).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- mixing


def write_noisy_corpus(
    out_dir: Path,
    clean_dir: Path,
    seed: int,
    n_test: int,
    noise_dir: str | Path | None = None,
    progress: bool = False,
) -> list[dict[str, str]]:
    """Mix the corpus into ``out_dir`` (the babble talkers are spoken in a fresh process)."""
    began = time.perf_counter()
    out_dir.mkdir(parents=True)
    files = open_corpus(clean_dir, SAMPLE_RATE).files
    held_out = set(draw_validation(files, n_test, seed, clean_dir))
    if noise_dir:
        source: NoiseSource = RecordedNoise(Path(noise_dir))
    else:
        babble.speak_talkers(out_dir / BABBLE_FOLDER, seed)
        source = SyntheticNoise(load_talkers(out_dir / BABBLE_FOLDER))
    with single_threaded_torch():  # resampled bytes independent of the caller's threads
        rows = _mix_all(out_dir, files, held_out, source, seed)
    _write_csv(out_dir / MANIFEST, MANIFEST_COLUMNS, rows)
    if progress:
        took = time.perf_counter() - began
        print(f"noisy corpus: {len(rows)} clips mixed in {took:.1f} s", file=sys.stderr)
    return rows


def _mix_all(
    out_dir: Path,
    files: Sequence[AudioFile],
    held_out: set[AudioFile],
    source: NoiseSource,
    seed: int,
) -> list[dict[str, str]]:
    rows = []
    for split, snrs in (("train", TRAIN_SNRS_DB), ("test", TEST_SNRS_DB)):
        clean_folder, noisy_folder = (out_dir / name for name in FOLDERS[split])
        clean_folder.mkdir()
        noisy_folder.mkdir()
        members = [(i, f) for i, f in enumerate(files) if (f in held_out) == (split == "test")]
        kinds, levels = plan(seed, split, len(members), len(source.kinds), snrs)
        for (index, file), kind, snr_db in zip(members, kinds, levels, strict=True):
            clean = load_audio(file, SAMPLE_RATE).double().numpy()
            noise, detail = source.draw(kind, stream_rng(seed, "noise-mix", index), len(clean))
            clean_out, noisy_out = mix_at_snr(clean, noise, snr_db)
            clip_id = file.path.stem
            _write_pcm16(clean_folder / f"{clip_id}.wav", clean_out)
            _write_pcm16(noisy_folder / f"{clip_id}.wav", noisy_out)
            rows.append(
                {
                    "id": clip_id,
                    "split": split,
                    "noise": source.kinds[kind],
                    "snr_db": f"{snr_db:g}",
                    "detail": detail,
                }
            )
    return rows


def plan(
    seed: int, split: str, n_clips: int, n_kinds: int, snrs_db: Sequence[float]
) -> tuple[list[int], list[float]]:
    """Each clip's noise (an index) and SNR: both balanced (counts differ by at most one),
    independently shuffled by the seed."""
    rng = stream_rng(seed, "noise-plan", list(FOLDERS).index(split))
    kinds = [int(k) % n_kinds for k in rng.permutation(n_clips)]
    levels = [float(snrs_db[int(k) % len(snrs_db)]) for k in rng.permutation(n_clips)]
    return kinds, levels


def mix_at_snr(
    clean: np.ndarray, noise: np.ndarray, snr_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, clean + noise) with the (not silent) noise scaled to ``snr_db`` below the clean
    energy, both scaled down together if the louder peaks above :data:`PEAK`."""
    scale = np.sqrt(np.sum(clean**2) / (np.sum(noise**2) * 10 ** (snr_db / 10)))
    noisy = clean + scale * noise
    peak = max(np.abs(noisy).max(), np.abs(clean).max())
    gain = min(1.0, PEAK / peak)
    return clean * gain, noisy * gain


def _write_pcm16(path: Path, audio: np.ndarray) -> None:
    """16-bit WAV, encoded in memory: libsndfile fsyncs every file it closes, which here would
    cost more than the mixing (the folder is renamed into place only once complete anyway)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.round(audio * 32767).astype(np.int16), SAMPLE_RATE, format="WAV")
    path.write_bytes(buffer.getvalue())


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- noise sources


class NoiseSource(ABC):
    """Named kinds of noise to draw from."""

    kinds: Sequence[str]

    @abstractmethod
    def draw(self, kind: int, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
        """``n`` samples of ``kinds[kind]`` at :data:`SAMPLE_RATE` and a note on how they were
        made (for the manifest)."""


class SyntheticNoise(NoiseSource):
    """The built-in noises of :data:`NOISE_TYPES`; babble needs the talkers' speech."""

    kinds = NOISE_TYPES

    def __init__(self, talkers: Sequence[np.ndarray]) -> None:
        makers: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, str]]] = {
            "white": white_noise,
            "pink": partial(coloured_noise, exponent=1.0),
            "brown": partial(coloured_noise, exponent=2.0),
            "babble": partial(babble_noise, talkers=list(talkers)),
            "hum": mains_hum,
            "am": modulated_noise,
        }
        self._makers = [makers[name] for name in self.kinds]

    def draw(self, kind: int, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
        return self._makers[kind](rng, n)


class RecordedNoise(NoiseSource):
    """The user's noise recordings: a random stretch of one file per clip, looped if short."""

    def __init__(self, folder: Path) -> None:
        self.files: list[AudioFile] = [read_header(p) for p in audio_files(folder)]
        if not self.files:
            raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
        self.kinds = [f.path.relative_to(folder).as_posix() for f in self.files]

    def draw(self, kind: int, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
        file = self.files[kind]
        length = file.length_at(SAMPLE_RATE)
        start = at = int(rng.integers(length))
        pieces: list[np.ndarray] = []
        while (missing := n - sum(map(len, pieces))) > 0:
            piece = load_audio(file, SAMPLE_RATE, at, min(length, at + missing))
            if piece.numel() == 0:
                raise DataError(f"{file.path}: no samples could be read from sample {at}")
            pieces.append(piece.double().numpy())
            at = 0
        noise = np.concatenate(pieces)
        if not noise.any():
            raise DataError(f"{file.path}: silent from sample {start}; cannot mix it at an SNR")
        return noise, f"from sample {start}"


def white_noise(rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
    """Gaussian white noise."""
    return rng.standard_normal(n), ""


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> tuple[np.ndarray, str]:
    """Noise with power falling as 1/f**exponent (1: pink, 2: brown), flat below
    :data:`COLOUR_FLOOR_HZ` so the lowest bins do not swamp the rest; no DC.  Shaped at the next
    power of two (a fast FFT length) and cut to ``n``."""
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    spectrum *= np.maximum(freqs, COLOUR_FLOOR_HZ) ** (-exponent / 2)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, size)[:n], ""


def load_talkers(folder: Path) -> list[np.ndarray]:
    """The babble talkers' tracks at :data:`SAMPLE_RATE`, each scaled to unit RMS."""
    files = [read_header(path) for path in audio_files(folder)]
    tracks = [load_audio(file, SAMPLE_RATE).double().numpy() for file in files]
    return [track / np.sqrt(np.mean(track**2)) for track in tracks]


def babble_noise(
    rng: np.random.Generator, n: int, talkers: Sequence[np.ndarray]
) -> tuple[np.ndarray, str]:
    """4-8 held-out talkers, each from a random point of its looped track at equal loudness."""
    count = int(rng.integers(BABBLE_TALKERS_PER_CLIP[0], BABBLE_TALKERS_PER_CLIP[1] + 1))
    chosen = rng.choice(len(talkers), size=min(count, len(talkers)), replace=False)
    mix = np.zeros(n)
    for talker in chosen:
        track = talkers[talker]
        start = int(rng.integers(len(track)))
        mix += np.take(track, np.arange(start, start + n), mode="wrap")
    return mix, f"{len(chosen)} talkers"


def mains_hum(rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
    """50 or 60 Hz mains hum: the fundamental and harmonics with random levels (falling ~1/k)
    and phases.  It repeats every ``SAMPLE_RATE / gcd(SAMPLE_RATE, mains)`` samples, so one such
    block is computed and tiled."""
    mains = MAINS_HZ[int(rng.integers(len(MAINS_HZ)))]
    k = np.arange(1, HUM_HARMONICS + 1)
    levels = rng.uniform(0.1, 1.0, HUM_HARMONICS) / k
    phases = rng.uniform(0, 2 * np.pi, HUM_HARMONICS)
    period = SAMPLE_RATE // math.gcd(SAMPLE_RATE, int(mains))
    t = np.arange(period) / SAMPLE_RATE
    block = (levels * np.sin(2 * np.pi * mains * np.outer(t, k) + phases)).sum(axis=1)
    return np.resize(block, n), f"{mains:g} Hz"


def modulated_noise(rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
    """Pink noise under a sinusoidal envelope (fans, engines, passing traffic)."""
    carrier, _ = coloured_noise(rng, n, exponent=1.0)
    rate, depth = rng.uniform(*AM_RATE_HZ), rng.uniform(*AM_DEPTH)
    phase = rng.uniform(0, 2 * np.pi)
    envelope = 1 + depth * np.sin(2 * np.pi * rate * np.arange(n) / SAMPLE_RATE + phase)
    return carrier * envelope, f"{rate:.2f} Hz, depth {depth:.2f}"
