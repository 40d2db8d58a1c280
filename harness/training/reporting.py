"""What the trainer hands out: each row to a durable log and to a reporter, and how it ended."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.status import Status

Reporter = Callable[[str, dict[str, Any], Path | None], None]
"""``report(kind, row, checkpoint)``: kind is "step" or "eval"; checkpoint is set on evals."""


class RowLog(Protocol):
    """The durable record of a run's rows (a :class:`~harness.diagnostics.telemetry.
    DiagnosticsWriter`): ``write`` takes a row with its ``kind``, ``flush`` makes every row
    written so far durable."""

    def write(self, row: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


@dataclass
class TrainResult:
    """How :meth:`Trainer.fit` ended: COMPLETED or STOPPED (with the reason), and where."""

    status: Status
    reason: str
    step: int
    last_eval: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    compile_s: float = 0.0  # torch.compile's time (``cfg.compile``), left out of ``step_s``
