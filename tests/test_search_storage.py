"""Each checkpoint of a search is on disk once: Ray's copy is a hard link to the trainer's file,
and a trial keeps one checkpoint, also after a retry from it (a real ring search on a local Ray
with failure injection, about a minute on 2 cores); and the file helper that links them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RING, flaky_recipe, run_cli

from harness.diagnostics.telemetry import read_diagnostics
from harness.files import link_in_place_of
from harness.results.folder import SearchFolder
from harness.results.trials import read_trials

WIDE_D = {  # a ring trial whose checkpoint (about 1 MB) outweighs Ray's own files in tune/
    **TINY_RING,
    "d_hidden": 128,
    "d_layers": 3,
    "max_consecutive_nonfinite": 3,
    "fail_at_step": 200,
}
NORMAL = {"lr_g": 1e-3, "fail_times": 0}
FLAKY = {"lr_g": 1e-3, "fail_times": 1}  # raises once at step 200, retried from step 100


def inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def bytes_by_inode(*roots: Path) -> int:
    """Bytes on disk under ``roots``: each file's size once per distinct inode."""
    sizes = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                sizes[inode(path)] = path.stat().st_size
    return sum(sizes.values())


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> SearchFolder:
    root = tmp_path_factory.mktemp("results")
    space = {
        "objective": "reverse_kl",
        "space": {"lr_g": {"loguniform": [3e-4, 3e-3]}, "fail_times": {"choice": [0, 1]}, **WIDE_D},
        "points_to_evaluate": [NORMAL, FLAKY],
    }
    (root / "space.yaml").write_text(yaml.safe_dump(space))
    with flaky_recipe():
        code, out = run_cli(
            "search", "flaky", "--space", str(root / "space.yaml"), "--trials", "2",
            "--name", "store", "--results", str(root), "--scheduler", "none", "--seed", "1",
            "--max-concurrent", "2", "--quiet",
        )  # fmt: skip
    assert code == 0, out
    return SearchFolder(root / "store")


def test_each_trial_keeps_its_last_two_checkpoints_shared_with_ray(search):
    trials = read_trials(search)
    assert set(trials["status"]) == {"completed"} and len(trials) == 2
    for trial_id in trials["trial_id"]:
        kept = sorted((search.trial_dir(trial_id) / "checkpoints").iterdir())
        names = ["step_00000200.pt", "step_00000300.pt"]  # checkpoints every 100 steps
        assert [p.name for p in kept] == names  # no staging or temp leftovers
        ray_files = sorted(
            (p for p in (search.tune / trial_id).glob("checkpoint_*/*") if p.is_file()),
            key=lambda p: p.name,
        )
        assert [p.name for p in ray_files] == names
        assert [inode(p) for p in ray_files] == [inode(p) for p in kept]  # one file, two names


def test_checkpoints_are_on_disk_once(search):
    kept = sum(p.stat().st_size for p in search.trials_dir.glob("*/checkpoints/step_*.pt"))
    assert kept > 4 * 10**6  # four checkpoints of about 1 MB: what the bound below is about
    on_disk = bytes_by_inode(search.tune, search.trials_dir)  # everything Ray and trials keep
    assert on_disk <= 1.1 * kept, (on_disk, kept)


def test_retried_trial_resumed_from_the_shared_checkpoint(search):
    trials = read_trials(search)
    flaky = trials[trials["config/fail_times"] == 1].iloc[0]
    assert flaky["retries"] == 1 and flaky["step"] == 300
    rows = read_diagnostics(search.diagnostics, trial_id=flaky["trial_id"])
    steps = rows[rows["kind"] == "step"]["step"].tolist()
    # restarted at the step-100 checkpoint, the rows logged past it dropped first
    assert steps == [50, 100, 150, 200, 250, 300]


def test_link_in_place_of_replaces_a_copy_by_a_link(tmp_path):
    source, copy = tmp_path / "a.pt", tmp_path / "b.pt"
    source.write_bytes(b"checkpoint")
    copy.write_bytes(b"checkpoint")
    assert link_in_place_of(source, copy)
    assert inode(copy) == inode(source) and copy.read_bytes() == b"checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]
    assert link_in_place_of(source, copy)  # already one file


def test_link_in_place_of_leaves_what_cannot_be_a_copy(tmp_path):
    source, copy = tmp_path / "a.pt", tmp_path / "b.pt"
    source.write_bytes(b"checkpoint")
    copy.write_bytes(b"different!")  # same size, but written before the source was rewritten
    os.utime(copy, ns=(0, 0))
    assert not link_in_place_of(source, copy)
    copy.write_bytes(b"short")
    assert not link_in_place_of(source, copy)
    assert copy.read_bytes() == b"short" and inode(copy) != inode(source)
    assert not link_in_place_of(tmp_path / "gone.pt", copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]
