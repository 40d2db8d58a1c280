"""A run folder as training leaves it (``config.yaml``, ``checkpoints/step_XXXXXXXX.pt``), with a
generator whose weights are perturbed away from their init, for the inference and export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.runs.resolve import make_recipe, resolve_config

SEGAN_TINY = {"width": 1 / 16, "segment_size": 4096, "batch_size": 2}
METRICGAN_TINY = {"segment_size": 8000}
TINY = {"segan": SEGAN_TINY, "metricgan": METRICGAN_TINY, "hifigan": {}}


def write_run(
    folder: Path, recipe: str, step: int = 7, seed: int = 0, **overrides: Any
) -> torch.nn.Module:
    """``folder`` as a finished smoke run of ``recipe`` (tiny, ``overrides`` on top) whose
    checkpoint holds only what inference reads (the generator, the step); its generator."""
    cfg = resolve_config(recipe, "smoke", overrides={**TINY.get(recipe, {}), **overrides})
    generator = make_recipe(cfg).build_generator()
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in generator.parameters():
            param.add_(0.05 * torch.randn_like(param))
    (folder / "checkpoints").mkdir(parents=True)
    cfg.save(folder / "config.yaml")
    state = {"generator": generator.state_dict(), "step": step}
    torch.save(state, folder / "checkpoints" / f"step_{step:08d}.pt")
    return generator
