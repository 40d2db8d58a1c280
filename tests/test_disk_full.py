"""A disk that fills while a checkpoint is saved: one line naming the file, nothing half-written.

torch's zip writer turns any write that fails under it into its own ``RuntimeError``
("unexpected pos ..."), so the harness keeps the ``OSError`` the file raised and reports that.
The disk itself fills in the heavy test: a small tmpfs (root and ``mount`` only) with room for
``run.py train``'s config and diagnostics but not its checkpoint.  Where that cannot run, two
real kernel refusals stand in for it: writes to ``/dev/full``, which fail with ``ENOSPC``
exactly as a full disk's do, and a file size limit (``RLIMIT_FSIZE``) that lets the config and
diagnostics through but refuses the checkpoint's bytes part-way with ``EFBIG``, the same failed
``write`` a full disk gives with another errno.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_RING, fill

from harness.training.checkpoints import save_state

ROOT = Path(__file__).resolve().parents[1]
STATE = {"weights": torch.randn(256, 256), "step": 3}  # 256 KiB: more than one buffered write


def test_a_save_the_disk_refuses_raises_the_disk_s_error_not_torch_s() -> None:
    with open("/dev/full", "wb") as full, pytest.raises(OSError) as raised:
        try:
            save_state(STATE, full)
        finally:
            full.close = lambda: None  # the close would flush the buffer onto the full disk again
    assert raised.value.errno == errno.ENOSPC


def test_a_save_that_succeeds_is_torch_s_own_file(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    with open(path, "wb") as handle:
        save_state(STATE, handle)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["weights"], STATE["weights"]) and loaded["step"] == 3


LIMIT = 64 * 1024  # above config.yaml and a diagnostics part (about 25 KiB), below a checkpoint
CHECKPOINT = Path("checkpoints") / "step_00000100.pt"  # the run's first: at its end


def train(out: Path, **run: object) -> subprocess.CompletedProcess:
    """``run.py train ring`` at the tiny settings for 100 batches into ``out``."""
    sets = [f"--set={key}={value}" for key, value in {**TINY_RING, "batches": 100}.items()]
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "train", "ring", "--out", str(out), *sets],
        cwd=out.parent,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        **run,
    )


def assert_one_line_and_nothing_half_written(done: subprocess.CompletedProcess, line: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    assert done.stderr.strip().splitlines()[-1] == line, output


def limited_file_size() -> None:
    """In the child: files may grow to LIMIT bytes, and a write past it fails with EFBIG
    (SIGXFSZ ignored, or it would kill the process instead)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.slow
def test_train_whose_checkpoint_the_disk_refuses_is_one_line_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = train(out, preexec_fn=limited_file_size)
    assert_one_line_and_nothing_half_written(
        done,
        f"error: file too large writing {out / CHECKPOINT}; raise the file size limit "
        "(`ulimit -f`) and run the same command again",
    )
    assert list((out / "checkpoints").iterdir()) == []  # neither the checkpoint nor its temp
    assert (out / "config.yaml").is_file()  # what was written before the fault is whole


ROOM = 112 * 1024  # the config and diagnostics (about 52 KiB) fit; the 128 KiB checkpoint does not


@pytest.mark.heavy
def test_train_on_a_disk_that_fills_during_the_checkpoint_save(small_disk: Path) -> None:
    reserve = small_disk / "reserve"
    reserve.write_bytes(b"\0" * ROOM)
    fill(small_disk)
    reserve.unlink()
    out = small_disk / "out"
    done = train(out)
    assert_one_line_and_nothing_half_written(
        done,
        f"error: no space left on device writing {out / CHECKPOINT}; free some space and run "
        "the same command again",
    )
    assert list((out / "checkpoints").iterdir()) == []
    assert (out / "config.yaml").is_file()
