"""One trial: resolved config -> recipe -> Trainer -> reports (console, Parquet, caller).

``run.py train``, every Ray Tune trial and ``run.py rerun`` all go through :func:`run_trial`, so
a rerun is the same code path as the search that found the configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.diagnostics.telemetry import DiagnosticsWriter, drop_rows_after
from harness.files import atomic_write
from harness.runs.resolve import make_recipe
from harness.training.checkpoints import resumable_state
from harness.training.config import TrialConfig
from harness.training.reporting import Reporter, TrainResult
from harness.training.setup import pick_device
from harness.training.trainer import Trainer


def format_row(kind: str, row: dict[str, Any]) -> str:
    """One console line for a step or eval row."""
    skip = {"step", "epoch", "wall_s", "d_real_by_group", "d_fake_by_group", "kind"}
    parts = []
    for key, value in row.items():
        if key in skip or value is None:
            continue
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    head = f"[{kind:4s}] step {row['step']:>6d}  {row['wall_s']:7.1f}s"
    return head + "  " + "  ".join(parts)


def run_trial(
    cfg: TrialConfig,
    out_dir: Path,
    *,
    search: str = "train",
    trial_id: str = "train",
    diagnostics_root: Path | None = None,
    resume: bool = False,
    checkpoint: Path | None = None,
    echo: Callable[[str], None] | None = None,
    on_report: Reporter | None = None,
    on_start: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir``: config.yaml, checkpoints/, samples/, result.json.

    Rows go to a Parquet dataset under ``diagnostics_root`` (default ``out_dir/diagnostics``),
    where the rows an earlier, interrupted run of the trial logged past the step this one starts
    from are dropped first; a line per row goes to ``echo``, and every row to ``on_report`` (the
    Ray bridge uses this).  ``on_start`` gets the recipe's static facts (``describe``: parameter
    counts) once the models are built, before the first row.
    """
    out_dir = Path(out_dir)
    # what can be refused is refused before anything is written: the device, the recipe's
    # settings, its corpus (opened and scanned) and the checkpoint to resume from
    device = pick_device(cfg.trainer.device)
    recipe = make_recipe(cfg)
    recipe.train_data()
    resuming = checkpoint is not None or resume
    state = resumable_state(out_dir / "checkpoints", checkpoint, device) if resuming else None
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / "config.yaml")
    root = diagnostics_root or out_dir / "diagnostics"
    drop_rows_after(root, trial_id, state["step"] if state is not None else -1)

    def report(kind: str, row: dict[str, Any], ckpt: Path | None) -> None:
        if echo:
            echo(format_row(kind, row))
        if on_report:
            on_report(kind, row, ckpt)

    try:
        with DiagnosticsWriter(root, search, trial_id) as diagnostics:
            trainer = Trainer(recipe, cfg.trainer, out_dir, report, log=diagnostics)
            if on_start:
                on_start(recipe.describe(trainer.G))
            if state is not None:
                trainer.load_state_dict(state)
            result = trainer.fit()
    finally:
        recipe.close()
    write_summary(out_dir, result, recipe.describe(trainer.G))
    return result


def write_summary(out_dir: Path, result: TrainResult, facts: dict[str, Any]) -> None:
    """``result.json``: how the run ended, its last validation, its newest checkpoint (relative
    to ``out_dir``, so a copied or moved folder names its own) and the recipe's facts."""
    ckpt = result.checkpoint
    summary = {
        "status": result.status,
        "reason": result.reason,
        "step": result.step,
        "last_eval": result.last_eval,
        "checkpoint": ckpt.relative_to(out_dir).as_posix() if ckpt else None,
        "compile_s": result.compile_s,
        **facts,
    }
    atomic_write(out_dir / "result.json", json.dumps(summary, indent=2))
