"""TensorBoard as a second view of a trial's diagnostics rows (the Parquet rows stay the record).

Every number of a row becomes a scalar at the row's training step, under ``<kind>/<column>``
(``step/loss_d``, ``eval/mel_l1``); health flags become 0/1; the per-group discriminator maps
become ``d_real/<group>`` and ``d_fake/<group>``, so TensorBoard draws one chart per group.
Inside a search the files go to the trial's folder under ``results/<name>/tune/`` (Ray's own
TensorBoard logger is off, so these are the only ones): ``tensorboard --logdir results/<name>/tune``.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

GROUP_MAPS = {"d_real_by_group": "d_real", "d_fake_by_group": "d_fake"}
NOT_SCALARS = ("step", "kind")  # the x axis, and the tag prefix


def scalar(value: Any) -> float | None:
    """A finite Python or NumPy number, or a flag as 0/1; None for anything else."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    return None


def scalars(kind: str, row: dict[str, Any]) -> dict[str, float]:
    """The tag -> value pairs of one diagnostics row (NaN, inf, None and text are left out)."""
    named: dict[str, Any] = {}
    for column, value in row.items():
        if column in GROUP_MAPS:
            named.update({f"{GROUP_MAPS[column]}/{g}": v for g, v in (value or {}).items()})
        elif column not in NOT_SCALARS:
            named[f"{kind}/{column}"] = value
    return {tag: number for tag, value in named.items() if (number := scalar(value)) is not None}


class TensorBoardWriter:
    """Writes diagnostics rows as TensorBoard scalars into ``log_dir`` (created if needed)."""

    def __init__(self, log_dir: Path | str, flush_secs: int = 30) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(str(self.log_dir), flush_secs=flush_secs)

    def write(self, kind: str, row: dict[str, Any]) -> None:
        """Add every scalar of ``row`` at its training step (``row["step"]``)."""
        step = int(row["step"])
        for tag, value in scalars(kind, row).items():
            self._writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
