"""One full read of every corpus file when a corpus is opened, its verdicts cached.

Why: reading only headers, a file holding NaN or infinite samples (or cut short) is noticed
only when a training crop happens to cover the bad stretch, which on a GPU is a crash hours into
a trial (and two retries that crash again); and a silent or constant (DC-only) file is never
noticed at all, while a corpus of them trains to the end with every validation score NaN (a
silent reference cannot be scored).  So every file is decoded once, block by block, and
its verdict ("ok" or why not) is kept by (path, size, mtime) in one JSON file per corpus folder
under the corpus cache (``$GAN_HARNESS_CACHE/scans/``, see :func:`default_cache_dir`).  A corpus
is read once; later opens re-read only the files that changed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.audio.corpus import CACHE_ADVICE, cache_name, default_cache_dir
from harness.console import HarnessWarning
from harness.files import atomic_write, unwritable_reason

SCAN_VERSION = 2  # bump when what a scan checks changes: older verdicts are then re-read
BLOCK_FRAMES = 1 << 18
OK = "ok"
# samples that all lie within this of one another (-100 dBFS) carry no signal: silence, or a
# constant (DC) offset, which nothing can be learnt from and no reference score can use
SILENT_SPAN = 1e-5


def scan_cache_file(root: Path) -> Path:
    """The verdict cache of the corpus folder ``root``."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return default_cache_dir() / "scans" / f"{digest}.json"


def scan_files(root: Path, paths: Sequence[Path]) -> dict[Path, str]:
    """The files of ``paths`` that are unfit for training, each with the reason (one phrase).

    Verdicts are read from and written to :func:`scan_cache_file` of ``root``; a file whose
    size or modification time changed is read again.
    """
    cache_file = scan_cache_file(root)
    known = _read_cache(cache_file)
    verdicts: dict[str, dict[str, int | str]] = {}
    bad: dict[Path, str] = {}
    for path in map(Path, paths):
        key, stat = str(path.resolve()), path.stat()
        entry = known.get(key, {})
        if (entry.get("size"), entry.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            entry = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "verdict": check_file(path),
            }
        verdicts[key] = entry
        if entry.get("verdict") != OK:
            bad[path] = str(entry.get("verdict"))
    if verdicts != known:
        document = {"version": SCAN_VERSION, "root": str(root), "files": verdicts}
        try:
            atomic_write(cache_file, json.dumps(document, indent=1))
        except OSError as err:  # the verdicts stand; only the next open re-reads the files
            why = unwritable_reason(cache_file.parent) or err.strerror or str(err)
            warnings.warn(
                f"{cache_name(cache_file.parents[1])}: cannot keep the scan's verdicts "
                f"({why}); the corpus is decoded again next time, unless you {CACHE_ADVICE}",
                HarnessWarning,
                stacklevel=2,
            )
    return bad


def check_file(path: Path) -> str:
    """Decode all of ``path``: "ok", or why it cannot be trained on."""
    frames = 0
    low = high = None  # per channel, over the whole file
    try:
        with sf.SoundFile(str(path)) as audio:
            declared = audio.frames
            while len(block := audio.read(BLOCK_FRAMES, dtype="float32", always_2d=True)):
                if not np.isfinite(block).all():
                    return "contains NaN or infinite samples"
                frames += len(block)
                low = block.min(axis=0) if low is None else np.minimum(low, block.min(axis=0))
                high = block.max(axis=0) if high is None else np.maximum(high, block.max(axis=0))
    except (sf.SoundFileError, RuntimeError) as err:
        reason = str(getattr(err, "error_string", err)).splitlines()[0]
        return f"unreadable audio ({reason})"
    if frames < declared:
        return f"decoded {frames} of the {declared} frames its header declares (truncated?)"
    if low is not None and float(np.max(high - low)) < SILENT_SPAN:
        level = float(np.max(np.abs(high)))
        if level < SILENT_SPAN:
            return "silent: every sample is 0 (to within -100 dBFS)"
        return f"holds no signal: every sample is {float(high[0]):.4g} (a constant DC offset)"
    return OK


def _read_cache(cache_file: Path) -> dict[str, dict[str, int | str]]:
    """The cached verdicts, or none when the cache is missing, damaged or from another version."""
    try:
        document = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("version") != SCAN_VERSION:
        return {}
    return document.get("files", {})
