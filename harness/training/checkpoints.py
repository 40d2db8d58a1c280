"""Checkpoint files: written atomically and pruned; read back only if intact and safe.

A run's checkpoints are ``checkpoints/step_XXXXXXXX.pt`` (torch's zip format), so their names sort
by step.  Everything the trainer saves is tensors and plain values, which lets a checkpoint load
with ``weights_only=True``: one from a shared results folder cannot run code on whoever loads it.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from harness.files import atomic_output

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, or must not be (it would run code); one line."""


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint that would run code when loaded: refused, never passed over for an older
    one, because a planted file is an attack to report, not damage to recover from."""


def write_checkpoint(state: dict[str, Any], ckpt_dir: Path, step: int, keep: int) -> Path:
    """Write ``state`` to ``ckpt_dir/step_XXXXXXXX.pt`` atomically; keep the newest ``keep``
    checkpoints (at least this one) and delete the rest."""
    path = ckpt_dir / f"step_{step:08d}.pt"
    with atomic_output(path) as handle:
        save_state(state, handle)
    for old in sorted(ckpt_dir.glob("step_*.pt"))[: -max(1, keep)]:
        old.unlink()
    return path


class _WriteErrors:
    """A binary file handle that remembers the ``OSError`` its ``write`` raised: torch's zip
    writer turns any failed write into its own ``RuntimeError`` ("unexpected pos ..."), losing
    the cause (a full disk, a quota, a file size limit)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._handle.flush()


def save_state(state: dict[str, Any], handle: IO[bytes]) -> None:
    """``torch.save(state, handle)``; a write the file system refused raises that ``OSError``
    (``ENOSPC``, ``EDQUOT``, ``EFBIG``), whatever torch made of it, so the caller can name the
    file and the cause."""
    recorder = _WriteErrors(handle)
    try:
        torch.save(state, recorder)
    except RuntimeError:
        if recorder.error is not None:
            raise recorder.error from None
        raise


def resumable_state(
    ckpt_dir: Path, path: Path | None = None, device: torch.device | str = "cpu"
) -> dict[str, Any] | None:
    """The state to resume from: ``path`` (default: the newest checkpoint in ``ckpt_dir``), or
    the next older intact one.

    A checkpoint that cannot be read (truncated, corrupted) is passed over with a one-line
    warning; with none intact, None (training starts over), so a damaged file never makes a
    retried trial crash again and again.  One that would run code is refused
    (:class:`UnsafeCheckpoint`).
    """
    candidates = resume_candidates(ckpt_dir, path)
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate, device)
        except UnsafeCheckpoint:
            raise
        except CheckpointError as err:
            log.warning("%s; trying an older checkpoint", err)
            continue
        if candidate != candidates[0]:
            log.warning("resuming from %s, the newest intact checkpoint", candidate)
        return state
    if candidates:
        log.warning("no intact checkpoint in %s; training starts over", ckpt_dir)
    return None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint's state, unpickled with ``weights_only=True``: tensors and plain values only,
    nothing allow-listed.  Every zip member's CRC-32 is checked first: ``torch.load`` alone reads
    flipped tensor bytes without complaint."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({err})") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: unreadable checkpoint (CRC-32 mismatch in {damaged})")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        text = str(err)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise UnsafeCheckpoint(
                f"{path}: refused: it would call {found.group(1)} when loaded; a checkpoint "
                "may hold only tensors and plain values"
            ) from None
        # torch wraps the unpickler's own complaint in advice to load unsafely: keep the former
        inner = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
        reason = inner.group(1) if inner else (text.strip().splitlines() or [repr(err)])[0]
        raise CheckpointError(f"{path}: unreadable checkpoint ({reason})") from None


def resume_candidates(ckpt_dir: Path, path: Path | None = None) -> list[Path]:
    """``path`` (default: the newest checkpoint in ``ckpt_dir``), then the older checkpoints in
    ``ckpt_dir``, newest first: where to resume from, in order of preference."""
    found = sorted(Path(ckpt_dir).glob("step_*.pt"), reverse=True)
    if path is None:
        return found
    return [path, *(p for p in found if p.name <= path.name and p.resolve() != path.resolve())]
