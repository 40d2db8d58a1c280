"""What a step row summarises: the loop's measurements since the last row, and their time.

The trainer adds each update's losses, gradient norms and D outputs to an :class:`Interval` and
closes it at every step row into means and seconds per iteration; torch.compile's time is kept
out of those seconds (:class:`CompileClock`) and reported apart.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch import Tensor


def compile_seconds() -> float:
    """Wall seconds torch.compile has spent in this process so far (capture and compilation of
    forward and backward graphs, recompilations included)."""
    from torch._dynamo.utils import calculate_time_spent

    return calculate_time_spent()["total_wall_time"]


class WallClock:
    """Wall seconds a run has trained, carried across resumes."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before  # seconds trained before this process resumed the run
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start


class CompileClock:
    """torch.compile's seconds, read lap by lap so that each step row keeps its own share out of
    ``step_s``; zero throughout when ``on`` is False (nothing compiles)."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.total = 0.0  # seconds compiled since this clock started
        self._seen = compile_seconds() if on else 0.0

    def lap(self) -> float:
        """Seconds compiled since the previous lap."""
        if not self.on:
            return 0.0
        lap = compile_seconds() - self._seen
        self._seen += lap
        self.total += lap
        return lap


def _group_means(scores: dict[str, list[float]]) -> tuple[float, dict[str, float]]:
    """Each group's mean over the interval, and the mean of those over the groups."""
    by_group = {group: float(np.mean(values)) for group, values in scores.items()}
    return float(np.mean(list(by_group.values()))), by_group


class Interval:
    """What the loop measured since the last step row: values per column, D's mean outputs per
    discriminator group, and the iterations run and their wall time."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.d_real: dict[str, list[float]] = {}
        self.d_fake: dict[str, list[float]] = {}
        self.iterations = 0
        self.start = time.perf_counter()

    def add(self, **values: Tensor | float | None) -> None:
        """Record scalar values by column name; None (not measured) is left out."""
        for key, value in values.items():
            if value is not None:
                number = float(value.detach()) if isinstance(value, Tensor) else float(value)
                self.values.setdefault(key, []).append(number)

    def add_scores(self, real: dict[str, float], fake: dict[str, float]) -> None:
        """Record D's mean output on real and generated inputs, per discriminator group."""
        for group, value in real.items():
            self.d_real.setdefault(group, []).append(value)
        for group, value in fake.items():
            self.d_fake.setdefault(group, []).append(value)

    def restart_clock(self) -> None:
        """Time from now on (keeps evaluation and checkpoint I/O out of ``step_s``)."""
        self.start = time.perf_counter()

    def close(self, excluded_s: float = 0.0) -> tuple[dict[str, Any], float]:
        """The interval's means, and its seconds per iteration without ``excluded_s`` (time spent
        compiling); starts the next interval."""
        now = time.perf_counter()
        row: dict[str, Any] = {k: float(np.mean(v)) for k, v in self.values.items()}
        if self.d_real:
            row["d_real_mean"], row["d_real_by_group"] = _group_means(self.d_real)
        if self.d_fake:
            row["d_fake_mean"], row["d_fake_by_group"] = _group_means(self.d_fake)
        step_s = (now - self.start - excluded_s) / self.iterations
        self.values, self.d_real, self.d_fake = {}, {}, {}
        self.iterations, self.start = 0, now
        return row, step_s
