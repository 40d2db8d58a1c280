"""Bad inputs a new user could give, each through the real CLI (``python run.py ...``).

Every case must end with a non-zero exit, no traceback, a last stderr line that is the error
(``error: ...``, or argparse's ``run.py CMD: error: ...`` for malformed arguments) naming the
culprit, and nothing left behind in the working folder (no output or results folder, no temp
files).  The table of cases is written up in docs/reliability.md, "Bad inputs".
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from hostile import WritesAFile

from harness.files import exclusive_lock

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
ERROR_LINE = re.compile(r"^(run\.py \w+: )?error: ")

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """``argv`` after ``run.py`` ({tmp} is the case's folder, {port} a TCP port where nothing
    listens); the last stderr line must contain ``culprit``; ``setup`` writes the inputs first;
    ``env`` is set for the command."""

    id: str
    argv: str
    culprit: str
    setup: Setup = field(default=lambda tmp: None)
    absent: str = ""  # a path (under {tmp}) the command must not create
    env: dict[str, str] = field(default_factory=dict)
    held: str = ""  # a lock file (under {tmp}) another process holds while the command runs


# ---------------------------------------------------------------- inputs the cases read


def voice(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A harmonic 'voice' with a moving pitch, float32."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * seed + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    audio = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.3 * audio / np.abs(audio).max()).astype(np.float32)


def wav(path: Path, audio: np.ndarray, subtype: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR, subtype=subtype)


def with_nan(audio: np.ndarray, at: int = 100) -> np.ndarray:
    audio = audio.copy()
    audio[at] = np.nan
    return audio


def corpus(tmp: Path, bad: dict[str, np.ndarray] | None = None, n: int = 10) -> None:
    """``data/`` with ``n`` good clips of 1.5 s (float WAV), plus ``bad`` ones by name."""
    for i in range(n):
        wav(tmp / "data" / f"clip{i}.wav", voice(seed=i), "FLOAT")
    for name, audio in (bad or {}).items():
        wav(tmp / "data" / name, audio, "FLOAT")


def pairs(tmp: Path, noisy_fault: np.ndarray | None = None, n: int = 10) -> None:
    """``data/clean`` + ``data/noisy`` pairs; ``noisy_fault`` replaces the last noisy clip."""
    rng = np.random.default_rng(0)
    for i in range(n):
        clean = voice(seed=i)
        noisy = clean + 0.05 * rng.standard_normal(clean.size).astype(np.float32)
        wav(tmp / "data" / "clean" / f"u{i}.wav", clean, "FLOAT")
        last = noisy_fault is not None and i == n - 1
        wav(tmp / "data" / "noisy" / f"u{i}.wav", noisy_fault if last else noisy, "FLOAT")


def text_file(name: str, text: str = "not audio\n") -> Setup:
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)

    return setup


def space(doc: object) -> Setup:
    """``space.yaml`` holding ``doc`` (a string is written verbatim)."""
    return text_file("space.yaml", doc if isinstance(doc, str) else yaml.safe_dump(doc))


RING = {"objective": "reverse_kl", "space": {"lr_g": {"loguniform": [1e-4, 1e-2]}}}


def ring_space(**params: object) -> Setup:
    return space({**RING, "space": params})


def malicious_checkpoint(tmp: Path) -> None:
    import torch

    folder = tmp / "out" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"step": 1, "payload": WritesAFile(tmp / "pwned")}, folder / "step_00000001.pt")


def score_inputs(tmp: Path) -> None:
    speech = voice(3.0)
    wav(tmp / "ref.wav", speech)
    wav(tmp / "silent.wav", np.zeros_like(speech))
    blip = np.zeros_like(speech)
    blip[20000:20300] = speech[20000:20300]  # audible, but too short to be an utterance (PESQ)
    wav(tmp / "blip.wav", blip)
    sf.write(tmp / "ref22k.wav", speech, 22050)
    (tmp / "notaudio.wav").write_text("not audio\n")


def torch_file(path: Path) -> None:
    import torch

    torch.save({"generator": {}, "step": 7}, path)


def latin1_name(tmp: Path) -> None:
    """A corpus with one clip whose name is Latin-1 bytes, not UTF-8."""
    corpus(tmp)
    os.rename(os.fsencode(tmp / "data" / "clip0.wav"), os.fsencode(tmp / "data") + b"/caf\xe9.wav")


def latin1_metadata_id(tmp: Path) -> None:
    """An LJSpeech layout whose metadata.csv names a clip in Latin-1."""
    for i in range(4):
        wav(tmp / "data" / "wavs" / f"LJ{i}.wav", voice(seed=i), "FLOAT")
    lines = [f"LJ{i}|text|text" for i in range(4)] + ["LJ\xe9|caf\xe9|caf\xe9"]
    (tmp / "data" / "metadata.csv").write_bytes("\n".join(lines).encode("latin-1"))


def latin1_manifest(tmp: Path) -> None:
    pairs(tmp)
    rows = ["id,split,noise,snr_db,detail", "u0,train,caf\xe9,5,x"]
    (tmp / "data" / "manifest.csv").write_bytes("\n".join(rows).encode("latin-1"))


def silent_pairs(tmp: Path) -> None:
    """Pairs whose clean side is silent: nothing to learn, no reference to score."""
    pairs(tmp)
    for i in range(10):
        wav(tmp / "data" / "clean" / f"u{i}.wav", np.zeros_like(voice()), "FLOAT")


def truncated(tmp: Path) -> None:
    """An MP3 cut in half: its header still declares the whole clip."""
    corpus(tmp)
    cut = tmp / "data" / "cut.mp3"
    sf.write(cut, voice(2.0), SR, format="MP3", subtype="MPEG_LAYER_III")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])


def trained(recipe: str, damaged: bool = False, noisy: Path | None = None) -> Setup:
    """A ``run/`` folder as training leaves it (tests/trained_run.py), its checkpoint
    damaged if asked, and ``noisy/`` holding one clip, or only what ``noisy`` names."""

    def setup(tmp: Path) -> None:
        from trained_run import write_run

        write_run(tmp / "run", recipe)
        if damaged:
            checkpoint = tmp / "run" / "checkpoints" / "step_00000007.pt"
            data = bytearray(checkpoint.read_bytes())
            data[len(data) // 2] ^= 0xFF
            checkpoint.write_bytes(bytes(data))
        if noisy is None:
            wav(tmp / "noisy" / "a.wav", voice())
        else:
            text_file(str(noisy))(tmp)

    return setup


ENHANCE = "enhance {tmp}/run {tmp}/noisy {tmp}/out"


def ring_run(tmp: Path) -> None:
    """``run/`` holding a ring run (its config.yaml: the ring defaults at the smoke budget)."""
    from harness.runs.resolve import resolve_config

    (tmp / "run").mkdir()
    resolve_config("ring", "smoke").save(tmp / "run" / "config.yaml")


TRAIN_RING = "train ring --out {tmp}/out"
TRAIN_HIFIGAN = "train hifigan --out {tmp}/out --data {tmp}/data"
TRAIN_METRICGAN = "train metricgan --out {tmp}/out --data {tmp}/data"
SEARCH_RING = "search ring --results {tmp}/results"
SEARCH_SPACE = SEARCH_RING + " --space {tmp}/space.yaml"

CASES = [
    # ------------------------------------------------------------ command-line arguments
    Case("cli-unknown-recipe", "train wavegan --out {tmp}/out", "wavegan"),
    Case("cli-unknown-budget", "train ring --budget huge --out {tmp}/out", "huge"),
    Case("cli-trials-not-int", SEARCH_RING + " --trials many", "many"),
    Case("cli-trials-zero", SEARCH_RING + " --trials 0", "--trials 0"),
    Case("cli-cpus-zero", SEARCH_RING + " --cpus-per-trial 0", "--cpus-per-trial 0"),
    Case("cli-gpus-fraction", SEARCH_RING + " --gpus-per-trial 1.5", "--gpus-per-trial 1.5"),
    Case("cli-concurrent-zero", SEARCH_RING + " --max-concurrent 0", "--max-concurrent 0"),
    Case("cli-bad-name", SEARCH_RING + " --name ../escape", "--name '../escape'"),
    Case("cli-unknown-objective", SEARCH_RING + " --objective accuracy", "accuracy"),
    Case("cli-confirm-negative", SEARCH_RING + " --confirm -1", "--confirm -1"),
    Case(
        "cli-confirm-one-seed", SEARCH_RING + " --confirm 2 --confirm-seeds 1", "--confirm-seeds 1"
    ),
    Case("cli-confirm-seeds-word", SEARCH_RING + " --confirm 2 --confirm-seeds many", "many"),
    Case(
        "cli-confirm-margin-zero",
        SEARCH_RING + " --confirm 2 --confirm-margin 0",
        "--confirm-margin 0",
    ),
    Case("cli-confirm-batches-zero", "confirm --batches 0", "--batches 0"),
    Case("cli-search-data-missing", SEARCH_RING + " --data {tmp}/nope", "{tmp}/nope"),
    Case("cli-out-is-a-file", TRAIN_RING, "{tmp}/out", text_file("out")),
    Case("cli-out-unwritable", "train ring --out /proc/nope/out", "/proc/nope/out"),
    Case("cli-results-unwritable", "search ring --results /proc/nope", "/proc/nope"),
    Case("cli-results-is-a-file", SEARCH_RING, "{tmp}/results", text_file("results")),
    Case("cli-noise-missing", "train segan --noise {tmp}/nope --out {tmp}/out", "{tmp}/nope"),
    Case("cli-storage-unwritable", SEARCH_RING + " --storage /proc/nope/ray", "/proc/nope/ray"),
    Case(
        "cli-address-unreachable",
        SEARCH_RING + " --address 127.0.0.1:{port}",
        "cannot reach Ray at '127.0.0.1:{port}': nothing listens on",
    ),
    Case(
        "cli-out-foreign-run",
        "train ring --budget smoke --out {tmp}/run --set lr_g=0.001",
        "{tmp}/run: holds a ring run with other settings (lr_g: 0.003 there, 0.001 here)",
        ring_run,
    ),
    Case(
        "cli-out-not-a-run",
        "train ring --out {tmp}/mine",
        "{tmp}/mine: holds 'notes.txt', which is not part of a training run",
        text_file("mine/notes.txt"),
    ),
    Case(
        "cli-out-second-train",
        "train ring --budget smoke --out {tmp}/run --resume",
        "{tmp}/run: another run is training into this folder",
        ring_run,
        held="run/.run.lock",
    ),
    Case(
        "cli-resume-wrong-recipe",
        "train grid --out {tmp}/run --resume",
        "{tmp}/run: holds a ring run, not grid",
        ring_run,
    ),
    Case(
        "cli-resume-malicious-checkpoint",
        TRAIN_RING + " --resume",
        "step_00000001.pt: refused: it would call",
        malicious_checkpoint,
        absent="pwned",
    ),
    # ------------------------------------------------------------ environment
    Case(
        "env-cache-unwritable",
        "train hifigan --out {tmp}/out",
        "corpus cache /proc/nope/cache ($GAN_HARNESS_CACHE): cannot create folders in /proc",
        env={"GAN_HARNESS_CACHE": "/proc/nope/cache"},
    ),
    Case(
        "env-cache-is-a-file",
        "train segan --out {tmp}/out",
        "corpus cache {tmp}/cache.txt ($GAN_HARNESS_CACHE): {tmp}/cache.txt is a file",
        text_file("cache.txt"),
        env={"GAN_HARNESS_CACHE": "{tmp}/cache.txt"},
    ),
    # ------------------------------------------------------------ config keys and values
    Case("set-unknown-key", TRAIN_RING + " --set lr_gen=1e-3", "lr_gen"),
    Case("set-no-equals", TRAIN_RING + " --set lr_g", "lr_g"),
    Case("set-not-a-number", TRAIN_RING + " --set lr_g=fast", "fast"),
    Case("set-not-an-integer", TRAIN_RING + " --set batches=1.5", "batches"),
    Case("set-not-a-choice", TRAIN_RING + " --set loss=wasserstein", "wasserstein"),
    Case("set-batches-zero", TRAIN_RING + " --set batches=0", "batches"),
    Case("set-smoothing-range", TRAIN_RING + " --set label_smoothing=0.7", "label_smoothing"),
    Case("set-no-cuda", TRAIN_RING + " --set device=cuda", "device: 'cuda'"),
    Case("set-segment-not-hop", TRAIN_HIFIGAN + " --set segment_size=1000", "segment_size: 1000"),
    Case("set-min-mask-range", TRAIN_METRICGAN + " --set min_mask=2.0", "min_mask"),
    Case("set-lr-nan", TRAIN_RING + " --set lr_g=nan", "lr_g: must be a finite number > 0"),
    Case("set-lr-inf", TRAIN_RING + " --set lr_d=inf", "lr_d: must be a finite number > 0"),
    Case("set-beta-above-one", TRAIN_RING + " --set b1_g=1.5", "b1_g: must be in [0, 1)"),
    Case("set-decay-negative", TRAIN_RING + " --set weight_decay=-1", "weight_decay: must be"),
    Case("set-keep-zero", TRAIN_RING + " --set keep_checkpoints=0", "keep_checkpoints: must"),
    Case("set-every-negative", TRAIN_RING + " --set checkpoint_every=-5", "checkpoint_every"),
    Case("set-device-unknown", TRAIN_RING + " --set device=tpu", "device: 'tpu' is not one of"),
    Case("set-pack-zero", TRAIN_RING + " --set pack=0", "pack: must be >= 1, got 0"),
    Case("set-n-valid-zero", TRAIN_HIFIGAN + " --set n_valid=0", "n_valid: must be >= 1"),
    Case("set-preemph-range", "train segan --out {tmp}/out --set preemph=1.5", "preemph: must"),
    # ------------------------------------------------------------ search spaces
    Case("space-missing-file", SEARCH_SPACE, "{tmp}/space.yaml"),
    Case("space-not-yaml", SEARCH_SPACE, "{tmp}/space.yaml", space("space: [unclosed\n")),
    Case("space-not-a-mapping", SEARCH_SPACE, "{tmp}/space.yaml", space("- just\n- a list\n")),
    Case("space-unknown-top-key", SEARCH_SPACE, "spaces", space({**RING, "spaces": {}})),
    Case("space-unknown-param", SEARCH_SPACE, "lr_gen", ring_space(lr_gen={"uniform": [0, 1]})),
    Case("space-loguniform-zero", SEARCH_SPACE, "lr_g", ring_space(lr_g={"loguniform": [0, 1e-3]})),
    Case("space-low-above-high", SEARCH_SPACE, "d_steps", ring_space(d_steps={"int": [3, 1]})),
    Case("space-empty-choice", SEARCH_SPACE, "loss", ring_space(loss={"choice": []})),
    Case("space-wrong-type", SEARCH_SPACE, "d_steps", ring_space(d_steps={"uniform": [1, 3]})),
    Case("space-bad-objective", SEARCH_SPACE, "accuracy", space({**RING, "objective": "accuracy"})),
    Case(
        "space-point-outside",
        SEARCH_SPACE,
        "points_to_evaluate",
        space({**RING, "points_to_evaluate": [{"lr_g": 1.0}]}),
    ),
    Case(
        "space-fixed-out-of-range",
        SEARCH_SPACE,
        "space.keep_checkpoints: must be >= 1, got 0",
        ring_space(lr_g={"loguniform": [1e-4, 1e-2]}, keep_checkpoints=0),
    ),
    Case(
        "space-bound-out-of-range",
        SEARCH_SPACE,
        "space.b1_g: uniform [0.5, 1.5]: must be in [0, 1)",
        ring_space(lr_g={"loguniform": [1e-4, 1e-2]}, b1_g={"uniform": [0.5, 1.5]}),
    ),
    Case(
        "space-not-utf8",
        SEARCH_SPACE,
        "space.yaml:1: not valid UTF-8 (byte 0xe9)",
        lambda tmp: (tmp / "space.yaml").write_bytes(b"# r\xe9glages\nobjective: reverse_kl\n"),
    ),
    # ------------------------------------------------------------ preflight arguments
    Case("preflight-lrs-nan", "preflight ring --lrs 1e-3 nan", "--lrs nan: every learning rate"),
    Case("preflight-device-unknown", "preflight ring --set device=tpu", "device: 'tpu'"),
    # ------------------------------------------------------------ data folders
    Case("data-missing", TRAIN_HIFIGAN, "{tmp}/data"),
    Case("data-is-a-file", TRAIN_HIFIGAN, "{tmp}/data", text_file("data")),
    Case("data-empty", TRAIN_HIFIGAN, "{tmp}/data", text_file("data/readme.txt")),
    Case("data-not-audio", TRAIN_HIFIGAN, "junk.wav", text_file("data/junk.wav")),
    Case(
        "data-nan-samples",
        TRAIN_HIFIGAN,
        "clip-nan.wav: contains NaN or infinite samples",
        lambda tmp: corpus(tmp, {"clip-nan.wav": with_nan(voice())}),
    ),
    Case(
        "data-two-bad-files",
        TRAIN_HIFIGAN,
        "2 of 12 audio files are unfit for training",
        lambda tmp: corpus(tmp, {"a-inf.wav": voice() * np.inf, "b-nan.wav": with_nan(voice())}),
    ),
    Case("data-truncated", TRAIN_HIFIGAN, "cut.mp3: decoded", truncated),
    Case(
        "data-all-too-short",
        TRAIN_HIFIGAN + " --set segment_size=65536",
        "shorter than one training segment (65536 samples",
        corpus,
    ),
    Case(
        "data-all-silent",
        TRAIN_HIFIGAN,
        "10 of 10 audio files are unfit for training, listed above (first: ",
        lambda tmp: corpus(tmp, {f"clip{i}.wav": np.zeros(SR, np.float32) for i in range(10)}),
    ),
    Case(
        "data-dc-only",
        TRAIN_HIFIGAN,
        "clip0.wav: holds no signal: every sample is 0.25 (a constant DC offset)",
        lambda tmp: corpus(tmp, {"clip0.wav": np.full(SR, 0.25, np.float32)}),
    ),
    Case(
        "data-name-not-utf8",
        TRAIN_HIFIGAN,
        "caf\\xe9.wav: file name is not valid UTF-8",
        latin1_name,
    ),
    Case(
        "data-metadata-id-not-utf8",
        TRAIN_HIFIGAN,
        "metadata.csv:5: clip id 'LJ\\xe9' is not valid UTF-8",
        latin1_metadata_id,
    ),
    Case(
        "pairs-no-noisy", TRAIN_METRICGAN, "data/noisy is missing", text_file("data/clean/u0.wav")
    ),
    Case("pairs-silent-clean", TRAIN_METRICGAN, "20 audio files are unfit", silent_pairs),
    Case(
        "pairs-manifest-not-utf8",
        TRAIN_METRICGAN,
        "manifest.csv:2: not valid UTF-8 (byte 0xe9)",
        latin1_manifest,
    ),
    Case(
        "pairs-nan-noisy",
        TRAIN_METRICGAN,
        "u9.wav: contains NaN or infinite samples",
        lambda tmp: pairs(tmp, with_nan(voice(seed=9))),
    ),
    Case(
        "search-data-nan",
        SEARCH_RING.replace("ring", "hifigan", 1) + " --data {tmp}/data --trials 1",
        "clip-nan.wav: contains NaN or infinite samples",
        lambda tmp: corpus(tmp, {"clip-nan.wav": with_nan(voice())}),
    ),
    Case(
        "search-device-missing",
        SEARCH_SPACE + " --trials 1",
        "device: 'cuda:7' requested but",
        ring_space(lr_g={"loguniform": [1e-4, 1e-2]}, device="cuda:7"),
    ),
    # ------------------------------------------------------------ score arguments
    Case("score-missing-file", "score {tmp}/nope.wav {tmp}/ref.wav", "nope.wav", score_inputs),
    Case("score-not-audio", "score {tmp}/ref.wav {tmp}/notaudio.wav", "notaudio.wav", score_inputs),
    Case(
        "score-silent-reference",
        "score {tmp}/silent.wav {tmp}/ref.wav --metrics pesq",
        "silent.wav: cannot be scored: reference is silent",
        score_inputs,
    ),
    Case(
        "score-no-utterance",
        "score {tmp}/blip.wav {tmp}/ref.wav --metrics pesq",
        "blip.wav: cannot be scored: pesq: NoUtterancesError",
        score_inputs,
    ),
    Case(
        "score-rate-mismatch",
        "score {tmp}/ref.wav {tmp}/ref22k.wav",
        "ref22k.wav: 22050 Hz",
        score_inputs,
    ),
    Case("score-unknown-metric", "score {tmp}/ref.wav {tmp}/ref.wav --metrics sdr", "sdr"),
    Case(
        "score-workers-zero",
        "score {tmp}/ref.wav {tmp}/ref.wav --workers 0",
        "--workers 0",
        score_inputs,
    ),
    # ------------------------------------------------------------ using a trained run
    Case(
        "use-vocode-segan",
        "vocode {tmp}/run {tmp}/noisy {tmp}/out",
        "a segan run (its config.yaml); vocode needs a hifigan one",
        trained("segan"),
    ),
    Case(
        "use-damaged-checkpoint",
        ENHANCE.replace("{tmp}/run", "{tmp}/run/checkpoints/step_00000007.pt"),
        "step_00000007.pt: unreadable checkpoint (CRC-32 mismatch",
        trained("segan", damaged=True),
    ),
    Case(
        "use-no-audio",
        ENHANCE,
        "{tmp}/noisy: holds no audio files (looked for .wav",
        trained("segan", noisy=Path("noisy/notes.txt")),
    ),
    Case(
        "use-out-inside-input",
        ENHANCE.replace("{tmp}/out", "{tmp}/noisy/enhanced"),
        "{tmp}/noisy/enhanced: the output folder is inside the input folder {tmp}/noisy",
        trained("segan"),
    ),
    Case(
        "use-no-run-config",
        "export {tmp}/step_00000007.pt {tmp}/out",
        "step_00000007.pt: no config.yaml of its run",
        lambda tmp: torch_file(tmp / "step_00000007.pt"),
    ),
    Case("use-unknown-search", "export nope {tmp}/out", "nope: no such checkpoint or folder"),
]


def free_port() -> int:
    """A TCP port on this machine where nothing listens (bound once, then let go)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def snapshot(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every file (size, mtime) and folder (None) under ``folder`` but the harness cache."""
    found: dict[str, tuple[int, int] | None] = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if rel == "cache" or rel.startswith("cache/"):
            continue
        stat = path.stat()
        found[rel] = (stat.st_size, stat.st_mtime_ns) if path.is_file() else None
    return found


# each case is a fresh `python run.py` (5-15 s of imports on 2 cores): the first case of each
# kind runs by default, the whole table with `-m heavy`
FIRST_OF_KIND = {case.id.split("-")[0]: case.id for case in reversed(CASES)}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case,
            id=case.id,
            marks=() if case.id in FIRST_OF_KIND.values() else pytest.mark.heavy,
        )
        for case in CASES
    ],
)
def test_bad_input_is_one_line_error_and_leaves_nothing(case: Case, tmp_path: Path) -> None:
    case.setup(tmp_path)
    with exclusive_lock(tmp_path / case.held, "held") if case.held else contextlib.nullcontext():
        check_one_line_and_nothing_left(case, tmp_path)


def check_one_line_and_nothing_left(case: Case, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    names = {"tmp": tmp_path, "port": free_port()}
    argv = case.argv.format(**names).split()
    env = {
        **os.environ,
        "GAN_HARNESS_CACHE": str(tmp_path / "cache"),  # scan verdicts land here, not in ~/.cache
        "GAN_HARNESS_RESULTS": str(tmp_path / "results"),
        "PYTHONWARNINGS": "default",
        **{key: value.format(**names) for key, value in case.env.items()},
    }
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and ERROR_LINE.match(lines[-1]), output
    assert case.culprit.format(**names) in lines[-1], output
    assert snapshot(tmp_path) == before, "the command left files behind"
    if case.absent:
        assert not (tmp_path / case.absent).exists(), "the checkpoint ran its code"


def test_the_table_covers_every_kind_of_input() -> None:
    kinds = {case.id.split("-")[0] for case in CASES}
    assert {"cli", "env", "set", "space", "preflight", "data", "pairs", "score", "use"} <= kinds
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)
