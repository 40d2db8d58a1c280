"""What the harness prints: one line at a time, flushed, on standard output."""

from __future__ import annotations

import sys


class HarnessWarning(UserWarning):
    """A warning the command line prints as one ``warning: ...`` line (data left out, a
    deprecated key)."""


def print_line(line: str) -> None:
    """Print ``line`` and flush, so progress shows at once under a pipe or a scheduler's log."""
    print(line, file=sys.stdout, flush=True)
