"""Where a metric discriminator's targets come from: PESQ in worker processes, and a replay set.

MetricGAN's D learns to predict the (normalised) PESQ of an (estimate, clean) pair, so every D
step needs the true PESQ of the pairs it sees, computed by the ITU-T C code in the recipe's
scoring pool.  :class:`ScoringPipeline` submits each D step's batch and hands back, ``lag`` D
steps later, the batch with its scores: with ``lag`` 0 the step waits for its own scores (the
paper's procedure); with ``lag`` k the pool scores while the next k steps train, and D learns
the enhanced batch of k steps ago.  Which batch a step learns from depends only on the step
count, never on timing, and a checkpoint stores the in-flight batches with their (awaited)
scores, so training stays deterministic and resumes exactly either way.

:class:`ReplayBuffer` keeps a uniform sample of every enhanced example D has learnt from, with
its score (SpeechBrain's "historical set", which keeps them all on disk), in bounded memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.scoring.pairs import submit_pairs
from harness.scoring.pool import ScoringPool


def normalised_pesq(pesq: float) -> float:
    """SpeechBrain's MetricGAN+ target scale, ``(PESQ + 0.5) / 5`` (``pesq_eval`` in its
    recipe): P.862's raw range [-0.5, 4.5] onto [0, 1]."""
    return (pesq + 0.5) / 5


@dataclass
class ScoredBatch:
    """One D step's batch (CPU float32 [B, L]) with the normalised PESQ of each estimate and of
    each noisy input against its clean reference; NaN where PESQ could not score the pair."""

    enhanced: Tensor
    clean: Tensor
    noisy: Tensor
    enhanced_score: Tensor | None = None  # [B]
    noisy_score: Tensor | None = None


class ScoringPipeline:
    """PESQ of each pushed batch, computed in ``pool`` and handed back ``lag`` pushes later."""

    def __init__(self, pool: Callable[[], ScoringPool], sample_rate: int, lag: int) -> None:
        if lag < 0:
            raise ValueError(f"pesq_lag: must be >= 0, got {lag}")
        self._pool = pool
        self.sample_rate = sample_rate
        self.lag = lag
        self._pending: deque[tuple[ScoredBatch, list[Future] | None]] = deque()

    def push(self, enhanced: Tensor, clean: Tensor, noisy: Tensor) -> None:
        """Start scoring a batch (every estimate and every noisy input) without waiting."""
        batch = ScoredBatch(*(x.detach().float().cpu() for x in (enhanced, clean, noisy)))
        ref = batch.clean.double().numpy()
        pairs = [(i, ref[i], est) for i, est in enumerate(batch.enhanced.double().numpy())]
        pairs += [(i, ref[i], noisy) for i, noisy in enumerate(batch.noisy.double().numpy())]
        futures = submit_pairs(self._pool(), pairs, self.sample_rate, metrics=("pesq",))
        self._pending.append((batch, futures))

    def pop(self) -> ScoredBatch | None:
        """The batch pushed ``lag`` pushes ago with its scores (waiting for them if need be);
        None while fewer than ``lag + 1`` batches were pushed."""
        if len(self._pending) <= self.lag:
            return None
        return self._resolve(*self._pending.popleft())

    @staticmethod
    def _resolve(batch: ScoredBatch, futures: list[Future] | None) -> ScoredBatch:
        if futures is not None:
            scores = torch.tensor(
                [
                    float("nan") if row.get("skipped") else normalised_pesq(row["pesq"])
                    for row in (f.result() for f in futures)
                ]
            )
            batch.enhanced_score, batch.noisy_score = scores.chunk(2)
        return batch

    def state_dict(self) -> list[dict[str, Tensor]]:
        """The in-flight batches with their scores (waits for the pool)."""
        resolved = [self._resolve(batch, futures) for batch, futures in self._pending]
        self._pending = deque((batch, None) for batch in resolved)
        return [vars(batch).copy() for batch in resolved]

    def load_state_dict(self, state: list[dict[str, Tensor]]) -> None:
        self._pending = deque((ScoredBatch(**entry), None) for entry in state)


class ReplayBuffer:
    """A uniform sample (Vitter's reservoir, algorithm R) of at most ``capacity`` scored
    examples from everything :meth:`add` was given, drawn by a generator seeded with ``seed``."""

    def __init__(self, capacity: int, seed: int) -> None:
        if capacity < 0:
            raise ValueError(f"replay_size: must be >= 0, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self.enhanced: list[Tensor] = []
        self.clean: list[Tensor] = []
        self.score: list[float] = []
        self.rng = np.random.default_rng([seed, 0x5EED])

    def __len__(self) -> int:
        return len(self.score)

    def add(self, enhanced: Tensor, clean: Tensor, score: Tensor) -> None:
        """Offer each example of a scored batch (those with a NaN score are left out)."""
        for est, ref, value in zip(enhanced, clean, score.tolist(), strict=True):
            if value != value or self.capacity == 0:  # NaN: PESQ could not score it
                continue
            est, ref = est.clone(), ref.clone()  # not views: a checkpoint would save whole batches
            if len(self) < self.capacity:
                self.enhanced.append(est)
                self.clean.append(ref)
                self.score.append(value)
            else:
                slot = int(self.rng.integers(0, self.seen + 1))
                if slot < self.capacity:
                    self.enhanced[slot], self.clean[slot], self.score[slot] = est, ref, value
            self.seen += 1

    def sample(self, count: int) -> tuple[Tensor, Tensor, Tensor] | None:
        """``count`` distinct examples (fewer if it holds fewer): (enhanced, clean, score)."""
        count = min(count, len(self))
        if count <= 0:
            return None
        picks = self.rng.choice(len(self), count, replace=False)
        return (
            torch.stack([self.enhanced[i] for i in picks]),
            torch.stack([self.clean[i] for i in picks]),
            torch.tensor([self.score[i] for i in picks]),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "enhanced": self.enhanced,
            "clean": self.clean,
            "score": self.score,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = state["seen"]
        self.enhanced = list(state["enhanced"])
        self.clean = list(state["clean"])
        self.score = list(state["score"])
        self.rng.bit_generator.state = state["rng"]
