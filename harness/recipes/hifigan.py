"""HiFi-GAN (Kong et al., 2020): mel -> waveform vocoder with MPD + MSD discriminators.

Paper defaults: LSGAN losses, feature matching x2, mel L1 x45, AdamW 2e-4 with betas
(0.8, 0.99), ExponentialLR 0.999 per epoch, segments of 8192 samples at 22050 Hz.  The input mel
uses f_max 8 kHz; the mel loss uses the full band (the reference's ``fmax_for_loss = None``).
Validation is copy-synthesis of a fixed held-out set at full length, scored with PESQ, STOI,
ESTOI, SI-SNR, mel L1 and MR-STFT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from harness.audio.corpus import ensure_corpus
from harness.audio.datasets import SegmentBatches, drop_short, load_utterances, open_corpus
from harness.audio.mel import LogMel, MelConfig
from harness.audio.samples import Sample, save_samples
from harness.diagnostics import signals
from harness.diagnostics.detectors import HealthConfig
from harness.models.hifigan import Generator, HifiganDiscriminator, generator_preset
from harness.scoring import pitch
from harness.scoring.dnsmos import NAMES as DNSMOS_NAMES
from harness.scoring.pairs import score_pairs
from harness.scoring.registry import SPEECH
from harness.training import losses
from harness.training.config import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    SPEECH_DATA_RANGES,
    ConfigError,
    Range,
)
from harness.training.recipe import (
    BatchSource,
    DiscriminatorLoss,
    DiscriminatorSmoothing,
    GeneratorLoss,
    Recipe,
)

# scored in the process pool at every validation (mel L1 is computed here, on device); DNSMOS and
# the pitch metrics cost about 3 s of one core per 3 s clip each, so budgets opt into them
SCORED = ("pesq", "stoi", "estoi", "si_snr", "mrstft")
DNSMOS_AND_PITCH = (*DNSMOS_NAMES, *pitch.NAMES)


@dataclass
class HifiganConfig:
    generator: str = "v1"  # v1 | v2 | v3 | tiny
    d_width: float = 1.0  # discriminator channel multiplier (1.0 = the paper's MPD/MSD)
    # G's output conv starts with zero gain at 0 Hz, so the untrained output has no DC offset
    # (false: the reference's effective init, PyTorch's default; a non-default `init` redraws it)
    dc_free_init: bool = True
    sample_rate: int = 22050
    segment_size: int = 8192
    loss: str = "lsgan"  # lsgan (paper) | bce
    lambda_fm: float = 2.0
    lambda_mel: float = 45.0
    data_seed: int = 0  # fixes the validation split, independent of the training seed
    n_valid: int = 8  # held-out utterances scored at every validation
    valid_max_seconds: float = 0.0  # crop validation utterances (0 = full length)
    samples_per_eval: int = 2  # generated WAVs written per validation
    keep_sample_evals: int = 3  # validations whose WAVs are kept (older ones are pruned)
    corpus_utterances: int = 320  # size of the built-in espeak-ng corpus
    score_workers: int = 0  # scoring processes; 0 = the torch threads this trial was given
    eval_metrics: tuple[str, ...] = SCORED  # scored at every validation besides mel_l1

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "generator": ("v1", "v2", "v3", "tiny"),
        "loss": ("lsgan", "bce"),
    }
    RANGES: ClassVar[dict[str, Range]] = {
        "d_width": POSITIVE,
        "sample_rate": Range(16000),  # the input mel reaches 8 kHz: below, its top bands are empty
        "segment_size": COUNT,
        "lambda_fm": NON_NEGATIVE,
        "lambda_mel": NON_NEGATIVE,
        **SPEECH_DATA_RANGES,
    }

    def check(self) -> None:
        """A training segment is a whole number of mel frames of the generator's hop."""
        hop = generator_preset(self.generator).hop_length
        if self.segment_size < hop or self.segment_size % hop:
            raise ConfigError(f"segment_size: {self.segment_size} is not a multiple of hop {hop}")


