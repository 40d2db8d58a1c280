"""A run that follows a schedule: its configuration changes at given batches, as a trial of a
population-based search trained it.

Under population-based training (``run.py search --scheduler pbt``) a trial's hyperparameters
change while it trains: at an exploit it continues another trial's checkpoint under a perturbed
copy of that trial's configuration.  What a trial's weights went through is its *schedule*: a list
of :class:`Segment`, each the values of the mutable keys from a batch on, and which trial trained
from there and whose checkpoint it had copied.  Every other key of the configuration (the seed,
network sizes, the loss) is the same along a schedule, since a copy takes the donor's.

The schedule travels in the trial's config under :data:`SCHEDULE_KEY`, so Ray keeps it with the
trial, ``trials.parquet`` records it, and :func:`run_schedule` replays it from scratch for
``run.py rerun`` and a confirmation.  Every checkpoint a scheduled trial reports carries its
*lineage* (:func:`lineage_record`: who trained it under which schedule), and a run continues a
checkpoint only under a schedule that extends that lineage (:func:`lineage_problem`), so a
trial can neither train a donor's configuration on its own weights nor its own configuration on a
donor's weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.runs.trial import run_trial
from harness.training.config import TrialConfig
from harness.training.reporting import Reporter, TrainResult

SCHEDULE_KEY = "schedule"
LINEAGE_FILE = "lineage.json"  # beside the trainer's file in each Ray checkpoint of a schedule
RESCUE_PREFIX = "rescued: "  # a copy's reason when it replaced a trial for a health flag


class ScheduleError(ValueError):
    """A schedule cannot be followed as written, or a checkpoint does not belong to it; one line."""


@dataclass(frozen=True)
class Segment:
    """From ``batches`` on (training batches drawn), the mutable keys hold ``params``."""

    batches: int
    params: dict[str, Any]
    trial: str | None = None  # the trial that trained from here
    donor: str | None = None  # whose checkpoint it continued here (None: it started here)
    reason: str = ""  # why it copied the donor: its rank, or the health flag it was rescued from
    left_at: int | None = None  # where ``trial`` had got to in its own training when it copied
    meta: dict[str, Any] = field(default_factory=dict)  # the perturbation of each key

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Segment:
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})

    def same_training(self, other: Segment) -> bool:
        """Whether both train the same way from the same batch (who trained them aside)."""
        return self.batches == other.batches and self.params == other.params


def split_sample(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[Segment] | None]:
    """(the config without its schedule, the schedule or None for an unscheduled trial)."""
    sample = {k: v for k, v in config.items() if k != SCHEDULE_KEY}
    raw = config.get(SCHEDULE_KEY)
    return sample, None if raw is None else [Segment.from_dict(s) for s in raw]


def with_schedule(sample: Mapping[str, Any], segments: list[Segment]) -> dict[str, Any]:
    """``sample`` with the mutable keys of its last segment and the schedule itself."""
    return {**sample, **segments[-1].params, SCHEDULE_KEY: [s.to_dict() for s in segments]}


def until(segments: list[Segment], batches: int) -> list[Segment]:
    """The segments a checkpoint taken at ``batches`` was trained under (those starting before)."""
    return [s for s in segments if s.batches < batches]


def covering(starts: list[int], batches: int) -> int:
    """The index of the segment in force at ``batches``, of segments starting at ``starts``: the
    last that starts at or before it."""
    found = [i for i, start in enumerate(starts) if start <= batches]
    if not found:
        raise ScheduleError(f"the schedule starts at batch {starts[0]}, after {batches}")
    return found[-1]


def mutable_keys(segments: list[Segment]) -> set[str]:
    return {key for segment in segments for key in segment.params}


def lineage_record(
    trial_id: str, sample: Mapping[str, Any], segments: list[Segment], batches: int, step: int
) -> dict[str, Any]:
    """What a checkpoint taken at ``batches`` was trained under, for :func:`lineage_problem`."""
    return {
        "trial": trial_id,
        "batches": batches,
        "step": step,
        "sample": dict(sample),
        SCHEDULE_KEY: [s.to_dict() for s in until(segments, batches)],
    }


def lineage_problem(
    lineage: Mapping[str, Any], sample: Mapping[str, Any], segments: list[Segment]
) -> str | None:
    """Why a run of (``sample``, ``segments``) must not continue a checkpoint of ``lineage``;
    None where it may: the checkpoint's schedule is the run's own up to the checkpoint, and every
    key no segment changes (the seed, the sizes) is the same.  Training is a function of these
    alone, so such a checkpoint holds the weights the run's own schedule leads to, whichever
    trial trained it."""
    batches = int(lineage["batches"])
    theirs = [Segment.from_dict(s) for s in lineage[SCHEDULE_KEY]]
    ours = until(segments, batches)
    same = len(theirs) == len(ours)
    if not same or not all(a.same_training(b) for a, b in zip(theirs, ours, strict=True)):
        return (
            f"the checkpoint at batch {batches} (trained by {lineage['trial']}) was trained under "
            f"{describe(theirs)}, this run's schedule says {describe(ours)}"
        )
    varying = mutable_keys(segments) | mutable_keys(theirs)
    fixed = {k for k in {**sample, **lineage["sample"]} if k not in varying}
    differ = sorted(k for k in fixed if sample.get(k) != lineage["sample"].get(k))
    if differ:
        return (
            f"the checkpoint at batch {batches} (trained by {lineage['trial']}) has other "
            f"{', '.join(differ)} than this run"
        )
    return None


def describe(segments: list[Segment]) -> str:
    """``[0: lr_g=0.001, 600: lr_g=0.0012]``, short enough for one line."""
    parts = []
    for s in segments:
        values = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(s.params.items())
        )
        parts.append(f"{s.batches}: {values}")
    return "[" + "; ".join(parts) + "]"


def read_lineage(checkpoint_dir: Path) -> dict[str, Any] | None:
    """The lineage beside a checkpoint (None for a checkpoint of an unscheduled run)."""
    path = Path(checkpoint_dir) / LINEAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class SegmentEnd(Exception):  # noqa: N818 - control flow, not an error
    """Raised through the trainer when a replayed segment reaches the batch where the next one
    starts, right after its checkpoint there was reported (as a Ray trial is paused)."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(str(checkpoint))
        self.checkpoint = checkpoint


