"""GAN health detectors: discriminator overpowering, collapse, over-smoothing, divergence.

Each detector scores one diagnostics row in [0, 1] (1: every threshold crossed) from the signals
it carries (formulas in docs/diagnostics.md, "Health columns"):

- from the trainer: D(real) / D(fake) means, D accuracy, pre-clip gradient norms, the adversarial
  gradient norm ‖∂L_adv/∂x̂‖ that reaches the generated batch, the optional R1 penalty;
- from the recipe: the audio signals of harness/diagnostics/signals.py (conditional generators)
  and the mode statistics of harness/diagnostics/modes.py (toy mixtures);
- from :class:`~harness.diagnostics.monitor.HealthMonitor`: the shares (D loss over its first
  value, adversarial gradient over its peak, reconstruction loss over its minimum).

Which detectors are on, and their thresholds, is the recipe family's :class:`HealthConfig` (the
recipe's ``health_config``: toy, vocoder, enhancer), calibrated on labelled runs
(docs/diagnostics.md).  The monitor turns scores into flags; the search's stopper only needs
:func:`stop_reason` on a row.  Nothing here imports torch, so the leaderboard and the stopper,
which name the detectors, load without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.files import finite


class HealthError(ValueError):
    """A health setting is invalid; the message is one line naming it."""


@dataclass
class HealthConfig:
    """Detector thresholds and windows; defaults justified in the docs.

    A trainer takes ``window`` from ``TrainerConfig.health_window``, the key a trial sets.
    """

    window: int = 5  # W: the consecutive judged windows a flag averages the score over
    warmup: float = 0.1  # share of the run's steps not judged (G leaving its initialisation)
    roll: int = 10  # step rows in the rolling D-loss mean and variance
    # overpowering: D right about nearly everything, and G's signal from D gone
    acc_high: float = 0.98  # D accuracy at or above this counts as "D wins every call"
    acc_ok: float = 0.8  # ... and at or below this contributes nothing to the score
    loss_low: float = 0.1  # D loss at or below this share of the untrained D's is "near zero"
    loss_ok: float = 0.5  # (loss_low 0: D loss not judged, as for an LSGAN D that wins healthily)
    grad_low: float = 0.01  # adversarial gradient at or below this share of its peak "vanished"
    grad_ok: float = 0.1
    # what the adversarial gradient is measured against: "peak" (its own peak so far) or
    # "reconstruction" (the reconstruction loss's gradient on the same generated batch)
    grad_against: str = "peak"
    # collapse: the generator's outputs stopped spreading like the data
    coverage_low: float = 0.5  # toy: share of modes covered at or below this is collapse
    diversity_low: float = 0.05  # conditional: diversity ratio at or below this is collapse
    diversity_ok: float = 0.2
    energy_db: float = 30.0  # conditional: output level this many dB from the real level
    energy_ok_db: float = 20.0
    mask_floor_high: float = 0.95  # masking enhancers: share of the mask at its floor
    mask_floor_ok: float = 0.75
    # over-smoothing (vocoders): the generated high band lost against the real one
    highband_low: float = 0.0  # high-band ratio at or below this is over-smoothed (0 = off)
    highband_ok: float = 0.0
    # divergence: the reconstruction loss climbed back from its best
    recon_high: float = math.inf  # loss_recon at or above this multiple of its minimum (inf = off)
    recon_ok: float = math.inf
    # a flag needs the score's mean over W windows at least this (1: every threshold crossed on
    # each of them; below 1, one noisy window does not undo a trend)
    hold: float = 1.0

    def __post_init__(self) -> None:
        for key in ("window", "roll"):
            if getattr(self, key) < 1:
                raise HealthError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.warmup < 1:
            raise HealthError(f"warmup: must be in [0, 1), got {self.warmup}")
        if self.grad_against not in ("peak", "reconstruction"):
            raise HealthError(
                f"grad_against: must be 'peak' or 'reconstruction', got {self.grad_against!r}"
            )
        if not 0 < self.hold <= 1:
            raise HealthError(f"hold: must be in (0, 1], got {self.hold}")
        for low, ok in (("loss_low", "loss_ok"), ("grad_low", "grad_ok")):
            if getattr(self, low) < 0 or not getattr(self, ok) > getattr(self, low):
                raise HealthError(f"{ok}: must be above {low} >= 0, got {getattr(self, ok)}")
        if self.highband_low > 0 and not self.highband_ok > self.highband_low:
            raise HealthError(f"highband_ok: must be above highband_low, got {self.highband_ok}")
        if math.isfinite(self.recon_high) and not self.recon_ok < self.recon_high:
            raise HealthError(f"recon_ok: must be below recon_high, got {self.recon_ok}")


def ramp(value: float, bad: float, ok: float) -> float:
    """1 at or beyond ``bad``, 0 at or beyond ``ok``, linear in between (either direction)."""
    return min(1.0, max(0.0, (value - ok) / (bad - ok)))


def overpower_score(
    d_acc: float | None, loss_share: float | None, grad_share: float | None, cfg: HealthConfig
) -> float | None:
    """min(acc, max(loss, grad)): D is right about nearly everything AND its loss is near zero
    or the adversarial gradient has vanished.  Each part is a :func:`ramp` (the loss part only
    when ``loss_low`` > 0); None without D."""
    if not finite(d_acc):
        return None
    parts = [0.0]
    if cfg.loss_low > 0 and finite(loss_share):
        parts.append(ramp(loss_share, cfg.loss_low, cfg.loss_ok))
    if finite(grad_share):
        parts.append(ramp(grad_share, cfg.grad_low, cfg.grad_ok))
    return min(ramp(d_acc, cfg.acc_high, cfg.acc_ok), max(parts))


def collapse_score(row: Mapping[str, Any], cfg: HealthConfig) -> float | None:
    """max over the collapse evidence the row carries: mode coverage (toy recipes), diversity
    ratio and output level (conditional generators), the share of a mask at its floor (masking
    enhancers).  None when the row carries none."""
    parts = []
    covered, total = row.get("modes_covered"), row.get("modes_total")
    if finite(covered) and finite(total) and total > 0:
        parts.append(ramp(covered / total, cfg.coverage_low, 1.0))
    if finite(row.get("diversity_ratio")):
        parts.append(ramp(row["diversity_ratio"], cfg.diversity_low, cfg.diversity_ok))
    energy = row.get("energy_ratio")
    if finite(energy):
        level_db = abs(20 * math.log10(energy)) if energy > 0 else math.inf
        parts.append(ramp(level_db, cfg.energy_db, cfg.energy_ok_db))
    if finite(row.get("mask_floor_share")):
        parts.append(ramp(row["mask_floor_share"], cfg.mask_floor_high, cfg.mask_floor_ok))
    return max(parts) if parts else None


def oversmooth_score(row: Mapping[str, Any], cfg: HealthConfig) -> float | None:
    """ramp(high-band ratio; ok -> low): the generated audio lost the real audio's high band.
    None when the row has no high-band ratio or the family does not judge it."""
    ratio = row.get("highband_ratio")
    if cfg.highband_low <= 0 or not finite(ratio):
        return None
    return ramp(ratio, cfg.highband_low, cfg.highband_ok)


def diverge_score(row: Mapping[str, Any], cfg: HealthConfig) -> float | None:
    """ramp(loss_recon over its minimum so far; ok -> high): training is undoing what it had
    learnt.  None without a reconstruction loss or when the family does not judge it."""
    share = row.get("recon_share")
    if not math.isfinite(cfg.recon_high) or not finite(share):
        return None
    return ramp(share, cfg.recon_high, cfg.recon_ok)


def _overpower(row: Mapping[str, Any], cfg: HealthConfig) -> float | None:
    grad = row.get("adv_grad_share" if cfg.grad_against == "peak" else "adv_recon_ratio")
    return overpower_score(row.get("d_acc"), row.get("d_loss_share"), grad, cfg)


@dataclass(frozen=True)
class Detector:
    words: str  # how a stop reason names it
    score: Callable[[Mapping[str, Any], HealthConfig], float | None]


DETECTORS: dict[str, Detector] = {
    "overpower": Detector("discriminator overpowering", _overpower),
    "collapse": Detector("mode collapse", collapse_score),
    "oversmooth": Detector("over-smoothed output", oversmooth_score),
    "diverge": Detector("divergence", diverge_score),
}
"""Every detector, in the order a stop reason names them; each scores a row in [0, 1].  Per
detector a row carries ``<name>_score`` (this row), ``<name>_peak`` (highest judged score so far),
``<name>_last`` (latest score), ``flag_<name>`` and ``<name>_since``."""


def stop_reason(row: Mapping[str, Any]) -> str | None:
    """Why a trial reporting ``row`` should stop, e.g. "discriminator overpowering since step
    1200"; None when the row raises no flag.  Detectors are named in :data:`DETECTORS` order."""
    for name, detector in DETECTORS.items():
        if row.get(f"flag_{name}"):
            since = row.get(f"{name}_since")
            return f"{detector.words} since step {since}" if since is not None else detector.words
    return None
