"""Buffered, crash-safe Parquet diagnostics: one row per logged step or evaluation.

All trials of a search write into one hive-partitioned Parquet dataset::

    <root>/trial_id=<id>/part-000000-1a2b3c4d.parquet
    <root>/trial_id=<id>/part-000001-5e6f7a8b.parquet

Every flush becomes its own file, written under a hidden temp name, fsync'd, then renamed into
place, so a process killed at any moment leaves every earlier flush readable and no half-written
visible file.  Every file has the same fixed schema (:data:`FILE_SCHEMA`), so pyarrow, pandas and
DuckDB read the folder as one table with no code of ours (see docs/diagnostics.md).

``trial_id`` lives only in the folder name, not inside the files: pyarrow and pandas refuse a
dataset whose files carry the partition column too ("Unable to merge: Field trial_id has
incompatible types").
"""

from __future__ import annotations

import operator
import re
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harness.diagnostics.detectors import DETECTORS
from harness.files import atomic_output, fsync_dir, remove_stale_temps
from harness.scoring.registry import SCORES


class TelemetryError(ValueError):
    """A diagnostics row or writer argument is invalid; the message is one line naming it."""


class Column(NamedTuple):
    name: str
    type: pa.DataType
    unit: str
    meaning: str


_F, _I, _S, _B = pa.float64(), pa.int64(), pa.string(), pa.bool_()
_BY_GROUP = pa.map_(pa.string(), pa.float64())

# The one place the row layout is defined; docs/diagnostics.md describes the same columns.
COLUMNS: tuple[Column, ...] = (
    # identity
    Column("search", _S, "", "search name (the results/<search>/ folder)"),
    Column("trial_id", _S, "", "trial id; the partition key, stored in the folder name only"),
    Column("kind", _S, "", '"step" (training log row) or "eval" (validation row)'),
    Column("step", _I, "iterations", "training iterations done when the row was logged"),
    Column("batches", _I, "batches", "training batches drawn so far: the cost a budget counts"),
    Column("epoch", _I, "epochs", "passes over the training data started so far"),
    Column("wall_s", _F, "s", "wall-clock seconds since the trial started"),
    # losses
    Column("loss_d", _F, "", "total discriminator loss"),
    Column("loss_d_real", _F, "", "discriminator loss on real inputs"),
    Column("loss_d_fake", _F, "", "discriminator loss on generated inputs"),
    Column("loss_g", _F, "", "total generator loss (adversarial + reconstruction)"),
    Column("loss_g_adv", _F, "", "generator adversarial term"),
    Column("loss_fm", _F, "", "feature-matching term"),
    Column("loss_mel", _F, "", "mel-spectrogram L1 term"),
    Column("loss_recon", _F, "", "weighted reconstruction loss, mean after thresholding"),
    # discriminator outputs
    Column("d_real_mean", _F, "raw D output", "mean D output on real inputs, over groups"),
    Column("d_fake_mean", _F, "raw D output", "mean D output on generated inputs, over groups"),
    Column("d_real_by_group", _BY_GROUP, "raw D output", "mean D output on real, per group"),
    Column("d_fake_by_group", _BY_GROUP, "raw D output", "mean D output on fake, per group"),
    Column("d_acc", _F, "share 0-1", "share of D outputs on the right side of the threshold"),
    # optimisation
    Column("grad_norm_g", _F, "L2 norm", "generator global gradient norm, before clipping"),
    Column("grad_norm_d", _F, "L2 norm", "discriminator global gradient norm, before clipping"),
    Column("adv_grad_norm", _F, "L2 norm", "norm of dL_adv / d(generated batch): D's signal to G"),
    Column("recon_grad_norm", _F, "L2 norm", "norm of dL_recon / d(generated batch)"),
    Column("adv_recon_ratio", _F, "ratio", "adv_grad_norm / recon_grad_norm (same batch)"),
    Column("lr_g", _F, "", "generator learning rate"),
    Column("lr_d", _F, "", "discriminator learning rate"),
    Column("r1_penalty", _F, "", "R1 gradient penalty on real data (unweighted)"),
    # counters, cumulative since the trial started
    Column("nonfinite_skips", _I, "updates", "updates skipped for a non-finite or huge loss"),
    Column("oom_skips", _I, "updates", "updates skipped for running out of memory"),
    Column("scaler_skips", _I, "updates", "fp16 steps the GradScaler skipped (inf/NaN gradients)"),
    Column("threshold_skips", _I, "examples", "examples left out by loss_threshold"),
    # speed
    Column("step_s", _F, "s", "mean wall time per training iteration since the last row"),
    Column("samples_per_s", _F, "examples/s", "training examples processed per second"),
    Column("compile_s", _F, "s", "torch.compile time since the last row (compile=true only)"),
    # evaluation: every score in the metric registry (harness/scoring/registry.py)
    *(
        Column(m.name, _F, m.unit, m.meaning)
        for m in SCORES.values()
        if m.family in ("speech", "enhancement")
    ),
    Column("n_valid", _I, "utterances", "validation utterances scored"),
    Column("n_skipped", _I, "utterances", "validation utterances that could not be scored"),
    # health (harness/diagnostics/: signals, modes, monitor, detectors; docs/diagnostics.md)
    Column("d_loss_roll_mean", _F, "", "mean of loss_d over the last HealthConfig.roll step rows"),
    Column("d_loss_roll_var", _F, "", "variance (ddof 0) of loss_d over the same rows"),
    Column("diversity_ratio", _F, "ratio", "pairwise log-mel distance, generated / real"),
    Column("energy_ratio", _F, "ratio", "RMS of generated / RMS of real audio"),
    Column("highband_ratio", _F, "ratio", "share of energy above 4 kHz, generated / real"),
    *(Column(m.name, _F, m.unit, m.meaning) for m in SCORES.values() if m.family == "toy"),
    Column("modes_total", _F, "modes", "toy recipes: modes in the mixture (8 or 25)"),
    Column("flatness_ratio", _F, "ratio", "spectral flatness, generated / real"),
    Column("mask_floor_share", _F, "share", "MetricGAN+: mask values held at their floor"),
    Column("d_loss_share", _F, "ratio", "loss_d over the first D update's loss"),
    Column("adv_grad_share", _F, "ratio", "adv_grad_norm over its peak so far"),
    Column("recon_share", _F, "ratio", "loss_recon over its minimum so far"),
    *(
        Column(f"{name}_{part}", kind, unit, f"{detector.words}: {meaning}")
        for name, detector in DETECTORS.items()
        for part, kind, unit, meaning in (
            ("score", _F, "0-1", "this row's score; 1 = every threshold crossed"),
            ("peak", _F, "0-1", "highest judged score so far"),
            ("last", _F, "0-1", "latest score"),
            ("since", _I, "iterations", "first step of the window that raised the flag"),
        )
    ),
    *(
        Column(f"flag_{name}", _B, "", f"{d.words}: score averaged hold over the last window rows")
        for name, d in DETECTORS.items()
    ),
)

