"""Test-wide settings: one torch thread (tiny models; avoids oversubscribing 2-core CI), the
tiny ring trial settings and ``run_cli`` the search tests share, the small real ring search
that the leaderboard and report tests read, and a small tmpfs (``small_disk``) to fill for the
full-disk tests."""

import contextlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from harness.results.folder import SearchFolder

torch.set_num_threads(1)

TINY_RING = {  # a ring trial of 300 steps in about a second
    "batches": 300,
    "eval_every": 100,
    "log_every": 50,
    "batch_size": 64,
    "g_hidden": 32,
    "g_layers": 2,
    "d_hidden": 32,
    "d_layers": 2,
    "eval_samples": 500,
}


TESTS = Path(__file__).resolve().parent


@contextlib.contextmanager
def flaky_recipe() -> Iterator[None]:
    """The test-only recipe ``flaky_recipe:FlakyRecipe`` registered as "flaky", in this process
    and, through PYTHONPATH, in the Ray workers a search starts."""
    from harness.recipes import RECIPES

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(RECIPES, "flaky", "flaky_recipe:FlakyRecipe")
        mp.setenv("PYTHONPATH", str(TESTS))
        yield


def run_cli(*argv: str) -> tuple[int, str]:
    """``run.py ARGV`` in this process: (exit status, what it printed)."""
    from harness.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


# A ring search small enough for the fast tests (about a minute on 2 cores), large enough to
# end every way: its first point completes, its second diverges (a loss limit of 1e-9 stops it),
# and the sampler's picks complete, diverge or are cut by ASHA.
RING_POINT = {
    "d_steps": 1, "lr_g": 3e-3, "lr_d": 3e-3, "b1_g": 0.5, "b1_d": 0.5, "label_smoothing": 0.0,
    "loss": "bce", "pack": 1, "loss_upper_limit": 1e6,
}  # fmt: skip
RING_SPACE = {
    "objective": "reverse_kl",
    "space": {
        "d_steps": {"int": [1, 3]},
        "lr_g": {"loguniform": [3e-4, 1e-2]},
        "lr_d": {"loguniform": [3e-4, 1e-2]},
        "b1_g": {"uniform": [0.0, 0.9]},
        "b1_d": {"uniform": [0.0, 0.9]},
        "label_smoothing": {"uniform": [0.0, 0.2]},
        "loss": {"choice": ["bce", "lsgan"]},
        "pack": {"choice": [1, 2, 4]},
        "loss_upper_limit": {"choice": [1e6, 1e5, 1e-9]},
        **TINY_RING,
        "max_consecutive_nonfinite": 3,
    },  # fmt: skip
    "points_to_evaluate": [RING_POINT, {**RING_POINT, "loss_upper_limit": 1e-9}],
}


SLOW_MODULES = frozenset(
    {  # each starts Ray, runs the command line in subprocesses or trains a speech recipe
        "test_bad_inputs", "test_confirm", "test_disk_full", "test_faults", "test_gpu_memory_cap",
        "test_health_stopper", "test_hifigan_recipe", "test_inference", "test_leaderboard",
        "test_legacy_results", "test_metricgan_recipe", "test_pbt", "test_ray_loopback",
        "test_report", "test_scoring", "test_search", "test_search_cluster", "test_search_console",
        "test_search_storage", "test_segan_recipe", "test_study_storage", "test_tracking",
        "test_train_folder",
    }
)  # fmt: skip
SLOW_TESTS = frozenset(
    {  # over 2 s each in the other modules (DNSMOS and the scoring pool start, ring training runs)
        "test_healthy_ring_raises_no_flag",
        "test_health_flags_survive_resume",
        "test_collapsing_generator_raises_flag_collapse",
        "test_overpowering_discriminator_raises_flag_overpower",
        "test_dnsmos_of_the_reference_pair_is_pinned",
        "test_pool_scores_match_serial_and_workers_run_one_thread_each",
        "test_one_single_threaded_dnsmos_session_per_process_not_per_clip",
        "test_dnsmos_of_a_short_excerpt_is_close_to_that_of_the_whole_and_loud_input_is_clipped",
        "test_cli_reports_a_bad_space_in_one_line_before_starting",
        "test_importing_the_search_turns_ray_uv_shipping_off_without_leaving_it_set",
        "test_slope_clamp_caps_and_resets_nan_after_a_step_past_the_limit",
    }
)


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu``-marked tests where no CUDA device is present; mark slow, for the quick tier
    (``-m "not slow"``, which replaces the default ``-m "not heavy"``) to leave out, every heavy
    test, every test of :data:`SLOW_MODULES` and each of :data:`SLOW_TESTS`."""
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if skip is not None and "gpu" in item.keywords:
            item.add_marker(skip)
        slow_module = item.module.__name__.rpartition(".")[2] in SLOW_MODULES
        if item.get_closest_marker("heavy") or slow_module or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def ring_search(tmp_path_factory) -> tuple[SearchFolder, str]:
    """A finished 6-trial ring search run through the CLI: (its folder, what it printed)."""
    from harness.cli import main

    root = tmp_path_factory.mktemp("ring-results")
    (root / "ring.yaml").write_text(yaml.safe_dump(RING_SPACE))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["search", "ring", "--space", str(root / "ring.yaml"), "--trials", "6", "--name",
             "ring6", "--results", str(root), "--max-concurrent", "1", "--seed", "0", "--quiet"]
        )  # fmt: skip
    assert code == 0, out.getvalue()
    return SearchFolder(root / "ring6"), out.getvalue()


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs at ``tmp_path/disk`` (root only; skipped where mount is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file to delete to free it again."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler
