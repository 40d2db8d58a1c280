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
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import TextIO

from harness.console import kept_console

_active: list[Path] = []  # the log of the block in force (blocks nest: the outer one wins)


class LogFile:
    """The log, appended to unbuffered: opened at the first text (a block that says nothing
    leaves no file) with a line marking the block's start, and given up at the first error
    writing it (a full disk), cut back to what it held before so nothing is left half-written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.usable = True
        self.created = False
        self.size = 0  # before this block

    def write(self, text: str) -> bool:
        """Append ``text``; False where the log is closed or cannot be written."""
        if not self.usable:
            return False
        try:
            if self.fd is None:
                self.created = not self.path.exists()
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self.size = os.fstat(self.fd).st_size
                text = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{text}"
            data = text.encode()
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            self.give_up()
            return False
        return True

    def give_up(self) -> None:
        self.usable = False
        if self.fd is None:
            return
        with suppress(OSError):
            os.ftruncate(self.fd, self.size)
        os.close(self.fd)
        self.fd = None
        if self.created:
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self.usable = False
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LogSink(io.TextIOBase):
    """Text written here goes to the log, and also to ``console`` when ``verbose``; to the
    console alone where the log cannot take it, or once the block has closed it (a handler
    made inside the block may outlive it)."""

    def __init__(self, log: LogFile, console: TextIO, verbose: bool) -> None:
        self.log, self.console, self.verbose = log, console, verbose

    def write(self, text: str) -> int:
        if not self.log.write(text) or self.verbose:
            self.console.write(text)
        return len(text)

    def flush(self) -> None:
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
    log = LogFile(path)
    out = LogSink(log, sys.stdout, verbose)
    err = LogSink(log, sys.stderr, verbose)
    _active.append(path)
    try:
        with kept_console(), redirect_stdout(out), redirect_stderr(err), handlers_to(err):
            yield
    finally:
        _active.pop()
        log.close()


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
