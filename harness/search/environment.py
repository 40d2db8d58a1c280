"""Environment variables Ray reads, set only while Ray reads them and restored afterwards.

Ray takes ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` once, when ``ray`` is first imported
(``ray._private.ray_constants``), and only the driver's ``ray.init`` uses it; Tune reads its
``TUNE_*`` variables while a ``Tuner`` runs (the controller and its experiment state).  A value
the user exported wins wherever this module only gives a default.
"""

from __future__ import annotations

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
