"""Weights & Biases: one run per trial, grouped by search (``train`` runs in the group
``train``), in the project ``$WANDB_PROJECT`` (default ``gan-harness``).

W&B runs offline unless the user is logged in (``wandb login`` keeps the API key in
``~/.netrc``; ``WANDB_API_KEY`` does too); ``WANDB_MODE`` decides where set.  Offline runs are
folders ``run_dir/wandb/offline-run-*`` that ``uv run wandb sync`` uploads later.  A run's
final status is its summary's ``status`` and ``reason`` and one of its tags; the run exits
with code 0 when it completed, 1 otherwise.  ``--track-uri`` names a W&B server of your own.
"""

from __future__ import annotations

import netrc
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness.status import Status
from harness.tracking import TrackedRun, Tracker, TrackingError, first_line

PROJECT = "gan-harness"
CLOUD = "https://api.wandb.ai"


def logged_in(base_url: str) -> bool:
    """Whether an API key for the W&B server at ``base_url`` is at hand (no network used)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(base_url).hostname or base_url
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker(Tracker):
    def __init__(self, base_url: str | None, group: str, run_dir: Path) -> None:
        self.base_url = base_url or os.environ.get("WANDB_BASE_URL") or CLOUD
        self.group = group
        self.run_dir = Path(run_dir)
        self.project = os.environ.get("WANDB_PROJECT") or PROJECT
        self.mode = os.environ.get("WANDB_MODE") or (
            "online" if logged_in(self.base_url) else "offline"
        )

    def where(self) -> str:
        if self.mode == "offline":
            folder = self.run_dir / "wandb"
            return f"W&B (offline): {folder} (upload: uv run wandb sync {folder}/offline-run-*)"
        return f"W&B ({self.mode}): project {self.project}, group {self.group}"

    def start(
        self, name: str, params: Mapping[str, Any], tags: Mapping[str, str], key: str | None = None
    ) -> TrackedRun:
        import wandb

        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            silent=True,
            console="off",
            x_disable_stats=True,
            disable_git=True,
            save_code=False,
            base_url=self.base_url,
        )
        try:
            run = wandb.init(
                project=self.project,
                group=self.group,
                name=name,
                id=_run_id(key) if key is not None else None,
                resume="allow" if key is not None else None,
                config=dict(params),
                tags=[value for value in tags.values() if len(value) <= 64],
                dir=str(self.run_dir),
                mode=self.mode,
                reinit="create_new",  # a search's trials run side by side in one process
                settings=settings,
            )
        except Exception as err:
            raise TrackingError(f"--track wandb: cannot start a run: {first_line(err)}") from None
        return WandbRun(run, name)


def _run_id(key: str) -> str:
    """A W&B run id from a run key (W&B refuses '/', ':' and the like)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", key)[:128]


class WandbRun(TrackedRun):
    def __init__(self, run: Any, name: str) -> None:
        super().__init__(name)
        self.run = run

    def _log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def _params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def _finish(self, status: Status, reason: str) -> None:
        self.run.summary["status"] = status.value
        self.run.summary["reason"] = reason
        self.run.tags = (*self.run.tags, status.value)
        self.run.finish(exit_code=0 if status == Status.COMPLETED else 1)
