"""A fingerprint of trained weights, to pin bit-exact results across code changes."""

from __future__ import annotations

import hashlib

from torch import nn


def weights_digest(*nets: nn.Module) -> str:
    """sha256 over every parameter and buffer of ``nets``, names and bytes, in order."""
    digest = hashlib.sha256()
    for net in nets:
        for key, value in net.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
