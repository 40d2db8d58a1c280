"""Named points where a test kills the process on purpose (``GAN_HARNESS_FAULT=<point>``).

Only for the points no outside timing can hit reliably (tests/test_faults.py, listed in
docs/reliability.md): the process SIGKILLs itself there, exactly as a power cut or the OOM
killer would end it.  Unset (always, outside those tests), a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "GAN_HARNESS_FAULT"
POINTS = ("search_prepared", "before_trials_write", "before_optuna_tell")


def fault_point(name: str) -> None:
    """SIGKILL this process if ``$GAN_HARNESS_FAULT`` names this point."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
