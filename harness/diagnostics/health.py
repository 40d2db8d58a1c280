"""GAN health: signals measured at log intervals, and the detectors built on them.

Detectors (:data:`DETECTORS`): discriminator overpowering, collapse, over-smoothing, divergence.
Which are on, and their thresholds, is the recipe family's :class:`HealthConfig` (the recipe's
``health_config``: toy, vocoder, enhancer), calibrated on labelled runs (docs/diagnostics.md).

Signals (formulas in docs/diagnostics.md, "Health columns"):

- from the trainer: D(real) / D(fake) means, D accuracy, pre-clip gradient norms, the adversarial
  gradient norm ‖∂L_adv/∂x̂‖ that reaches the generated batch, the optional R1 penalty;
- from the recipe: :func:`diversity_ratio`, :func:`energy_ratio` and :func:`highband_ratio` for
  conditional generators (through :meth:`Recipe.health` at log steps), :func:`mode_statistics`
  for the toy mixtures (through their validation);
- from :class:`HealthMonitor`: the rolling mean / variance of the D loss, the shares the
  detectors read, a score in [0, 1] per detector with its peak and latest value (so a trial that
  came close is visible), and the flags, raised once a detector's score averaged at least
  ``hold`` over ``window`` consecutive windows, and kept.

A *window* is one row that carries a detector's evidence: every step row (one ``log_every``
interval of batches, whatever the D:G ratio) for overpowering; for collapse, the step rows of a
recipe whose :meth:`Recipe.health` reports diversity / energy, and the evaluation rows of the
toy recipes (modes covered on 2,500 fixed samples: the training batch, drawn through batch norm
in training mode, is too noisy).
The monitor is plain Python with its state in :meth:`HealthMonitor.state_dict`, so a resumed trial
keeps its streaks and flags; the search's stopper only needs :func:`stop_reason` on a row.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.files import finite

if TYPE_CHECKING:  # torch is imported by the signal functions only, so that the detectors (and
    from torch import Tensor  # the leaderboard, which names them) load without it


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


# ------------------------------------------------------------------ signals from audio batches
def _as_batch(audio: Tensor) -> Tensor:
    """[B, T] or [B, 1, T] -> [B, T] float32."""
    return (audio.squeeze(1) if audio.dim() == 3 else audio).float()


def _mean_pairwise_l1(features: Tensor) -> float:
    import torch

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
    import torch

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


def spectral_flatness(audio: Tensor, n_fft: int = 1024) -> float:
    """Mean over active frames of geometric / arithmetic mean of the power spectrum: near 1
    for noise, near 0 for a few pure tones (buzz).  Frames 40 dB below the loudest are left out."""
    import torch

    x = _as_batch(audio).double()
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    power = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs().pow(2)
    power = power.transpose(1, 2).reshape(-1, power.shape[1]) + 1e-12  # [frames, bins]
    energy = power.mean(dim=1)
    active = energy >= energy.max() * 1e-4
    if not bool(active.any()):
        return 0.0
    flat = power[active].log().mean(dim=1).exp() / energy[active]
    return float(flat.mean())


def flatness_ratio(real: Tensor, fake: Tensor) -> float | None:
    """Spectral flatness of the generated batch over the real batch's (< 1 buzzy / tonal,
    > 1 noisy)."""
    flat_real = spectral_flatness(real)
    if flat_real <= 0:
        return None
    return spectral_flatness(fake) / flat_real


# ------------------------------------------------------------------ signal for the toy mixtures
def mode_statistics(samples: Tensor, means: Tensor, std: float) -> dict[str, float]:
    """VEEGAN / PacGAN mixture metrics of generated 2-D ``samples`` against mode ``means``.

    A sample is high-quality when within 3 std of its nearest mode; a mode is covered when it is
    the nearest mode of at least one high-quality sample; the reverse KL compares the histogram
    of high-quality samples over modes with the uniform mixture weights.
    """
    import torch

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


# ------------------------------------------------------------------ the monitor
class HealthMonitor:
    """Consumes a trial's step and eval rows in order; adds the shares the detectors read
    (D loss over its first value, adversarial gradient over its peak, reconstruction loss over
    its minimum, the untrained generator's included), rolling D-loss statistics, scores, peaks
    and flags.

    A detector's flag is raised once the mean of its score over ``window`` consecutive judged
    rows reaches ``hold`` (with ``hold`` 1: once each of them scored 1), and stays raised for the
    rest of the trial: an episode that ends before the next validation still reaches the stopper
    and the trials table.  Rows without the detector's evidence leave its window alone; rows at
    or before the warm-up step (``warmup`` x ``total_steps``, and always step 0) are scored but
    not judged.  ``<name>_since`` names the step of the first row of the window that raised it;
    ``<name>_last`` says whether the condition still holds.
    """

    def __init__(self, cfg: HealthConfig | None = None, total_steps: int = 0) -> None:
        self.cfg = cfg or HealthConfig()
        self.warmup_steps = int(self.cfg.warmup * total_steps)
        self.losses: deque[float] = deque(maxlen=self.cfg.roll)
        self.loss_ref: float | None = None
        self.grad_peak = 0.0
        self.recon_min = math.inf
        # per detector, the (step, score) of its last W judged rows, and the step its flag rose
        self.recent: dict[str, deque[tuple[int, float]]] = {
            name: deque(maxlen=self.cfg.window) for name in DETECTORS
        }
        self.since: dict[str, int | None] = dict.fromkeys(DETECTORS)
        self.peak: dict[str, float | None] = dict.fromkeys(DETECTORS)
        self.last: dict[str, float | None] = dict.fromkeys(DETECTORS)

    @property
    def needs_d_loss(self) -> bool:
        return self.loss_ref is None

    def note_d_loss(self, value: float) -> None:
        """The first finite D loss (untrained D, about chance level) is the reference against
        which "D loss near zero" is judged; later calls change nothing."""
        if self.loss_ref is None and math.isfinite(value) and value > 0:
            self.loss_ref = value

    @property
    def needs_recon(self) -> bool:
        return math.isinf(self.recon_min)

    def note_recon(self, value: float) -> None:
        """The untrained generator's reconstruction loss is the first minimum, so a run that
        diverges from its first steps on (its logged losses never below that) is seen too."""
        if math.isinf(self.recon_min) and math.isfinite(value) and value > 0:
            self.recon_min = value

    @property
    def current(self) -> dict[str, Any]:
        """Flags, peaks and latest scores as they stand (for rows that carry no evidence, such
        as eval rows)."""
        out: dict[str, Any] = {}
        for name in DETECTORS:
            out[f"flag_{name}"] = self.since[name] is not None
            out[f"{name}_since"] = self.since[name]
            out[f"{name}_peak"] = self.peak[name]
            out[f"{name}_last"] = self.last[name]
        return out

    def shares(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The stateful signals of one step row: rolling D loss, and the three shares."""
        out: dict[str, Any] = {}
        loss_d = row.get("loss_d")
        if finite(loss_d):
            self.losses.append(float(loss_d))
            mean = sum(self.losses) / len(self.losses)
            var = sum((x - mean) ** 2 for x in self.losses) / len(self.losses)
            out.update(d_loss_roll_mean=mean, d_loss_roll_var=var)
            if self.loss_ref:
                out["d_loss_share"] = loss_d / self.loss_ref
        grad = row.get("adv_grad_norm")
        if finite(grad):
            self.grad_peak = max(self.grad_peak, grad)
            if self.grad_peak > 0:
                out["adv_grad_share"] = grad / self.grad_peak
        recon = row.get("loss_recon")
        if finite(recon) and recon > 0:
            self.recon_min = min(self.recon_min, recon)
            out["recon_share"] = recon / self.recon_min
        return out

    def update(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The health columns for one row (the row itself is not modified)."""
        out = self.shares(row)
        seen = {**row, **out}
        step = int(row["step"])
        judged = step > self.warmup_steps
        for name, detector in DETECTORS.items():
            score = detector.score(seen, self.cfg)
            out[f"{name}_score"] = score
            if score is None:
                continue
            self.last[name] = score
            if judged:
                self.peak[name] = max(self.peak[name] or 0.0, score)
                self._judge(name, step, score)
        return {**out, **self.current}

    def _judge(self, name: str, step: int, score: float) -> None:
        """Add a judged row to ``name``'s window; raise its flag if the window's mean reaches
        ``hold`` (compared as a sum, so that hold 1 needs exactly W scores of 1)."""
        recent = self.recent[name]
        recent.append((step, score))
        reached = sum(s for _, s in recent) >= self.cfg.hold * self.cfg.window
        if self.since[name] is None and len(recent) == recent.maxlen and reached:
            self.since[name] = recent[0][0]

    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "loss_ref": self.loss_ref,
            "grad_peak": self.grad_peak,
            "recon_min": self.recon_min,
            "recent": {name: list(rows) for name, rows in self.recent.items()},
            "since": dict(self.since),
            "peak": dict(self.peak),
            "last": dict(self.last),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.losses = deque(state["losses"], maxlen=self.cfg.roll)
        self.loss_ref = state["loss_ref"]
        self.grad_peak = state["grad_peak"]
        self.recon_min = state.get("recon_min", math.inf)  # absent from older checkpoints
        # checkpoints written before flags averaged over W windows hold no window: start afresh
        for name, rows in state.get("recent", {}).items():
            self.recent[name] = deque(map(tuple, rows), maxlen=self.cfg.window)
        self.since = {**self.since, **state.get("since", {})}
        self.peak = {**self.peak, **state.get("peak", {})}
        self.last = {**self.last, **state.get("last", {})}


def stop_reason(row: Mapping[str, Any]) -> str | None:
    """Why a trial reporting ``row`` should stop, e.g. "discriminator overpowering since step
    1200"; None when the row raises no flag.  Detectors are named in :data:`DETECTORS` order."""
    for name, detector in DETECTORS.items():
        if row.get(f"flag_{name}"):
            since = row.get(f"{name}_since")
            return f"{detector.words} since step {since}" if since is not None else detector.words
    return None
