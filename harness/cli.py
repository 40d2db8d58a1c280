"""Command-line front door: one subcommand per module in harness/commands/.

Errors a user can fix (bad config key, bad data, bad search space, a full disk) become one line
on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import functools
import importlib
import sys
import warnings
from collections.abc import Callable
from typing import Any

COMMANDS = (
    "train",
    "score",
    "search",
    "confirm",
    "leaderboard",
    "report",
    "rerun",
    "preflight",
    "enhance",
    "vocode",
    "export",
)


NO_ROOM = {
    errno.ENOSPC: ("no space left on device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EFBIG: ("file too large", "raise the file size limit (`ulimit -f`)"),
}
"""A write the file system refused for want of room: what it was, what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="gan-harness: hyperparameter search and diagnostics for speech GANs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"harness.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from harness import interrupts

    interrupts.start()
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        args = build_parser().parse_args(argv)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command, with its user-facing errors as one line and exit status 2."""
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # every user-facing error class subclasses ValueError
        if type(err) is ValueError:
            raise
        for line in getattr(err, "details", ()):  # one line per culprit, where there are several
            print(line, file=sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in NO_ROOM:
            raise
        what, remedy = NO_ROOM[err.errno]
        where = err.filename or "results"
        print(
            f"error: {what} writing {where}; {remedy} and run the same command again",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (harness/interrupts.py)
        from harness import interrupts

        print("interrupted", file=sys.stderr)
        return interrupts.exit_status()


def _show_warning(
    show: Callable[..., None],
    message: Warning | str,
    category: type[Warning],
    *where: Any,
    **kw: Any,
) -> None:
    """The harness's own warnings as one ``warning: ...`` line; others go on to ``show``."""
    from harness.console import HarnessWarning, print_warning

    if issubclass(category, HarnessWarning):
        print_warning(str(message))
    else:
        show(message, category, *where, **kw)


if __name__ == "__main__":
    sys.exit(main())
