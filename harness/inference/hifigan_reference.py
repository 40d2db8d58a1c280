"""The reference HiFi-GAN's checkpoint format (jik876/hifi-gan): what its ``inference.py`` and
``inference_e2e.py`` load, so a generator trained here drops into a pipeline built on it.

- ``g_XXXXXXXX``: ``{"generator": state_dict}`` with the reference's key names: its modules are
  named as ours (``conv_pre``, ``ups.i``, ``resblocks.j.convs1.k``, ``conv_post``), and its weight
  norm is the older ``torch.nn.utils.weight_norm``, whose ``weight_g`` / ``weight_v`` are ours
  ``parametrizations.weight.original0`` / ``original1`` (the same g * v / ||v|| over dim 0).
- ``config.json`` beside it: the reference's config fields (``config_v1.json`` ...), the
  generator's shape and the mel settings its ``inference.py`` computes the input with.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from harness.audio.mel import MelConfig
from harness.models.hifigan import GeneratorConfig
from harness.training.config import TrialConfig

OURS_G, OURS_V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"
THEIRS_G, THEIRS_V = ".weight_g", ".weight_v"


def checkpoint_name(step: int) -> str:
    """The reference's generator checkpoint name (its ``train.py`` writes ``g_%08d``)."""
    return f"g_{step:08d}"


def to_reference(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our generator's state dict (weight norm as trained) under the reference's key names, in
    the same order."""
    return {
        _renamed(key, OURS_G, THEIRS_G, OURS_V, THEIRS_V): value for key, value in state.items()
    }


def from_reference(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A reference generator state dict under our key names (loads into our ``Generator``)."""
    return {
        _renamed(key, THEIRS_G, OURS_G, THEIRS_V, OURS_V): value for key, value in state.items()
    }


def _renamed(key: str, g: str, new_g: str, v: str, new_v: str) -> str:
    if key.endswith(g):
        return key.removesuffix(g) + new_g
    if key.endswith(v):
        return key.removesuffix(v) + new_v
    return key


def reference_config(
    cfg: TrialConfig, generator: GeneratorConfig, mel: MelConfig
) -> dict[str, Any]:
    """The run as the reference's ``config.json``: every field its config files have, the
    generator's shape and the input mel's settings from the run, training fields from its
    optimiser settings."""
    trainer, model = cfg.trainer, cfg.model
    return {
        "resblock": generator.resblock,
        "num_gpus": 0,
        "batch_size": trainer.batch_size,
        "learning_rate": trainer.lr_g,
        "adam_b1": trainer.b1_g,
        "adam_b2": trainer.b2_g,
        "lr_decay": trainer.lr_decay,
        "seed": trainer.seed,
        "upsample_rates": list(generator.upsample_rates),
        "upsample_kernel_sizes": list(generator.upsample_kernel_sizes),
        "upsample_initial_channel": generator.upsample_initial_channel,
        "resblock_kernel_sizes": list(generator.resblock_kernel_sizes),
        "resblock_dilation_sizes": [list(d) for d in generator.resblock_dilation_sizes],
        "segment_size": model.segment_size,
        "num_mels": mel.n_mels,
        "num_freq": mel.n_fft // 2 + 1,
        "n_fft": mel.n_fft,
        "hop_size": mel.hop_length,
        "win_size": mel.win_length,
        "sampling_rate": mel.sample_rate,
        "fmin": mel.f_min,
        "fmax": mel.f_max,
        "fmax_for_loss": None,
        "num_workers": 4,
        "dist_config": {
            "dist_backend": "nccl",
            "dist_url": "tcp://localhost:54321",
            "world_size": 1,
        },
    }


def generator_config(config: dict[str, Any]) -> GeneratorConfig:
    """Our generator shape from a reference ``config.json``."""
    return GeneratorConfig(
        upsample_rates=config["upsample_rates"],
        upsample_kernel_sizes=config["upsample_kernel_sizes"],
        upsample_initial_channel=config["upsample_initial_channel"],
        resblock=str(config["resblock"]),
        resblock_kernel_sizes=config["resblock_kernel_sizes"],
        resblock_dilation_sizes=config["resblock_dilation_sizes"],
        n_mels=config["num_mels"],
    )


def mel_config(config: dict[str, Any]) -> MelConfig:
    """The input mel's settings from a reference ``config.json``."""
    return MelConfig(
        sample_rate=config["sampling_rate"],
        n_fft=config["n_fft"],
        hop_length=config["hop_size"],
        win_length=config["win_size"],
        n_mels=config["num_mels"],
        f_min=config["fmin"],
        f_max=config["fmax"],
    )
