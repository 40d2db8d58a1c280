"""What a recipe is: the models, losses, data and validation of one GAN, without any loop policy.

The trainer (harness/training/trainer.py) owns *how* the loop steps; a recipe says *what* is
computed.  The trainer calls, per update: :meth:`Recipe.generate`, then
:meth:`Recipe.discriminator_loss` on the detached generated batch, then
:meth:`Recipe.generator_loss` on the same generated batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from harness.diagnostics.detectors import HealthConfig

if TYPE_CHECKING:
    from harness.scoring.pool import ScoringPool


class BatchSource(Protocol):
    """Deterministic training data: batch ``index`` is a pure function of (seed, index).

    That makes the data position a single integer, so resuming from a checkpoint replays the
    exact batches a straight run would have seen.
    """

    batches_per_epoch: int

    def batch(self, index: int) -> Any:
        """The ``index``-th training batch (CPU tensors)."""
        ...


@dataclass
class DiscriminatorLoss:
    """What one discriminator evaluation produced.

    ``real_scores`` / ``fake_scores`` map a discriminator group name ("mpd", "msd", ...) to the
    mean raw D output on real / generated inputs, for health diagnostics.  ``accuracy`` is the
    share of real outputs above and fake outputs below the loss's decision threshold.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    real_scores: dict[str, float] = field(default_factory=dict)
    fake_scores: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None


@dataclass
class GeneratorLoss:
    """The generator's loss in the parts the trainer treats apart: G minimises ``through_d``
    plus the mean of ``reconstruction``."""

    through_d: Tensor  # scalar: the weighted terms computed through D; zero before D starts
    reconstruction: Tensor  # [batch]: weighted, per example (loss_threshold drops easy ones)
    terms: dict[str, Tensor] = field(default_factory=dict)  # further columns to log
    # the bare adversarial term inside through_d (no feature matching), logged as loss_g_adv;
    # its gradient on the generated batch is adv_grad_norm.  None before D starts
    adversarial: Tensor | None = None


@dataclass
class DiscriminatorSmoothing:
    """How the trainer smooths D's task; the recipe applies it inside its losses."""

    real_target: float = 1.0  # what D learns for real inputs: below 1 under label smoothing
    noise_std: float = 0.0  # Gaussian instance noise added to every input D sees
    generator: torch.Generator | None = None  # the noise's random stream

    def add_noise(self, x: Tensor) -> Tensor:
        """``x`` with instance noise added (``x`` itself when the noise is off)."""
        if self.noise_std <= 0:
            return x
        noise = torch.randn(x.shape, generator=self.generator, device="cpu", dtype=torch.float32)
        return x + self.noise_std * noise.to(device=x.device, dtype=x.dtype)


def _to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``; a host-to-GPU copy goes through pinned memory, asynchronously."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


