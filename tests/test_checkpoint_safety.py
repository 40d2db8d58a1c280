"""Checkpoints are loaded with ``weights_only=True``: a planted one cannot run code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hostile import WritesAFile

from harness.training.checkpoints import CheckpointError, load_checkpoint


def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_does_not_run(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "step_00000001.pt"
    torch.save({"step": 1, "generator": {}, "payload": WritesAFile(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert re.match(
        rf"{re.escape(str(path))}: refused: it would call \w+\.open when loaded", message
    )
    assert "\n" not in message
    assert not marker.exists()


def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "step_00000002.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: unreadable checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_the_trainers_own_checkpoint_needs_no_allow_list(tmp_path: Path) -> None:
    from harness.runs.resolve import resolve_config
    from harness.runs.trial import run_trial

    settings = {"batches": 40, "eval_every": 20, "log_every": 20, "eval_samples": 200}
    result = run_trial(resolve_config("ring", "smoke", overrides=settings), tmp_path)
    state = load_checkpoint(result.checkpoint)  # weights_only=True, nothing allow-listed
    assert state["step"] == result.step and isinstance(state["rng"]["numpy"]["state"], dict)


def test_a_save_cut_short_leaves_no_temp_file_once_the_trial_runs_again(tmp_path: Path) -> None:
    from harness.runs.resolve import make_recipe, resolve_config
    from harness.runs.trial import run_trial
    from harness.training.trainer import Trainer

    settings = {"batches": 20, "eval_every": 20, "log_every": 20, "eval_samples": 200}
    cfg = resolve_config("ring", "smoke", overrides=settings)
    result = run_trial(cfg, tmp_path)
    cut_short = result.checkpoint.with_name(f".{result.checkpoint.name}.0123abcd.tmp")
    cut_short.write_bytes(b"half a checkpoint")  # what a kill inside atomic_output leaves
    Trainer(make_recipe(cfg), cfg.trainer, tmp_path)
    assert not cut_short.exists() and result.checkpoint.is_file()


def test_resume_without_a_checkpoint_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    settings = ["batches=20", "eval_every=20", "log_every=20", "eval_samples=200"]
    argv = ["train", "ring", "--out", str(tmp_path / "out"), "--resume"]
    assert main([*argv, *(f"--set={s}" for s in settings)]) == 0
    err = capsys.readouterr().err
    expected = f"note: --resume: no checkpoint in {tmp_path / 'out' / 'checkpoints'}; training"
    assert err.startswith(expected)
