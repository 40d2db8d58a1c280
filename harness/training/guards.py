"""The training loop's safety policy: which updates and batches are skipped, counted, or fatal.

A non-finite or exploding loss (above ``loss_upper_limit``) skips its update, as does a non-finite
gradient norm outside fp16 (there the GradScaler skips the step itself and lowers its scale).
``max_consecutive_nonfinite`` such skips in a row for one network end the trial with a readable
:class:`StopTraining`; so do as many CUDA out-of-memory batches in a row.  ``loss_threshold``
leaves easy examples out of the reconstruction mean and skips a batch left empty.  The counters
travel in checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from harness.files import finite
from harness.training.config import TrainerConfig


class StopTraining(Exception):
    """Raised inside the loop when the trial must end early; carries a readable reason."""


@dataclass
class Counters:
    """Cumulative skip counters, saved in checkpoints."""

    nonfinite_skips: int = 0
    oom_skips: int = 0
    scaler_skips: int = 0  # fp16: steps the GradScaler skipped for inf/NaN gradients
    threshold_skips: int = 0
    consecutive_nonfinite_g: int = 0  # per network: a healthy D must not mask a broken G
    consecutive_nonfinite_d: int = 0
    consecutive_oom: int = 0

    def skips(self) -> dict[str, int]:
        """The cumulative skips, by step-row column (the runs in a row stay the guards' own)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k.endswith("_skips")}


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an accelerator out-of-memory error."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def require_scores(row: dict[str, Any], metrics: Sequence[str]) -> None:
    """Stop the run at a validation that scored nothing: every held-out utterance skipped
    (``n_valid`` 0), or none of ``metrics`` (those the recipe reports) finite.  A broken
    generator scores worst-case, not NaN, so this is a held-out set that cannot be scored: no
    later validation would score anything either, and a run without a score is not completed."""
    where = f"validation at step {row['step']}"
    if row.get("n_valid") == 0:
        raise StopTraining(
            f"no score: the {where} could score none of its {row.get('n_skipped')} "
            "utterances (references silent, too short or without speech)"
        )
    if metrics and not any(finite(row.get(m)) for m in metrics):
        raise StopTraining(f"no score: every metric of the {where} is NaN ({', '.join(metrics)})")


class Guards:
    """Applies the skip policy of one :class:`TrainerConfig` and keeps its :class:`Counters`.

    ``net`` is "g" or "d"; ``step`` only names the iteration in a stop reason.
    """

    def __init__(self, cfg: TrainerConfig) -> None:
        self.cfg = cfg
        self.counters = Counters()

    def loss_ok(self, net: str, loss: Tensor, step: int) -> bool:
        """False (and counted) when a loss is non-finite or above the divergence limit."""
        value = float(loss.detach())
        if math.isfinite(value) and value <= self.cfg.loss_upper_limit:
            return True
        self._skip_nonfinite(net, f"loss {value:.4g}", step)
        return False

    def gradient_ok(self, net: str, norm: float, scaled: bool, step: int) -> bool:
        """False (and counted) for a non-finite gradient norm, unless a GradScaler (fp16) is
        ``scaled`` in, which skips that step itself."""
        if math.isfinite(norm) or scaled:
            return True
        self._skip_nonfinite(net, "gradient norm", step)
        return False

    def updated(self, net: str, norm: float) -> None:
        """``net`` went through its optimizer step: its run of consecutive skips is over.  A
        non-finite ``norm`` here means the GradScaler (fp16) skipped the step: counted."""
        setattr(self.counters, f"consecutive_nonfinite_{net}", 0)
        if not math.isfinite(norm):
            self.counters.scaler_skips += 1

    def hard_examples(self, reconstruction: Tensor) -> Tensor | None:
        """The per-example losses at or above ``loss_threshold`` (all of them when it is 0);
        None, counted, when none is left."""
        if self.cfg.loss_threshold <= 0:
            return reconstruction
        keep = reconstruction.detach() >= self.cfg.loss_threshold
        if not bool(keep.any()):
            self.counters.threshold_skips += 1
            return None
        return reconstruction[keep]

    def skips_oom(self, err: RuntimeError) -> bool:
        """Whether ``err`` is an out-of-memory error the config says to skip."""
        return self.cfg.skip_oom and is_oom(err)

    def oom_skipped(self, step: int) -> None:
        """Count a skipped out-of-memory batch; stop after too many in a row."""
        c = self.counters
        c.oom_skips += 1
        c.consecutive_oom += 1
        if c.consecutive_oom >= self.cfg.max_consecutive_nonfinite:
            raise StopTraining(
                f"out of memory: {c.consecutive_oom} consecutive batches skipped (step {step})"
            )

    def iteration_done(self) -> None:
        """An iteration finished without running out of memory."""
        self.counters.consecutive_oom = 0

    def _skip_nonfinite(self, net: str, what: str, step: int) -> None:
        c = self.counters
        c.nonfinite_skips += 1
        key = f"consecutive_nonfinite_{net}"
        setattr(c, key, getattr(c, key) + 1)
        if getattr(c, key) >= self.cfg.max_consecutive_nonfinite:
            raise StopTraining(
                f"diverged: {getattr(c, key)} consecutive {net.upper()} updates skipped for a "
                f"non-finite or exploding {what} (step {step})"
            )
