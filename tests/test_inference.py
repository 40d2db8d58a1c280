"""Using a trained generator: SOURCE resolution, loading for inference, chunked enhancement that
matches whole-utterance enhancement, ``enhance`` and ``vocode`` through the CLI, and ``enhance``
reproducing the PESQ a trained run's last validation recorded."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli
from trained_run import write_run

from harness.inference.enhance import enhance_in_chunks
from harness.inference.generator import load_generator
from harness.inference.source import OlderCheckpoint, SourceError, find_run, load_run
from harness.inference.vocode import mel_of, vocode_mel
from harness.runs.resolve import make_recipe
from harness.training.checkpoints import CheckpointError


def voice(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * seed + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    audio = sum(np.sin(k * phase) / k for k in range(1, 8))
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.2 * audio / np.abs(audio).max() + 0.02 * noise).astype(np.float32)


# ------------------------------------------------------------------ SOURCE


def test_a_checkpoint_file_and_its_run_folder_name_the_same_run(tmp_path):
    write_run(tmp_path / "run", "segan", step=7)
    by_file = find_run(str(tmp_path / "run/checkpoints/step_00000007.pt"), results=None)
    by_folder = find_run(str(tmp_path / "run"), results=None)
    assert by_file.checkpoint == by_folder.checkpoint and by_file.named and not by_folder.named
    assert by_file.config.flat() == by_folder.config.flat()
    assert by_folder.config.recipe == "segan" and by_folder.config.model.width == 1 / 16


def test_a_damaged_newest_checkpoint_is_passed_over_unless_named(tmp_path):
    write_run(tmp_path / "run", "segan", step=7)
    damaged = tmp_path / "run/checkpoints/step_00000009.pt"
    data = bytearray((tmp_path / "run/checkpoints/step_00000007.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.warns(OlderCheckpoint, match=r"step_00000009\.pt: unreadable.*step_00000007"):
        loaded = load_run(find_run(str(tmp_path / "run"), results=None))
    assert loaded.step == 7
    with pytest.raises(CheckpointError, match=r"step_00000009\.pt: unreadable checkpoint"):
        load_run(find_run(str(damaged), results=None))


def test_a_search_names_its_trials_by_rank_and_id(ring_search):
    folder, _ = ring_search
    import pandas as pd

    trials = pd.read_parquet(folder.trials_table)
    best = find_run(folder.name, results=str(folder.path.parent))  # by name, rank 1
    assert best.label.startswith(f"{folder.name}/") and best.checkpoint.is_file()
    trial_id = best.label.split("/")[1]
    row = trials[trials["trial_id"] == trial_id].iloc[0]
    assert best.config.flat() == json.loads(row["resolved_config"])
    other = trials[trials["trial_id"] != trial_id].iloc[0]["trial_id"]
    by_id = find_run(str(folder.path), trial_id=other, results=None)  # by folder and id
    assert by_id.folder == folder.trial_dir(other)
    assert find_run(folder.name, rank_k=2, results=str(folder.path.parent)).label != best.label
    with pytest.raises(ValueError, match="--rank 99: search 'ring6' has 6 trials"):
        find_run(folder.name, rank_k=99, results=str(folder.path.parent))
    with pytest.raises(SourceError, match=r"nope: no such checkpoint or folder, and .*ring6"):
        find_run("nope", results=str(folder.path.parent))


def test_rank_and_trial_are_refused_for_a_training_run(tmp_path):
    write_run(tmp_path / "run", "segan")
    with pytest.raises(SourceError, match="--rank and --trial pick a trial of a search"):
        find_run(str(tmp_path / "run"), rank_k=1, results=None)


def test_a_checkpoint_of_another_network_is_refused_in_one_line(tmp_path):
    write_run(tmp_path / "run", "segan", width=1 / 8)
    write_run(tmp_path / "other", "segan")
    shutil.copy(tmp_path / "run/config.yaml", tmp_path / "other/config.yaml")  # says 1/8 wide
    with pytest.raises(
        SourceError, match=r"does not fit the segan \(smoke\) network .* is \["
    ) as e:
        load_generator(find_run(str(tmp_path / "other"), results=None))
    assert "\n" not in str(e.value)


def test_the_generator_is_loaded_for_inference(tmp_path):
    trained = write_run(tmp_path / "run", "hifigan")
    loaded = load_generator(find_run(str(tmp_path / "run"), results=None))
    assert not loaded.generator.training and loaded.step == 7
    assert not any(p.requires_grad for p in loaded.generator.parameters())
    assert not any(hasattr(m, "parametrizations") for m in loaded.generator.modules())
    mel = torch.randn(1, 80, 9)
    with torch.no_grad():  # weight norm folded: the same output
        assert torch.allclose(loaded.generator(mel), trained.eval()(mel), atol=1e-6)


# ------------------------------------------------------------------ chunks


def chunks_of(recipe, generator, audio: torch.Tensor, chunk: int) -> torch.Tensor:
    read = lambda a, b: audio[a:b]  # noqa: E731
    pieces = enhance_in_chunks(recipe, generator, read, len(audio), chunk)
    return torch.cat([torch.from_numpy(p) for p in pieces])


@pytest.mark.parametrize("recipe_name", ["segan", "metricgan"])
def test_chunked_enhancement_is_whole_utterance_enhancement(tmp_path, recipe_name):
    trained = write_run(tmp_path / "run", recipe_name).eval()
    recipe = make_recipe(find_run(str(tmp_path / "run"), results=None).config)
    audio = torch.from_numpy(voice(2.0, 16000))[: 4096 * 7 + 1234]
    with torch.no_grad():
        whole = recipe.enhance(trained, audio.unsqueeze(0))[0]
    one_chunk = chunks_of(recipe, trained, audio, len(audio) + 10_000)
    assert torch.equal(one_chunk, whole)
    for chunk in (4096, 3 * 4096 + 100):
        chunked = chunks_of(recipe, trained, audio, chunk)
        assert chunked.shape == whole.shape
        error = (chunked - whole).pow(2).sum() / whole.pow(2).sum()
        if recipe_name == "segan":  # whole windows, the emphasis filters carried over
            assert (chunked - whole).abs().max() < 1e-5
        else:  # the BLSTM sees a training crop of context either side
            assert 10 * torch.log10(error) < -30


# ------------------------------------------------------------------ the commands


def test_enhance_a_folder_of_any_format_into_16k_wavs_at_the_same_paths(tmp_path):
    write_run(tmp_path / "run", "segan")
    noisy = tmp_path / "noisy"
    (noisy / "day1").mkdir(parents=True)
    sf.write(noisy / "a.wav", voice(1.3, 16000), 16000)
    stereo = np.stack([voice(2.1, 44100, 1), voice(2.1, 44100, 2)], axis=1)
    sf.write(noisy / "day1" / "b.flac", stereo, 44100)
    (noisy / "notes.txt").write_text("not audio")
    code, out = run_cli("enhance", str(tmp_path / "run"), str(noisy), str(tmp_path / "out"))
    assert code == 0, out
    assert "[1/2] a.wav" in out and "[2/2] day1/b.flac" in out and "s per minute of audio" in out
    for name, seconds in (("a.wav", 1.3), ("day1/b.wav", 2.1)):
        info = sf.info(tmp_path / "out" / name)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == round(seconds * 16000)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "a.wav",
        "b.wav",
    ]


def test_vocode_computes_the_mel_as_training_does(tmp_path):
    write_run(tmp_path / "run", "hifigan")
    audio = voice(1.0, 22050)
    sf.write(tmp_path / "speech.wav", audio, 22050, subtype="FLOAT")
    code, out = run_cli(
        "vocode", str(tmp_path / "run"), str(tmp_path / "speech.wav"), str(tmp_path / "out"),
        "--subtype", "FLOAT", "--quiet",
    )  # fmt: skip
    assert code == 0 and "[1/1]" not in out, out
    written, rate = sf.read(tmp_path / "out" / "speech.wav", dtype="float32")
    loaded = load_generator(find_run(str(tmp_path / "run"), results=None))
    recipe = loaded.recipe
    expected = vocode_mel(loaded, recipe.input_mel(torch.from_numpy(audio).unsqueeze(0))[0])
    assert rate == 22050 and len(written) == len(audio) // 256 * 256
    assert np.array_equal(written, expected.numpy())
    assert torch.equal(mel_of(loaded, torch.from_numpy(audio)), recipe.input_mel(
        torch.from_numpy(audio).unsqueeze(0))[0])  # fmt: skip


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((40, 10), np.float32), r"shape \[40, 10\]; the generator takes a log-mel \[80"),
        (np.zeros((80, 10), np.int16), "int16 values; a log-mel is floating point"),
        (np.full((1, 80, 10), np.nan, np.float32), "contains NaN or infinite values"),
    ],
)
def test_a_bad_saved_mel_is_refused_before_anything_is_written(tmp_path, capsys, array, problem):
    write_run(tmp_path / "run", "hifigan")
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "a.npy", np.zeros((80, 10), np.float32))
    np.save(tmp_path / "mels" / "b.npy", array)
    code, _ = run_cli(
        "vocode", str(tmp_path / "run"), str(tmp_path / "mels"), str(tmp_path / "out")
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and re.match(rf"error: .*b\.npy: {problem}", last), last
    assert not (tmp_path / "out").exists()


SHORT_RUN = [
    "batches=2", "eval_every=2", "n_valid=2", "valid_max_seconds=0", "score_workers=1",
    "corpus_utterances=24", "batch_size=2",
]  # fmt: skip


@pytest.mark.parametrize(
    ("recipe", "settings"),
    [
        pytest.param("segan", ["width=0.0625", "segment_size=4096"], marks=pytest.mark.slow),
        pytest.param("metricgan", ["segment_size=16000"], marks=pytest.mark.heavy),
    ],
)
def test_enhance_reproduces_the_pesq_of_the_last_validation(tmp_path, recipe, settings):
    """Train a tiny enhancer on the built-in noisy corpus, then enhance its validation clips
    with ``run.py enhance`` and score them: the PESQ its last validation recorded, to the
    digit."""
    from harness.scoring.pairs import ScorePair, score_pairs

    settings = [*SHORT_RUN, *settings]
    argv = ["train", recipe, "--out", str(tmp_path / "run")]
    assert run_cli(*argv, *[a for s in settings for a in ("--set", s)])[0] == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    run = find_run(str(tmp_path / "run"), results=None)
    _, valid = make_recipe(run.config)._corpus_split()
    (tmp_path / "noisy").mkdir()
    for pair in valid:
        assert pair.noisy.frames == pair.clean.frames == pair.length  # validation's whole pairs
        shutil.copy(pair.noisy.path, tmp_path / "noisy" / f"{pair.id}.wav")
    code, out = run_cli(
        "enhance", str(tmp_path / "run"), str(tmp_path / "noisy"), str(tmp_path / "enhanced"),
        "--subtype", "FLOAT",
    )  # fmt: skip
    assert code == 0, out
    items = []
    for pair in valid:
        clean, _ = sf.read(pair.clean.path, dtype="float32")
        enhanced, _ = sf.read(tmp_path / "enhanced" / f"{pair.id}.wav", dtype="float32")
        items.append(ScorePair(pair.id, clean, enhanced))
    report = score_pairs(items, 16000, workers=1, metrics=("pesq",))
    assert report.n_valid == 2
    assert report.mean["pesq"] == pytest.approx(result["last_eval"]["pesq"], abs=1e-6)
