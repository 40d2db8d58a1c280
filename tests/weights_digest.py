"""Fingerprints of trained weights, to show that a change to the loop changes no bit."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

import pytest
from torch import nn

from harness.training import trainer as trainer_module


def weights_digest(*nets: nn.Module) -> str:
    """sha256 over every parameter and buffer of ``nets``, names and bytes, in order."""
    digest = hashlib.sha256()
    for net in nets:
        for key, value in net.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def digests_with_and_without_freezing(
    train: Callable[[str], trainer_module.Trainer], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """G's and D's digest after ``train(name)`` as the trainer runs, then with D left trainable
    during the G phase, in the same process, so the two
    compare on any CPU: pinned digests differ between instruction sets."""
    frozen = train("frozen")
    monkeypatch.setattr(trainer_module, "frozen", lambda net: contextlib.nullcontext())
    unfrozen = train("unfrozen")
    return weights_digest(frozen.G, frozen.D), weights_digest(unfrozen.G, unfrozen.D)
