"""What the harness prints: one line at a time, flushed, on standard output (warnings on
standard error), also while a search sends other libraries' output to its log."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_kept: list[tuple[TextIO, TextIO]] = []  # (stdout, stderr) of the console, while redirected


class HarnessWarning(UserWarning):
    """A warning the command line prints as one ``warning: ...`` line (data left out, a
    deprecated key)."""


def print_line(line: str) -> None:
    """Print ``line`` and flush, so progress shows at once under a pipe or a scheduler's log."""
    print(line, file=_kept[-1][0] if _kept else sys.stdout, flush=True)


def print_warning(message: str) -> None:
    """``warning: message`` as one line on standard error."""
    print(f"warning: {message}", file=_kept[-1][1] if _kept else sys.stderr, flush=True)


@contextmanager
def kept_console() -> Iterator[None]:
    """The harness's lines keep going to the present standard output and error for the block,
    while the block points ``sys.stdout`` and ``sys.stderr`` elsewhere."""
    _kept.append((sys.stdout, sys.stderr))
    try:
        yield
    finally:
        _kept.pop()
