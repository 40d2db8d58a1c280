"""Ray's and Optuna's output while a search runs: in the search's log file, off the console.

A search's Ray prints an experiment box and where its results are, and logs a warning about
token authentication (with a way to switch it off) and, when interrupted, how to restore the
Tuner from Python; Optuna logs a warning for each plot it cannot draw yet.  None of it is what a
user of ``run.py`` acts on, and some is wrong advice here: an interrupted search continues when
the same command runs again.  Inside :func:`chatter_to_log` every print, Python warning and log
record of other libraries goes to ``results/<name>/search.log``; the harness's own lines
(:mod:`harness.console`) and its errors stay on the console, and ``verbose`` shows the rest
there too.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO

from harness.console import kept_console

_active: list[Path] = []  # the log of the block in force (blocks nest: the outer one wins)


class LogSink(io.TextIOBase):
    """Text written here goes to ``log``, and also to ``console`` when ``verbose``; once the
    log is closed, to the console alone (a handler made inside the block may outlive it)."""

    def __init__(self, log: TextIO, console: TextIO, verbose: bool) -> None:
        self.log, self.console, self.verbose = log, console, verbose

    def write(self, text: str) -> int:
        if not self.log.closed:
            self.log.write(text)
        if self.verbose or self.log.closed:
            self.console.write(text)
        return len(text)

    def flush(self) -> None:
        if not self.log.closed:
            self.log.flush()
        self.console.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """The console's: a fatal-error traceback written by file descriptor is for the user."""
        return self.console.fileno()

    @property
    def encoding(self) -> str:
        return "utf-8"


@contextmanager
def chatter_to_log(path: Path, verbose: bool = False) -> Iterator[None]:
    """Other libraries' prints, warnings and log records go to ``path`` (appended) for the
    block, and also to the console when ``verbose``; the harness's lines stay on the console."""
    if _active:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log, kept_console():
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        out = LogSink(log, sys.stdout, verbose)
        err = LogSink(log, sys.stderr, verbose)
        _active.append(path)
        try:
            with redirect_stdout(out), redirect_stderr(err), handlers_to(err):
                yield
        finally:
            _active.pop()
            log.flush()


@contextmanager
def handlers_to(stream: TextIO) -> Iterator[None]:
    """Every library's logging handler that writes to a stream (Ray's, Optuna's, torch's: bound
    to standard error when their library was first imported) writes to ``stream`` for the block.

    Handlers that write to files keep their files.  The root logger's handlers belong to the
    program running the harness (a test runner's capture, say), wherever else they are attached,
    and stay as they are; records that reach the root with no handler there go to
    ``sys.stderr``, which the block redirects.
    """
    programs = set(logging.root.handlers)
    handlers = {
        handler
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and "stream" in vars(handler)  # settable, not a property that follows sys.stderr
        and handler not in programs
    }
    before = {handler: handler.setStream(stream) for handler in handlers}
    try:
        yield
    finally:
        for handler, old in before.items():
            if old is not None:  # None: it wrote to ``stream`` already
                handler.setStream(old)
