"""The scheduler of a population-based search: Ray's PBT (``--scheduler pbt``) or PB2
(``pbt2``), each with the harness's additions (harness/search/pbt.py); PB2, which needs
scikit-learn, is imported only when asked for."""

from __future__ import annotations

import warnings

from ray.tune.schedulers import PopulationBasedTraining

from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.population import population_settings
from harness.results.space import SearchSpace
from harness.search.pbt import CLOCK, HarnessPBT


def make_population_scheduler(
    plan: SearchPlan, space: SearchSpace, folder: SearchFolder
) -> PopulationBasedTraining:
    """Ray's PBT (``pbt``) or PB2 (``pbt2``) with the harness's additions, clocked in batches,
    not before the discriminator has started (``plan.grace_period``)."""
    settings = population_settings(space, plan.budget)
    # Ray warns that num_to_keep <= 2 may delete a checkpoint before it is copied; the donor's
    # checkpoint is pinned as it is copied (pin_checkpoint), so the advice does not apply
    warnings.filterwarnings("ignore", message="Using `CheckpointConfig.num_to_keep <= 2`")
    common = dict(
        time_attr=CLOCK,
        metric=plan.objective,
        mode=plan.mode,
        perturbation_interval=settings.interval,
        burn_in_period=plan.grace_period,
        quantile_fraction=settings.quantile,
        log_config=False,  # the schedules are in the trials' configs and trials.parquet
        require_attrs=False,  # the final report of a trial carries no validation
        synch=False,
    )
    if plan.scheduler == "pbt2":
        from harness.search.pb2 import HarnessPB2  # scikit-learn: loaded for PB2 alone

        return HarnessPB2(plan, space, settings, str(folder.path), **common)
    return HarnessPBT(plan, space, settings, str(folder.path), **common)
