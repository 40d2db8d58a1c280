"""GAN health: signals measured at log intervals, and the two detectors built on them.

Signals (formulas in docs/diagnostics.md, "Health columns"):

- from the trainer: D(real) / D(fake) means, D accuracy, pre-clip gradient norms, the adversarial
  gradient norm ‖∂L_adv/∂x̂‖ that reaches the generated batch, the optional R1 penalty;
- from the recipe: :func:`diversity_ratio`, :func:`energy_ratio` and :func:`highband_ratio` for
  conditional generators (through :meth:`Recipe.health` at log steps), :func:`mode_statistics`
  for the toy mixtures (through their validation);
- from :class:`HealthMonitor`: the rolling mean / variance of the D loss, the two scores in [0, 1],
  and the flags, raised only when a detector's condition held for ``window`` consecutive windows.

A *window* is one row that carries a detector's evidence: every step row (one ``log_every``
interval) for overpowering; for collapse, the step rows of a recipe whose :meth:`Recipe.health`
reports diversity / energy, and the evaluation rows of the toy recipes (modes covered on 2,500
fixed samples: the training batch, drawn through batch norm in training mode, is too noisy).
The monitor is plain Python with its state in :meth:`HealthMonitor.state_dict`, so a resumed trial
keeps its streaks and flags; the search's stopper only needs :func:`stop_reason` on a row.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from harness.files import finite


class HealthError(ValueError):
    """A health setting is invalid; the message is one line naming it."""


@dataclass
class HealthConfig:
    """Detector thresholds and windows; defaults justified in the docs.

    A trainer takes ``window`` from ``TrainerConfig.health_window``, the key a trial sets.
    """

    window: int = 5  # W: consecutive windows a condition must hold before its flag is raised
    warmup: float = 0.1  # share of the run's steps not judged (G leaving its initialisation)
    roll: int = 10  # step rows in the rolling D-loss mean and variance
    # overpowering: D right about nearly everything, and G's signal from D gone
    acc_high: float = 0.98  # D accuracy at or above this counts as "D wins every call"
    acc_ok: float = 0.8  # ... and at or below this contributes nothing to the score
    loss_low: float = 0.1  # D loss at or below this share of the untrained D's is "near zero"
    loss_ok: float = 0.5
    grad_low: float = 0.01  # adversarial gradient at or below this share of its peak "vanished"
    grad_ok: float = 0.1
    # collapse: the generator's outputs stopped spreading like the data
    coverage_low: float = 0.5  # toy: share of modes covered at or below this is collapse
    diversity_low: float = 0.05  # conditional: diversity ratio at or below this is collapse
    diversity_ok: float = 0.2
    energy_db: float = 30.0  # conditional: output level this many dB from the real level
    energy_ok_db: float = 20.0

    def __post_init__(self) -> None:
        for key in ("window", "roll"):
            if getattr(self, key) < 1:
                raise HealthError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.warmup < 1:
            raise HealthError(f"warmup: must be in [0, 1), got {self.warmup}")


# ------------------------------------------------------------------ signals from audio batches
def _as_batch(audio: Tensor) -> Tensor:
    """[B, T] or [B, 1, T] -> [B, T] float32."""
    return (audio.squeeze(1) if audio.dim() == 3 else audio).float()


def _mean_pairwise_l1(features: Tensor) -> float:
    flat = features.flatten(1).double()
    pairs = torch.cdist(flat, flat, p=1) / flat.shape[1]
    n = flat.shape[0]
    return float(pairs.sum() / (n * (n - 1)))


def diversity_ratio(
    real: Tensor, fake: Tensor, log_mel: Callable[[Tensor], Tensor]
) -> float | None:
    """Mean pairwise log-mel L1 distance among generated clips over the same among real clips.

    Near 1 when G follows its condition; 0 when every output is the same (a generator that
    ignores its input).  None for a batch of one clip or identical real clips.
    """
    if real.shape[0] < 2:
        return None
    spread_real = _mean_pairwise_l1(log_mel(_as_batch(real)))
    if spread_real <= 0:
        return None
    return _mean_pairwise_l1(log_mel(_as_batch(fake))) / spread_real


def energy_ratio(real: Tensor, fake: Tensor) -> float | None:
    """RMS of the generated batch over RMS of the real batch (0 = silence, >> 1 = blow-up)."""
    rms_real = float(_as_batch(real).double().pow(2).mean().sqrt())
    if rms_real <= 0:
        return None
    return float(_as_batch(fake).double().pow(2).mean().sqrt()) / rms_real


def highband_share(audio: Tensor, sample_rate: int, cutoff_hz: float = 4000.0) -> float:
    """Share of a batch's spectral energy above ``cutoff_hz`` (one FFT over each whole clip)."""
    power = torch.fft.rfft(_as_batch(audio).double(), dim=-1).abs().pow(2)
    freqs = torch.fft.rfftfreq(audio.shape[-1], d=1.0 / sample_rate)
    total = float(power.sum())
    return float(power[..., freqs > cutoff_hz].sum()) / total if total > 0 else 0.0


