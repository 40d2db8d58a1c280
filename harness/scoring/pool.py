"""The worker processes speech scores are computed in (pesq and pystoi are single-threaded C and
NumPy, so one process per core is what makes scoring a validation set fast)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import forkserver
from typing import Any

import torch

from harness.scoped import scoped_environ

# native math libraries in the workers run one thread each: the pool already fills every core
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# imported once by the forkserver, so that every worker starts with the scoring code loaded
PRELOADED = ["__main__", "harness.scoring.pairs"]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's core count)."""
    return len(os.sched_getaffinity(0))


class ScoringPool:
    """Worker processes that outlive one scoring call (each costs seconds to start).

    Workers are forked from a forkserver, never from this process: forking a process whose
    torch has run OpenMP threads, or whose Ray runtime holds threads, can deadlock the child.
    The forkserver is started with :data:`WORKER_ENV` and has the main script and the scoring
    code preloaded (:data:`PRELOADED`), so each worker starts in milliseconds, with
    single-threaded BLAS (threaded BLAS makes pystoi's small matmuls up to 70x slower on a
    loaded machine).  A forkserver that other code already started in this process is reused as
    it is.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or available_cpus()
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOADED)
        with scoped_environ(forced=WORKER_ENV):
            forkserver.ensure_running()
        self._executor = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_worker
        )

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return list(self._executor.map(fn, items))

    def submit(self, fn: Callable[[Any], Any], item: Any) -> Future:
        """Start ``fn(item)`` in a worker and return at once; the future holds the result."""
        return self._executor.submit(fn, item)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _init_worker() -> None:
    """One thread per worker: the pool already uses every core."""
    torch.set_num_threads(1)