Stage = tuple[int, TrialConfig]
"""(the batch a segment starts at, the resolved config it trains under)."""


def run_schedule(
    stages: list[Stage],
    out_dir: Path,
    *,
    position: int = 0,
    checkpoint: Path | None = None,
    on_report: Reporter | None = None,
    **run: Any,
) -> TrainResult:
    """Train ``stages`` in order from ``position`` (the batches ``checkpoint`` was taken at; 0
    and None: from scratch) through :func:`~harness.runs.trial.run_trial`, each stage continuing
    the checkpoint the one before it took where it ends.  ``run`` goes to every ``run_trial``
    call (search, trial_id, diagnostics_root, echo, on_start).  One stage is one plain run."""
    starts = [start for start, _ in stages]
    for k in range(covering(starts, position), len(stages)):
        end = starts[k + 1] if k + 1 < len(stages) else None
        try:
            return run_trial(
                stages[k][1],
                out_dir,
                checkpoint=checkpoint,
                on_report=stop_at(end, on_report),
                **run,
            )
        except SegmentEnd as reached:
            checkpoint = reached.checkpoint
    raise AssertionError("unreachable: the last stage has no end")


def stop_at(end: int | None, on_report: Reporter | None) -> Reporter:
    """``on_report``, then :class:`SegmentEnd` once the validation at batch ``end`` has been
    reported with its checkpoint; a run that validates past ``end`` cannot follow the schedule."""

    def report(kind: str, row: dict[str, Any], ckpt: Path | None) -> None:
        if on_report is not None:
            on_report(kind, row, ckpt)
        if end is None or kind != "eval" or row["batches"] < end:
            return
        if row["batches"] != end or ckpt is None:
            raise ScheduleError(
                f"the schedule changes at batch {end}, but this run validated and checkpointed at "
                f"batch {row['batches']}"
            )
        raise SegmentEnd(ckpt)

    return report


ConfigFor = Callable[[dict[str, Any]], TrialConfig]
"""Resolves a sample (with a segment's values) into the config a stage trains under."""


def stages_of(
    sample: Mapping[str, Any], segments: list[Segment], resolve: ConfigFor
) -> list[Stage]:
    """One stage per segment: ``sample`` with the segment's values, resolved."""
    return [(s.batches, resolve({**sample, **s.params})) for s in segments]
