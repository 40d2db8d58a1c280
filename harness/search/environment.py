"""Environment variables Ray reads, set only while Ray reads them and restored afterwards.

Ray takes ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` once, when ``ray`` is first imported
(``ray._private.ray_constants``), and only the driver's ``ray.init`` uses it; Tune reads its
``TUNE_*`` variables while a ``Tuner`` runs (the controller and its experiment state).  A value
the user exported wins wherever this module only gives a default.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# Under `uv run`, Ray would otherwise ship the working tree to every worker and start each one
# through `uv run` (slow, and it moves relative paths); RAY_ENABLE_UV_RUN_RUNTIME_ENV=1 has it back.
RAY_IMPORT_DEFAULTS = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
TUNE_FORCED = {
    # Our rows are heterogeneous by design: a stopped trial's last row has no score.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Ray's CSV and TensorBoard loggers would copy the validation rows our TensorBoard files
    # (harness/diagnostics/tensorboard.py) already hold, and its banner would point TensorBoard at a
    # temporary copy in Ray's session folder; the tuners add back the JSON logger alone (Ray's
    # ResultGrid reads its result.json).
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
TUNE_DEFAULTS = {
    # Snapshot the experiment often, so a crash loses (almost) no trial bookkeeping; the
    # snapshots Tune forces after every second trial checkpoint are wanted, not a warning.
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


@contextmanager
def scoped_environ(
    forced: Mapping[str, str] | None = None, defaults: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Set ``forced`` and, where the variable is unset, ``defaults`` for the block only."""
    forced, defaults = dict(forced or {}), dict(defaults or {})
    saved = {name: os.environ.get(name) for name in {**defaults, **forced}}
    os.environ.update({k: v for k, v in defaults.items() if k not in os.environ})
    os.environ.update(forced)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
