"""Toy GANs with known answers: 8 Gaussians on a ring and 25 on a grid (VEEGAN / PacGAN).

``ring``: means at (cos 2πk/8, sin 2πk/8), std 0.01.  ``grid``: means at {-4,-2,0,2,4}², std 0.05.
MLP generator (ReLU + batch norm) and maxout discriminator in the PacGAN style, optionally packed
(PacGAN-m: D sees m samples at once).  Evaluation on 2,500 samples: modes covered, share of
high-quality samples (within 3 std of the nearest mode) and the reverse KL of the mode histogram
against uniform (harness/diagnostics/modes.py, :func:`mode_statistics`); they also feed the
collapse detector, so the budgets evaluate often (an evaluation costs milliseconds).

Defaults are tuned for seconds on one CPU core: a deep, narrow generator (12 layers of 32) draws
sharper boundaries between modes than PacGAN's 4 x 400, so fewer samples land between modes; the
learning rate decays 100x over the run so the modes tighten to their 0.01 std.  The ``paper``
budget uses PacGAN's own architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from harness.diagnostics.modes import mode_statistics
from harness.scoring.registry import REGISTRY
from harness.training import losses
from harness.training.config import COUNT, NON_NEGATIVE, Range
from harness.training.recipe import (
    BatchSource,
    DiscriminatorLoss,
    DiscriminatorSmoothing,
    GeneratorLoss,
    Recipe,
)

# Published anchors (2,500 samples): PacGAN (Lin et al. 2018) Tables 2 and 3.
ANCHORS = {
    "ring": (
        "vanilla GAN: 1-6.3 / 8 modes",
        "PacGAN4: 7.8 ± 0.1 / 8 modes, high_quality 0.959",
    ),
    "grid": (
        "vanilla GAN: 17.3 / 25 modes",
        "PacGAN4: 24.8 / 25 modes",
    ),
}


def mode_means(mixture: str) -> tuple[Tensor, float]:
    """The mixture's component means [K, 2] and its per-component std."""
    if mixture == "ring":
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8  # 8 distinct angles
        return torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01
    if mixture == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise ValueError(f"mixture: unknown {mixture!r}; valid: ring, grid")


@dataclass
class RingConfig:
    mixture: str = "ring"
    z_dim: int = 2
    g_hidden: int = 32
    g_layers: int = 12
    d_hidden: int = 64
    d_layers: int = 2
    maxout_pieces: int = 5
    pack: int = 1  # PacGAN degree m: D judges m samples jointly
    loss: str = "bce"  # bce (non-saturating) | lsgan
    eval_samples: int = 2500

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "mixture": ("ring", "grid"),
        "loss": ("bce", "lsgan"),
    }
    RANGES: ClassVar[dict[str, Range]] = {
        "z_dim": COUNT,
        "g_hidden": COUNT,
        "g_layers": NON_NEGATIVE,  # 0: one linear map from z
        "d_hidden": COUNT,
        "d_layers": NON_NEGATIVE,  # 0: one linear map from the packed samples
        "maxout_pieces": COUNT,
        "pack": COUNT,
        "eval_samples": COUNT,
    }


