"""The health monitor: a trial's rows in, the shares, scores, peaks and flags of every detector out.

A *window* is one row that carries a detector's evidence: every step row (one ``log_every``
interval of batches, whatever the D:G ratio) for overpowering; for collapse, the step rows of a
recipe whose :meth:`Recipe.health` reports diversity / energy, and the evaluation rows of the
toy recipes (modes covered on 2,500 fixed samples: the training batch, drawn through batch norm
in training mode, is too noisy).  The monitor is plain Python with its state in
:meth:`HealthMonitor.state_dict`, so a resumed trial keeps its streaks and flags.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from harness.diagnostics.detectors import DETECTORS, HealthConfig
from harness.files import finite


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
        """Restore :meth:`state_dict`; a state without a reconstruction minimum, windows or
        per-detector entries keeps this monitor's fresh ones for what it lacks."""
        self.losses = deque(state["losses"], maxlen=self.cfg.roll)
        self.loss_ref = state["loss_ref"]
        self.grad_peak = state["grad_peak"]
        self.recon_min = state.get("recon_min", math.inf)
        for name, rows in state.get("recent", {}).items():
            self.recent[name] = deque(map(tuple, rows), maxlen=self.cfg.window)
        self.since = {**self.since, **state.get("since", {})}
        self.peak = {**self.peak, **state.get("peak", {})}
        self.last = {**self.last, **state.get("last", {})}
