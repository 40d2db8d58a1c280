"""The files of a data folder, found the same way for corpora, noise recordings and scoring.

Symlinked folders are followed (a corpus whose speaker folders are links to another disk is a
common layout), each real folder once: a link back up the tree, or two links to one folder, add
nothing twice and never loop.  A folder that cannot be listed is an error naming it, not a
silently smaller corpus.  File names are bytes on POSIX; one that is not UTF-8 reaches Python
with surrogates in place of its odd bytes (:func:`printable` shows them as ``\\xNN``, and
:func:`utf8_name` says whether a name is clean).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path


class UnreadableFolder(OSError):
    """A folder under the data folder cannot be listed; ``filename`` names it."""


def files_under(folder: Path, suffixes: Collection[str]) -> list[Path]:
    """Every file under ``folder`` whose lower-cased suffix is in ``suffixes``, sorted, as
    reached from ``folder`` (through the links, not resolved).  A link to a missing file is
    kept, so that opening it names it."""

    def fail(err: OSError) -> None:
        raise UnreadableFolder(err.errno, err.strerror, err.filename)

    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for top, folders, files in os.walk(folder, onerror=fail, followlinks=True):
        stat = os.stat(top)
        if (stat.st_dev, stat.st_ino) in seen:  # reached again through a link: done already
            folders.clear()
            continue
        seen.add((stat.st_dev, stat.st_ino))
        folders.sort()  # so which of two ways to one folder is kept never varies
        found += [Path(top) / name for name in files if Path(name).suffix.lower() in suffixes]
    return sorted(found)


def utf8_name(path: Path | str) -> bool:
    """Whether ``path`` is valid UTF-8 (not read from bytes that are not)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path: Path | str) -> str:
    """``path`` as text, the bytes of a non-UTF-8 name shown as ``\\xNN``."""
    try:
        raw = str(path).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")
