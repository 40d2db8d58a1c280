"""MetricGAN+ (Fu et al., 2021): a BLSTM mask estimator trained against a learnt PESQ predictor.

Reference: SpeechBrain's ``recipes/Voicebank/enhance/MetricGAN`` (train.py, hparams/train.yaml)
and ``speechbrain/lobes/models/MetricGAN.py`` (harness/models/metricgan.py).

- Features: log1p of the magnitude STFT (512-point, Hamming window of 512, hop 256 = 32 / 16 ms
  at 16 kHz).  G's mask, floored at 0.05, multiplies the noisy features; the estimate is
  resynthesised with the noisy phase (``expm1``, inverse STFT) and judged from its own STFT.
- D learns the normalised PESQ, ``(PESQ + 0.5) / 5`` (SpeechBrain's ``pesq_eval``), of
  (estimate, clean) pairs: clean -> 1 (1 - label smoothing), enhanced -> its PESQ, noisy -> its
  PESQ, plus ``replay_ratio`` x batch examples (at least one) replayed from the history of
  earlier enhanced outputs with their scores (SpeechBrain's ``history_portion`` 0.2, also at
  least one).  Each group is its own D call (so batch norm sees one kind of pair at a time, as
  there) and its own mean squared error; their sum is one D update (SpeechBrain takes one
  optimizer step per group).  PESQ is computed in the scoring pool
  (harness/recipes/metric_targets.py): a batch is scored every ``pesq_every`` D updates and
  learnt from that many times, ``pesq_lag`` lets the scoring overlap the next steps.
- G's adversarial loss: (D(estimate, clean) - 1)^2, the best score; ``lambda_mse`` adds the
  reference's optional MSE between log1p spectra (0 in the paper).  After every G update the
  learnable-sigmoid slopes are clamped to <= 3.5 and NaN slopes reset to 3.5 (the reference
  clamps before each G pass, and resets NaN in later versions).
- Schedule: each SpeechBrain epoch scores 100 utterances with the current G, passes D twice
  over them (and once over a share of the history), then G once.  Here: two D updates per G
  update (``d_steps`` 2) that learn the same scored batch (``pesq_every`` 2), G unchanged.
- Trainer settings (``defaults``): Adam 5e-4 for both networks with PyTorch's default betas,
  constant rate, gradient norm clipped at 5 (SpeechBrain's ``max_grad_norm``).  SpeechBrain
  trains on whole utterances at batch 1; here on fixed-length crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from harness.models.metricgan import EnhancementGenerator, MetricDiscriminator
from harness.recipes.enhancement import EnhancementConfig, EnhancementRecipe, Framing
from harness.recipes.metric_targets import ReplayBuffer, ScoredBatch, ScoringPipeline
from harness.training.config import COUNT, NON_NEGATIVE, POSITIVE, Range
from harness.training.recipe import DiscriminatorLoss, DiscriminatorSmoothing, GeneratorLoss

N_FFT = 512
HOP = 256
GENERATORS: dict[str, dict[str, int]] = {
    "paper": {"hidden": 200, "linear": 300},  # 1.90 M parameters
    "tiny": {"hidden": 64, "linear": 96},
}


@dataclass
class MetricganConfig(EnhancementConfig):
    generator: str = "paper"  # paper | tiny
    d_channels: int = 15  # discriminator convolution channels (15 = the paper)
    segment_size: int = 32000  # 2 s crops
    min_mask: float = 0.05  # the mask floor
    max_slope: float = 3.5  # learnable-sigmoid slopes are clamped to this after each G step
    replay_ratio: float = 0.2  # replayed historical examples per D update, per batch example
    replay_size: int = 256  # examples the history keeps (a uniform sample of all of it)
    pesq_every: int = 2  # D updates per scored batch (SpeechBrain: 2 passes over each)
    pesq_lag: int = 0  # D learns the batch scored this many scorings ago (0 = its own)
    lambda_mse: float = 0.0  # weight of the MSE between log1p spectra in G's loss

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"generator": tuple(GENERATORS)}
    RANGES: ClassVar[dict[str, Range]] = {
        **EnhancementConfig.RANGES,
        "d_channels": COUNT,
        "min_mask": Range(0, 1.2, high_open=True),
        "max_slope": POSITIVE,
        "replay_ratio": NON_NEGATIVE,
        "replay_size": NON_NEGATIVE,
        "pesq_every": COUNT,
        "pesq_lag": NON_NEGATIVE,
        "lambda_mse": NON_NEGATIVE,
    }


class Spectrogram(nn.Module):
    """The reference's STFT front-end: centred (zero-padded), Hamming 512, hop 256, one-sided."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hamming_window(N_FFT), persistent=False)

    def stft(self, wave: Tensor) -> Tensor:
        """[B, L] -> complex [B, 257, frames]."""
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return torch.stft(
                wave.float(),
                N_FFT,
                HOP,
                N_FFT,
                self.window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )

    def features(self, wave: Tensor) -> Tensor:
        """log1p magnitudes [B, frames, 257], what G and D see."""
        return torch.log1p(self.stft(wave).abs()).transpose(1, 2)

    def istft(self, spectrum: Tensor, length: int) -> Tensor:
        with torch.autocast(device_type=spectrum.device.type, enabled=False):
            return torch.istft(spectrum, N_FFT, HOP, N_FFT, self.window, length=length)


