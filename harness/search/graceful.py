"""A Tune run stopped by Ctrl-C ends the command as interrupted (harness/interrupts.py).

Ray Tune installs its own SIGINT handler as a run starts: it saves the experiment one last time,
stops the trials and returns.  :class:`GracefulStop`, one of the run's callbacks, hands a first
SIGINT on to that handler and has SIGTERM stop at once; the driver routes both back when the run
returns, and ends the command as interrupted where a signal stopped it.
"""

from __future__ import annotations

import signal

from ray import tune

from harness import interrupts


class GracefulStop(tune.Callback):
    """Routes a first SIGINT to the handler Tune installed for this run."""

    def setup(self, **info) -> None:
        interrupts.route(signal.getsignal(signal.SIGINT))
