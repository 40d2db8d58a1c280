"""The built-in speech corpus: seeded English sentences spoken by espeak-ng, in the LJSpeech layout.

Why: with no ``--data`` the harness still needs speech to train and score on, without downloads.
The ``espeakng-loader`` wheel ships libespeak-ng and its voice data; we call its C API through
ctypes and write ``wavs/<id>.wav`` (22050 Hz mono PCM_16) plus ``metadata.csv`` (``id|text|text``)
and ``voices.csv`` (how each clip was spoken) into a cache folder named after a hash of the
settings, so different settings never collide and a second call returns at once.

Determinism: espeak-ng seeds its noise RNG from the clock (we reseed it per clip) and keeps
synthesiser state (oscillator phase, flutter, echo) across calls that ``espeak_Terminate`` does not
reset, so one text spoken twice in a process can differ by a few samples.  A corpus is therefore
always synthesised in a fresh Python subprocess, where the same sequence of calls gives
byte-identical audio.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.audio.sentences import make_sentence
from harness.files import unwritable_reason

SAMPLE_RATE = 22050
CORPUS_VERSION = 1  # bump when the grammar, voices or processing change

# espeak-ng voice files (espeak-ng-data/lang/gmw/) and voice variants (espeak-ng-data/voices/!v/)
ACCENTS = (
    "en-us",
    "en",  # British English
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")

RATE_WPM = (130, 210)  # espeakRATE, words per minute
PITCH = (25, 75)  # espeakPITCH, base pitch 0-100 (50 = the voice's own)
PITCH_RANGE = (20, 80)  # espeakRANGE, intonation range 0-100 (0 = monotone)
GAIN = (0.5, 1.0)  # peak = PEAK * gain, so levels vary across clips
PEAK = 0.95
SECONDS = (1.5, 5.0)  # target clip length, margins included
KEEP_SILENCE_S = 0.05  # quiet margin before and after the speech
SILENCE_THRESHOLD = 0.02  # of the clip's peak
MAX_ATTEMPTS = 6  # sentences tried per clip to land inside SECONDS

# espeak-ng C API constants (src/include/espeak-ng/speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class CorpusError(ValueError):
    """espeak-ng or one of its voices is unusable, or generation failed; the message is one line."""


def default_cache_dir() -> Path:
    """Where built-in corpora live: ``$GAN_HARNESS_CACHE``, else ``~/.cache/gan-harness``."""
    env = os.environ.get("GAN_HARNESS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gan-harness"


CACHE_ADVICE = "point GAN_HARNESS_CACHE at a folder this user can write"


def cache_name(root: Path) -> str:
    """``root`` as the user knows it: the corpus cache, named by ``$GAN_HARNESS_CACHE`` where
    that set it."""
    named = os.environ.get("GAN_HARNESS_CACHE")
    where = " ($GAN_HARNESS_CACHE)" if named and Path(named).expanduser() == root else ""
    return f"corpus cache {root}{where}"


def ensure_corpus(
    root: Path | None = None, n_utterances: int = 320, seed: int = 0, progress: bool = True
) -> Path:
    """Return the corpus folder for these settings under ``root``, generating it once if missing
    (see :func:`build_once`)."""
    if n_utterances < 1:
        raise CorpusError(f"n_utterances must be >= 1, got {n_utterances}")
    root = Path(root) if root is not None else default_cache_dir()
    return build_once(
        root,
        corpus_name(n_utterances, seed),
        lambda tmp: _generate_in_subprocess(tmp, n_utterances, seed, progress),
    )


def build_once(root: Path, name: str, build: Callable[[Path], None]) -> Path:
    """Return ``root / name``, first calling ``build(tmp)`` to fill it if it is missing.

    Safe for concurrent callers: one holds a file lock and builds into a hidden temp folder that
    is renamed into place when complete; the others wait and then find it there.  Temp folders
    left by a killed build are removed.
    """
    final = root / name
    if final.is_dir():
        return final
    unwritable = unwritable_reason(root)
    if unwritable is not None:
        raise CorpusError(f"{cache_name(root)}: {unwritable}; {CACHE_ADVICE}")
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{name}.lock"):
        if final.is_dir():  # another process finished it while we waited
            return final
        for stale in root.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            build(tmp)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def corpus_name(n_utterances: int, seed: int) -> str:
    """Folder name: readable settings plus a short hash that also covers the espeak-ng build."""
    key = f"{n_utterances}|{seed}|{CORPUS_VERSION}|{espeak_version()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"espeak-n{n_utterances}-s{seed}-{digest}"


def espeak_version() -> str:
    """The espeak-ng library version and the wheel that ships it, e.g. ``1.52.0/0.2.4``."""
    lib = _load_library()
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    return f"{lib.espeak_Info(None).decode()}/{metadata.version('espeakng-loader')}"


def espeak_data_path() -> Path:
    """The espeak-ng voice data folder that espeakng-loader ships."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


