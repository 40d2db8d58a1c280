"""``run.py export``: a trained generator alone (no discriminator, optimizers or RNG state), in
files other tools load.

Into the output folder, for every recipe:

- ``generator.pt``: the plain ``state_dict`` of the generator as trained (weight norm as it
  trains), loadable into the network ``config.yaml`` builds (``make_recipe(cfg).build_generator()``);
- ``config.yaml``: the run's resolved configuration, as every run saves it;
- with ``torchscript``, ``generator.torchscript.pt``: the generator traced for inference (eval
  mode, weight norm folded), loadable with ``torch.jit.load`` without this code; it takes what
  the generator takes (HiFi-GAN: a log-mel ``[B, n_mels, frames]``; SEGAN: pre-emphasised
  windows and their latent; MetricGAN+: log1p magnitudes ``[B, frames, 257]``).

and for HiFi-GAN, the reference implementation's format (harness/inference/hifigan_reference.py):
``g_XXXXXXXX`` (``{"generator": state_dict}``, its key names) and ``config.json`` beside it, so
its ``inference.py --checkpoint_file OUT/g_XXXXXXXX`` runs it unchanged.

Every file is built in memory first, then written atomically: a failed export leaves no file.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from harness.console import print_line
from harness.files import atomic_write, unwritable_reason
from harness.inference import hifigan_reference
from harness.inference.generator import fold_parametrizations, trained_generator
from harness.inference.source import SourceError, TrainedRun, find_run, load_run
from harness.recipes.enhancement import EnhancementRecipe
from harness.recipes.hifigan import HifiganRecipe
from harness.runs.resolve import make_recipe
from harness.training.recipe import Recipe

STATE_DICT = "generator.pt"
CONFIG = "config.yaml"
TORCHSCRIPT = "generator.torchscript.pt"
REFERENCE_CONFIG = "config.json"


def export(
    source: str,
    out: Path,
    *,
    rank_k: int | None = None,
    trial_id: str | None = None,
    results: str | None = None,
    torchscript: bool = False,
) -> int:
    """``run.py export``: SOURCE's generator into the folder ``out``; the files listed."""
    run = find_run(source, rank_k=rank_k, trial_id=trial_id, results=results)
    step, files = export_generator(run, out, torchscript=torchscript)
    print_line(f"exported the generator of {run.label} ({run.config.recipe}, step {step}) -> {out}")
    for path in files:
        print_line(f"  {path.name:<26} {path.stat().st_size / 2**20:8.2f} MiB  {_what(path.name)}")
    return 0


def _what(name: str) -> str:
    if name == STATE_DICT:
        return "state_dict of the generator as trained"
    if name == CONFIG:
        return "the run's resolved configuration"
    if name == TORCHSCRIPT:
        return "TorchScript, for inference (torch.jit.load)"
    if name == REFERENCE_CONFIG:
        return "the reference HiFi-GAN's config"
    return "the reference HiFi-GAN's {'generator': state_dict} (its inference.py loads it)"


def export_generator(
    run: TrainedRun, out: Path, *, torchscript: bool = False
) -> tuple[int, list[Path]]:
    """Write ``run``'s generator into ``out``; (the checkpoint's step, the files written)."""
    problem = unwritable_reason(out)
    if problem:
        raise SourceError(f"{out}: {problem}")
    checkpoint = load_run(run)
    recipe = make_recipe(checkpoint.run.config)
    generator = trained_generator(checkpoint, recipe)
    files: dict[str, bytes] = {
        STATE_DICT: _saved(generator.state_dict()),
        CONFIG: yaml.safe_dump(checkpoint.run.config.flat(), sort_keys=False).encode(),
    }
    if isinstance(recipe, HifiganRecipe):
        files.update(_reference_files(checkpoint.run, checkpoint.step, recipe, generator))
    if torchscript:
        files[TORCHSCRIPT] = _traced(recipe, generator)
    written = []
    for name, data in files.items():
        atomic_write(out / name, data)
        written.append(out / name)
    return checkpoint.step, written


def _saved(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _reference_files(
    run: TrainedRun, step: int, recipe: HifiganRecipe, generator: nn.Module
) -> dict[str, bytes]:
    state = hifigan_reference.to_reference(generator.state_dict())
    config = hifigan_reference.reference_config(run.config, recipe.g_cfg, recipe.input_mel.config)
    return {
        hifigan_reference.checkpoint_name(step): _saved({"generator": state}),
        REFERENCE_CONFIG: (json.dumps(config, indent=4) + "\n").encode(),
    }


def _traced(recipe: Recipe, generator: nn.Module) -> bytes:
    """The generator traced on the inputs it gets in one use of the recipe (TorchScript)."""
    inference = fold_parametrizations(generator).eval()
    inputs = example_inputs(recipe, inference)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript still loads everywhere
        traced = torch.jit.trace(inference, inputs)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def example_inputs(recipe: Recipe, generator: nn.Module) -> tuple[Tensor, ...]:
    """What the generator is called with when the recipe uses it once: a short noisy clip
    enhanced, a short clip's log-mel vocoded, or a training batch generated from."""
    seen: list[tuple[Tensor, ...]] = []
    hook = generator.register_forward_pre_hook(lambda module, args: seen.append(args))
    torch.manual_seed(0)
    try:
        with torch.no_grad():
            if isinstance(recipe, EnhancementRecipe):
                recipe.enhance(generator, 0.1 * torch.randn(1, recipe.framing().unit))
            elif isinstance(recipe, HifiganRecipe):
                generator(recipe.input_mel(0.1 * torch.randn(1, 32 * recipe.g_cfg.hop_length)))
            else:
                batch = recipe.train_data().batch(0)
                recipe.generate(generator, recipe.batch_to(batch, torch.device("cpu")))
    finally:
        hook.remove()
    return seen[0]