def highband_ratio(
    real: Tensor, fake: Tensor, sample_rate: int, cutoff_hz: float = 4000.0
) -> float | None:
    """High-band energy share of generated over real audio (< 1 muffled, > 1 hiss/artefacts)."""
    share_real = highband_share(real, sample_rate, cutoff_hz)
    if share_real <= 0:
        return None
    return highband_share(fake, sample_rate, cutoff_hz) / share_real


# ------------------------------------------------------------------ signal for the toy mixtures
def mode_statistics(samples: Tensor, means: Tensor, std: float) -> dict[str, float]:
    """VEEGAN / PacGAN mixture metrics of generated 2-D ``samples`` against mode ``means``.

    A sample is high-quality when within 3 std of its nearest mode; a mode is covered when it is
    the nearest mode of at least one high-quality sample; the reverse KL compares the histogram
    of high-quality samples over modes with the uniform mixture weights.
    """
    dist = torch.cdist(samples.detach().double().cpu(), means.double())
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= 3 * std
    k = len(means)
    counts = torch.bincount(nearest[good], minlength=k).double()
    if counts.sum() > 0:
        p = counts / counts.sum()
        nz = p > 0
        reverse_kl = float((p[nz] * (p[nz] * k).log()).sum())
    else:
        reverse_kl = math.log(k)  # no high-quality sample at all: as bad as a single mode
    return {
        "modes_covered": float((counts > 0).sum()),
        "modes_total": float(k),
        "high_quality": float(good.double().mean()),
        "reverse_kl": reverse_kl,
    }


# ------------------------------------------------------------------ scores
def ramp(value: float, bad: float, ok: float) -> float:
    """1 at or beyond ``bad``, 0 at or beyond ``ok``, linear in between (either direction)."""
    return min(1.0, max(0.0, (value - ok) / (bad - ok)))


def overpower_score(
    d_acc: float | None, loss_share: float | None, grad_share: float | None, cfg: HealthConfig
) -> float | None:
    """min(acc, max(loss, grad)): D is right about nearly everything AND its loss is near zero
    or the adversarial gradient has vanished.  Each part is a :func:`ramp`; None without D."""
    if not finite(d_acc):
        return None
    parts = [0.0]
    if finite(loss_share):
        parts.append(ramp(loss_share, cfg.loss_low, cfg.loss_ok))
    if finite(grad_share):
        parts.append(ramp(grad_share, cfg.grad_low, cfg.grad_ok))
    return min(ramp(d_acc, cfg.acc_high, cfg.acc_ok), max(parts))


def collapse_score(row: Mapping[str, Any], cfg: HealthConfig) -> float | None:
    """max over the collapse evidence the row carries: mode coverage (toy recipes), diversity
    ratio and output level (conditional generators).  None when the row carries none."""
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
    return max(parts) if parts else None


