"""SEGAN (Pascual et al., 2017): waveform-to-waveform enhancement with a conditional LSGAN.

Reference: santi-pdp/segan (TensorFlow; ``model.py``, ``main.py``, ``train_segan.sh``) and the
networks of harness/models/segan.py.

- Data: 16,384-sample windows at 16 kHz; clean and noisy are pre-emphasised (0.95), G works in
  that domain, and validation de-emphasises G's output.  Validation cuts each utterance into
  windows (the last one zero-padded) and enhances them as a batch, as the reference's ``clean``.
- Losses (LSGAN): D: (D(clean, noisy) - 1)^2 + D(G(noisy, z), noisy)^2; G:
  (D(G(noisy, z), noisy) - 1)^2 + lambda_l1 |G(noisy, z) - clean| with lambda_l1 = 100.  D is
  conditioned on the noisy input (the pair is stacked on channels) and sees the real and the
  generated pairs of a step in one call: the real pairs are its virtual-batch-norm reference.
  z ~ N(0, 1) [B, 1024, 8] is drawn for every generated batch from torch's global generator,
  which the trainer seeds and checkpoints, so resume stays exact; validation uses a fixed z.
- Trainer settings: the reference trains both networks with RMSprop at 2e-4 (TensorFlow's
  decay 0.9), one D update per G update, batch 100.  The shared trainer offers AdamW and Adam;
  the closest is Adam with beta1 = 0 (no momentum, like RMSprop) and beta2 = 0.9 (RMSprop's
  decay); Adam's bias correction only changes the first few hundred steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.functional import lfilter

from harness.models.segan import SeganDiscriminator, SeganGenerator, scaled_channels
from harness.recipes.enhancement import EnhancementConfig, EnhancementRecipe, Framing
from harness.training import losses
from harness.training.config import NON_NEGATIVE, POSITIVE, ConfigError, Range
from harness.training.recipe import DiscriminatorLoss, DiscriminatorSmoothing, GeneratorLoss

VALIDATION_Z_SEED = 1234  # one fixed latent for every validation, so rounds compare


@dataclass
class SeganConfig(EnhancementConfig):
    width: float = 1.0  # channel multiplier of both networks (1.0 = the paper)
    preemph: float = 0.95  # pre-emphasis coefficient (0 = off)
    lambda_l1: float = 100.0  # weight of G's L1 term

    RANGES: ClassVar[dict[str, Range]] = {
        **EnhancementConfig.RANGES,
        "width": POSITIVE,
        "preemph": Range(0, 1, high_open=True),  # 1 would make de-emphasis an integrator
        "lambda_l1": NON_NEGATIVE,
    }

    def check(self) -> None:
        """A training segment is a whole number of the encoder's total stride."""
        hop = 2 ** len(scaled_channels(self.width))
        if self.segment_size < hop or self.segment_size % hop:
            raise ConfigError(f"segment_size: {self.segment_size} is not a multiple of {hop}")


def pre_emphasis(x: Tensor, coeff: float) -> Tensor:
    """y[n] = x[n] - coeff x[n-1] along the last axis (the first sample kept)."""
    return torch.cat([x[..., :1], x[..., 1:] - coeff * x[..., :-1]], dim=-1)


def de_emphasis(y: Tensor, coeff: float) -> Tensor:
    """The inverse filter, x[n] = y[n] + coeff x[n-1]."""
    a = torch.tensor([1.0, -coeff], dtype=y.dtype, device=y.device)
    b = torch.tensor([1.0, 0.0], dtype=y.dtype, device=y.device)
    return lfilter(y, a, b, clamp=False)


