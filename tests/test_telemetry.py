"""Diagnostics Parquet: fixed schema, hive layout readable by plain pyarrow/pandas, crash safety."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from harness.diagnostics.telemetry import (
    COLUMNS,
    DIAGNOSTICS_SCHEMA,
    FILE_SCHEMA,
    DiagnosticsWriter,
    TelemetryError,
    read_diagnostics,
    write_table_atomic,
)

REPO = Path(__file__).resolve().parents[1]
TRIAL_A, TRIAL_B = "a1b2c_00000", "a1b2c_00001"  # Ray Tune's trial id shape


def step_row(step: int) -> dict:
    return {
        "kind": "step",
        "step": step,
        "epoch": step // 10,
        "wall_s": 0.1 * step,
        "loss_d": 1.0 + step,
        "loss_g": 2.0 + step,
        "d_real_by_group": {"mpd": 0.9, "msd": 0.8},
        "nonfinite_skips": 0,
        "flag_collapse": False,
    }


def eval_row(step: int) -> dict:
    return {"kind": "eval", "step": step, "pesq": 3.1, "stoi": 0.9, "n_valid": 4, "n_skipped": 0}


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def write_trial(root: Path, trial_id: str, steps: range, flush_rows: int = 3) -> None:
    with DiagnosticsWriter(root, "demo", trial_id, flush_rows=flush_rows) as w:
        for step in steps:
            w.write(step_row(step))
            if step % 5 == 4:
                w.write(eval_row(step))


def test_plain_pyarrow_and_pandas_read_the_dataset(tmp_path: Path) -> None:
    write_trial(tmp_path, TRIAL_A, range(10))
    write_trial(tmp_path, TRIAL_B, range(7))

    table = ds.dataset(tmp_path, partitioning="hive").to_table()
    frame = pd.read_parquet(tmp_path)
    for df in (table.to_pandas(), frame):
        assert len(df) == 10 + 2 + 7 + 1
        assert set(df.columns) == set(DIAGNOSTICS_SCHEMA.names)
        assert df["trial_id"].astype(str).value_counts().to_dict() == {TRIAL_A: 12, TRIAL_B: 8}
        assert set(df["search"]) == {"demo"}
    assert table.schema.field("d_real_by_group").type == pa.map_(pa.string(), pa.float64())

    df = read_diagnostics(tmp_path, trial_id=TRIAL_A)
    steps, evals = df[df.kind == "step"], df[df.kind == "eval"]
    assert steps["loss_d"].tolist() == [1.0 + s for s in range(10)]
    assert steps["pesq"].isna().all() and evals["loss_d"].isna().all()
    assert evals["pesq"].tolist() == [3.1, 3.1] and evals["n_valid"].tolist() == [4, 4]
    assert steps["d_real_by_group"].iloc[0] == {"mpd": 0.9, "msd": 0.8}
    assert evals["d_real_by_group"].isna().all()
    assert steps["flag_collapse"].tolist() == [False] * 10


def test_every_part_has_the_fixed_file_schema(tmp_path: Path) -> None:
    with DiagnosticsWriter(tmp_path, "demo", TRIAL_A) as w:
        w.write(step_row(0))
        w.flush()
        w.write(eval_row(0))
    files = parts(tmp_path / f"trial_id={TRIAL_A}")
    assert len(files) == 2
    for f in files:
        assert pq.read_schema(f).remove_metadata() == FILE_SCHEMA
    assert "trial_id" not in FILE_SCHEMA.names


def test_read_diagnostics_filters_orders_and_keeps_numeric_ids_as_strings(tmp_path: Path) -> None:
    write_trial(tmp_path, "0001", range(10), flush_rows=2)  # 5+ parts, id that looks like an int
    write_trial(tmp_path, "0002", range(5))

    df = read_diagnostics(tmp_path, trial_id="0001", kind="step")
    assert df["step"].tolist() == list(range(10))  # write order across parts
    assert set(df["trial_id"]) == {"0001"}
    assert read_diagnostics(tmp_path, kind="eval")["trial_id"].tolist() == ["0001", "0001", "0002"]

    (tmp_path / "empty").mkdir()
    for nothing in (tmp_path / "missing", tmp_path / "empty"):
        empty = read_diagnostics(nothing)
        assert empty.empty and list(empty.columns) == DIAGNOSTICS_SCHEMA.names


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"kind": "step", "step": 0, "los_d": 1.0}, "'los_d'"),
        ({"kind": "step", "step": 0, "loss_d": "high"}, "'loss_d'"),
        ({"kind": "step", "step": 1.5}, "'step'"),
        ({"kind": "step", "step": 0, "flag_collapse": 1.0}, "'flag_collapse'"),
        ({"kind": "step", "step": 0, "loss_g": torch.ones(40, 40)}, "'loss_g'"),
        ({"kind": "step", "step": 0, "d_fake_by_group": [0.1]}, "'d_fake_by_group'"),
        ({"kind": "train", "step": 0}, "'kind'"),
        ({"kind": "step"}, "'step'"),
        ({"kind": "step", "step": 0, "trial_id": "x"}, "'trial_id'"),
    ],
)
def test_bad_rows_raise_one_line_errors_naming_the_key(
    tmp_path: Path, row: dict, needle: str
) -> None:
    with DiagnosticsWriter(tmp_path, "demo", TRIAL_A) as w, pytest.raises(TelemetryError) as err:
        w.write(row)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("trial_id", ["", "_hidden", ".hidden", "a/b", "k=v"])
def test_trial_ids_that_break_the_layout_are_rejected(tmp_path: Path, trial_id: str) -> None:
    with pytest.raises(TelemetryError, match="trial_id"):
        DiagnosticsWriter(tmp_path, "demo", trial_id)


def test_values_are_coerced_to_the_column_types(tmp_path: Path) -> None:
    with DiagnosticsWriter(tmp_path, "demo", TRIAL_A) as w:
        w.write(
            {
                "kind": "step",
                "step": np.int64(3),
                "loss_d": torch.tensor(0.25),
                "loss_g": np.float32(1.5),
                "loss_mel": float("nan"),
                "oom_skips": torch.tensor(2),
                "flag_overpower": np.bool_(True),
            }
        )
    row = ds.dataset(tmp_path, partitioning="hive").to_table().to_pylist()[0]
    assert (row["step"], row["loss_d"], row["loss_g"], row["oom_skips"]) == (3, 0.25, 1.5, 2)
    assert math.isnan(row["loss_mel"]) and row["flag_overpower"] is True


def test_flushes_by_row_count_and_close_is_idempotent(tmp_path: Path) -> None:
    folder = tmp_path / f"trial_id={TRIAL_A}"
    w = DiagnosticsWriter(tmp_path, "demo", TRIAL_A, flush_rows=4, flush_seconds=1e9)
    for step in range(3):
        w.write(step_row(step))
    assert parts(folder) == []
    w.write(step_row(3))
    assert len(parts(folder)) == 1
    w.write(step_row(4))
    assert len(parts(folder)) == 1
    w.close()
    w.close()
    assert len(parts(folder)) == 2 and len(read_diagnostics(tmp_path)) == 5
    with pytest.raises(TelemetryError, match="closed"):
        w.write(step_row(5))


def test_flushes_by_elapsed_time(tmp_path: Path) -> None:
    with DiagnosticsWriter(tmp_path, "demo", TRIAL_A, flush_rows=1000, flush_seconds=0.0) as w:
        w.write(step_row(0))
        w.write(step_row(1))
        assert len(parts(tmp_path / f"trial_id={TRIAL_A}")) == 2


def test_resumed_writer_continues_the_sequence_and_overwrites_nothing(tmp_path: Path) -> None:
    folder = tmp_path / f"trial_id={TRIAL_A}"
    write_trial(tmp_path, TRIAL_A, range(6), flush_rows=4)  # 7 rows -> parts 0, 1
    before = {p.name: p.read_bytes() for p in parts(folder)}
    stale = folder / ".part-000002-deadbeef.parquet.1234abcd.tmp"  # a flush cut by a kill
    stale.write_bytes(b"PAR1 half a file")
    assert len(pd.read_parquet(tmp_path)) == 7  # hidden temp files are invisible to readers

    write_trial(tmp_path, TRIAL_A, range(6, 12), flush_rows=4)  # new process, same trial
    after = parts(folder)
    assert [p.name[:11] for p in after] == [f"part-{i:06d}" for i in range(4)]
    assert {p.name: p.read_bytes() for p in after[:2]} == before
    assert not stale.exists()
    assert read_diagnostics(tmp_path, kind="step")["step"].tolist() == list(range(12))


CHILD = """
import os, sys
from pathlib import Path
from harness.diagnostics.telemetry import DiagnosticsWriter
root, marker = Path(sys.argv[1]), Path(sys.argv[2])
w = DiagnosticsWriter(root, "demo", "a1b2c_00000", flush_rows=5, flush_seconds=1e9)
step = 0
while True:
    w.write({"kind": "step", "step": step, "loss_d": 0.5 * step, "d_real_by_group": {"mpd": 1.0}})
    step += 1
    if step % 5 == 0:  # the writer has just flushed: record the count durably
        marker.with_suffix(".tmp").write_text(str(step))
        os.replace(marker.with_suffix(".tmp"), marker)