# ------------------------------------------------------------------ the monitor
DETECTORS = {"overpower": "discriminator overpowering", "collapse": "mode collapse"}


class HealthMonitor:
    """Consumes a trial's step and eval rows in order; adds rolling D-loss statistics, scores
    and flags.

    A detector's condition holds on a row when its score is 1 (every threshold crossed).  Rows
    without the detector's evidence leave its streak alone; rows at or before the warm-up step
    (``warmup`` x ``total_steps``, and always step 0) are scored but not judged.  The flag is
    raised once the condition held on ``window`` consecutive judged rows, and ``<name>_since``
    names the step of the first row of that streak.
    """

    def __init__(self, cfg: HealthConfig | None = None, total_steps: int = 0) -> None:
        self.cfg = cfg or HealthConfig()
        self.warmup_steps = int(self.cfg.warmup * total_steps)
        self.losses: deque[float] = deque(maxlen=self.cfg.roll)
        self.loss_ref: float | None = None
        self.grad_peak = 0.0
        self.streak = dict.fromkeys(DETECTORS, 0)
        self.streak_start: dict[str, int | None] = dict.fromkeys(DETECTORS)

    def note_d_loss(self, value: float) -> None:
        """Called on every D update: the first finite loss (untrained D, about chance level) is
        the reference against which "D loss near zero" is judged."""
        if self.loss_ref is None and math.isfinite(value) and value > 0:
            self.loss_ref = value

    @property
    def current(self) -> dict[str, Any]:
        """The flags as they stand (for rows that carry no evidence, such as eval rows)."""
        out: dict[str, Any] = {}
        for name in DETECTORS:
            flagged = self.streak[name] >= self.cfg.window
            out[f"flag_{name}"] = flagged
            out[f"{name}_since"] = self.streak_start[name] if flagged else None
        return out

    def update(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The health columns for one row (the row itself is not modified)."""
        out: dict[str, Any] = {}
        loss_share = grad_share = None
        loss_d = row.get("loss_d")
        if finite(loss_d):
            self.losses.append(float(loss_d))
            mean = sum(self.losses) / len(self.losses)
            var = sum((x - mean) ** 2 for x in self.losses) / len(self.losses)
            out.update(d_loss_roll_mean=mean, d_loss_roll_var=var)
            loss_share = loss_d / self.loss_ref if self.loss_ref else None
        grad = row.get("adv_grad_norm")
        if finite(grad):
            self.grad_peak = max(self.grad_peak, grad)
            grad_share = grad / self.grad_peak if self.grad_peak > 0 else None
        scores = {
            "overpower": overpower_score(row.get("d_acc"), loss_share, grad_share, self.cfg),
            "collapse": collapse_score(row, self.cfg),
        }
        step = int(row["step"])
        judged = step > self.warmup_steps
        for name, score in scores.items():
            out[f"{name}_score"] = score
            if score is None:
                continue
            holds = judged and score >= 1.0
            if holds and self.streak[name] == 0:
                self.streak_start[name] = step
            self.streak[name] = self.streak[name] + 1 if holds else 0
        return {**out, **self.current}

    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "loss_ref": self.loss_ref,
            "grad_peak": self.grad_peak,
            "streak": dict(self.streak),
            "streak_start": dict(self.streak_start),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.losses = deque(state["losses"], maxlen=self.cfg.roll)
        self.loss_ref = state["loss_ref"]
        self.grad_peak = state["grad_peak"]
        self.streak = dict(state["streak"])
        self.streak_start = dict(state["streak_start"])


def stop_reason(row: Mapping[str, Any]) -> str | None:
    """Why a trial reporting ``row`` should stop, e.g. "discriminator overpowering since step
    1200"; None when the row raises no flag.  Overpowering is named first when both are up."""
    for name, words in DETECTORS.items():
        if row.get(f"flag_{name}"):
            since = row.get(f"{name}_since")
            return f"{words} since step {since}" if since is not None else words
    return None
