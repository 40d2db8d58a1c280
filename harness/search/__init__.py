"""Hyperparameter search on Ray Tune with Optuna: the only package that imports ray and optuna.

One search is a Ray Tune experiment whose trials are :func:`harness.runs.trial.run_trial`, the same
code path as ``run.py train`` and ``run.py rerun``.  Optuna's TPE (multivariate, grouped,
constant liar for parallel trials, seeded) proposes configurations; ASHA cuts weak trials at
validation rounds after the discriminator has switched on.

- ``trainable``      the Ray trainable: one trial, its reports and checkpoints
- ``optuna_bridge``  the space as Optuna distributions, the study, how each ending reaches it
- ``trials_table``   ``trials.parquet`` and the progress lines, as a Tune callback
- ``checkpoints``    one copy of each checkpoint on disk (Ray's is a hard link), a Tune callback
- ``driver``         Ray up, resources, scheduler and stopper, the Tuner: :func:`run_search`
- ``confirm``        the confirmation stage: the best configurations and the paper default
- ``figures``        Optuna's own plots of the study, for the report
- ``snapshot``       the last whole copy of Ray's experiment snapshot, to mend a cut-short one
- ``chatter``        Ray's and Optuna's output into the search's log, off the console
- ``flow``           ``run.py search`` and ``run.py confirm`` from start to end
- ``environment``    the environment variables Ray reads, set only while it reads them
"""

from harness.scoped import scoped_environ
from harness.search.environment import RAY_IMPORT_DEFAULTS

with scoped_environ(defaults=RAY_IMPORT_DEFAULTS):
    import ray  # noqa: F401  (Ray reads RAY_ENABLE_UV_RUN_RUNTIME_ENV once, on this import)

# The entry points, and names an experiment's tuner.pkl may hold as harness.search.X: a search
# restores from that file through them.
from harness.search.driver import (  # noqa: E402
    HealthStopper,
    SearchError,
    SearchOutcome,
    run_search,
    trial_dirname,
)
from harness.search.optuna_bridge import StatusAwareOptunaSearch  # noqa: E402
from harness.search.trainable import STATUS, TrialSetup, train_trial  # noqa: E402
from harness.search.trials_table import TrialsTable  # noqa: E402

__all__ = [
    "STATUS",
    "HealthStopper",
    "SearchError",
    "SearchOutcome",
    "StatusAwareOptunaSearch",
    "TrialSetup",
    "TrialsTable",
    "run_search",
    "trial_dirname",
    "train_trial",
]
