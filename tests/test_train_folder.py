"""``run.py train --out DIR``: a run folder is owned by one run (harness/runs/run_folder.py), and
SIGTERM ends a training run as Ctrl-C does (harness/interrupts.py)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from harness.diagnostics.telemetry import read_diagnostics
from harness.files import exclusive_lock
from harness.runs.run_folder import LOCK

ROOT = Path(__file__).resolve().parents[1]
TINY = ["batches=40", "eval_every=20", "log_every=10", "eval_samples=200", "g_hidden=16"]
LONG = [*TINY[2:], "batches=1000", "eval_every=50", "checkpoint_every=100"]


def train(out: Path, *extra: str, settings: list[str] = TINY, recipe: str = "ring"):
    """``run.py train`` in this process: (exit status, stdout, stderr lines)."""
    argv = ["train", recipe, "--out", str(out), *(f"--set={s}" for s in settings), *extra]
    return run_cli(*argv)


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, with a hash of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A completed tiny ring run: its folder (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    code, _ = train(out)
    assert code == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    subprocess.run(["cp", "-a", str(run), str(out)], check=True)
    return out


@pytest.mark.parametrize(
    "extra, settings, recipe, says",
    [
        ([], TINY, "ring", "already holds this run; --resume continues it"),
        ([], [*TINY, "lr_g=1e-3"], "ring", "holds a ring run with other settings (lr_g: 0.003"),
        (["--resume"], [*TINY, "lr_g=1e-3"], "ring", "resume it with the same --budget"),
        (["--resume"], TINY, "grid", "holds a ring run, not grid"),
        (["--resume"], TINY, "ring", "this run has completed; nothing to resume"),
    ],
    ids=["same-run", "other-settings", "resume-other-settings", "resume-wrong-recipe", "done"],
)
def test_a_folder_holding_a_run_is_refused_in_one_line_and_left_as_it_was(
    trained, tmp_path, capsys, extra, settings, recipe, says
):
    out = copy_of(trained, tmp_path)
    before = contents(out)
    code, printed = train(out, *extra, settings=settings, recipe=recipe)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and printed == ""
    assert len(err) == 1 and err[0].startswith(f"error: --out {out}: ") and says in err[0], err
    assert contents(out) == before  # config.yaml, checkpoints, rows: not a byte changed


def test_a_folder_with_files_that_are_no_runs_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert train(out, *extra)[0] == 2
        assert "holds 'notes.txt', which is not part of a training run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_the_run_and_resume_continues_it(trained, tmp_path):
    out = copy_of(trained, tmp_path)
    longer = [s if not s.startswith("batches=") else "batches=60" for s in TINY]
    code, _ = train(out, "--overwrite", settings=longer)
    assert code == 0
    evals = read_diagnostics(out / "diagnostics", kind="eval")["step"].tolist()
    assert evals == [0, 20, 40, 60]  # the new run's rows alone, none of the old run's
    (out / "result.json").unlink()  # as if it had been interrupted after its last checkpoint
    (out / "checkpoints" / "step_00000060.pt").unlink()
    code, _ = train(out, "--resume", settings=longer)
    assert code == 0
    rows = read_diagnostics(out / "diagnostics")
    assert not rows.duplicated(["kind", "step"]).any()
    assert rows[rows["kind"] == "eval"]["step"].tolist() == [0, 20, 40, 60]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["checkpoints", "config.yaml", "diagnostics", "result.json"]
    )  # the lock file it made is gone with it


def test_a_second_train_on_a_held_folder_is_refused(trained, tmp_path, capsys):
    out = copy_of(trained, tmp_path)
    before = contents(out)
    with exclusive_lock(out / LOCK, "held by the test"):  # the first train, in effect
        code, _ = train(out, "--overwrite")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == (
        f"error: --out {out}: another run is training into this folder (it holds "
        f"{out / LOCK}); wait for it to end, or pick another --out"
    )
    assert contents(out) == {**before, LOCK: hashlib.sha256(b"").hexdigest()}


def train_argv(out: Path, *extra: str, settings: list[str] = LONG) -> list[str]:
    """``python run.py train`` of the LONG ring run into ``out``."""
    argv = [sys.executable, "run.py", "train", "ring", "--out", str(out), *extra]
    return argv + [f"--set={s}" for s in settings]


def launch_train(out: Path, settings: list[str] = LONG) -> subprocess.Popen:
    argv = train_argv(out, settings=settings)
    return subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path_glob: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not list(path_glob.parent.glob(path_glob.name)):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


@pytest.mark.slow
def test_two_concurrent_trains_on_one_folder_the_second_is_refused(tmp_path):
    out = tmp_path / "run"
    first = launch_train(out, settings=[*LONG, "batches=100000"])  # interrupted below
    try:
        wait_for(out / "checkpoints" / "step_*.pt", first)
        second = subprocess.run(
            train_argv(out, "--resume", settings=[*LONG, "batches=100000"]),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: --out {out}: another run is training into this folder (it holds "
            f"{out / LOCK}); wait for it to end, or pick another --out"
        ]
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=120) == 130
    finally:
        first.kill()
        first.communicate()


def newest_checkpoint(out: Path) -> int:
    return max((int(p.stem[5:]) for p in (out / "checkpoints").glob("step_*.pt")), default=-1)


def logged_past_its_checkpoint(out: Path) -> bool:
    """An eval row is on record past the run's newest checkpoint (an eval every 50 batches, a
    checkpoint every 100)."""
    evals = read_diagnostics(out / "diagnostics", kind="eval")["step"]
    return newest_checkpoint(out) >= 0 and evals.max() > newest_checkpoint(out)


@pytest.mark.slow
def test_sigterm_ends_a_train_in_one_line_and_resume_logs_no_row_twice(tmp_path):
    out = tmp_path / "run"
    first = launch_train(out)
    try:
        deadline = time.monotonic() + 300
        while not logged_past_its_checkpoint(out):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["interrupted"]
    assert not (out / "result.json").exists()
    assert read_diagnostics(out / "diagnostics")["step"].max() > newest_checkpoint(out)

    resumed = subprocess.run(
        train_argv(out, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = read_diagnostics(out / "diagnostics")
    assert not rows.duplicated(["kind", "step"]).any()
    assert rows[rows["kind"] == "eval"]["step"].tolist() == list(range(0, 1001, 50))
