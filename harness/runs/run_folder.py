"""The folder of one ``run.py train`` run, owned by that run alone.

A run folder holds one run: ``config.yaml``, ``checkpoints/``, ``samples/``, ``diagnostics/``
and ``result.json``.  :meth:`RunFolder.claim` holds its lock (``.run.lock``, an ``flock`` the
kernel drops when the process dies, so a killed run never leaves a stale lock) for the run's
life, and checks, before anything else is written, that the folder is new or empty, or holds
this very run and ``--resume`` continues it, or ``--overwrite`` replaces it.  Anything else (a
run of another recipe or configuration, files that are no run's) is refused in one line, so two
runs never mix their diagnostics or prune each other's checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.files import exclusive_lock
from harness.training.config import TrialConfig

RUN_ENTRIES = frozenset({"config.yaml", "checkpoints", "samples", "diagnostics", "result.json"})
LOCK = ".run.lock"
RESUME_MAY_CHANGE = frozenset({"device", "threads"})
"""Settings a resumed run may change: where it runs and how many threads, not what it computes."""


class RunFolderError(ValueError):
    """The folder holds something this run must not write into; one line saying what."""


@dataclass(frozen=True)
class RunFolder:
    """``run.py train --out DIR``."""

    path: Path

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    def has_checkpoint(self) -> bool:
        return any((self.path / "checkpoints").glob("step_*.pt"))

    @contextmanager
    def claim(self, cfg: TrialConfig, *, resume: bool, overwrite: bool) -> Iterator[None]:
        """Hold the folder for the block, once it is fit for ``cfg`` (see the module docstring).
        A lock file this call created is removed when the block ends (while still held), and
        so are the folders it created where the block wrote nothing into them (a refusal, a
        corpus refused after): a refused run leaves nothing behind."""
        created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        lock_existed = self.lock.exists()
        busy = (
            f"--out {self.path}: another run is training into this folder (it holds "
            f"{self.lock}); wait for it to end, or pick another --out"
        )
        with exclusive_lock(self.lock, busy):
            try:
                self.check(cfg, resume=resume, overwrite=overwrite)
                yield
            finally:
                if not lock_existed:
                    self.lock.unlink(missing_ok=True)
                for folder in created:  # deepest first
                    with contextlib.suppress(OSError):  # not empty: the run wrote into it
                        folder.rmdir()

    def check(self, cfg: TrialConfig, *, resume: bool, overwrite: bool) -> None:
        """Refuse a folder that is not this run's to write into (see the module docstring)."""
        entries = sorted(p.name for p in self.path.iterdir() if p.name != LOCK)
        if not entries:
            return
        foreign = [name for name in entries if name not in RUN_ENTRIES]
        if foreign:
            raise RunFolderError(
                f"--out {self.path}: holds {foreign[0]!r}, which is not part of a training "
                "run; pick a new or empty folder"
            )
        if overwrite:
            return
        if not self.config.exists():  # no record of what it trained: its checkpoints must do
            if resume:
                return
            raise RunFolderError(
                f"--out {self.path}: holds parts of a run ({', '.join(entries)}) but no "
                "config.yaml; --resume continues from its checkpoints, --overwrite replaces them"
            )
        theirs = self.saved_config()
        if theirs.get("recipe") != cfg.recipe:
            raise RunFolderError(
                f"--out {self.path}: holds a {theirs.get('recipe')} run, not {cfg.recipe}; "
                "pick another --out, or --overwrite to replace it"
            )
        changed = differences(theirs, cfg.flat(), ignore=RESUME_MAY_CHANGE if resume else ())
        if changed:
            raise RunFolderError(
                f"--out {self.path}: holds a {cfg.recipe} run with other settings ({changed}); "
                + (
                    "resume it with the same --budget, --data and --set, or --overwrite"
                    if resume
                    else "pick another --out, or --overwrite to replace it"
                )
            )
        if not resume:
            raise RunFolderError(
                f"--out {self.path}: already holds this run; --resume continues it, "
                "--overwrite trains it again from the start"
            )
        if self.ended() == "completed":
            raise RunFolderError(
                f"--out {self.path}: this run has completed; nothing to resume "
                "(--overwrite trains it again)"
            )

    def ended(self) -> str | None:
        """The status in ``result.json`` (how the run's training ended), if it has one."""
        try:
            return json.loads((self.path / "result.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            return None

    def saved_config(self) -> dict[str, Any]:
        """The flat configuration in ``config.yaml`` (the run's own record of itself)."""
        try:
            saved = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise RunFolderError(
                f"{self.config}: unreadable ({reason}); --overwrite replaces the run"
            ) from None
        if not isinstance(saved, dict):
            raise RunFolderError(
                f"{self.config}: not a run's configuration; --overwrite replaces the run"
            )
        return saved

    def clear(self) -> None:
        """Delete the run held here (its entries; the lock stays with its holder)."""
        for name in RUN_ENTRIES:
            entry = self.path / name
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)


def differences(theirs: dict[str, Any], ours: dict[str, Any], ignore: Any = ()) -> str:
    """The settings ``theirs`` and ``ours`` disagree on, as ``key: X there, Y here`` (the first
    three, and how many more)."""
    keys = sorted(k for k in {*theirs, *ours} if k not in ignore and theirs.get(k) != ours.get(k))
    shown = [f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in keys[:3]]
    more = f"; {len(keys) - 3} more" if len(keys) > 3 else ""
    return "; ".join(shown) + more