DIAGNOSTICS_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in COLUMNS])
"""What readers see: every column, ``trial_id`` included (it comes from the folder name)."""
FILE_SCHEMA = DIAGNOSTICS_SCHEMA.remove(DIAGNOSTICS_SCHEMA.get_field_index("trial_id"))
"""What each Parquet file holds: every column except the partition key ``trial_id``."""
PARTITIONING = ds.partitioning(pa.schema([("trial_id", pa.string())]), flavor="hive")
"""Hive partitioning with ``trial_id`` read as a string, even when it looks like a number."""

KINDS = ("step", "eval")
_PART = re.compile(r"part-(\d{6})-[0-9a-f]{8}\.parquet")


def _as_float(value: Any) -> float:
    if isinstance(value, str | bytes):
        raise TypeError
    return float(value)  # also numpy scalars and 0-d tensors; NaN and inf are kept


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError
    return bool(value)


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _as_groups(value: Any) -> dict[str, float]:
    return {_as_str(k): _as_float(v) for k, v in value.items()}


_CONVERT = {pa.float64(): _as_float, pa.int64(): operator.index, pa.bool_(): _as_bool}
_CONVERT |= {pa.string(): _as_str, _BY_GROUP: _as_groups}
_CONVERTERS = {c.name: _CONVERT[c.type] for c in COLUMNS if c.name not in ("search", "trial_id")}


def _check_segment(what: str, value: str) -> None:
    """Reject names that would break the folder layout or be hidden from readers."""
    if not value or value[0] in "._" or any(c in value for c in "/\\=\0"):
        raise TelemetryError(
            f"diagnostics {what} {value!r} must be non-empty, not start with '.' or '_', "
            "and contain no '/', '\\', '='"
        )


