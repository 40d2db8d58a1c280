"""What every speech-enhancement recipe shares: paired data, validation against the noisy input.

A subclass (MetricGAN+, SEGAN) says how its generator turns a noisy utterance into an enhanced
one (:meth:`EnhancementRecipe.enhance`); this base supplies the rest:

- training data: random crops of (clean, noisy) pairs (harness/audio/pairs.py), a pure function
  of (seed, batch index), 16 kHz by default;
- validation: every held-out pair enhanced at full length (or its first ``valid_max_seconds``)
  and scored with PESQ-WB, STOI, ESTOI, SI-SNR and CSIG/CBAK/COVL; the noisy input is scored
  once, on the first validation, and every eval row carries it as ``<m>_noisy`` and the
  improvement over it as ``<m>_gain``, both over the utterances scored in both;
- health: diversity, energy and high-band ratios of the enhanced batch against the clean one.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from harness.audio.datasets import drop_short
from harness.audio.mel import LogMel, MelConfig
from harness.audio.pairs import Pair, PairBatches, load_pair, open_pairs
from harness.audio.samples import Sample, save_samples
from harness.diagnostics import signals
from harness.diagnostics.detectors import HealthConfig
from harness.scoring.pairs import ScorePair, score_pairs
from harness.scoring.registry import ENHANCEMENT_BASE, SPEECH
from harness.training.config import COUNT, SPEECH_DATA_RANGES, ConfigError, Range
from harness.training.recipe import BatchSource, Recipe

SCORED = ENHANCEMENT_BASE  # pesq, stoi, estoi, si_snr, csig, cbak, covl
EXTRA = tuple(m for m in SPEECH if m not in SCORED)  # what extra_metrics may add


@dataclass(frozen=True)
class Framing:
    """How an enhancer takes a long utterance in chunks, so memory stays bounded.

    A chunk starts on a multiple of ``unit`` samples and is enhanced with ``left`` samples of
    the utterance before it and ``right`` after it (both multiples of ``unit``); of what comes
    out, only the chunk's own samples are kept.  The context is what makes the chunk come out
    as it does when the whole utterance is enhanced at once: exactly, or, for a generator that
    looks at the whole utterance (a BLSTM), with the context its training crops gave it.
    """

    unit: int
    left: int
    right: int


@dataclass
class EnhancementConfig:
    """Data and validation settings of every enhancement recipe."""

    sample_rate: int = 16000
    noise_dir: str | None = None  # --noise: noise recordings mixed into the built-in speech
    segment_size: int = 16384  # training crop, samples
    data_seed: int = 0  # fixes the built-in corpus and the validation draw
    n_valid: int = 8  # held-out pairs scored at every validation
    valid_max_seconds: float = 0.0  # crop validation pairs (0 = full length)
    samples_per_eval: int = 2  # enhanced WAVs written per validation
    keep_sample_evals: int = 3  # validations whose WAVs are kept
    corpus_utterances: int = 320  # size of the built-in noisy corpus
    score_workers: int = 0  # scoring processes; 0 = the torch threads this trial was given
    # scored at every validation besides SCORED, without a noisy baseline: DNSMOS or the pitch
    # metrics (each about 3 s of one core per 3 s clip), e.g. to guard a confirmation
    extra_metrics: tuple[str, ...] = ()

    RANGES: ClassVar[dict[str, Range]] = {
        "sample_rate": Range(8000),  # the lowest rate PESQ scores
        "segment_size": COUNT,
        **SPEECH_DATA_RANGES,
    }


class EnhancementRecipe(Recipe):
    """Paired data, validation against the noisy baseline and health for an enhancer."""

    cfg: EnhancementConfig
    # the enhancer family's detectors, calibrated on labelled runs (docs/diagnostics.md,
    # "Calibration"): collapse is a level 40 -> 50 dB below the clean one (SEGAN starts far below
    # it and climbs; a silent output is -inf), divergence an L1 loss at 1.5 -> 3 x its best, the
    # mask floor (MetricGAN+) as in HealthConfig.  D's loss is not judged: SEGAN's LSGAN D wins in
    # healthy runs too.  Overpowering is the gradient D gives G falling to 0.6 -> 0.3 x the
    # reconstruction term's on the same batch; hold 0.8, as single rows spike.
    health_config: ClassVar[HealthConfig] = HealthConfig(
        energy_db=50.0,
        energy_ok_db=40.0,
        recon_high=3.0,
        recon_ok=1.5,
        loss_low=0.0,
        grad_against="reconstruction",
        grad_low=0.3,
        grad_ok=0.6,
        hold=0.8,
    )

    def __init__(self, cfg: Any, data_dir: str | None, seed: int, batch_size: int) -> None:
        super().__init__(cfg, data_dir, seed, batch_size)
        self.reports(cfg)
        self._split: tuple[list[Pair], list[Pair]] | None = None
        self._valid_audio: list[tuple[Tensor, Tensor]] | None = None
        self._baseline: dict[str, dict[str, float]] | None = None  # pair id -> noisy scores
        self.health_mel = LogMel(MelConfig(sample_rate=cfg.sample_rate, f_max=None))

    # ------------------------------------------------------------------ data
    def _corpus_split(self) -> tuple[list[Pair], list[Pair]]:
        if self._split is None:
            corpus = open_pairs(
                self.data_dir,
                self.cfg.sample_rate,
                noise=self.cfg.noise_dir,
                seed=self.cfg.data_seed,
                n_utterances=self.cfg.corpus_utterances,
            )
            self._split = corpus.split(self.cfg.n_valid, self.cfg.data_seed)
        return self._split

    def train_data(self) -> BatchSource:
        train, _ = self._corpus_split()
        segment, names = self.cfg.segment_size, [str(p.noisy.path) for p in train]
        train = drop_short(train, [p.length for p in train], names, segment, self.cfg.sample_rate)
        return PairBatches(train, self.batch_size, segment, self.seed)

    def to(self, device: torch.device) -> EnhancementRecipe:
        super().to(device)
        self.health_mel.to(device)
        return self

    # ------------------------------------------------------------------ the generator's job
    def enhance(self, generator: nn.Module, noisy: Tensor) -> Tensor:
        """Enhance a whole utterance: noisy [1, L] on ``self.device`` -> enhanced [1, L]."""
        return self.enhance_span(generator, noisy, 0, noisy.shape[-1])

    @abstractmethod
    def enhance_span(self, generator: nn.Module, noisy: Tensor, start: int, length: int) -> Tensor:
        """Enhance ``noisy`` [1, n], samples [start, start + n) of an utterance ``length`` long,
        as those samples would be enhanced with the whole utterance: [1, n].  Only what the
        recipe draws per position (SEGAN's latent) depends on ``start`` and ``length``; the
        context a span needs is the caller's (:meth:`framing`)."""

    @abstractmethod
    def framing(self) -> Framing:
        """How a long utterance is enhanced in chunks (:class:`Framing`)."""

    # ------------------------------------------------------------------ health
    def health(self, batch: tuple[Tensor, Tensor], fake: Tensor) -> dict[str, float | None]:
        """Collapse evidence of a conditional generator: diversity, level, high band."""
        clean = batch[0]
        return {
            "diversity_ratio": signals.diversity_ratio(clean, fake, self.health_mel),
            "energy_ratio": signals.energy_ratio(clean, fake),
            "highband_ratio": signals.highband_ratio(clean, fake, self.cfg.sample_rate),
        }

    # ------------------------------------------------------------------ validation
    def _validation_audio(self) -> list[tuple[Tensor, Tensor]]:
        if self._valid_audio is None:
            _, valid = self._corpus_split()
            stop = int(self.cfg.valid_max_seconds * self.cfg.sample_rate) or None
            self._valid_audio = [tuple(x[:stop] for x in load_pair(p)) for p in valid]
        return self._valid_audio

    @classmethod
    def reports(cls, cfg: Any) -> tuple[str, ...]:
        """Every scored metric, its noisy-input baseline and the gain over it; the extra ones."""
        unknown = [m for m in cfg.extra_metrics if m not in EXTRA]
        if unknown:
            raise ConfigError(f"extra_metrics: {unknown} not among {', '.join(EXTRA)}")
        scored = tuple(f"{m}{suffix}" for m in SCORED for suffix in ("", "_noisy", "_gain"))
        return (*scored, *cfg.extra_metrics)

    @classmethod
    def measuring(cls, cfg: Any, metrics: tuple[str, ...]) -> dict[str, Any]:
        """``extra_metrics`` with the missing ones among ``metrics`` added."""
        missing = [m for m in metrics if m in EXTRA and m not in cfg.extra_metrics]
        return {"extra_metrics": (*cfg.extra_metrics, *missing)} if missing else {}

    def validate(self, generator: nn.Module, step: int, out_dir: Any) -> dict[str, float]:
        """Enhance the held-out pairs; score them, and the noisy input once, in the pool."""
        _, valid = self._corpus_split()
        first = self._baseline is None
        clips = []
        for pair, (clean, noisy) in zip(valid, self._validation_audio(), strict=True):
            enhanced = self.enhance(generator, noisy.to(self.device).unsqueeze(0))
            enhanced = torch.nan_to_num(enhanced.float(), nan=0.0, posinf=0.0, neginf=0.0)
            clips.append(Sample(pair.id, clean.numpy(), enhanced[0].cpu().numpy(), noisy.numpy()))
        items = [
            ScorePair(c.name, c.reference, c.generated, c.noisy if first else None) for c in clips
        ]
        report = score_pairs(items, self.cfg.sample_rate, pool=self.scoring_pool(), metrics=SCORED)
        if first:
            self._baseline = {
                row["id"]: {m: row[f"noisy_{m}"] for m in SCORED}
                for row in report.per_item
                if not row.get("skipped")
            }
        if out_dir is not None:
            keep = self.cfg.keep_sample_evals
            save_samples(
                out_dir, step, clips[: self.cfg.samples_per_eval], self.cfg.sample_rate, keep
            )
        row = {m: report.mean[m] for m in SCORED}
        row.update(self._against_baseline(report.per_item))
        if self.cfg.extra_metrics:
            plain = [ScorePair(c.name, c.reference, c.generated) for c in clips]
            extra = score_pairs(
                plain,
                self.cfg.sample_rate,
                pool=self.scoring_pool(),
                metrics=self.cfg.extra_metrics,
            )
            row.update({m: extra.mean[m] for m in self.cfg.extra_metrics if m in extra.mean})
        return {**row, "n_valid": report.n_valid, "n_skipped": report.n_skipped}

    def _against_baseline(self, per_item: list[dict[str, Any]]) -> dict[str, float]:
        """``<m>_noisy`` and ``<m>_gain`` over the utterances scored now and for the baseline."""
        assert self._baseline is not None
        both = [r for r in per_item if not r.get("skipped") and r["id"] in self._baseline]
        out: dict[str, float] = {}
        for m in SCORED:
            noisy = [self._baseline[r["id"]][m] for r in both]
            gain = [r[m] - self._baseline[r["id"]][m] for r in both]
            out[f"{m}_noisy"] = float(np.mean(noisy)) if both else float("nan")
            out[f"{m}_gain"] = float(np.mean(gain)) if both else float("nan")
        return out