class Maxout(nn.Module):
    def __init__(self, d_in: int, d_out: int, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(d_in, d_out * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).unflatten(-1, (-1, self.pieces)).amax(-1)


def mlp_generator(cfg: RingConfig) -> nn.Module:
    layers: list[nn.Module] = []
    width = cfg.z_dim
    for _ in range(cfg.g_layers):
        layers += [nn.Linear(width, cfg.g_hidden), nn.BatchNorm1d(cfg.g_hidden), nn.ReLU()]
        width = cfg.g_hidden
    return nn.Sequential(*layers, nn.Linear(width, 2))


def maxout_discriminator(cfg: RingConfig) -> nn.Module:
    layers: list[nn.Module] = []
    width = 2 * cfg.pack
    for _ in range(cfg.d_layers):
        layers.append(Maxout(width, cfg.d_hidden, cfg.maxout_pieces))
        width = cfg.d_hidden
    return nn.Sequential(*layers, nn.Linear(width, 1))


class MixtureBatches(BatchSource):
    """Batch i = (real samples, latent codes), drawn from a generator seeded by (seed, i)."""

    batches_per_epoch = 100  # an "epoch" is nominal for an infinite sampler

    def __init__(self, mixture: str, batch_size: int, z_dim: int, seed: int) -> None:
        self.means, self.std = mode_means(mixture)
        self.batch_size = batch_size
        self.z_dim = z_dim
        self.seed = seed

    def batch(self, index: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        comp = torch.randint(len(self.means), (self.batch_size,), generator=gen)
        real = self.means[comp] + self.std * torch.randn(self.batch_size, 2, generator=gen)
        z = torch.randn(self.batch_size, self.z_dim, generator=gen)
        return real, z


class RingRecipe(Recipe):
    name = "ring"
    config_cls = RingConfig
    supports_r1 = True
    # covering the modes evenly must not cost sample quality, nor modes reached
    guards: ClassVar[tuple[str, ...]] = ("reverse_kl", "modes_covered", "high_quality")
    # lr_decay per step brings the learning rate to 1 % of its start at the last step
    budgets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "batches": 3000,
            "batch_size": 256,
            "lr_decay": 0.01 ** (1 / 3000),
            "eval_every": 250,
            "log_every": 50,
        },
        "small": {
            "batches": 6000,
            "batch_size": 256,
            "lr_decay": 0.01 ** (1 / 6000),
            "eval_every": 250,
            "log_every": 50,
        },
        "paper": {  # PacGAN's networks: G 4 x 400 ReLU + BN, D 3 x 200 maxout-5
            "batches": 20000,
            "batch_size": 500,
            "lr_decay": 0.01 ** (1 / 20000),
            "g_hidden": 400,
            "g_layers": 4,
            "d_hidden": 200,
            "d_layers": 3,
            "eval_every": 1000,
            "log_every": 100,
        },
    }
    defaults: ClassVar[dict[str, Any]] = {
        "lr_g": 3e-3,
        "lr_d": 3e-3,
        "b1_g": 0.5,
        "b2_g": 0.999,
        "b1_d": 0.5,
        "b2_d": 0.999,
        "optimizer": "adam",
        "scheduler": "exponential",
        "scheduler_interval": "per_step",
        "threads": 1,  # tiny matmuls: a second thread only adds synchronisation
    }
    anchors: ClassVar[tuple[str, ...]] = ANCHORS["ring"]

    def build_generator(self) -> nn.Module:
        return mlp_generator(self.cfg)

    def build_discriminator(self) -> nn.Module:
        return maxout_discriminator(self.cfg)

    def train_data(self) -> BatchSource:
        return MixtureBatches(
            self.cfg.mixture, self.batch_size * self.cfg.pack, self.cfg.z_dim, self.seed
        )

    def generate(self, generator: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        return generator(batch[1])

    def _judge(
        self, discriminator: nn.Module, x: Tensor, smoothing: DiscriminatorSmoothing
    ) -> Tensor:
        packed = smoothing.add_noise(x).reshape(-1, 2 * self.cfg.pack)
        return discriminator(packed).squeeze(-1)

    def discriminator_outputs(self, discriminator: nn.Module, real: Tensor) -> list[Tensor]:
        return [self._judge(discriminator, real, DiscriminatorSmoothing())]

    def discriminator_loss(
        self, discriminator: nn.Module, batch: Any, fake: Tensor, smoothing: DiscriminatorSmoothing
    ) -> DiscriminatorLoss:
        real_logits = self._judge(discriminator, batch[0], smoothing)
        fake_logits = self._judge(discriminator, fake, smoothing)
        gan = losses.adversarial_loss(self.cfg.loss)
        loss, real_term, fake_term = gan.d_loss([real_logits], [fake_logits], smoothing.real_target)
        return DiscriminatorLoss(
            loss=loss,
            terms={"loss_d_real": real_term, "loss_d_fake": fake_term},
            real_scores={"mlp": float(real_logits.detach().mean())},
            fake_scores={"mlp": float(fake_logits.detach().mean())},
            accuracy=gan.accuracy([real_logits], [fake_logits]),
        )

    def generator_loss(
        self,
        discriminator: nn.Module | None,
        batch: Any,
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> GeneratorLoss:
        recon = fake.new_zeros(fake.shape[0])
        if discriminator is None:
            return GeneratorLoss(through_d=fake.new_zeros(()), reconstruction=recon)
        logits = self._judge(discriminator, fake, smoothing)
        g_adv = losses.adversarial_loss(self.cfg.loss).g_loss([logits])
        return GeneratorLoss(through_d=g_adv, reconstruction=recon, adversarial=g_adv)

    def sample(self, generator: nn.Module, n: int) -> Tensor:
        """``n`` generated points from latent codes fixed by the seed (same for every trial)."""
        z = torch.randn(n, self.cfg.z_dim, generator=torch.Generator().manual_seed(self.seed + 7))
        return generator(z.to(self.device)).float().cpu()

    @classmethod
    def reports(cls, cfg: Any) -> tuple[str, ...]:
        """Mode coverage and sample quality (harness/diagnostics/modes.py ``mode_statistics``)."""
        return tuple(m.name for m in REGISTRY if m.family == "toy")

    def validate(self, generator: nn.Module, step: int, out_dir: Any) -> dict[str, float]:
        means, std = mode_means(self.cfg.mixture)
        return mode_statistics(self.sample(generator, self.cfg.eval_samples), means, std)


class GridRecipe(RingRecipe):
    """25 modes need a stronger critic than the ring's, which leaves modes uncovered: LSGAN, 2 D
    steps per G step, D of 3 x 128 maxout."""

    name = "grid"
    defaults: ClassVar[dict[str, Any]] = {
        **RingRecipe.defaults,
        "mixture": "grid",
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "loss": "lsgan",
        "d_steps": 2,
        "d_hidden": 128,
        "d_layers": 3,
    }
    anchors: ClassVar[tuple[str, ...]] = ANCHORS["grid"]
