"""Ctrl-C and SIGTERM (what a cluster scheduler, ``docker stop`` or ``kill`` sends) end a command
the same way: one ``interrupted`` line, Ray shut down, exit status 128 + the signal (130, 143).

:func:`route` gives both signals one handler, which remembers the first and then:

- SIGINT goes on to the graceful stop in place: Python's ``KeyboardInterrupt``, or, while a Ray
  Tune run is in progress, Tune's own handler, which saves the experiment one last time, stops
  the trials and returns (Ray starts its daemons with SIGINT blocked, so a Ctrl-C that reaches
  the whole process group leaves them up for that);
- SIGTERM raises ``KeyboardInterrupt`` at once, as a second Ctrl-C does (Tune's own convention):
  a scheduler that stops a job sends it to every process of the job, Ray's daemons included, and
  a driver waiting on them would be ended by Ray (exit status 1) or hang.  What a search keeps
  then is what it keeps when its driver is killed (docs/reliability.md).

Ray's ``ray.init`` installs SIGTERM handlers of its own (a Python one that exits at once, and
under it a C++ one that prints stack dumps and aborts the process three seconds later), so a
command that starts Ray calls :func:`route` again once Ray is up; a Tune run calls it with Tune's
handler once Tune has installed it, and without when the run returns.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

_received: list[int] = []  # the first signal that asked this process to stop
_graceful: list[Any] = [signal.default_int_handler]  # where a first SIGINT goes


def _handle(signum: int, frame: FrameType | None) -> None:
    first = not _received
    if first:
        _received.append(signum)
    if not first or signum != signal.SIGINT:
        raise KeyboardInterrupt
    _graceful[0](signal.SIGINT, frame)


def start() -> None:
    """A command starts: no signal received yet; SIGINT and SIGTERM raise
    ``KeyboardInterrupt``."""
    _received.clear()
    route()


def route(graceful: Any = signal.default_int_handler) -> None:
    """From now on SIGINT and SIGTERM go to the one handler, a first SIGINT on to ``graceful``
    (a SIGINT handler; see the module docstring).  Only the main thread can set handlers;
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    usable = callable(graceful) and graceful is not _handle
    _graceful[0] = graceful if usable else signal.default_int_handler
    for which in (signal.SIGINT, signal.SIGTERM):
        signal.signal(which, _handle)


def received() -> int | None:
    """The signal that asked this process to stop, if one did."""
    return _received[0] if _received else None


def stop_if_asked() -> None:
    """``KeyboardInterrupt`` where a signal asked this process to stop: a Tune run that Ctrl-C
    stopped returns rather than raising, and the command must still end as interrupted."""
    if _received:
        raise KeyboardInterrupt


def exit_status() -> int:
    """An interrupted command's exit status: 128 + the signal (130 where none was received)."""
    return 128 + (received() or signal.SIGINT)
