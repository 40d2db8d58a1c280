"""The records of a W&B offline run (``run-<id>.wandb``), read back for the tracking tests.

wandb no longer ships a Python reader of its run files (its Go core writes and syncs them), so
the file's framing is undone here and every record parsed with wandb's own protobuf ``Record``
(``wandb.proto.wandb_internal_pb2``).  The framing is LevelDB's log format as wandb writes it: a
7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each a 7-byte
header (CRC-32, little-endian length, type: 1 whole, 2 first, 3 middle, 4 last) and its bytes;
a block's tail shorter than a chunk header is zero padding.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What a run file says: the run's id, name, group and tags, its config, every history
    row, its summary and its exit code."""

    run_id: str = ""
    name: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def chunks(data: bytes) -> list[bytes]:
    """The records' bytes, the log's framing undone and every chunk's CRC-32 checked."""
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0), "not a run file"
    records, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        left = BLOCK - offset % BLOCK
        if left < HEADER:  # the block's padding
            offset += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        body = data[offset + HEADER : offset + HEADER + length]
        if kind == 0 and length == 0:  # zeros up to the block's end
            offset += left
            continue
        assert zlib.crc32(bytes([kind]) + body) == crc, f"chunk at {offset}: CRC mismatch"
        pending = body if kind in (FULL, FIRST) else pending + body
        if kind in (FULL, LAST):
            records.append(pending)
        offset += HEADER + length
    return records


def read_finished_run(path: Path, timeout: float = 60.0) -> OfflineRun:
    """The run file ``path`` once it holds the run's exit record: wandb's service, a process of
    its own, writes the file's last records as it shuts down, which can be just after the
    process it served has exited (under load, a second or more)."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_offline_run(path)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def read_offline_run(path: Path) -> OfflineRun:
    """Every record of the run file ``path``, folded into one :class:`OfflineRun`."""
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun()
    for data in chunks(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name = record.run.run_id, record.run.display_name
            run.group, run.tags = record.run.run_group, list(record.run.tags)
            run.config.update(_items(record.run.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def _items(items: Any) -> dict[str, Any]:
    out = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out
