"""Fractional GPU trials: four processes on one device, each capped at a quarter of its memory.

Ray places four 0.25-GPU trials on one device but enforces no memory limit; each trial's process
caps its own CUDA allocator (:meth:`TrialSetup.prepare_process`).  Each process here takes that
same call and holds 15 % of the device while the others hold theirs; then, one process at a time,
it asks for 4 % more (under its cap: granted) and for 11 % more (over it: refused).  The device
has over a third of its memory free at that moment, so the refusal can only come from the cap.
"""

from __future__ import annotations

import multiprocessing as mp

import pytest

from harness.search.trainable import TrialSetup

TRIALS = 4


def _granted(share: float, total: int) -> bool:
    """Whether this process may allocate ``share`` of the device on top of what it holds."""
    import torch

    try:
        more = torch.empty(int(share * total), dtype=torch.uint8, device="cuda")
    except torch.OutOfMemoryError:
        return False
    del more
    torch.cuda.empty_cache()
    return True


def _capped_trial(setup: TrialSetup, barrier, turn, results) -> None:
    import torch

    setup.prepare_process()
    total = torch.cuda.get_device_properties(0).total_memory
    held = torch.empty(int(0.15 * total), dtype=torch.uint8, device="cuda")
    barrier.wait(timeout=120)  # all four hold theirs at once
    with turn:
        free = torch.cuda.mem_get_info()[0] / total
        asks = (_granted(0.04, total), _granted(0.11, total))
    barrier.wait(timeout=120)
    results.put((held.numel() / total, free > 0.30, asks))


@pytest.mark.gpu
def test_four_quarter_gpu_trials_share_one_device_each_under_its_cap(tmp_path):
    setup = TrialSetup(
        search="cap", folder=str(tmp_path), recipe="hifigan",
        recipe_entry="harness.recipes.hifigan:HifiganRecipe", budget="smoke", data=None,
        cpus=1.0, gpus=1 / TRIALS,
    )  # fmt: skip
    ctx = mp.get_context("spawn")
    barrier, turn, results = ctx.Barrier(TRIALS), ctx.Lock(), ctx.Queue()
    procs = [
        ctx.Process(target=_capped_trial, args=(setup, barrier, turn, results))
        for _ in range(TRIALS)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * TRIALS
    assert outcomes == [(pytest.approx(0.15, abs=1e-6), True, (True, False))] * TRIALS