def _load_library() -> ctypes.CDLL:
    try:
        import espeakng_loader

        return ctypes.CDLL(espeakng_loader.get_library_path())
    except (ImportError, OSError, RuntimeError) as exc:
        raise CorpusError(f"cannot load the espeak-ng library (espeakng-loader): {exc}") from exc


def check_voices(
    data_path: Path, variants: Sequence[str] = MALE_VARIANTS + FEMALE_VARIANTS
) -> None:
    """Fail with the missing voice's name unless every accent and variant ships in the data."""
    voice_files = {p.name.lower() for p in (data_path / "lang").rglob("*") if p.is_file()}
    for accent in ACCENTS:
        if accent not in voice_files:
            raise CorpusError(f"espeak-ng voice {accent!r} not found under {data_path / 'lang'}")
    for variant in variants:
        if not (data_path / "voices" / "!v" / variant).is_file():
            raise CorpusError(f"espeak-ng voice variant {variant!r} not found in {data_path}")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate_in_subprocess(out_dir: Path, n_utterances: int, seed: int, progress: bool) -> None:
    """Run :func:`write_corpus` in a fresh interpreter (see the module docstring for why)."""
    check_voices(espeak_data_path())
    args = (out_dir, n_utterances, seed, int(progress))
    run_fresh("harness.audio.corpus", "_worker_main", args, "espeak-ng corpus generation")


def run_fresh(module: str, function: str, args: Sequence[object], what: str) -> None:
    """Call ``module.function()`` in a fresh Python process with ``args`` as its ``sys.argv[1:]``.

    The function reports a user-facing error by printing one line to stdout and exiting non-zero;
    that line is raised here as a :class:`CorpusError` prefixed by ``what``.  stderr (progress,
    tracebacks) goes to ours.
    """
    project_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
    code = f"from {module} import {function}; {function}()"
    cmd = [sys.executable, "-c", code, *map(str, args)]
    result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        message = result.stdout.strip() or f"exit code {result.returncode}, see stderr above"
        raise CorpusError(f"{what} failed: {message}")


def _worker_main() -> None:
    out_dir, n_utterances, seed, progress = sys.argv[1:5]
    try:
        write_corpus(Path(out_dir), int(n_utterances), int(seed), progress == "1")
    except CorpusError as exc:
        print(exc, flush=True)
        sys.exit(2)


# --------------------------------------------------------------------------- synthesis


class Espeak:
    """The espeak-ng library in synchronous retrieval mode; one per process (its state is global)."""

    def __init__(self) -> None:
        self._lib = lib = _load_library()
        self._chunks: list[np.ndarray] = []
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(espeak_data_path()).encode(), 0
        )
        if rate != SAMPLE_RATE:
            raise CorpusError(f"espeak_Initialize returned {rate}, expected {SAMPLE_RATE} Hz")
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds a pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer, n_samples: int, _events: int) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = continue synthesis

    def speak(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, noise_seed: int
    ) -> np.ndarray:
        """Speak ``text`` and return its int16 samples at :data:`SAMPLE_RATE`.

        ``noise_seed`` seeds espeak-ng's own RNG (breath and roughness noise), which
        espeak_Initialize otherwise seeds from the clock.
        """
        lib = self._lib
        lib.espeak_ng_SetRandSeed(noise_seed)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise CorpusError(f"espeak-ng voice {voice!r} not found")
        for parameter, value in (
            (_ESPEAK_RATE, rate),
            (_ESPEAK_PITCH, pitch),
            (_ESPEAK_RANGE, pitch_range),
        ):
            lib.espeak_SetParameter(parameter, value, 0)
        self._chunks.clear()
        data = text.encode() + b"\0"
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        if status != 0 or not audio.any():
            raise CorpusError(f"espeak-ng produced no audio for {text!r} (status {status})")
        return audio


def fit_margins(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Trim or zero-pad so KEEP_SILENCE_S of quiet (below SILENCE_THRESHOLD of the peak) surrounds
    the speech at each end: espeak-ng starts and stops abruptly, and clips should not."""
    loud = np.flatnonzero(np.abs(samples) > SILENCE_THRESHOLD * np.abs(samples).max())
    keep = int(KEEP_SILENCE_S * sample_rate)
    padded = np.pad(samples, keep)  # index i of samples is index i + keep here
    return padded[loud[0] : loud[-1] + 1 + 2 * keep]


def normalise(samples: np.ndarray, gain: float) -> np.ndarray:
    """Scale int16 samples so their peak is ``PEAK * gain`` of full scale."""
    x = samples.astype(np.float64)
    x *= PEAK * gain * 32767 / np.abs(x).max()
    return np.round(x).astype(np.int16)


@dataclass(frozen=True)
class Utterance:
    """How one clip is spoken; a row of voices.csv."""

    id: str
    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    gain: float


def plan_voice(seed: int, index: int) -> tuple[random.Random, str, int, int, int, float]:
    """The clip's own RNG and voice settings; even clips get male variants, odd ones female."""
    rng = random.Random(f"gan-harness-corpus:{seed}:{index}")
    variants = MALE_VARIANTS if index % 2 == 0 else FEMALE_VARIANTS
    voice = f"{rng.choice(ACCENTS)}+{rng.choice(variants)}"
    rate, pitch = rng.randint(*RATE_WPM), rng.randint(*PITCH)
    return rng, voice, rate, pitch, rng.randint(*PITCH_RANGE), round(rng.uniform(*GAIN), 3)


def synthesise(espeak: Espeak, seed: int, index: int) -> tuple[Utterance, np.ndarray]:
    """Speak clip ``index``: a sentence whose clip lands in SECONDS, with margins, normalised."""
    rng, voice, rate, pitch, pitch_range, gain = plan_voice(seed, index)
    seconds = rng.uniform(*SECONDS)
    words_per_second = rate / 60
    for _ in range(MAX_ATTEMPTS):
        n_words = max(3, round(seconds * words_per_second))
        text = make_sentence(rng, n_words)
        noise_seed = rng.randrange(2**31)
        audio = fit_margins(espeak.speak(text, voice, rate, pitch, pitch_range, noise_seed))
        duration = len(audio) / SAMPLE_RATE
        if SECONDS[0] <= duration <= SECONDS[1]:
            break
        words_per_second *= seconds / duration  # aim again with the speed actually observed
    utterance = Utterance(f"espeak-{index:05d}", text, voice, rate, pitch, pitch_range, gain)
    return utterance, normalise(audio, gain)


def write_corpus(
    out_dir: Path, n_utterances: int, seed: int, progress: bool = True
) -> list[Utterance]:
    """Synthesise the corpus into ``out_dir``; call it in a fresh process (see module docstring)."""
    espeak = Espeak()
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    report = _progress_printer(n_utterances) if progress else lambda done: None
    utterances = []
    for index in range(n_utterances):
        utterance, audio = synthesise(espeak, seed, index)
        sf.write(out_dir / "wavs" / f"{utterance.id}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        utterances.append(utterance)
        report(index + 1)
    with open(out_dir / "metadata.csv", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{u.id}|{u.text}|{u.text}\n" for u in utterances)
    with open(out_dir / "voices.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write("id|voice|rate|pitch|range|gain\n")
        f.writelines(
            f"{u.id}|{u.voice}|{u.rate}|{u.pitch}|{u.pitch_range}|{u.gain}\n" for u in utterances
        )
    return utterances


def _progress_printer(total: int) -> Callable[[int], None]:
    """A counter on stderr: rewritten in place on a terminal, a line per ~10% in a log."""
    tty = sys.stderr.isatty()
    step = max(1, total // 10)

    def report(done: int) -> None:
        if tty:
            end = "\n" if done == total else ""
            print(f"\respeak-ng corpus: {done}/{total} utterances", end=end, file=sys.stderr)
        elif done % step == 0 or done == total:
            print(f"espeak-ng corpus: {done}/{total} utterances", file=sys.stderr)
        sys.stderr.flush()

    return report