def write_table_atomic(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` as Parquet so readers see the old file or the new, never half."""
    with atomic_output(path) as handle:
        pq.write_table(table, handle)


class DiagnosticsWriter:
    """Buffers rows for one trial and flushes each batch as a new Parquet part file.

    A flush happens when ``flush_rows`` rows are buffered, or on the first :meth:`write` once
    ``flush_seconds`` have passed since the last flush (there is no background thread), and on
    :meth:`flush` / :meth:`close`.  A writer reopened for the same trial (a resumed trial in a
    new process) continues the part numbering found on disk and never overwrites a part; it also
    removes hidden temp files left by a predecessor that was killed mid-flush.
    """

    def __init__(
        self,
        root: Path,
        search: str,
        trial_id: str,
        flush_rows: int = 200,
        flush_seconds: float = 30.0,
    ) -> None:
        _check_segment("search", search)
        _check_segment("trial_id", trial_id)
        if flush_rows < 1:
            raise TelemetryError(f"diagnostics flush_rows must be >= 1, got {flush_rows}")
        self.search = search
        self.trial_id = trial_id
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.folder = Path(root) / f"trial_id={trial_id}"
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.folder)
        seqs = [int(m.group(1)) for p in self.folder.iterdir() if (m := _PART.fullmatch(p.name))]
        self._next_seq = max(seqs, default=-1) + 1
        self._rows: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._closed = False

    def write(self, row: dict[str, Any]) -> None:
        """Validate and buffer one row; flush if the buffer is full or old enough."""
        if self._closed:
            raise TelemetryError(f"diagnostics writer for trial {self.trial_id!r} is closed")
        out: dict[str, Any] = {"search": self.search}
        for key, value in row.items():
            convert = _CONVERTERS.get(key)
            if convert is None:
                if key in ("search", "trial_id"):
                    raise TelemetryError(f"diagnostics column {key!r} is filled in by the writer")
                raise TelemetryError(f"unknown diagnostics column {key!r}")
            try:
                out[key] = None if value is None else convert(value)
            except Exception:  # any failure to convert means the value is not of the column's type
                kind = DIAGNOSTICS_SCHEMA.field(key).type
                shown = " ".join(repr(value).split())[:80]
                raise TelemetryError(
                    f"diagnostics column {key!r}: {shown} is not a valid {kind}"
                ) from None
        if out.get("kind") not in KINDS:
            raise TelemetryError(
                f"diagnostics column 'kind' must be one of {KINDS}, got {out.get('kind')!r}"
            )
        if out.get("step") is None:
            raise TelemetryError("diagnostics column 'step' is required")
        self._rows.append(out)
        if (
            len(self._rows) >= self.flush_rows
            or time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows (if any) as one new part file, atomically."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=FILE_SCHEMA)
        name = f"part-{self._next_seq:06d}-{uuid.uuid4().hex[:8]}.parquet"
        write_table_atomic(self.folder / name, table)
        self._next_seq += 1
        self._rows.clear()

    def close(self) -> None:
        """Flush what is buffered; further writes are errors.  Safe to call twice."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> DiagnosticsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drop_rows_after(root: Path, trial_id: str, step: int) -> int:
    """Remove the rows of ``trial_id`` under ``root`` logged past ``step`` (all of them for
    ``step`` -1); the number removed.

    A run resumed from its checkpoint at ``step`` logs the steps after it again, so the rows an
    interrupted run logged past that checkpoint would otherwise be in the record twice (or,
    where the resumed run ends sooner, describe training its weights never had).  Every row up
    to ``step`` was on record before that checkpoint was written (the trainer flushes first),
    so the trial's history stays whole.  Each part file is rewritten atomically, or deleted
    where none of its rows stay; a kill in the middle leaves whole files, and the next resume
    finishes the job.
    """
    folder = Path(root) / f"trial_id={trial_id}"
    parts = (
        sorted(p for p in folder.iterdir() if _PART.fullmatch(p.name)) if folder.is_dir() else []
    )
    dropped = 0
    for part in parts:
        table = pq.read_table(part, schema=FILE_SCHEMA)
        kept = table.filter(pc.less_equal(table["step"], step))
        if kept.num_rows == table.num_rows:
            continue
        dropped += table.num_rows - kept.num_rows
        if kept.num_rows:
            write_table_atomic(part, kept)
        else:
            part.unlink()
            fsync_dir(folder)
    return dropped


def read_diagnostics(
    root: Path, trial_id: str | None = None, kind: str | None = None
) -> pd.DataFrame:
    """All rows under ``root`` (optionally one trial and/or one kind) in the full schema.

    Rows come in write order within a trial; per-group columns are dicts.  A missing or empty
    ``root`` gives an empty frame.
    """
    root = Path(root)
    if not root.is_dir():
        return DIAGNOSTICS_SCHEMA.empty_table().to_pandas()
    dataset = ds.dataset(
        root, format="parquet", partitioning=PARTITIONING, schema=DIAGNOSTICS_SCHEMA
    )
    where = None
    if trial_id is not None:
        where = ds.field("trial_id") == trial_id
    if kind is not None:
        by_kind = ds.field("kind") == kind
        where = by_kind if where is None else where & by_kind
    return dataset.to_table(filter=where).to_pandas(maps_as_pydicts="strict")