class HifiganRecipe(Recipe):
    name = "hifigan"
    config_cls = HifiganConfig
    supports_r1 = True
    defaults: ClassVar[dict[str, Any]] = {
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "b1_g": 0.8,
        "b2_g": 0.99,
        "b1_d": 0.8,
        "b2_d": 0.99,
        "optimizer": "adamw",
        "scheduler": "exponential",
        "lr_decay": 0.999,
        "scheduler_interval": "per_epoch",
        # the reference's epoch: its LJSpeech training list of 12,950 clips, so 0.999 per epoch
        # decays as in the paper on any corpus (the built-in one has 320 clips)
        "epoch_samples": 12950,
    }
    # the vocoder family's detectors, set between the healthy and rigged runs of the labelled
    # set (docs/diagnostics.md, "Calibration"); a row counts from score 0.8:
    # - overpowering: D right on 85 -> 92 % of its calls (all sub-Ds averaged) with its loss at
    #   25 -> 10 % of L0;
    # - collapse: diversity ratio 0.04 -> 0.01, or a level 25 -> 35 dB off;
    # - divergence: the mel loss at 1.3 -> 2 x its best
    health_config: ClassVar[HealthConfig] = HealthConfig(
        hold=0.8,
        acc_high=0.92,
        acc_ok=0.85,
        loss_ok=0.25,
        diversity_low=0.01,
        diversity_ok=0.04,
        energy_db=35.0,
        energy_ok_db=25.0,
        recon_high=2.0,
        recon_ok=1.3,
    )
    # the mel L1 term is weighed by lambda_mel against the adversarial and feature-matching terms
    # (Adam ignores a common scale, so every weight moves it), and is all G trains on before D
    trains_on: ClassVar[dict[str, tuple[str, ...]]] = {
        "mel_l1": ("lambda_mel", "lambda_fm", "disc_start_step")
    }
    # a win on STOI must not cost quality (PESQ) or the spectral fit (mel L1)
    guards: ClassVar[tuple[str, ...]] = ("stoi", "pesq", "mel_l1")
    mid_run: ClassVar[tuple[str, ...]] = ("lambda_fm", "lambda_mel")  # read at every step
    budgets: ClassVar[dict[str, dict[str, Any]]] = {
        # tiny G, D at 1/8 width, 1/4-length segments: minutes on 2 CPU cores
        "smoke": {
            "generator": "tiny",
            "d_width": 0.125,
            "segment_size": 2048,
            "batch_size": 4,
            "batches": 600,
            "eval_every": 150,
            "log_every": 10,
            "n_valid": 6,
            "valid_max_seconds": 3.0,
        },
        # V2 generator, D at 1/4 width: a real signal in under an hour on a CPU
        "small": {
            "generator": "v2",
            "d_width": 0.25,
            "segment_size": 8192,
            "batch_size": 8,
            "batches": 4000,
            "eval_every": 500,
            "log_every": 25,
            "eval_metrics": (*SCORED, *DNSMOS_AND_PITCH),
        },
        # the paper's V1 setting (2.5 M steps at batch 16 in the paper)
        "paper": {
            "generator": "v1",
            "d_width": 1.0,
            "segment_size": 8192,
            "batch_size": 16,
            "batches": 2_500_000,
            "eval_every": 5000,
            "log_every": 100,
            "eval_metrics": (*SCORED, *DNSMOS_AND_PITCH),
        },
    }

    def __init__(self, cfg: HifiganConfig, data_dir: str | None, seed: int, batch_size: int):
        super().__init__(cfg, data_dir, seed, batch_size)
        self.reports(cfg)
        self.g_cfg = generator_preset(cfg.generator)
        hop = self.g_cfg.hop_length
        self.gan = losses.adversarial_loss(cfg.loss)
        self.input_mel = LogMel(MelConfig(sample_rate=cfg.sample_rate, hop_length=hop))
        self.loss_mel = LogMel(MelConfig(sample_rate=cfg.sample_rate, hop_length=hop, f_max=None))
        self._split: tuple[list, list] | None = None
        self._valid_audio: list[Tensor] | None = None

    # ------------------------------------------------------------------ data
    def _corpus_split(self) -> tuple[list, list]:
        if self._split is None:
            root = self.data_dir or ensure_corpus(n_utterances=self.cfg.corpus_utterances)
            corpus = open_corpus(Path(root), self.cfg.sample_rate)
            self._split = corpus.split(self.cfg.n_valid, self.cfg.data_seed)
        return self._split

    def train_data(self) -> BatchSource:
        train, _ = self._corpus_split()
        rate, segment = self.cfg.sample_rate, self.cfg.segment_size
        lengths = [f.length_at(rate) for f in train]
        train = drop_short(train, lengths, [str(f.path) for f in train], segment, rate)
        return SegmentBatches(train, segment, self.batch_size, self.seed, rate)

    def to(self, device: torch.device) -> HifiganRecipe:
        super().to(device)
        self.input_mel.to(device)
        self.loss_mel.to(device)
        return self

    # ------------------------------------------------------------------ models
    def build_generator(self) -> nn.Module:
        return Generator(self.g_cfg, dc_free=self.cfg.dc_free_init)

    def build_discriminator(self) -> nn.Module:
        width = self.cfg.d_width
        return HifiganDiscriminator({"width": width}, {"width": width})

    # ------------------------------------------------------------------ losses
    def generate(self, generator: nn.Module, batch: tuple[Tensor]) -> Tensor:
        return generator(self.input_mel(batch[0]))

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        batch: tuple[Tensor],
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> DiscriminatorLoss:
        real = batch[0].unsqueeze(1)
        real_out = discriminator(smoothing.add_noise(real))
        fake_out = discriminator(smoothing.add_noise(fake))
        total = real_term = fake_term = 0.0
        real_scores, fake_scores = {}, {}
        all_real, all_fake = [], []
        for group in real_out:
            r_logits, f_logits = real_out[group][0], fake_out[group][0]
            loss, r_term, f_term = self.gan.d_loss(r_logits, f_logits, smoothing.real_target)
            total, real_term, fake_term = total + loss, real_term + r_term, fake_term + f_term
            real_scores[group] = float(
                torch.stack([t.detach().float().mean() for t in r_logits]).mean()
            )
            fake_scores[group] = float(
                torch.stack([t.detach().float().mean() for t in f_logits]).mean()
            )
            all_real += r_logits
            all_fake += f_logits
        return DiscriminatorLoss(
            loss=total,
            terms={"loss_d_real": real_term, "loss_d_fake": fake_term},
            real_scores=real_scores,
            fake_scores=fake_scores,
            accuracy=self.gan.accuracy(all_real, all_fake),
        )

    def generator_loss(
        self,
        discriminator: nn.Module | None,
        batch: tuple[Tensor],
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> GeneratorLoss:
        real = batch[0]
        mel_error = (self.loss_mel(real) - self.loss_mel(fake.squeeze(1).float())).abs()
        mel_per_example = mel_error.mean(dim=(1, 2))
        recon = self.cfg.lambda_mel * mel_per_example
        terms: dict[str, Tensor] = {"loss_mel": mel_per_example.mean()}
        if discriminator is None:
            return GeneratorLoss(fake.new_zeros((), dtype=torch.float32), recon, terms)
        fake_out = discriminator(smoothing.add_noise(fake))
        with torch.no_grad():
            real_out = discriminator(smoothing.add_noise(real.unsqueeze(1)))
        g_adv = sum(self.gan.g_loss(fake_out[g][0]) for g in fake_out)
        fm = sum(losses.feature_matching_loss(real_out[g][1], fake_out[g][1]) for g in fake_out)
        terms["loss_fm"] = fm
        return GeneratorLoss(g_adv + self.cfg.lambda_fm * fm, recon, terms, adversarial=g_adv)

    # ------------------------------------------------------------------ health
    def health(self, batch: tuple[Tensor], fake: Tensor) -> dict[str, float | None]:
        """Collapse and artefact evidence for a vocoder: diversity, level, high band, flatness."""
        real = batch[0]
        return {
            "diversity_ratio": signals.diversity_ratio(real, fake, self.loss_mel),
            "energy_ratio": signals.energy_ratio(real, fake),
            "highband_ratio": signals.highband_ratio(real, fake, self.cfg.sample_rate),
            "flatness_ratio": signals.flatness_ratio(real, fake),
        }

    def discriminator_outputs(self, discriminator: nn.Module, real: Tensor) -> list[Tensor]:
        """Every sub-discriminator's logits on real audio (for the R1 penalty)."""
        out = discriminator(real.unsqueeze(1))
        return [logits for group in out.values() for logits in group[0]]

    # ------------------------------------------------------------------ validation
    def _validation_audio(self) -> list[Tensor]:
        if self._valid_audio is None:
            _, valid = self._corpus_split()
            max_s = self.cfg.valid_max_seconds or None
            hop = self.g_cfg.hop_length
            clips = load_utterances(valid, self.cfg.sample_rate, max_seconds=max_s)
            self._valid_audio = [c[: len(c) // hop * hop] for c in clips]
        return self._valid_audio

    @classmethod
    def reports(cls, cfg: HifiganConfig) -> tuple[str, ...]:
        """mel L1 and the configured ``eval_metrics`` (checked: each a metric scoring computes)."""
        unknown = [m for m in cfg.eval_metrics if m not in SPEECH or m == "mel_l1"]
        if unknown or not cfg.eval_metrics:
            choices = ", ".join(m for m in SPEECH if m != "mel_l1")
            raise ConfigError(f"eval_metrics: {unknown or '[]'} not among {choices}")
        return ("mel_l1", *cfg.eval_metrics)

    @classmethod
    def measuring(cls, cfg: HifiganConfig, metrics: tuple[str, ...]) -> dict[str, Any]:
        """``eval_metrics`` with the missing ones among ``metrics`` added."""
        missing = [m for m in metrics if m in SPEECH and m not in cls.reports(cfg)]
        return {"eval_metrics": (*cfg.eval_metrics, *missing)} if missing else {}

    def validate(self, generator: nn.Module, step: int, out_dir: Any) -> dict[str, float]:
        """Copy-synthesis of the held-out set: mel L1 on device, the rest in worker processes."""
        _, valid = self._corpus_split()
        pairs, mel_l1 = [], []
        for file, audio in zip(valid, self._validation_audio(), strict=True):
            real = audio.to(self.device).unsqueeze(0)
            fake = generator(self.input_mel(real)).squeeze(1).float()
            fake = torch.nan_to_num(fake, nan=0.0, posinf=0.0, neginf=0.0)  # diverged = silence
            mel_l1.append(float((self.loss_mel(real) - self.loss_mel(fake)).abs().mean()))
            pairs.append((Path(file.path).stem, audio.numpy(), fake[0].cpu().numpy()))
        metrics = self.cfg.eval_metrics
        report = score_pairs(pairs, self.cfg.sample_rate, pool=self.scoring_pool(), metrics=metrics)
        if out_dir is not None:
            clips = [Sample(*pair) for pair in pairs[: self.cfg.samples_per_eval]]
            save_samples(out_dir, step, clips, self.cfg.sample_rate, self.cfg.keep_sample_evals)
        return {
            "mel_l1": float(np.mean(mel_l1)),
            **{k: report.mean[k] for k in metrics if k in report.mean},
            "n_valid": report.n_valid,
            "n_skipped": report.n_skipped,
        }