class MetricganRecipe(EnhancementRecipe):
    name = "metricgan"
    config_cls = MetricganConfig
    # read at every step: the replay share of each D update, the MSE weight of G's loss
    mid_run: ClassVar[tuple[str, ...]] = ("replay_ratio", "lambda_mse")
    defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam",
        "lr_g": 5e-4,
        "lr_d": 5e-4,
        "b1_g": 0.9,
        "b2_g": 0.999,
        "b1_d": 0.9,
        "b2_d": 0.999,
        "scheduler": "constant",
        "clip_grad_g": 5.0,
        "clip_grad_d": 5.0,
        "d_steps": 2,
    }
    # its discriminator learns to predict PESQ, so a win on PESQ alone must not cost
    # intelligibility (STOI) or the overall quality a non-intrusive model hears (DNSMOS)
    guards: ClassVar[tuple[str, ...]] = ("pesq", "stoi", "dnsmos_ovrl")
    budgets: ClassVar[dict[str, dict[str, Any]]] = {
        # tiny G, 1 s crops, 2 per batch: minutes on 2 CPU cores, one torch thread training
        # while the pool scores the previous batch's PESQ (pesq_lag 1)
        "smoke": {
            "generator": "tiny",
            "segment_size": 16000,
            "batch_size": 2,
            "batches": 800,  # budgets count batches drawn: 400 iterations of 2 D steps
            "eval_every": 200,
            "log_every": 10,
            "n_valid": 6,
            "valid_max_seconds": 3.0,
            "pesq_lag": 1,
            "threads": 1,
            "score_workers": 2,
        },
        "small": {
            "generator": "paper",
            "segment_size": 32000,
            "batch_size": 4,
            "batches": 6000,  # 3000 iterations
            "eval_every": 1000,
            "log_every": 25,
            "pesq_lag": 1,
        },
        # SpeechBrain: 600 epochs of 100 utterances at batch 1 (60,000 G updates); 3 s crops
        # stand in for whole VoiceBank utterances.  --set n_valid=824 scores its full test set.
        "paper": {
            "generator": "paper",
            "segment_size": 48000,
            "batch_size": 1,
            "batches": 120_000,  # 60 k iterations
            "eval_every": 4000,
            "log_every": 100,
            "n_valid": 32,
        },
    }

    def __init__(self, cfg: MetricganConfig, data_dir: str | None, seed: int, batch_size: int):
        super().__init__(cfg, data_dir, seed, batch_size)
        self.spectrogram = Spectrogram()
        self.targets = ScoringPipeline(self.scoring_pool, cfg.sample_rate, cfg.pesq_lag)
        self.replay = ReplayBuffer(cfg.replay_size, seed)
        self.scored: ScoredBatch | None = None  # the scored batch D learns from
        self.d_updates = 0
        self._mask: Tensor | None = None

    def to(self, device: torch.device) -> MetricganRecipe:
        super().to(device)
        self.spectrogram.to(device)
        return self

    # ------------------------------------------------------------------ models
    def build_generator(self) -> nn.Module:
        return EnhancementGenerator(**GENERATORS[self.cfg.generator])

    def build_discriminator(self) -> nn.Module:
        return MetricDiscriminator(channels=self.cfg.d_channels)

    def after_generator_step(self, generator: nn.Module) -> None:
        generator.clamp_slopes(self.cfg.max_slope)

    # ------------------------------------------------------------------ generation
    def _enhance(self, generator: nn.Module, noisy: Tensor) -> tuple[Tensor, Tensor]:
        """Mask the noisy log1p magnitudes, resynthesise with the noisy phase: [B, L] -> the
        enhanced [B, L] and the floored mask [B, T, F]."""
        spectrum = self.spectrogram.stft(noisy)
        features = torch.log1p(spectrum.abs()).transpose(1, 2)
        mask = generator(features).float().clamp(min=self.cfg.min_mask)
        magnitude = torch.expm1(mask * features).transpose(1, 2)
        wave = self.spectrogram.istft(torch.polar(magnitude, spectrum.angle()), noisy.shape[-1])
        return wave, mask

    def generate(self, generator: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        wave, mask = self._enhance(generator, batch[1])
        self._mask = mask.detach()  # the mask behind the batch health() is next shown
        return wave

    def enhance_span(self, generator: nn.Module, noisy: Tensor, start: int, length: int) -> Tensor:
        return self._enhance(generator, noisy)[0]

    def framing(self) -> Framing:
        """Chunks on STFT hops; the BLSTM reads the whole chunk both ways, so each side gets a
        training crop of context (``segment_size``, rounded up to hops): the most G ever saw."""
        context = -(-self.cfg.segment_size // HOP) * HOP
        return Framing(unit=HOP, left=context, right=context)

    def health(self, batch: tuple[Tensor, Tensor], fake: Tensor) -> dict[str, float | None]:
        """The enhancer's signals, and the share of the mask held at its floor: a mask estimator
        stuck there mutes everything (collapse, docs/diagnostics.md)."""
        mask = self._mask
        floored = None if mask is None else float((mask <= self.cfg.min_mask).float().mean())
        return {**super().health(batch, fake), "mask_floor_share": floored}

    # ------------------------------------------------------------------ losses
    def _predict(
        self,
        discriminator: nn.Module,
        estimate: Tensor,
        clean: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> Tensor:
        """D's normalised PESQ for each (estimate, clean) pair of log1p spectra [B, T, F]: [B]."""
        pair = torch.stack([estimate, clean], dim=1)
        return discriminator(smoothing.add_noise(pair)).squeeze(1).float()

    def discriminator_batches(
        self, batch: tuple[Tensor, Tensor], fake: Tensor
    ) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """The (estimate, clean, target) groups D learns from at this step, by name.

        ``clean`` (target 1, smoothed by the trainer) is always this step's batch.  Every
        ``pesq_every``-th D update pushes its batch to the scoring pipeline and takes from it the
        batch scored ``pesq_lag`` pushes ago; the updates in between learn that scored batch
        again (SpeechBrain's second pass over an epoch's scored samples, G unchanged).  From it
        come ``enhanced`` and ``noisy`` with their PESQ, and ``replay``, drawn from the history
        before a freshly scored batch joins it.  Pairs PESQ could not score are left out.
        """
        clean, noisy = batch
        groups = {"clean": (clean, clean, torch.ones(len(clean)))}
        fresh = None
        if self.d_updates % self.cfg.pesq_every == 0:
            self.targets.push(fake, clean, noisy)
            fresh = self.targets.pop()
            self.scored = fresh or self.scored
        self.d_updates += 1
        scored = self.scored
        if scored is None:
            return groups
        share = self.cfg.replay_ratio * len(scored.clean)
        replayed = self.replay.sample(max(1, round(share)) if share > 0 else 0)
        if fresh is not None:
            self.replay.add(fresh.enhanced, fresh.clean, fresh.enhanced_score)
        groups["enhanced"] = (scored.enhanced, scored.clean, scored.enhanced_score)
        groups["noisy"] = (scored.noisy, scored.clean, scored.noisy_score)
        if replayed is not None:
            groups["replay"] = replayed
        out = {}
        for name, (estimate, reference, target) in groups.items():
            keep = torch.isfinite(target)
            if bool(keep.any()):
                out[name] = (estimate[keep], reference[keep], target[keep])
        return out

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        batch: tuple[Tensor, Tensor],
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> DiscriminatorLoss:
        real_term = fake_term = torch.zeros((), device=self.device)
        real_scores, fake_scores = {}, {}
        for name, (estimate, clean, target) in self.discriminator_batches(batch, fake).items():
            estimate, clean = (
                self.spectrogram.features(x.to(self.device)) for x in (estimate, clean)
            )
            target = target.to(self.device) * (smoothing.real_target if name == "clean" else 1.0)
            predicted = self._predict(discriminator, estimate, clean, smoothing)
            error = torch.mean((predicted - target) ** 2)
            if name == "clean":
                real_term = error
                real_scores[name] = float(predicted.detach().mean())
            else:
                fake_term = fake_term + error
                fake_scores[name] = float(predicted.detach().mean())
        return DiscriminatorLoss(
            loss=real_term + fake_term,
            terms={"loss_d_real": real_term, "loss_d_fake": fake_term},
            real_scores=real_scores,
            fake_scores=fake_scores,
        )

    def generator_loss(
        self,
        discriminator: nn.Module | None,
        batch: tuple[Tensor, Tensor],
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> GeneratorLoss:
        estimate, clean = self.spectrogram.features(fake), self.spectrogram.features(batch[0])
        if self.cfg.lambda_mse > 0:
            recon = self.cfg.lambda_mse * ((estimate - clean) ** 2).mean(dim=(1, 2))
        else:  # the paper: G learns from D alone
            recon = fake.new_zeros(len(fake), dtype=torch.float32)
        if discriminator is None:
            return GeneratorLoss(fake.new_zeros((), dtype=torch.float32), recon)
        g_adv = torch.mean((self._predict(discriminator, estimate, clean, smoothing) - 1.0) ** 2)
        return GeneratorLoss(g_adv, recon, adversarial=g_adv)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {
            "targets": self.targets.state_dict(),
            "replay": self.replay.state_dict(),
            "scored": None if self.scored is None else vars(self.scored).copy(),
            "d_updates": self.d_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.targets.load_state_dict(state["targets"])
        self.replay.load_state_dict(state["replay"])
        self.scored = None if state["scored"] is None else ScoredBatch(**state["scored"])
        self.d_updates = state["d_updates"]