class SeganRecipe(EnhancementRecipe):
    name = "segan"
    config_cls = SeganConfig
    mid_run: ClassVar[tuple[str, ...]] = ("lambda_l1",)  # loss weights read at every step
    defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam",
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "b1_g": 0.0,
        "b2_g": 0.9,
        "b1_d": 0.0,
        "b2_d": 0.9,
        "scheduler": "constant",
    }
    guards: ClassVar[tuple[str, ...]] = ("pesq", "stoi")  # a win on PESQ must not cost STOI
    budgets: ClassVar[dict[str, dict[str, Any]]] = {
        # networks at 1/8 width (1.1 M / 0.4 M parameters): minutes on 2 CPU cores
        "smoke": {
            "width": 0.125,
            "segment_size": 16384,
            "batch_size": 8,
            "batches": 300,
            "eval_every": 100,
            "log_every": 10,
            "n_valid": 6,
            "valid_max_seconds": 3.0,
            "threads": 1,
            "score_workers": 2,
        },
        "small": {
            "width": 0.5,
            "segment_size": 16384,
            "batch_size": 16,
            "batches": 4000,
            "eval_every": 500,
            "log_every": 25,
        },
        # train_segan.sh: batch 100; the paper trains 86 epochs of VoiceBank's 11,572 utterances
        # (about 700 half-overlapping windows per epoch at batch 100: 60,000 updates)
        "paper": {
            "width": 1.0,
            "segment_size": 16384,
            "batch_size": 100,
            "batches": 60_000,
            "eval_every": 2000,
            "log_every": 100,
            "n_valid": 32,
        },
    }

    def __init__(self, cfg: SeganConfig, data_dir: str | None, seed: int, batch_size: int):
        super().__init__(cfg, data_dir, seed, batch_size)
        self.channels = scaled_channels(cfg.width)

    # ------------------------------------------------------------------ models and data
    def build_generator(self) -> nn.Module:
        return SeganGenerator(self.channels)

    def build_discriminator(self) -> nn.Module:
        return SeganDiscriminator(self.cfg.segment_size, self.channels)

    def batch_to(self, batch: tuple[Tensor, Tensor], device: torch.device) -> tuple[Tensor, ...]:
        """(clean, noisy), pre-emphasised, on ``device``."""
        return tuple(pre_emphasis(x, self.cfg.preemph) for x in super().batch_to(batch, device))

    # ------------------------------------------------------------------ generation
    def generate(self, generator: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        noisy = batch[1].unsqueeze(1)
        z = torch.randn(generator.latent_shape(*batch[1].shape))  # the trainer-seeded stream
        return generator(noisy, z.to(noisy.device, noisy.dtype))

    def enhance_span(self, generator: nn.Module, noisy: Tensor, start: int, length: int) -> Tensor:
        """Window the span, enhance the windows as one batch, stitch, de-emphasise.

        Window ``k`` of the utterance gets the ``k``-th latent of one fixed draw for all of its
        windows, so a span starting on a window boundary is enhanced as in the whole utterance;
        pre- and de-emphasis run over the span (:meth:`framing` gives them a window before it).
        """
        span, window = noisy.shape[-1], self.cfg.segment_size
        if start % window:
            raise ValueError(f"a span starts on a window boundary ({window}), not at {start}")
        padded = F.pad(pre_emphasis(noisy, self.cfg.preemph), (0, -span % window))
        windows = padded.reshape(-1, 1, window)
        seeded = torch.Generator().manual_seed(VALIDATION_Z_SEED)
        every = torch.randn(generator.latent_shape(-(-length // window), window), generator=seeded)
        first = start // window
        z = every[first : first + len(windows)]
        out = generator(windows, z.to(windows.device, windows.dtype)).float()
        return de_emphasis(out.reshape(1, -1)[:, :span], self.cfg.preemph)

    def framing(self) -> Framing:
        """Whole windows, each enhanced on its own; one window before a chunk carries pre- and
        de-emphasis across its start (de-emphasis forgets 0.95**16384 of its state over it)."""
        window = self.cfg.segment_size
        return Framing(unit=window, left=window, right=0)

    # ------------------------------------------------------------------ losses
    @staticmethod
    def _pair(estimate: Tensor, noisy: Tensor) -> Tensor:
        """D's input: (clean or enhanced, noisy) on two channels."""
        return torch.cat([estimate.reshape(noisy.shape).unsqueeze(1), noisy.unsqueeze(1)], dim=1)

    def _judge(
        self,
        discriminator: nn.Module,
        batch: tuple[Tensor, Tensor],
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> tuple[Tensor, Tensor]:
        """D's logits for the real and the generated pairs of one step, the real pairs being
        the generated pairs' virtual-batch-norm reference (harness/models/segan.py)."""
        clean, noisy = batch
        real_pair, fake_pair = self._pair(clean, noisy), self._pair(fake, noisy)
        return discriminator(smoothing.add_noise(real_pair), smoothing.add_noise(fake_pair))

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        batch: tuple[Tensor, Tensor],
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> DiscriminatorLoss:
        real, generated = self._judge(discriminator, batch, fake, smoothing)
        loss, real_term, fake_term = losses.lsgan_d_loss([real], [generated], smoothing.real_target)
        return DiscriminatorLoss(
            loss=loss,
            terms={"loss_d_real": real_term, "loss_d_fake": fake_term},
            real_scores={"segan": float(real.detach().float().mean())},
            fake_scores={"segan": float(generated.detach().float().mean())},
            accuracy=losses.decision_accuracy([real], [generated], 0.5),
        )

    def generator_loss(
        self,
        discriminator: nn.Module | None,
        batch: tuple[Tensor, Tensor],
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> GeneratorLoss:
        clean = batch[0]
        l1 = (fake.reshape(clean.shape).float() - clean).abs().mean(dim=1)
        recon = self.cfg.lambda_l1 * l1
        if discriminator is None:
            return GeneratorLoss(fake.new_zeros((), dtype=torch.float32), recon)
        g_adv = losses.lsgan_g_loss([self._judge(discriminator, batch, fake, smoothing)[1]])
        return GeneratorLoss(g_adv, recon, adversarial=g_adv)