class Recipe(ABC):
    """One GAN: models, losses, data and validation.  Knows nothing of the loop policy."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    defaults: ClassVar[dict[str, Any]] = {}  # trainer-key defaults this recipe prefers
    budgets: ClassVar[dict[str, dict[str, Any]]]  # smoke / small / paper overrides (flat keys)
    anchors: ClassVar[tuple[str, ...]] = ()  # published results `run.py train` prints beside ours
    # metric -> the config keys that weigh it in the generator's training loss (a search may not
    # optimise such a metric while sweeping those keys: it would reward weakening the GAN)
    trains_on: ClassVar[dict[str, tuple[str, ...]]] = {}
    supports_r1: ClassVar[bool] = False  # True where discriminator_outputs() is defined
    # metrics a win on the objective must not cost: a confirmation compares its winner with the
    # paper default on each (the objective itself left out) and says when one got worse
    guards: ClassVar[tuple[str, ...]] = ()
    # recipe config keys a run may change where it continues from a checkpoint (loss weights
    # the losses read at every step); the trainer's own are config.MID_RUN_KEYS
    mid_run: ClassVar[tuple[str, ...]] = ()
    # the health detectors of this recipe's family (toy, vocoder, enhancer): which are on and
    # their thresholds, calibrated on labelled runs (docs/diagnostics.md)
    health_config: ClassVar[HealthConfig] = HealthConfig()

    def __init__(self, cfg: Any, data_dir: str | None, seed: int, batch_size: int) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.seed = seed
        self.batch_size = batch_size
        self.device = torch.device("cpu")
        self._pool: ScoringPool | None = None

    def to(self, device: torch.device) -> Recipe:
        """Move recipe-owned modules (feature extractors, loss helpers) to ``device``."""
        self.device = device
        return self

    @classmethod
    @abstractmethod
    def reports(cls, cfg: Any) -> tuple[str, ...]:
        """The metrics (harness/scoring/registry.py names) a validation with model settings ``cfg``
        reports: what a search may optimise."""

    @classmethod
    def measuring(cls, cfg: Any, metrics: tuple[str, ...]) -> dict[str, Any]:
        """Config values that make a validation with model settings ``cfg`` also report
        ``metrics``, as far as this recipe can score them ({}: it reports them already, or cannot
        score them).  A confirmation adds them to its runs to measure the guard metrics."""
        return {}

    @abstractmethod
    def build_generator(self) -> nn.Module: ...

    @abstractmethod
    def build_discriminator(self) -> nn.Module: ...

    @abstractmethod
    def train_data(self) -> BatchSource: ...

    @abstractmethod
    def generate(self, generator: nn.Module, batch: Any) -> Tensor:
        """Run G on a batch already on ``self.device``; returns the generated batch."""

    @abstractmethod
    def discriminator_loss(
        self, discriminator: nn.Module, batch: Any, fake: Tensor, smoothing: DiscriminatorSmoothing
    ) -> DiscriminatorLoss:
        """D's loss on real data and on ``fake`` (already detached by the trainer)."""

    @abstractmethod
    def generator_loss(
        self,
        discriminator: nn.Module | None,
        batch: Any,
        fake: Tensor,
        smoothing: DiscriminatorSmoothing,
    ) -> GeneratorLoss:
        """G's loss; ``discriminator`` is None before the discriminator starts."""

    def health(self, batch: Any, fake: Tensor) -> dict[str, float | None]:
        """Extra health columns measured on one training batch and its generated output.

        Called by the trainer at the end of each log window only, under ``no_grad`` and with the
        training random state preserved, ``fake`` detached.  Use the signal functions of
        harness/diagnostics/signals.py (diversity, energy and high-band ratios for conditional
        generators); the keys must be diagnostics columns.  Default: none.
        """
        return {}

    def after_generator_step(self, generator: nn.Module) -> None:  # noqa: B027 - optional hook
        """Called by the trainer after every generator optimizer step that changed the weights
        (not after skipped ones), e.g. to clamp parameters.  Default: nothing."""

    def state_dict(self) -> dict[str, Any]:
        """Recipe-held training state (replay buffers, their RNG) the checkpoint must carry
        for resume to be exact.  Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`state_dict` returned."""

    def discriminator_outputs(self, discriminator: nn.Module, real: Tensor) -> list[Tensor]:
        """D's raw outputs on the real input ``real`` (no instance noise), for the R1 penalty.

        Override it and set ``supports_r1 = True`` to allow ``r1_gamma``; the trainer refuses R1
        for a recipe that does not.
        """
        raise NotImplementedError(f"recipe {self.name!r} does not define discriminator_outputs")

    def real_input(self, batch: Any) -> Tensor:
        """The real sample D sees (used for the R1 penalty); override if not ``batch[0]``."""
        return batch[0]

    def batch_to(self, batch: Any, device: torch.device) -> Any:
        """Move a CPU batch to ``device`` (tuples of tensors by default)."""
        if isinstance(batch, Tensor):
            return _to_device(batch, device)
        return type(batch)(_to_device(t, device) for t in batch)

    @abstractmethod
    def validate(self, generator: nn.Module, step: int, out_dir: Any) -> dict[str, float]:
        """Score G on the fixed held-out set; may write a few samples under ``out_dir``."""

    def scoring_pool(self) -> ScoringPool:
        """The recipe's scoring processes, started on first use (each costs seconds) and kept
        until :meth:`close`: ``score_workers`` of its config, else the torch threads it has."""
        if self._pool is None:
            from harness.scoring.pool import ScoringPool  # audio code only for recipes that score

            workers = getattr(self.cfg, "score_workers", 0) or max(1, torch.get_num_threads())
            self._pool = ScoringPool(workers)
        return self._pool

    def close(self) -> None:
        """Release recipe-held resources (the scoring pool); called once the trial ends."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def describe(self, generator: nn.Module) -> dict[str, float]:
        """Static facts about the built model for the leaderboard (e.g. parameter counts)."""
        return {"params_g": float(sum(p.numel() for p in generator.parameters()))}