"""


def test_sigkill_mid_run_loses_nothing_that_was_flushed(tmp_path: Path) -> None:
    root, marker = tmp_path / "diagnostics", tmp_path / "flushed.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(marker)], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and int(marker.read_text()) >= 200):
            assert child.poll() is None, "writer child died on its own"
            assert time.monotonic() < deadline, "writer child made no progress"
            time.sleep(0.02)
        time.sleep(0.1)  # let it get somewhere inside a later flush
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    flushed = int(marker.read_text())

    for part in parts(root / "trial_id=a1b2c_00000"):
        assert pq.read_table(part).num_rows == 5  # no visible half-written file
    for df in (read_diagnostics(root), pd.read_parquet(root)):
        assert len(df) >= flushed
        assert sorted(df["step"]) == list(range(len(df)))  # no gaps, no duplicates


def test_write_table_atomic_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "trials.parquet"
    write_table_atomic(path, pa.table({"trial_id": ["a"], "score": [1.0]}))
    write_table_atomic(path, pa.table({"trial_id": ["a", "b"], "score": [1.0, 2.0]}))
    assert pq.read_table(path).to_pydict() == {"trial_id": ["a", "b"], "score": [1.0, 2.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]  # no temp left behind


def test_every_column_is_documented() -> None:
    doc = (REPO / "docs" / "diagnostics.md").read_text()
    missing = [c.name for c in COLUMNS if f"`{c.name}`" not in doc]
    assert missing == []


def test_logging_cost_per_row_and_per_flush(tmp_path: Path) -> None:
    """Reports (does not assert) what logging costs; see docs/diagnostics.md for the numbers."""
    row = {**step_row(0), **{c.name: 0.5 for c in COLUMNS if c.type == pa.float64()}}
    n = 2000
    with DiagnosticsWriter(tmp_path, "demo", TRIAL_A, flush_rows=n + 1, flush_seconds=1e9) as w:
        t0 = time.perf_counter()
        for step in range(n):
            w.write({**row, "step": step})
        t1 = time.perf_counter()
        w.flush()
        t2 = time.perf_counter()
        flushes = 20
        for k in range(flushes):
            for step in range(200):
                w.write({**row, "step": n + 200 * k + step})
            w.flush()
        t3 = time.perf_counter()
    per_row = (t1 - t0) / n
    per_200 = (t3 - t2) / flushes - 200 * per_row
    print(
        f"\ntelemetry cost: write() {per_row * 1e6:.1f} us/row (all columns), "
        f"flush of {n} rows {(t2 - t1) * 1e3:.1f} ms, flush of 200 rows {per_200 * 1e3:.1f} ms"
    )
    assert len(read_diagnostics(tmp_path)) == n + 200 * flushes
