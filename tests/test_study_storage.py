"""The Optuna study of a search: a journal file that readers poll while the search writes it,
and a study that cannot be read, rebuilt from trials.parquet (harness/search/study_storage.py,
harness/search/study_rebuild.py).  The killed search that resumes over a damaged study is in
tests/test_faults.py."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY_RING

from harness.cli import main
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.space import parse_space
from harness.results.trials import read_trials
from harness.search.study_rebuild import repair_study
from harness.search.study_storage import StudyUnreadable, load_study, open_storage

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def copy_search(folder: SearchFolder, root: Path) -> SearchFolder:
    """A copy of a finished search under ``root`` (its Ray experiment left out)."""
    shutil.copytree(folder.path, root / folder.name, ignore=shutil.ignore_patterns("tune"))
    return SearchFolder(root / folder.name)


def told(study: optuna.Study) -> list[tuple]:
    """What Optuna was told of each trial, NaN written as a string so that it compares equal."""

    def same(value: float) -> float | str:
        return "nan" if isinstance(value, float) and math.isnan(value) else value

    return [
        (
            t.number,
            t.state.name,
            [same(v) for v in t.values or []],
            t.params,
            t.user_attrs,
            {step: same(v) for step, v in t.intermediate_values.items()},
        )
        for t in study.get_trials(deepcopy=False)
    ]


def damage_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))


def cut_in_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def as_sqlite(folder: SearchFolder) -> None:
    """The journal study copied into an SQLite ``optuna.db``, as an older search holds it."""
    optuna.copy_study(
        from_study_name=folder.name,
        from_storage=open_storage(folder),
        to_storage=f"sqlite:///{folder.optuna_db}",
    )
    folder.optuna_journal.unlink()


def test_a_new_search_keeps_its_study_in_a_journal_that_optuna_dashboard_opens(ring_search):
    folder, _ = ring_search
    assert folder.optuna_journal.is_file() and not folder.optuna_db.exists()
    assert folder.study_file == folder.optuna_journal
    # as optuna-dashboard opens a file path (its default lock), without a word from us
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder.optuna_journal))
    )
    study = optuna.load_study(study_name=folder.name, storage=storage)
    ids = {t.user_attrs["trial_id"] for t in study.trials}
    assert ids == set(read_trials(folder)["trial_id"])


DAMAGE = {
    "journal-garbled": lambda f: damage_in_the_middle(f.optuna_journal),
    "journal-cut-short": lambda f: cut_in_half(f.optuna_journal),
    "journal-missing": lambda f: f.optuna_journal.unlink(),
    "sqlite-cut-short": lambda f: cut_in_half(f.optuna_db),  # an older search's study
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_study_that_cannot_be_read_is_rebuilt_as_it_was(ring_search, tmp_path, damage):
    """Every trial comes back with its number, state, values, parameters, attributes and
    intermediate values, in the same kind of file; the damaged one is kept beside it."""
    folder = copy_search(ring_search[0], tmp_path)
    if damage.startswith("sqlite"):
        as_sqlite(folder)
    before = told(load_study(folder, folder.name))
    DAMAGE[damage](folder)
    study_file = folder.study_file
    plan = SearchPlan.load(folder)
    space = parse_space(plan.space, plan.recipe, plan.space_file)

    note = repair_study(plan, space, folder)

    assert note is not None and note.startswith(f"note: the Optuna study {study_file} could not")
    assert "rebuilt it from trials.parquet (6 trials)" in note
    assert folder.study_file == study_file
    assert told(load_study(folder, folder.name)) == before
    kept = study_file.with_name(f"{study_file.name}.damaged")
    assert kept.is_file() == (damage != "journal-missing")
    assert not list(folder.path.glob(".*.tmp")) and not Path(f"{study_file}.lock").exists()
    assert repair_study(plan, space, folder) is None  # whole now: left as it is


def test_a_whole_study_is_left_as_it_is(ring_search, tmp_path):
    folder = copy_search(ring_search[0], tmp_path)
    plan = SearchPlan.load(folder)
    before = folder.optuna_journal.read_bytes()
    assert repair_study(plan, parse_space(plan.space, plan.recipe, plan.space_file), folder) is None
    assert folder.optuna_journal.read_bytes() == before


def test_a_journal_line_a_kill_cut_short_is_dropped_before_the_search_writes(ring_search, tmp_path):
    """An unfinished last line (and the lock file of a killed writer) would make the next append
    one unreadable line; the resuming search cuts it off and removes the lock."""
    folder = copy_search(ring_search[0], tmp_path)
    whole = folder.optuna_journal.read_bytes()
    with open(folder.optuna_journal, "ab") as journal:
        journal.write(b'{"op_code": 8, "worker_id": "x", "trial_id": 0, "user_attr": {"a"')
    Path(f"{folder.optuna_journal}.lock").touch()
    assert load_study(folder, folder.name) is not None  # a reader skips the unfinished line
    plan = SearchPlan.load(folder)
    assert repair_study(plan, parse_space(plan.space, plan.recipe, plan.space_file), folder) is None
    assert folder.optuna_journal.read_bytes() == whole
    assert not Path(f"{folder.optuna_journal}.lock").exists()


def run_cli_err(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_a_damaged_study_is_one_warning_in_the_report_and_search_rebuilds_it(ring_search, tmp_path):
    folder = copy_search(ring_search[0], tmp_path)
    leaderboard = run_cli_err("leaderboard", folder.name, "--results", str(tmp_path))
    damage_in_the_middle(folder.optuna_journal)
    with pytest.raises(StudyUnreadable):
        load_study(folder, folder.name)

    code, out, err = run_cli_err("report", folder.name, "--results", str(tmp_path))
    assert code == 0, err
    (warning,) = err.strip().splitlines()
    assert warning.startswith(f"warning: {folder.optuna_journal}: the Optuna study is damaged (")
    assert warning.endswith(
        f"the report leaves out its plots; `run.py search {folder.name}` rebuilds it from "
        "trials.parquet"
    )
    page = (folder.path / "report.html").read_text()
    assert "the Optuna study is damaged" in page and "parallel coordinates" not in page
    # the leaderboard reads no study: the same table, importances included
    assert run_cli_err("leaderboard", folder.name, "--results", str(tmp_path)) == leaderboard

    code, out, err = run_cli_err(
        "search", "ring", "--name", folder.name, "--results", str(tmp_path)
    )
    assert code == 0, err
    assert f"note: the Optuna study {folder.optuna_journal} could not be read" in out
    assert load_study(folder, folder.name) is not None
    code, out, err = run_cli_err("report", folder.name, "--results", str(tmp_path))
    assert code == 0 and err == ""
    assert "parallel coordinates" in (folder.path / "report.html").read_text()


def non_decreasing(reads: list[dict[int, list]]) -> None:
    """Each read holds every trial of the read before, none gone back to running, none with
    fewer intermediate values or without its values again."""
    order = {"WAITING": 0, "RUNNING": 1, "COMPLETE": 2, "PRUNED": 2, "FAIL": 2}
    for earlier, later in zip(reads, reads[1:], strict=False):
        assert set(earlier) <= set(later), (earlier, later)
        for number, (state, steps, valued) in earlier.items():
            now, now_steps, now_valued = later[number]
            assert order[now] >= order[state] and (order[state] < 2 or now == state)
            assert now_steps >= steps and now_valued >= valued, (earlier, later)


@pytest.mark.slow
def test_a_reader_polling_the_study_while_the_search_writes_it_sees_it_only_grow(tmp_path):
    space = {
        "objective": "reverse_kl",
        "space": {"lr_g": {"loguniform": [3e-4, 3e-3]}, **TINY_RING},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    folder = SearchFolder(tmp_path / "polled")
    reads = tmp_path / "reads.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    reader = subprocess.Popen(
        [sys.executable, str(TESTS / "study_reader.py"), str(folder.path), "polled", str(reads)],
        env=env,
    )
    try:
        search = subprocess.run(
            [
                sys.executable,
                "run.py",
                "search",
                "ring",
                "--space",
                str(tmp_path / "space.yaml"),
                "--trials",
                "4",
                "--max-concurrent",
                "2",
                "--scheduler",
                "none",
                "--name",
                "polled",
                "--results",
                str(tmp_path),
                "--quiet",
            ],  # fmt: skip
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
    lines = [json.loads(line) for line in reads.read_text().splitlines()]
    assert not [line["error"] for line in lines if "error" in line]
    for view in ("harness", "dashboard"):
        seen = [{int(n): v for n, v in line[view].items()} for line in lines]
        non_decreasing(seen)
        # it read the study while trials ran, not only before and after
        assert any(any(v[0] == "RUNNING" for v in read.values()) for read in seen), view
    final = told(load_study(folder, "polled"))
    assert len(final) == 4 and all(state == "COMPLETE" for _, state, *_ in final)
