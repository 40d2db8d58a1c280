"""The training-data contract every recipe's data obeys (a low layer: audio/ and recipes/ use it)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class BatchSource(ABC):
    """Deterministic training data: batch ``i`` is a pure function of (seed, i).

    That makes the data position a single integer, so resuming from a checkpoint replays the
    exact batches a straight run would have seen.
    """

    batches_per_epoch: int

    @abstractmethod
    def batch(self, index: int) -> Any:
        """The ``index``-th training batch (CPU tensors)."""
