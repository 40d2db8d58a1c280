"""A resumed run's diagnostics: every row up to a checkpoint is on record before the checkpoint
is, and a resume drops the rows logged past its checkpoint before it logs them again, so the
record holds each (kind, step) once and the history is whole (docs/diagnostics.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import harness.training.trainer as trainer_module
from harness.diagnostics.telemetry import DiagnosticsWriter, drop_rows_after, read_diagnostics
from harness.runs.resolve import make_recipe, resolve_config
from harness.runs.trial import run_trial
from harness.training.trainer import Trainer

RING = {
    "batches": 60,
    "eval_every": 20,
    "log_every": 5,
    "keep_checkpoints": 5,
    "batch_size": 32,
    "g_hidden": 32,
    "g_layers": 2,
    "d_hidden": 32,
    "d_layers": 2,
    "eval_samples": 200,
}
KEY = ["kind", "step"]


def rows(root: Path) -> pd.DataFrame:
    return read_diagnostics(root).drop(columns=["wall_s", "step_s", "samples_per_s"])


def test_drop_rows_after_keeps_the_rows_up_to_the_step_and_rewrites_whole_parts(tmp_path):
    with DiagnosticsWriter(tmp_path, "s", "t1", flush_rows=4) as log:
        for step in range(10):  # parts of 4, 4 and 2 rows
            log.write({"kind": "step", "step": step})
    with DiagnosticsWriter(tmp_path, "s", "t2") as other:
        other.write({"kind": "step", "step": 9})
    assert drop_rows_after(tmp_path, "t1", 5) == 4
    assert read_diagnostics(tmp_path, "t1")["step"].tolist() == [0, 1, 2, 3, 4, 5]
    assert len(list((tmp_path / "trial_id=t1").glob("*.parquet"))) == 2  # the last one deleted
    assert read_diagnostics(tmp_path, "t2")["step"].tolist() == [9]  # another trial's: kept
    assert drop_rows_after(tmp_path, "t1", 5) == 0  # already done
    assert drop_rows_after(tmp_path, "t1", -1) == 6  # a run starting over keeps none
    assert read_diagnostics(tmp_path, "t1").empty
    assert drop_rows_after(tmp_path, "nobody", 3) == 0
    with DiagnosticsWriter(tmp_path, "s", "t1") as log:  # a resumed writer goes on after them
        log.write({"kind": "step", "step": 0})
    assert read_diagnostics(tmp_path, "t1")["step"].tolist() == [0]
    assert not list(tmp_path.rglob(".*.tmp"))


class RecordingLog:
    """A row log that remembers the highest step it has made durable."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.durable = -1

    def write(self, row: dict) -> None:
        self.pending.append(row["step"])

    def flush(self) -> None:
        self.durable = max([self.durable, *self.pending])
        self.pending.clear()


@pytest.mark.parametrize("checkpoint_every", [0, 15])  # at every validation; between them too
def test_every_row_up_to_a_checkpoint_is_durable_before_the_checkpoint(
    tmp_path, monkeypatch, checkpoint_every
):
    cfg = resolve_config("ring", "smoke", overrides={**RING, "checkpoint_every": checkpoint_every})
    log, saved = RecordingLog(), []
    write_checkpoint = trainer_module.write_checkpoint

    def checked(state, ckpt_dir, step, keep):
        assert not log.pending and log.durable == step, (step, log.pending, log.durable)
        saved.append(step)
        return write_checkpoint(state, ckpt_dir, step, keep)

    monkeypatch.setattr(trainer_module, "write_checkpoint", checked)
    Trainer(make_recipe(cfg), cfg.trainer, tmp_path, log=log).fit()
    assert saved == ([20, 40, 60] if not checkpoint_every else [15, 30, 45, 60])


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    run_trial(resolve_config("ring", "smoke", overrides=RING), out)
    return out


@pytest.mark.parametrize("resume_at", [20, None])  # its step-20 checkpoint; none (starts over)
def test_a_resumed_run_logs_each_row_once_and_ends_with_the_straight_runs_record(
    tmp_path, straight, resume_at
):
    """An interrupted run logged rows up to step 60 but kept only its step-20 checkpoint (or
    none): the resume drops the rows past it and logs them again, once."""
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    (out / "result.json").unlink()
    for ckpt in (out / "checkpoints").glob("step_*.pt"):
        if resume_at is None or ckpt.name != f"step_{resume_at:08d}.pt":
            ckpt.unlink()
    assert rows(out / "diagnostics")["step"].max() == 60  # the interrupted run's rows are there
    run_trial(resolve_config("ring", "smoke", overrides=RING), out, resume=True)
    resumed, expected = rows(out / "diagnostics"), rows(straight / "diagnostics")
    assert not resumed.duplicated(KEY).any()
    pd.testing.assert_frame_equal(resumed.reset_index(drop=True), expected.reset_index(drop=True))
