"""Population-based bandits (PB2, Parker-Holder et al. 2020): ``--scheduler pbt2``.

PB2 replaces PBT's random perturbation with a choice: a Gaussian process, fitted to how much each
configuration improved the objective per batch, picks the new values of the numeric mutable keys
inside the space's ranges (an upper confidence bound), so a small population explores with fewer
wasted copies.  Ray's ``PB2`` does the fitting (scikit-learn); everything else is the harness's
population-based training (harness/search/pbt.py): health-aware exploitation, pinned donor
checkpoints, schedules.  Choice keys, which the process does not model, are resampled with
``pbt.resample`` as under PBT.  Its own module, so that only a PB2 search loads scikit-learn.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers.pb2 import PB2

from harness.results.plan import SearchPlan
from harness.results.population import PopulationSettings, draw
from harness.results.space import SearchSpace
from harness.search.pbt import PopulationMixin


class HarnessPB2(PopulationMixin, PB2):
    """Ray's PB2 over the numeric mutable keys, with the harness's additions."""

    def __init__(
        self,
        plan: SearchPlan,
        space: SearchSpace,
        settings: PopulationSettings,
        folder: str,
        *,
        burn_in_period: float,
        **pb2: Any,
    ) -> None:
        bounds = {
            key: [space.params[key].low, space.params[key].high]
            for key in settings.mutable
            if space.params[key].kind != "choice"
        }
        super().__init__(hyperparam_bounds=bounds, **pb2)
        # Ray's PB2 takes no burn-in; its PBT base reads these two
        self._burn_in_period = burn_in_period
        self._next_perturbation_sync = max(self._perturbation_interval, burn_in_period)
        self._setup_population(plan, space, settings, folder)

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict, dict]:
        config, _ = super()._get_new_config(trial, trial_to_clone)
        done = {}
        for key, param in self._params.items():
            if param.kind == "choice":
                resampled = self._rng.random() < self._settings.resample
                config[key] = draw(param, self._rng) if resampled else trial_to_clone.config[key]
                done[key] = "resampled" if resampled else "kept"
                continue
            value = min(max(config[key], param.low), param.high)
            config[key] = int(round(value)) if param.kind == "int" else float(value)
            done[key] = "GP-UCB"
        return config, done
