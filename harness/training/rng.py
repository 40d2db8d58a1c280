"""The global random streams (Python, NumPy, torch, CUDA): captured into a checkpoint, restored
from one, and kept untouched around a block such as validation.

The captured state holds tensors and plain values only, so a checkpoint that carries it loads with
``weights_only=True``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """Every global random stream, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    key = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": key}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every global random stream to what :func:`capture_rng` returned."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    key = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (validation, health signals) without disturbing the training random streams."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)
