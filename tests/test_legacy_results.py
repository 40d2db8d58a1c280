"""Search folders written before the packages were reorganised still read and resume.

The harness of commit ``LEGACY`` (the last before the layout and the ``steps`` -> ``batches``
rename) runs a ring search to its end and a second one that it kills at its first trial's end;
this harness then prints the first one's leaderboard exactly as the old one did and resumes the
second to its end: Ray's pickled experiment (``tuner.pkl`` names harness classes by module),
the old space (``steps:``) and the old trial configurations all still load.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RING

from harness.results.folder import SearchFolder
from harness.results.trials import read_trials
from harness.status import TERMINAL

ROOT = Path(__file__).resolve().parents[1]
LEGACY = "6f966ee"
TRIALS = 4

pytestmark = pytest.mark.slow


def legacy_tree(dest: Path) -> Path:
    """The harness of commit LEGACY written out under ``dest``."""
    known = subprocess.run(["git", "cat-file", "-e", f"{LEGACY}^{{commit}}"], cwd=ROOT)
    if known.returncode != 0:
        pytest.skip(f"commit {LEGACY} is not in this clone's history (a shallow clone)")
    tar = subprocess.run(["git", "archive", LEGACY], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(dest, filter="data")
    return dest


def search(tree: Path, results: Path, name: str, *extra: str, env: dict | None = None):
    old_space = {  # the old budget key, as old spaces have it
        "objective": "reverse_kl",
        "space": {
            "lr_g": {"loguniform": [1e-4, 3e-3]},
            "d_steps": {"int": [1, 2]},
            **{k: v for k, v in TINY_RING.items() if k != "batches"},
            "steps": 1200,
        },
    }
    space = results / "space.yaml"
    space.write_text(yaml.safe_dump(old_space))
    argv = [sys.executable, str(tree / "run.py"), "search", "ring", "--trials", str(TRIALS)]
    argv += ["--name", name, "--results", str(results), "--quiet", *extra]
    if not (results / name).exists():
        argv += ["--space", str(space)]
    process = subprocess.Popen(
        argv,
        cwd=tree,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that a killed driver's Ray processes can be ended too
        env={**os.environ, **(env or {})},
    )
    output, _ = process.communicate(timeout=600)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, process.returncode, output, "")


def leaderboard(tree: Path, results: Path, name: str) -> str:
    argv = [sys.executable, str(tree / "run.py"), "leaderboard", name, "--results", str(results)]
    done = subprocess.run(argv + ["--format", "csv"], cwd=tree, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_search_written_by_the_old_layout_reads_and_resumes(tmp_path: Path) -> None:
    old = legacy_tree(tmp_path / "old")
    results = tmp_path / "results"
    results.mkdir()

    finished = search(old, results, "done")
    assert finished.returncode == 0, finished.stdout
    assert leaderboard(ROOT, results, "done") == leaderboard(old, results, "done")

    killed = search(old, results, "cut", env={"GAN_HARNESS_FAULT": "before_optuna_tell"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout
    folder = SearchFolder(results / "cut")
    assert not folder.finished()

    resumed = search(ROOT, results, "cut")
    assert resumed.returncode == 0, resumed.stdout
    assert folder.finished()
    trials = read_trials(folder)
    assert len(trials) == TRIALS and set(trials["status"]) <= set(TERMINAL)
