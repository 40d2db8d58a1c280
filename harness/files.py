"""Crash-safe file writes and the one ``finite`` check.

Every file the harness writes for later reading (configs, checkpoints, results, Parquet tables)
goes through :func:`atomic_output`: a hidden temp file in the same folder, fsync'd, renamed over
the target, and the folder fsync'd, so a reader (or a restart after a kill or a power cut) sees
the old file or the new one, never half of one.  Hidden names (a leading '.') are skipped by the
Parquet readers and by our own globs.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

RESULTS_ENV = "GAN_HARNESS_RESULTS"


def results_root(arg: str | Path | None = None) -> Path:
    """``--results DIR``, else ``$GAN_HARNESS_RESULTS``, else ``./results`` (absolute): where
    searches, and the local MLflow store of tracked runs, live."""
    return Path(arg or os.environ.get(RESULTS_ENV) or "results").expanduser().resolve()


def finite(value: Any) -> bool:
    """True for a real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (directory entries need their own fsync on POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LockHeld(ValueError):
    """Another process holds a lock this one needs; the message is one line saying which."""


@contextmanager
def exclusive_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block; :class:`LockHeld` (``busy``) at
    once if another process holds it.  The kernel releases the lock when its holder dies, so a
    killed process never leaves a stale lock behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""The errors of a write the file system refuses for want of room: a full disk, an exceeded
quota, a file over the size limit (``ulimit -f``, or the file system's own)."""


@contextmanager
def atomic_output(path: Path | str) -> Iterator[IO[bytes]]:
    """A binary file handle whose contents replace ``path`` only once the block succeeds.

    On a full disk (or an exceeded quota or file size limit: :data:`FULL`) the temp file is
    removed and the ``OSError`` names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in FULL and err.filename is None:
            raise OSError(err.errno, os.strerror(err.errno), str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path | str, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8) atomically and durably."""
    with atomic_output(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def link_in_place_of(source: Path, copy: Path) -> bool:
    """Replace ``copy``, a byte copy of ``source``, by a hard link to ``source``, atomically, so
    the bytes exist once on disk.  False, leaving ``copy`` as it is, where it cannot be a copy of
    ``source`` as it now is (another size, or ``source`` rewritten after it), either is gone, or
    no hard link can be made (another file system)."""
    try:
        if copy.samefile(source):
            return True
        original, copied = source.stat(), copy.stat()
    except FileNotFoundError:  # one of them was deleted meanwhile: nothing to share
        return False
    if copied.st_size != original.st_size or copied.st_mtime_ns < original.st_mtime_ns:
        return False
    tmp = copy.with_name(f".{copy.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        return False
    if tmp.stat().st_ino != original.st_ino:  # ``source`` was replaced since it was checked
        tmp.unlink()
        return False
    os.replace(tmp, copy)
    fsync_dir(copy.parent)
    return True


def remove_stale_temps(folder: Path, names: Iterable[str] | None = None) -> None:
    """Delete temp files a writer killed mid-write left in ``folder``: all of them, or only those
    of the files ``names`` (where other processes may be writing the folder's other files)."""
    patterns = [f".{name}.*.tmp" for name in names] if names is not None else [".*.tmp"]
    for pattern in patterns:
        for stale in Path(folder).glob(pattern):
            stale.unlink(missing_ok=True)


def unwritable_reason(folder: Path | str) -> str | None:
    """Why ``folder`` cannot be used as an output folder, or None when it can.

    It must be a folder, or be creatable as one under its nearest existing ancestor; that is
    probed by creating and removing an empty hidden folder there (permission bits say nothing
    for root or on read-only mounts), so nothing is left behind.
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=existing))
    except OSError as err:
        return f"cannot create folders in {existing} ({err.strerror})"
    return None
