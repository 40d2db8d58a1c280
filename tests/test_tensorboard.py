"""TensorBoard scalars of a real ring training, read back from the event files themselves."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import masked_crc32c

from harness.diagnostics.telemetry import read_diagnostics
from harness.diagnostics.tensorboard import TensorBoardWriter, scalars
from harness.runs.resolve import resolve_config
from harness.runs.trial import run_trial

TINY = {
    "batches": 300, "eval_every": 100, "log_every": 50, "batch_size": 64, "g_hidden": 32,
    "g_layers": 2, "d_hidden": 32, "d_layers": 2, "eval_samples": 500,
}  # fmt: skip


def read_events(log_dir: Path) -> list[Event]:
    """Every event in ``log_dir``'s event files (TFRecord framing, both CRCs checked)."""
    events = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            payload = data[pos + 12 : pos + 12 + length]
            (payload_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
            assert header_crc == masked_crc32c(header) and payload_crc == masked_crc32c(payload)
            events.append(Event.FromString(payload))
            pos += 16 + length
    return events


def scalar_points(log_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of every scalar summary written to ``log_dir``."""
    points: dict[str, dict[int, float]] = {}
    for event in read_events(log_dir):
        for value in event.summary.value:
            points.setdefault(value.tag, {})[event.step] = value.simple_value
    return points


def test_rows_become_tagged_scalars():
    row = {
        "step": 40, "wall_s": 1.5, "loss_d": 0.7, "loss_g": float("nan"), "d_acc": None,
        "d_real_by_group": {"mpd": 0.9, "msd": 0.8}, "d_fake_by_group": {"mpd": 0.1},
        "flag_collapse": True, "flag_overpower": False, "reason": "text is not a scalar",
        "nonfinite_skips": 2,
    }  # fmt: skip
    assert scalars("step", row) == {
        "step/wall_s": 1.5,
        "step/loss_d": 0.7,
        "d_real/mpd": 0.9,
        "d_real/msd": 0.8,
        "d_fake/mpd": 0.1,
        "step/flag_collapse": 1.0,
        "step/flag_overpower": 0.0,
        "step/nonfinite_skips": 2.0,
    }


def test_a_ring_trial_logged_to_tensorboard_reads_back(tmp_path):
    cfg = resolve_config("ring", "smoke", overrides=TINY)
    log_dir = tmp_path / "tune" / "trial"
    with TensorBoardWriter(log_dir) as board:
        run_trial(
            cfg,
            tmp_path / "trial",
            diagnostics_root=tmp_path / "diagnostics",
            on_report=lambda kind, row, ckpt: board.write(kind, row),
        )
    points = scalar_points(log_dir)
    rows = read_diagnostics(tmp_path / "diagnostics")
    steps, evals = rows[rows["kind"] == "step"], rows[rows["kind"] == "eval"]
    assert len(steps) >= 6 and len(evals) == 4  # steps 0..300: every 50 logged, every 100 scored
    for column in ("loss_d", "loss_g", "d_acc", "grad_norm_g", "grad_norm_d", "lr_g"):
        logged = {int(s): v for s, v in zip(steps["step"], steps[column], strict=True)}
        expected = {s: v for s, v in logged.items() if math.isfinite(v)}
        assert expected, column
        assert points[f"step/{column}"] == pytest.approx(expected, rel=1e-6), column
    real = {int(s): m["mlp"] for s, m in zip(steps["step"], steps["d_real_by_group"], strict=True)}
    assert points["d_real/mlp"] == pytest.approx(real, rel=1e-6)
    assert set(points["d_fake/mlp"]) == set(real)
    scored = {int(s): v for s, v in zip(evals["step"], evals["reverse_kl"], strict=True)}
    assert points["eval/reverse_kl"] == pytest.approx(scored, rel=1e-6)
    assert set(points["eval/flag_collapse"].values()) <= {0.0, 1.0}
    assert "step/step" not in points and not any(tag.startswith("step/d_real_by") for tag in points)
