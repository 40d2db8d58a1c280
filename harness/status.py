"""How a trial ends or stands: one set of names shared by the trainer, the search and the tables."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A trial's status; the value is what ``trials.parquet`` and the leaderboard show."""

    COMPLETED = "completed"  # reached its budget
    PRUNED = "pruned"  # cut by the scheduler at a validation round
    STOPPED = "stopped"  # ended itself: diverged, out of memory, or unhealthy
    ERRORED = "errored"  # raised after its retries
    LOST = "lost"  # started just before a crash, after Ray's last snapshot
    RUNNING = "running"
    PENDING = "pending"
    INTERRUPTED = "interrupted"  # the search was interrupted; running it again continues it


STATUSES: tuple[Status, ...] = tuple(Status)
"""Every status, in leaderboard order."""
TERMINAL: tuple[Status, ...] = (
    Status.COMPLETED,
    Status.PRUNED,
    Status.STOPPED,
    Status.ERRORED,
    Status.LOST,
)
