"""User text files (search spaces, corpus manifests) read as UTF-8, or refused naming the line.

Python's own ``UnicodeDecodeError`` names a byte offset but not the file; a file in another
encoding is refused here with its path and line, so the user knows which file to re-save.
"""

from __future__ import annotations

from pathlib import Path


class NotUtf8(ValueError):
    """A text file is not UTF-8; the message is one line naming the file and the line."""


def read_utf8(path: Path | str) -> str:
    """The text of ``path`` (UTF-8, a byte-order mark dropped); :class:`NotUtf8` otherwise."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise NotUtf8(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
        ) from None
