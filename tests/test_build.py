"""The one set-up path (harness/training/setup.py) and the settings the trainer takes from its config."""

from __future__ import annotations

import pytest
import torch

from harness.diagnostics.detectors import HealthConfig
from harness.recipes.ring import RingRecipe
from harness.runs.resolve import make_recipe, resolve_config
from harness.training import losses
from harness.training.config import ConfigError
from harness.training.setup import build_networks, set_threads
from harness.training.trainer import Trainer

SMALL = {"batch_size": 32, "g_hidden": 16, "g_layers": 2, "d_hidden": 16, "eval_samples": 200}


def test_a_generator_built_alone_is_the_trainers_generator(tmp_path):
    cfg = resolve_config("ring", "smoke", overrides={**SMALL, "init": "normal", "seed": 3})
    (alone,) = build_networks(cfg.trainer, make_recipe(cfg).build_generator)
    trainer = Trainer(make_recipe(cfg), cfg.trainer, tmp_path)
    for key, value in trainer.G.state_dict().items():
        assert torch.equal(value, alone.state_dict()[key]), key


def test_health_window_comes_from_the_config_and_thresholds_from_health(tmp_path):
    cfg = resolve_config("ring", "smoke", overrides={**SMALL, "health_window": 3})
    plain = Trainer(make_recipe(cfg), cfg.trainer, tmp_path / "a")
    assert plain.monitor.cfg.window == 3
    tuned = Trainer(
        make_recipe(cfg), cfg.trainer, tmp_path / "b", None, HealthConfig(window=9, warmup=0.0)
    )
    assert (tuned.monitor.cfg.window, tuned.monitor.cfg.warmup) == (3, 0.0)


class NoR1Ring(RingRecipe):
    supports_r1 = False


def test_r1_is_refused_for_a_recipe_without_discriminator_outputs(tmp_path):
    cfg = resolve_config("ring", "smoke", overrides={**SMALL, "r1_gamma": 1.0})
    recipe = NoR1Ring(cfg.model, None, cfg.trainer.seed, cfg.trainer.batch_size)
    with pytest.raises(ConfigError, match=r"^r1_gamma: recipe 'ring' does not expose"):
        Trainer(recipe, cfg.trainer, tmp_path)


def test_set_threads_uses_the_config_then_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        set_threads(2)
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        set_threads(0)  # nothing asked: left as it is
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        set_threads(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_adversarial_loss_by_name():
    real, fake = [torch.tensor([0.9, 0.2])], [torch.tensor([0.3, 0.4])]
    assert losses.adversarial_loss("lsgan").accuracy(real, fake) == 0.75  # split at 0.5
    assert losses.adversarial_loss("bce").accuracy(real, fake) == 0.5  # logits split at 0
    assert losses.adversarial_loss("bce").g_loss is losses.bce_g_loss
    with pytest.raises(ValueError, match=r"loss: unknown 'wgan'; valid: lsgan, bce"):
        losses.adversarial_loss("wgan")
