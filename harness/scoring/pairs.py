"""Score many (reference, estimate) pairs into a report: per-utterance scores and their means.

:func:`score_pairs` fans the pairs out over a process pool (harness/scoring/pool.py);
:func:`submit_pairs` starts them in a live pool without waiting.  Each pair is scored by
:func:`~harness.scoring.utterance.score_pair`, under the same rules everywhere, so a number from
one trial compares with another's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from harness.scoped import single_threaded_torch
from harness.scoring.checks import METRICS, ScoringError, check_settings
from harness.scoring.pool import ScoringPool, available_cpus
from harness.scoring.spectral import MelFn
from harness.scoring.utterance import score_pair


class ScorePair(NamedTuple):
    """One utterance to score; ``noisy`` is the enhancement input, scored too when given."""

    name: str
    reference: Any
    estimate: Any
    noisy: Any = None


@dataclass
class ScoreReport:
    """Per-utterance scores and their means over the pairs that were not skipped."""

    per_item: list[dict[str, Any]]  # {"id", metric..., "skipped", "worst_case"}
    mean: dict[str, float]
    n_valid: int
    n_skipped: int


def score_pairs(
    pairs: Iterable[ScorePair | tuple],
    sample_rate: int,
    *,
    workers: int | None = None,
    pool: ScoringPool | None = None,
    mode: str = "wb",
    metrics: Sequence[str] = METRICS,
    mel_fn: MelFn | None = None,
) -> ScoreReport:
    """Score ``(name, reference, estimate[, noisy])`` pairs, in parallel, into a report.

    ``pool`` reuses live workers; otherwise ``workers`` processes are started for this call
    (default: every CPU this process may use; 1 runs serially in-process).  ``mel_fn`` must be
    picklable to cross into the workers.
    """
    check_settings(sample_rate, mode, metrics)
    items = [ScorePair(*p) for p in pairs]
    fn = partial(_score_item, sample_rate=sample_rate, mode=mode, metrics=metrics, mel_fn=mel_fn)
    workers = min(workers or available_cpus(), len(items))
    if pool is not None:
        per_item = pool.map(fn, items)
    elif workers <= 1:
        with single_threaded_torch():
            per_item = [fn(item) for item in items]
    else:
        with ScoringPool(workers) as own:
            per_item = own.map(fn, items)
    noisy_keys = [f"noisy_{m}" for m in metrics] if any(i.noisy is not None for i in items) else []
    return summarize(per_item, [*metrics, *noisy_keys])


def submit_pairs(
    pool: ScoringPool,
    pairs: Iterable[ScorePair | tuple],
    sample_rate: int,
    *,
    mode: str = "wb",
    metrics: Sequence[str] = METRICS,
) -> list[Future]:
    """Start scoring every pair in ``pool`` without waiting: one future per pair, whose result
    is that pair's :func:`score_pair` dict (with ``"id"``), under the same rules."""
    check_settings(sample_rate, mode, metrics)
    fn = partial(_score_item, sample_rate=sample_rate, mode=mode, metrics=metrics, mel_fn=None)
    return [pool.submit(fn, ScorePair(*p)) for p in pairs]


def summarize(per_item: list[dict[str, Any]], keys: Sequence[str]) -> ScoreReport:
    """Mean of each score over the items that were not skipped (NaN where none has it)."""
    valid = [item for item in per_item if not item.get("skipped")]
    mean: dict[str, float] = {}
    for key in keys:
        values = [item[key] for item in valid if key in item]
        mean[key] = float(np.mean(values)) if values else math.nan
    return ScoreReport(per_item, mean, len(valid), len(per_item) - len(valid))


def _score_item(item: ScorePair, **kwargs: Any) -> dict[str, Any]:
    """One pair's scores with its ``"id"``; a :class:`ScoringError` names the pair."""
    name, ref, est, noisy = item
    try:
        return {"id": str(name)} | score_pair(ref, est, noisy=noisy, **kwargs)
    except ScoringError as err:
        raise ScoringError(f"{name}: {err}") from None
