"""The loop's clock: training batches drawn, which the budget counts, and the windows they cross.

A run's budget is ``batches`` training batches drawn, so runs of any D:G ratio stop and validate
after the same data.  An iteration draws ``d_steps + g_steps - 1`` batches (each D update its
own; G's first update reuses D's last), or ``g_steps`` before ``disc_start_step``.  Step rows,
evaluations and checkpoints fall where the batches drawn cross a multiple of their interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.training.config import TrainerConfig


@dataclass(frozen=True)
class Budget:
    """The batch arithmetic of one :class:`TrainerConfig` over data of ``batches_per_epoch``."""

    cfg: TrainerConfig
    batches_per_epoch: int

    @property
    def per_iteration(self) -> int:
        """Batches an iteration draws once D trains."""
        return self.cfg.d_steps + self.cfg.g_steps - 1

    def drawn(self, step: int) -> int:
        """Batches the iteration at ``step`` draws."""
        return self.per_iteration if step >= self.cfg.disc_start_step else self.cfg.g_steps

    def crosses(self, every: int, before: int, after: int) -> bool:
        """Whether going from ``before`` to ``after`` batches drawn crosses a multiple of
        ``every`` or spends the budget."""
        return after // every > before // every or after >= self.cfg.batches

    def spent(self, drawn: int) -> bool:
        """Whether ``drawn`` batches spend the budget."""
        return drawn >= self.cfg.batches

    def epoch(self, drawn: int) -> int:
        """Passes over the training data in ``drawn`` batches."""
        return drawn // self.batches_per_epoch

    def schedule_epoch(self, drawn: int) -> int:
        """Epochs of ``cfg.epoch_samples`` examples in ``drawn`` batches: the per_epoch
        schedule's clock, the same on a 300-clip corpus as on the 13k clips a paper's schedule
        was tuned on (0 = the training data's own epoch)."""
        examples = self.cfg.epoch_samples or self.batches_per_epoch * self.cfg.batch_size
        return drawn * self.cfg.batch_size // examples
