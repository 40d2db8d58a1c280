"""A search as launched (:class:`SearchPlan`) and the share of the cluster its trials got
(:class:`Resources`), both kept in ``results/<name>/config.yaml``."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from harness.files import atomic_write
from harness.results.folder import ResultsError, SearchFolder


@dataclass(frozen=True)
class SearchPlan:
    """A search as launched: everything needed to resume it or to read its results.

    Its resource fields are what was asked for (``--cpus-per-trial`` ...); what the search got
    on its cluster is a :class:`Resources`, saved beside the plan.
    """

    name: str
    recipe: str
    budget: str
    space_file: str
    space: dict[str, Any]  # the YAML document, kept verbatim so resume never re-reads the file
    swept: list[str]
    objective: str
    mode: str
    trials: int
    seed: int = 0
    data: str | None = None
    multi_objective: bool = False
    cost: str = "params_g"
    cost_mode: str = "min"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 where the cluster has GPUs, else 0
    max_concurrent: int = 0  # 0 = whatever the cluster's resources allow
    scheduler: str = "asha"
    stop_unhealthy: bool = True  # end flagged trials early (overpowering, collapse)
    grace_period: int = 0  # ASHA: first training step at which a trial may be cut
    max_t: int = 0  # ASHA: batches of a full trial
    storage: str | None = None  # Ray storage URI (default: this folder)
    track: str | None = None  # mlflow | wandb: every trial tracked there (harness/tracking)
    track_uri: str | None = None  # the tracking server (default: the local store, W&B's cloud)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    @property
    def metrics(self) -> list[str]:
        """What Optuna optimises: the objective, and the cost for multi-objective searches."""
        return [self.objective, self.cost] if self.multi_objective else [self.objective]

    @property
    def modes(self) -> list[str]:
        return [self.mode, self.cost_mode] if self.multi_objective else [self.mode]

    def save(self, folder: SearchFolder, resources: Resources | None = None) -> None:
        """Write ``config.yaml``: the plan, and the resources it got as ``resources:``."""
        doc = dataclasses.asdict(self)
        if resources is not None:
            doc["resources"] = dataclasses.asdict(resources)
        atomic_write(folder.config, yaml.safe_dump(doc, sort_keys=False))

    @classmethod
    def load(cls, folder: SearchFolder) -> SearchPlan:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in _search_config(folder).items() if k in known})


@dataclass(frozen=True)
class Resources:
    """What each trial of a search got, fitted to the cluster when the search started."""

    cpus_per_trial: float
    gpus_per_trial: float
    trials_at_once: int
    address: str | None = None  # the Ray cluster (None: a local Ray started by the search)

    @classmethod
    def load(cls, folder: SearchFolder) -> Resources:
        doc = _search_config(folder)
        if "resources" in doc:
            return cls(**doc["resources"])
        if "address" in doc:  # a config.yaml without the section keeps the fit in the plan
            return cls(
                cpus_per_trial=doc["cpus_per_trial"],
                gpus_per_trial=doc["gpus_per_trial"],
                trials_at_once=doc["max_concurrent"],
                address=doc["address"],
            )
        raise ResultsError(f"{folder.config}: no resources section (the search never started)")


def _search_config(folder: SearchFolder) -> dict[str, Any]:
    if not folder.config.is_file():
        raise ResultsError(f"{folder.path}: not a search folder (no config.yaml)")
    return yaml.safe_load(folder.config.read_text())
