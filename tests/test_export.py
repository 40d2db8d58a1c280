"""``run.py export``: the generator alone, as a plain state_dict + config.yaml for every recipe,
TorchScript on request, and for HiFi-GAN the reference implementation's own format, checked
against the reference generators' keys and shapes (shared/data/hifigan-reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import run_cli
from trained_run import write_run

from harness.audio.mel import LogMel
from harness.inference import hifigan_reference
from harness.inference.export import export_generator
from harness.inference.generator import fold_parametrizations
from harness.inference.source import find_run
from harness.models.hifigan import Generator
from harness.runs.resolve import config_from_flat, make_recipe

REFERENCE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "hifigan-reference"
    / "generators.json"
)


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.skip(f"the reference generators' shapes are not at {REFERENCE}")
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_an_exported_generator_has_exactly_the_references_keys_and_shapes(
    tmp_path, reference, version
):
    expected = reference[version]
    write_run(tmp_path / "run", "hifigan", step=1234, generator=version)
    step, files = export_generator(find_run(str(tmp_path / "run"), results=None), tmp_path / "out")
    assert step == 1234 and tmp_path / "out" / "g_00001234" in files
    saved = torch.load(tmp_path / "out" / "g_00001234", weights_only=True)
    assert list(saved) == ["generator"]
    shapes = [(key, list(value.shape)) for key, value in saved["generator"].items()]
    assert shapes == list(expected["state_dict"].items())  # the same keys in the same order
    assert sum(v.numel() for v in saved["generator"].values()) == expected["parameters"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert {key: config[key] for key in expected["config"]} == expected["config"]
    assert {"seed", "segment_size", "num_freq", "fmax_for_loss"} <= set(config)


def test_the_reference_checkpoint_loaded_back_vocodes_as_vocode_does(tmp_path):
    """Export -> a model built from the exported config.json alone, the exported weights loaded
    into it -> the same waveform as ``run.py vocode`` on the same mel (under 1e-5)."""
    write_run(tmp_path / "run", "hifigan")
    assert run_cli("export", str(tmp_path / "run"), str(tmp_path / "out"))[0] == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    rebuilt = Generator(hifigan_reference.generator_config(config))
    state = torch.load(tmp_path / "out" / "g_00000007", weights_only=True)["generator"]
    rebuilt.load_state_dict(hifigan_reference.from_reference(state))
    fold_parametrizations(rebuilt.eval())  # the reference's remove_weight_norm()

    rng = np.random.default_rng(0)
    audio = torch.from_numpy(0.1 * rng.standard_normal(22050).astype(np.float32))
    mel = LogMel(hifigan_reference.mel_config(config))(audio.unsqueeze(0))
    recipe = make_recipe(
        config_from_flat(yaml.safe_load((tmp_path / "run/config.yaml").read_text()))
    )
    assert torch.equal(mel, recipe.input_mel(audio.unsqueeze(0)))  # config.json's mel is ours
    np.save(tmp_path / "mel.npy", mel[0].numpy())
    code, _ = run_cli(
        "vocode", str(tmp_path / "run"), str(tmp_path / "mel.npy"), str(tmp_path / "voc.wav"),
        "--subtype", "FLOAT",
    )  # fmt: skip
    assert code == 0
    vocoded, rate = sf.read(tmp_path / "voc.wav", dtype="float32")
    with torch.no_grad():
        expected = rebuilt(mel)[0, 0].numpy()
    assert rate == config["sampling_rate"] == 22050 and vocoded.shape == expected.shape
    assert np.abs(vocoded - expected).max() < 1e-5


@pytest.mark.parametrize("recipe", ["segan", "metricgan", "hifigan"])
def test_every_recipe_exports_its_state_dict_config_and_torchscript(tmp_path, recipe):
    trained = write_run(tmp_path / "run", recipe)
    _, files = export_generator(
        find_run(str(tmp_path / "run"), results=None), tmp_path / "out", torchscript=True
    )
    out = tmp_path / "out"
    assert {"generator.pt", "config.yaml", "generator.torchscript.pt"} <= {f.name for f in files}
    cfg = config_from_flat(yaml.safe_load((out / "config.yaml").read_text()))
    assert cfg.flat() == yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    state = torch.load(out / "generator.pt", weights_only=True)
    assert not any(key.startswith(("discriminator", "opt")) for key in state)
    rebuilt = make_recipe(cfg).build_generator()
    rebuilt.load_state_dict(state)  # strict: every key, every shape
    for key, value in trained.state_dict().items():
        assert torch.equal(state[key], value), key

    scripted = torch.jit.load(out / "generator.torchscript.pt")
    inference = fold_parametrizations(trained.eval())
    inputs = {  # another length than the one traced
        "segan": (0.1 * torch.randn(3, 1, 8192), torch.randn(3, 64, 4)),
        "metricgan": (torch.rand(1, 40, 257),),
        "hifigan": (torch.randn(1, 80, 11),),
    }[recipe]
    with torch.no_grad():
        assert torch.allclose(scripted(*inputs), inference(*inputs), atol=1e-6)
