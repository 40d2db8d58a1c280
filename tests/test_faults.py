"""Fault injection: the harness survives each fault of docs/reliability.md with nothing lost.

Every case runs the real thing: `run.py search` processes on a local Ray, the Optuna study (a
journal file), the Parquet diagnostics and trials table, on the toy ring recipe with budgets of
a few hundred steps.  The search driver is SIGKILLed from outside where timing can hit the point
(mid-trial) and through ``GAN_HARNESS_FAULT`` (harness/faults.py) where it cannot.  After every
fault the records are read back (:func:`assert_records_intact`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from conftest import TINY_RING, fill, flaky_recipe, run_cli

from harness.diagnostics.telemetry import read_diagnostics
from harness.faults import FAULT_ENV, POINTS
from harness.results.folder import SearchFolder
from harness.results.trials import read_trials
from harness.runs.resolve import config_from_flat, resolve_config
from harness.runs.trial import run_trial
from harness.scoring.registry import SCORES
from harness.search.study_storage import load_study
from harness.status import TERMINAL, Status

ROOT = Path(__file__).resolve().parents[1]
SPACE = {
    "objective": "reverse_kl",
    "space": {
        "lr_g": {"loguniform": [1e-4, 3e-3]},
        "d_steps": {"int": [1, 2]},
        **TINY_RING,
    },
}
TRIALS = 5


def command(root: Path, name: str, trials: int = TRIALS, batches: int = 400) -> list[str]:
    """`run.py search` on the ring SPACE (written to ``root/space.yaml``), results in ``root``."""
    space = {**SPACE, "space": {**SPACE["space"], "batches": batches}}
    (root / "space.yaml").write_text(yaml.safe_dump(space))
    return [
        sys.executable, "run.py", "search", "ring", "--space", str(root / "space.yaml"),
        "--trials", str(trials), "--name", name, "--results", str(root), "--quiet",
    ]  # fmt: skip


def run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def launch(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A search in its own session, so that it and every Ray process it starts can be killed."""
    with open(log, "w") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL the driver and whatever of its Ray cluster is left (a power cut, in effect)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_until(check, process: subprocess.Popen, what: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if check():
                return
        except OSError:  # a file being replaced
            pass
        time.sleep(0.05)
    raise AssertionError(f"the search ended or stalled before {what}")


def ending(trial_dir: Path) -> Path | None:
    """The file recording how a trial ended: ``result.json`` where training ended, else the
    driver's ``outcome.json`` (a trial ASHA cut is stopped by Tune and writes no result.json);
    None while it has not ended."""
    found = [trial_dir / name for name in ("result.json", "outcome.json")]
    return next((path for path in found if path.is_file()), None)


def ended_trials(folder: SearchFolder) -> list[str]:
    """Trials whose end is on record (:func:`ending`), whatever the tables say yet."""
    return sorted(d.name for d in folder.trials_dir.glob("*") if ending(d) is not None)


def recorded_status(folder: SearchFolder, trial_id: str) -> str:
    """An ended trial's status, as its :func:`ending` file recorded it."""
    return json.loads(ending(folder.trial_dir(trial_id)).read_text())["status"]


def mid_trial(folder: SearchFolder) -> bool:
    """A trial has ended and another is training past its first checkpoint."""
    training = [
        d for d in folder.trials_dir.glob("*")
        if any(d.glob("checkpoints/step_*.pt")) and ending(d) is None
    ]  # fmt: skip
    return bool(ended_trials(folder)) and bool(training)


def parts(folder: SearchFolder, trial_id: str) -> set[str]:
    return {p.name for p in (folder.diagnostics / f"trial_id={trial_id}").glob("*.parquet")}


def killed_before_a_trials_write(
    argv: list[str], folder: SearchFolder, log: Path
) -> dict[str, tuple[set[str], int, int]]:
    """Run the search ``argv`` until the fault kills its driver between a trial's end and the
    trials table write; the snapshot of the trials that had ended by then."""
    first = launch(argv, log, env={FAULT_ENV: "before_trials_write"})
    try:
        assert first.wait(timeout=900) == -signal.SIGKILL, log.read_text()
    finally:
        kill_session(first)
    before = snapshot(folder)
    assert before, "the fault came before any trial ended"
    return before


def snapshot(folder: SearchFolder) -> dict[str, tuple[set[str], int, int]]:
    """Per ended trial: its diagnostics files, its diagnostics row count, its ending's mtime."""
    rows = read_diagnostics(folder.diagnostics)["trial_id"].value_counts()
    return {
        t: (parts(folder, t), int(rows.get(t, 0)), ending(folder.trial_dir(t)).stat().st_mtime_ns)
        for t in ended_trials(folder)
    }  # fmt: skip


def assert_records_intact(
    folder: SearchFolder, before: dict | None = None, *, just_killed: bool = False
) -> None:
    """Case 8: trials.parquet and the diagnostics read back whole, no trial holds a row twice,
    no temp file is left, and every trial that had ended before the fault kept its files and
    rows (not trained again).
    ``just_killed``: read between a SIGKILL and the resume, when a write the kill cut short may
    still have its temp file beside the whole record it was replacing (the resume clears it)."""
    trials = read_trials(folder)
    assert trials["trial_id"].is_unique
    diagnostics = read_diagnostics(folder.diagnostics)
    assert set(diagnostics["trial_id"]) <= set(trials["trial_id"])
    # every trial's rows, ended or not: a resume drops what it logs again, so each row is once
    twice = diagnostics[diagnostics.duplicated(["trial_id", "kind", "step"], keep=False)]
    assert twice.empty, twice.groupby("trial_id")["step"].unique().to_dict()
    if not just_killed:
        leftovers = [p for p in folder.path.rglob(".*.tmp") if folder.tune not in p.parents]
        assert not leftovers, leftovers
    for trial_id, (files, rows, mtime) in (before or {}).items():
        assert parts(folder, trial_id) == files, trial_id
        assert (diagnostics["trial_id"] == trial_id).sum() == rows, trial_id
        assert ending(folder.trial_dir(trial_id)).stat().st_mtime_ns == mtime, trial_id


def load(folder: SearchFolder) -> optuna.Study:
    """The study in the folder, named as the search was launched (a copy keeps that name)."""
    launched = yaml.safe_load(folder.config.read_text())["name"]
    return load_study(folder, launched)


def untold(folder: SearchFolder) -> dict[str, str]:
    """Trials whose ending was being told to Optuna: status attribute set, state RUNNING."""
    running = load(folder).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    return {t.user_attrs["trial_id"]: t.user_attrs["status"] for t in running if "status" in t.user_attrs}  # fmt: skip


def assert_search_complete(folder: SearchFolder, trials: int) -> None:
    """Every trial accounted for, in trials.parquet and in the Optuna study, none running, and
    none told to Optuna as finished twice (an errored trial that completed on resume keeps its
    FAIL beside the result added for it)."""
    after = read_trials(folder).set_index("trial_id")
    assert after["status"].isin(TERMINAL).all(), after["status"].to_dict()
    assert (after["status"] != Status.LOST).sum() == trials
    study = load(folder)
    states = {t.user_attrs["trial_id"]: t.state for t in study.trials if "trial_id" in t.user_attrs}
    assert set(states) == set(after.index)
    told = [t.user_attrs["trial_id"] for t in study.trials if "trial_id" in t.user_attrs and t.state.name != "FAIL"]  # fmt: skip
    assert len(told) == len(set(told)), sorted(told)
    for trial_id, state in states.items():
        expected = {"completed": "COMPLETE", "pruned": "PRUNED", "stopped": "PRUNED"}
        assert state.name == expected.get(after.loc[trial_id, "status"], "FAIL"), trial_id
    # asked for in the instant of a kill, before Ray knew its id: closed as failed on resume
    assert all(t.state.name == "FAIL" for t in study.trials if "trial_id" not in t.user_attrs)
    assert folder.summary.is_file()


# ------------------------------------------------------------------------------------ case 1
KILL_POINTS = [
    "mid_trial",  # from outside, by timing
    *(pytest.param(point, marks=pytest.mark.heavy) for point in POINTS),
]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_driver_killed_resumes_with_every_trial_accounted_for(tmp_path, kill_at):
    """The driver SIGKILLed at start-up, mid-trial, between a trial's end and the trials table
    write, or inside the Optuna tell; the same command then completes the search, and every
    trial that had ended keeps the ending it recorded, not trained or told again."""
    folder = SearchFolder(tmp_path / "killed")
    # mid-trial is found by polling: at 400 steps a ring trial trains for under a second on a fast
    # CPU and ASHA cuts most at their first checkpoint, so no trial may be seen past its first
    # checkpoint while another has ended; trials that ASHA keeps then train for seconds
    argv = command(tmp_path, "killed", batches=3000 if kill_at == "mid_trial" else 400)
    if kill_at == "mid_trial":
        first = launch(argv, tmp_path / "first.log")
        try:
            wait_until(lambda: mid_trial(folder), first, "a trial was mid-way")
        finally:
            kill_session(first)
    else:
        first = launch(argv, tmp_path / "first.log", env={FAULT_ENV: kill_at})
        try:
            assert first.wait(timeout=900) == -signal.SIGKILL, (tmp_path / "first.log").read_text()
        finally:
            kill_session(first)  # the Ray daemons die with the driver; anything left, now
    assert not folder.finished()
    before = snapshot(folder) if folder.diagnostics.is_dir() else {}
    if kill_at != "search_prepared":
        assert before, "the fault came before any trial ended"
    if folder.trials_table.is_file():
        assert_records_intact(folder, just_killed=True)
    if kill_at == "before_optuna_tell":  # one ending on record and half told: it must be told
        ((interrupted, status),) = untold(folder).items()
        assert interrupted in before and recorded_status(folder, interrupted) == status

    # a kill in the middle of writing the trials table leaves its temp file (CI hit it by timing)
    (folder.path / f".{folder.trials_table.name}.0badc0de.tmp").write_bytes(b"half")
    second = run(argv)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert_search_complete(folder, TRIALS)
    assert_records_intact(folder, before)  # nothing that had ended was lost or trained again
    trials = read_trials(folder).set_index("trial_id")
    for trial_id in before:  # its ending, as training (or the driver, for a cut) recorded it
        assert trials.loc[trial_id, "status"] == recorded_status(folder, trial_id), trial_id

    third = run(argv, timeout=120)
    assert third.returncode == 0
    assert "has already finished" in third.stdout and "leaderboard killed" in third.stdout


def test_a_snapshot_the_kill_cut_short_is_replaced_by_the_last_whole_one(tmp_path):
    """Ray rewrites its experiment snapshot in place, so a kill inside that write leaves it
    empty (the mid-trial case met it); with nothing to read, Tuner.restore brought no trial back,
    on every later attempt.  The same command now puts the snapshot the driver kept back and
    completes the search, every ended trial keeping its recorded ending."""
    folder = SearchFolder(tmp_path / "cut")
    argv = command(tmp_path, "cut")
    before = killed_before_a_trials_write(argv, folder, tmp_path / "first.log")
    newest = sorted(folder.tune.glob("experiment_state-*.json"))[-1]
    newest.write_bytes(b"")  # what a kill inside Ray's write leaves

    second = run(argv)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"note: Ray's snapshot {newest.name} was cut short" in second.stdout
    assert_search_complete(folder, TRIALS)
    assert_records_intact(folder, before)
    trials = read_trials(folder).set_index("trial_id")
    for trial_id in before:
        assert trials.loc[trial_id, "status"] == recorded_status(folder, trial_id), trial_id


@pytest.mark.heavy
@pytest.mark.parametrize("damage", ["garbled", "cut-short"])
def test_a_killed_search_whose_study_is_damaged_resumes_on_a_rebuilt_one(tmp_path, damage):
    """The study made unreadable (bytes in its middle zeroed) or cut short (truncated to half,
    as a copy cut off or a disk that filled would leave it) while the search lies killed between
    a trial's end and the trials table write: the same command rebuilds it from trials.parquet,
    says so in one line, keeps the damaged file and completes the search, no ended trial lost,
    trained or told twice."""
    folder = SearchFolder(tmp_path / "study")
    argv = command(tmp_path, "study")
    before = killed_before_a_trials_write(argv, folder, tmp_path / "first.log")
    journal = folder.optuna_journal
    if damage == "garbled":
        data = bytearray(journal.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
        journal.write_bytes(bytes(data))
    else:
        os.truncate(journal, journal.stat().st_size // 2)

    second = run(argv)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"note: the Optuna study {journal} could not be read (" in second.stdout
    assert "rebuilt it from trials.parquet" in second.stdout
    assert journal.with_name("optuna.journal.damaged").is_file()
    assert_search_complete(folder, TRIALS)
    assert_records_intact(folder, before)
    trials = read_trials(folder).set_index("trial_id")
    for trial_id in before:
        assert trials.loc[trial_id, "status"] == recorded_status(folder, trial_id), trial_id


# ------------------------------------------------------------------------------------ case 2
def ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        found.add(pid)
    return found


def trial_workers(driver: int) -> list[int]:
    """Ray worker processes of ``driver``'s cluster running a trial (``ray::ImplicitFunc``)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("ray::ImplicitFunc") and driver in ancestors(int(proc.name)):
            found.append(int(proc.name))
    return found


def registered_checkpoint(folder: SearchFolder) -> bool:
    """Ray's driver has registered a checkpoint of a trial: its copy in ``tune/`` is the trainer's
    file (OneCopyPerCheckpoint links it as the driver registers it).  The trainer's file alone
    is not enough: killed before its report reaches the driver, the trial starts over."""
    trainer = {p.stat().st_ino for p in folder.trials_dir.glob("*/checkpoints/step_*.pt")}
    return any(p.stat().st_ino in trainer for p in folder.tune.glob("*/checkpoint_*/step_*.pt"))


@pytest.mark.heavy
def test_worker_killed_mid_step_resumes_from_its_checkpoint_with_exact_scores(tmp_path):
    """SIGKILL the Ray worker training the one trial once it has a checkpoint; Ray retries the
    trial from that checkpoint, and its final scores equal an uninterrupted run's, exactly."""
    folder = SearchFolder(tmp_path / "worker")
    argv = command(tmp_path, "worker", trials=1, batches=1000)  # long enough to catch training
    search = launch(argv, tmp_path / "search.log")
    try:
        wait_until(lambda: registered_checkpoint(folder), search, "a checkpoint Ray holds")
        workers = trial_workers(search.pid)
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        assert search.wait(timeout=900) == 0, (tmp_path / "search.log").read_text()[-3000:]
    finally:
        kill_session(search)
    assert_search_complete(folder, 1)
    assert_records_intact(folder)
    (row,) = read_trials(folder).to_dict("records")
    assert row["status"] == Status.COMPLETED and row["retries"] == 1
    rows = read_diagnostics(folder.diagnostics, trial_id=row["trial_id"])
    evals = rows[rows["kind"] == "eval"]["step"].tolist()
    assert evals.count(0) == 1, evals  # resumed from a checkpoint, not started over
    assert evals[-1] == row["step"]

    straight = run_trial(
        config_from_flat(json.loads(row["resolved_config"])), tmp_path / "straight"
    )
    scores = {k: v for k, v in straight.last_eval.items() if k in SCORES}
    assert scores and all(row[k] == v for k, v in scores.items()), (scores, row)


# ------------------------------------------------------------------------------------ case 3
def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # 16 bytes in the middle of the tensors, which torch.load alone would not notice
        middle = len(data) // 2
        path.write_bytes(
            data[:middle]
            + bytes(b ^ 0xFF for b in data[middle : middle + 16])
            + data[middle + 16 :]
        )


def same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN."""
    return a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )


RING = {**TINY_RING, "batches": 300, "keep_checkpoints": 2}


@pytest.fixture(scope="module")
def straight_ring(tmp_path_factory):
    """An uninterrupted 300-step ring run: its result and its folder (checkpoints 200, 300)."""
    out = tmp_path_factory.mktemp("straight")
    return run_trial(resolve_config("ring", "smoke", overrides=RING), out), out


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
@pytest.mark.parametrize("which", ["newest", "ray copy", "every"])
def test_damaged_checkpoint_falls_back_to_the_newest_intact_one(
    tmp_path, caplog, straight_ring, how, which
):
    """Resume with the newest checkpoint (or Ray's copy of it, or every checkpoint) damaged:
    training resumes from the previous intact one, says so in one line, and ends exactly as
    the uninterrupted run did; with none intact it starts over instead of crashing."""
    straight, out = straight_ring
    run_dir = tmp_path / "run"
    shutil.copytree(out / "checkpoints", run_dir / "checkpoints")
    newest, previous = sorted((run_dir / "checkpoints").glob("step_*.pt"), reverse=True)
    given = None
    if which == "newest":
        damage(newest, how)
    elif which == "ray copy":  # the copy Ray hands a retried trial; the trial's own is intact
        given = tmp_path / "ray" / previous.name
        given.parent.mkdir()
        shutil.copy(previous, given)
        damage(given, how)
    else:
        damage(newest, how)
        damage(previous, how)
    with caplog.at_level(logging.WARNING, logger="harness.training.checkpoints"):
        result = run_trial(
            resolve_config("ring", "smoke", overrides=RING), run_dir, resume=True, checkpoint=given
        )
    notices = [r.getMessage() for r in caplog.records]
    assert notices and all("\n" not in n for n in notices)
    assert "unreadable checkpoint" in notices[0] and "trying an older checkpoint" in notices[0]
    if which == "every":
        assert "training starts over" in notices[-1]
    else:
        assert notices[-1] == f"resuming from {previous}, the newest intact checkpoint"
    assert result.step == straight.step and result.status == straight.status
    assert result.last_eval.keys() == straight.last_eval.keys()
    for key, value in straight.last_eval.items():
        if key != "wall_s":
            assert same(result.last_eval[key], value), key


# ------------------------------------------------------------------------------------ case 4
# Ray's own notice as a local ray.init() turns token authentication on (absent when RAY_AUTH_MODE
# is already in the environment, e.g. inherited from an earlier in-process search of the session)
RAY_TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


@pytest.mark.heavy
def test_full_disk_is_a_one_line_error_and_the_same_command_resumes(small_disk):
    """A search on a full results disk ends with one line naming the file it could not write,
    leaves no half-written file, and the same command runs the search once space is freed."""
    argv = command(small_disk.parent, "full", trials=2)
    argv[argv.index("--results") + 1] = str(small_disk)
    filler = fill(small_disk)
    failed = run(argv)
    assert failed.returncode == 2, failed.stdout[-2000:] + failed.stderr[-2000:]
    lines = [line for line in failed.stderr.strip().splitlines() if RAY_TOKEN_NOTICE not in line]
    assert len(lines) == 1 and lines[0].startswith("error: no space left on device writing "), lines
    folder = SearchFolder(small_disk / "full")
    assert str(folder.path) in lines[0]
    written = sorted(p.name for p in folder.path.rglob("*"))
    assert written == [".search.lock"], written  # no config, study, table or temp file

    filler.unlink()
    second = run(argv)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert_search_complete(folder, 2)
    assert_records_intact(folder)


# ------------------------------------------------------------------------------------ case 9
def session_processes(session: int) -> list[int]:
    """Processes alive in ``session``: a driver launched in a session of its own and every Ray
    process it started."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def interrupt_mid_trial(root: Path, name: str, how: signal.Signals) -> tuple[int, list[str]]:
    """Send ``how`` to a search's driver (alone) once a trial has ended and another is training;
    (its exit status, its standard error lines but Ray's token notice).  Every process of its
    session is gone when this returns (any left are named in the assertion and then killed)."""
    folder = SearchFolder(root / name)
    argv = command(root, name, batches=3000)
    with open(root / f"{name}.out", "w") as out, open(root / f"{name}.err", "w") as err:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=err, start_new_session=True)
    try:
        wait_until(lambda: mid_trial(folder), process, "a trial was mid-way")
        process.send_signal(how)
        code = process.wait(timeout=300)
        deadline = time.monotonic() + 30  # Ray's daemons end as ray.shutdown returns
        while session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_processes(process.pid), "Ray processes outlived the driver"
    finally:
        kill_session(process)
    lines = (root / f"{name}.err").read_text().splitlines()
    return code, [line for line in lines if line.strip() and RAY_TOKEN_NOTICE not in line]


def test_sigterm_on_a_search_is_one_line_ray_shut_down_and_exit_143(tmp_path):
    """What a cluster scheduler or `docker stop` sends: the search stops as a second Ctrl-C
    stops it (harness/interrupts.py), without Ray's stack dumps and abort."""
    code, errors = interrupt_mid_trial(tmp_path, "term", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and errors == ["interrupted"], (code, errors)
    folder = SearchFolder(tmp_path / "term")
    assert not folder.finished()
    assert_records_intact(folder)


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with a hash of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.heavy
def test_a_copied_and_a_moved_search_folder_resume_as_themselves(tmp_path):
    """`cp -a results/a results/b`, then the search named b: it resumes to its end in b, and
    not a byte of a changes (Ray's pickled state and the Optuna storage URL named a); then a
    moved (`mv a c`), which resumes in c, and nothing appears where it was.  Killed by SIGTERM
    first, so the resumes also show that no diagnostics row is logged twice."""
    code, errors = interrupt_mid_trial(tmp_path, "a", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and errors == ["interrupted"], (code, errors)
    original = SearchFolder(tmp_path / "a")
    before = snapshot(original)
    assert before, "the fault came before any trial ended"
    unchanged = digest(original.path)
    assert (original.tune / ".written_for").read_text() == str(original.path)

    subprocess.run(["cp", "-a", str(original.path), str(tmp_path / "b")], check=True)
    copied = SearchFolder(tmp_path / "b")
    argv = command(tmp_path, "b", batches=3000)
    resumed = run(argv)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"copied or moved from {original.path}" in resumed.stdout
    assert_search_complete(copied, TRIALS)
    assert_records_intact(copied, before)
    assert digest(original.path) == unchanged  # the original: not a byte changed
    assert not [p for p in copied.path.rglob("*") if p.is_file() and str(original.path) in
                p.read_bytes().decode(errors="replace") and p.name != "search.log"]  # fmt: skip

    copy_done = digest(copied.path)
    moved = SearchFolder(tmp_path / "elsewhere" / "c")
    moved.path.parent.mkdir()
    original.path.rename(moved.path)
    argv = command(tmp_path, "c", batches=3000)
    argv[argv.index("--results") + 1] = str(moved.path.parent)
    resumed = run(argv)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert_search_complete(moved, TRIALS)
    assert_records_intact(moved, before)
    assert not original.path.exists()  # nothing written where it was
    assert digest(copied.path) == copy_done


# ------------------------------------------------------------------------------------ case 5
@pytest.mark.heavy
def test_second_search_with_the_same_name_is_refused(tmp_path):
    """While one `run.py search` runs, a second with the same name stops at once with a
    one-line error (the first holds results/<name>/.search.lock); the first is unharmed."""
    folder = SearchFolder(tmp_path / "twice")
    argv = command(tmp_path, "twice", trials=2)
    first = launch(argv, tmp_path / "first.log")
    try:
        wait_until(folder.config.is_file, first, "the first search saved its plan")
        plan = folder.config.read_bytes()
        second = run(argv, timeout=120)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert lines == [
            f"error: search 'twice' is already running in another process (it holds "
            f"{folder.lock}); wait for it to end, or pick another --name"
        ], second.stderr
        assert folder.config.read_bytes() == plan
        assert first.wait(timeout=900) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        kill_session(first)
    assert_search_complete(folder, 2)
    assert_records_intact(folder)


# -------------------------------------------------------------------------------- cases 6, 7
MAX_SKIPS = 3
FAULTY = {"lr_g": 1e-3, "fail_times": 0, "poison_at_step": 0}
HEALTHY = dict(FAULTY)
RAISING = {**FAULTY, "fail_times": 9}  # raises at its step-200 validation every time
POISONED = {**FAULTY, "poison_at_step": 100}  # G's weights turn NaN after step 100


@pytest.fixture(scope="module")
def faulty_search(tmp_path_factory):
    """A 3-trial search whose trials are healthy, raise every time, or get NaN weights."""
    root = tmp_path_factory.mktemp("faulty")
    space = {
        "objective": "reverse_kl",
        "space": {
            "lr_g": {"loguniform": [3e-4, 3e-3]},
            "fail_times": {"choice": [0, 9]},
            "poison_at_step": {"choice": [0, 100]},
            **TINY_RING,
            "fail_at_step": 200,
            "max_consecutive_nonfinite": MAX_SKIPS,
        },
        "points_to_evaluate": [RAISING, POISONED, HEALTHY],
    }
    (root / "faulty.yaml").write_text(yaml.safe_dump(space))
    with flaky_recipe():
        code, out = run_cli(
            "search", "flaky", "--space", str(root / "faulty.yaml"), "--trials", "3",
            "--name", "faulty", "--results", str(root), "--scheduler", "none",
            "--max-concurrent", "2",
        )  # fmt: skip
    assert code == 0, out
    folder = SearchFolder(root / "faulty")
    assert_search_complete(folder, 3)
    assert_records_intact(folder)
    return folder


def trial_of(folder: SearchFolder, point: dict) -> dict:
    trials = read_trials(folder)
    for key, value in point.items():
        trials = trials[trials[f"config/{key}"] == value]
    (row,) = trials.to_dict("records")
    return row


@pytest.mark.heavy
def test_trial_that_always_raises_is_errored_and_the_search_goes_on(faulty_search):
    row = trial_of(faulty_search, RAISING)
    assert row["status"] == Status.ERRORED and row["retries"] == 3  # first run + 2 retries
    assert (
        row["reason"]
        == "flaky_recipe.InjectedFailure: injected failure at step 200 (after 2 retries)"
    )
    assert trial_of(faulty_search, HEALTHY)["status"] == Status.COMPLETED
    code, text = run_cli(
        "leaderboard", "faulty", "--results", str(faulty_search.path.parent), "--format", "json"
    )
    ranked = json.loads(text)["trials"]
    assert ranked[0]["status"] == Status.COMPLETED and ranked[-1]["trial"] == row["trial_id"]


@pytest.mark.heavy
def test_nan_weights_are_skipped_counted_and_stop_the_trial(faulty_search):
    row = trial_of(faulty_search, POISONED)
    assert row["status"] == Status.STOPPED
    assert row["reason"].startswith(f"diverged: {MAX_SKIPS} consecutive ")
    assert row["step"] <= 100 + MAX_SKIPS  # stopped right after the poisoning
    # the skips are counted in the checkpoint the trainer writes when it stops (no step row
    # falls between the poisoning and the stop at this log_every)
    stopped = sorted(faulty_search.trial_dir(row["trial_id"]).glob("checkpoints/step_*.pt"))[-1]
    counters = torch.load(stopped, weights_only=False)["counters"]
    assert counters["nonfinite_skips"] >= MAX_SKIPS
    study = load_study(faulty_search, "faulty")
    (told,) = [t for t in study.trials if t.user_attrs.get("trial_id") == row["trial_id"]]
    assert told.state.name == "PRUNED" and told.values is None  # never told as a score
    code, text = run_cli(
        "leaderboard", "faulty", "--results", str(faulty_search.path.parent), "--format", "json"
    )
    ranked = [t["status"] for t in json.loads(text)["trials"]]
    assert ranked.index(Status.STOPPED) > ranked.index(
        Status.COMPLETED
    )  # never above a finished one
