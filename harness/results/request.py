"""From what the user asked of a search to its plan: every option and the space checked before
anything starts, and on resume the options given again checked against the launched search."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.console import print_line
from harness.files import results_root, unwritable_reason
from harness.recipes import recipe_class
from harness.results.confirmation import AUTO, ConfirmRequest, search_confirmation_finished
from harness.results.folder import SearchFolder
from harness.results.plan import Resources, SearchPlan
from harness.results.population import PopulationSettings, population_settings
from harness.results.sequential import DEFAULT_MAX_SEEDS
from harness.results.space import (
    SearchSpace,
    default_space_file,
    loss_weights_swept,
    metric_mode,
    parse_space,
    read_space_file,
)
from harness.runs.resolve import check_data, default_budget, resolve_config
from harness.scoring.registry import SCORES
from harness.tracking import TrackingTarget
from harness.training.config import TrialConfig
from harness.training.setup import pick_device

DEFAULT_TRIALS = {"smoke": 8, "small": 32, "paper": 64}
POPULATION_SCHEDULERS = ("pbt", "pbt2")  # population-based training (harness/search/pbt.py)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# options that define a search; given again on resume they must match what was launched
# (for the resources: what the search got on its cluster, see launched_options)
IDENTITY = (
    "budget",
    "objective",
    "multi_objective",
    "trials",
    "cpus_per_trial",
    "gpus_per_trial",
    "max_concurrent",
    "scheduler",
    "seed",
    "data",
    "storage",
    "track",
    "track_uri",
)


class PlanError(ValueError):
    """A search option is invalid; one line naming it."""


@dataclass(frozen=True)
class SearchRequest:
    """The options of ``run.py search`` as given; None where an option was left out."""

    recipe: str
    name: str | None = None
    space: Path | None = None
    trials: int | None = None
    budget: str | None = None
    data: str | None = None
    objective: str | None = None
    multi_objective: bool | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    scheduler: str | None = None
    stop_unhealthy: bool = True
    address: str | None = None
    storage: str | None = None
    seed: int | None = None
    allow_trained_objective: bool = False
    confirm: int = 0
    confirm_seeds: int | str = AUTO
    confirm_max_seeds: int = DEFAULT_MAX_SEEDS
    confirm_margin: float | None = None
    track: str | None = None
    track_uri: str | None = None

    def confirmation(self) -> ConfirmRequest:
        """What ``--confirm`` and its options ask of the confirmation."""
        return ConfirmRequest(
            top=self.confirm,
            seeds=self.confirm_seeds,
            max_seeds=self.confirm_max_seeds,
            margin=self.confirm_margin,
        )


CONFIRM_FLAGS = {
    "top": "--confirm",
    "seeds": "--confirm-seeds",
    "max_seeds": "--confirm-max-seeds",
    "margin": "--confirm-margin",
    "batches": "--batches",
}


@dataclass(frozen=True)
class PlannedSearch:
    """A search ready to run (or to continue) in its folder, on the Ray cluster at ``address``
    (None: a local Ray)."""

    folder: SearchFolder
    plan: SearchPlan
    space: SearchSpace | None  # None: finished (and confirmed, if asked), nothing left to run
    address: str | None


def plan_search(request: SearchRequest, results: str | Path | None) -> PlannedSearch:
    """The request's search under the results root ``results``: its launched plan if it has
    one (the options given again must match it), else a new plan, checked but not yet saved."""
    if request.confirm < 0:
        raise PlanError(f"--confirm {request.confirm}: need K >= 0 (0: no confirmation)")
    if request.confirm:
        request.confirmation().check(CONFIRM_FLAGS)
    budget = request.budget or default_budget()
    name = request.name or f"{request.recipe}-{budget}"
    if not NAME.fullmatch(name):
        raise PlanError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    folder = SearchFolder(results_root(results) / name)
    problem = unwritable_reason(folder.path)
    if problem:
        raise PlanError(f"--results {folder.path.parent}: {problem}")
    if not folder.config.is_file():
        plan, space = make_plan(request, name, budget)
        address = request.address or os.environ.get("RAY_ADDRESS") or None
        return PlannedSearch(folder, plan, space, address)
    plan, resources = SearchPlan.load(folder), Resources.load(folder)
    check_same_search(plan, resources, request)
    done = folder.finished() and (not request.confirm or search_confirmation_finished(folder))
    space = None if done else parse_space(plan.space, plan.recipe, plan.space_file)
    return PlannedSearch(folder, plan, space, request.address or resources.address)


def check_same_search(plan: SearchPlan, resources: Resources, request: SearchRequest) -> None:
    """On resume, options given again must match the launched search."""
    if request.recipe != plan.recipe:
        raise PlanError(
            f"search {plan.name!r} searches {plan.recipe!r}, not {request.recipe!r}; "
            "use another --name"
        )
    launched = launched_options(plan, resources)
    given = {option: getattr(request, option) for option in IDENTITY}
    if given["data"] is not None:
        given["data"] = str(Path(given["data"]).resolve())
    if request.space is not None:
        given["space_file"] = str(Path(request.space).resolve())
    for option, value in given.items():
        if value is not None and value != launched[option]:
            flag = "--" + option.replace("_file", "").replace("_", "-")
            raise PlanError(
                f"search {plan.name!r} was launched with {flag} {launched[option]!r}, not "
                f"{value!r}; run it without {flag} to continue it, or pick another --name"
            )


def launched_options(plan: SearchPlan, resources: Resources) -> dict[str, object]:
    """The options a search was launched with; its resources as fitted to the cluster."""
    launched = {option: getattr(plan, option) for option in (*IDENTITY, "space_file")}
    launched["cpus_per_trial"] = resources.cpus_per_trial
    launched["gpus_per_trial"] = resources.gpus_per_trial
    launched["max_concurrent"] = resources.trials_at_once
    return launched


def make_plan(request: SearchRequest, name: str, budget: str) -> tuple[SearchPlan, SearchSpace]:
    """Validate every option and the space before anything starts; the space file is read and
    parsed once here, and the plan keeps its document verbatim."""
    recipe = request.recipe
    if budget not in recipe_class(recipe).budgets:
        raise PlanError(f"--budget {budget!r}: recipe {recipe!r} has no such budget")
    space_file = Path(request.space or default_space_file(recipe)).resolve()
    document = read_space_file(space_file)
    space = parse_space(document, recipe, str(space_file))
    objective = pick_objective(request, space, space_file)
    trials = request.trials if request.trials is not None else DEFAULT_TRIALS[budget]
    check_counts(request, trials)
    check_tracking(request)
    if request.storage and "://" not in request.storage:  # a folder on this machine
        problem = unwritable_reason(Path(request.storage).expanduser())
        if problem:
            raise PlanError(f"--storage {request.storage}: {problem}")
    data = data_folder(request.data)
    for point in [{}, *space.points]:  # fixed values and known-good points must be valid configs
        resolve_config(recipe, budget, sample={**space.fixed, **point}, data=data)
    base = resolve_config(recipe, budget, sample=space.fixed, data=data)
    check_reported(objective, base)
    check_device(base, request)
    check_data(base)
    multi = bool(request.multi_objective)
    scheduler, grace, max_t = pick_scheduler(request.scheduler, multi, space, recipe, budget)
    settings = population_settings(space, budget)  # a bad pbt: section is refused whatever runs
    if scheduler in POPULATION_SCHEDULERS:
        check_population(request, space, base, settings, scheduler, grace, max_t)
    plan = SearchPlan(
        name=name,
        recipe=recipe,
        budget=budget,
        space_file=str(space_file),
        space=document,
        swept=space.swept,
        objective=objective,
        mode=metric_mode(objective),
        trials=trials,
        seed=request.seed if request.seed is not None else 0,
        data=data,
        multi_objective=multi,
        cost=space.cost,
        cost_mode=metric_mode(space.cost),
        cpus_per_trial=request.cpus_per_trial if request.cpus_per_trial is not None else 1.0,
        gpus_per_trial=request.gpus_per_trial,
        max_concurrent=request.max_concurrent or 0,
        scheduler=scheduler,
        stop_unhealthy=request.stop_unhealthy,
        grace_period=grace,
        max_t=max_t,
        storage=request.storage,
        track=request.track,
        track_uri=request.track_uri,
    )
    return plan, space


def pick_objective(request: SearchRequest, space: SearchSpace, space_file: Path) -> str:
    """``--objective`` or the space's; refused when the space sweeps a weight of that very
    loss term (the search would reward weakening the GAN) unless the user insists."""
    objective = request.objective or space.objective
    if objective not in SCORES:
        raise PlanError(f"--objective {objective!r}: not one of {', '.join(SCORES)}")
    gaming = loss_weights_swept(request.recipe, objective, space.swept)
    if gaming and not request.allow_trained_objective:
        raise PlanError(
            f"{space_file}: objective {objective} is a loss term {request.recipe} trains on and "
            f"the space sweeps {', '.join(gaming)}, which weigh it, so the search would reward "
            "weakening the GAN; optimise a metric no loss term optimises, or pass "
            "--allow-trained-objective"
        )
    return objective


def check_reported(objective: str, cfg: TrialConfig) -> None:
    """The objective must be a metric the trials' validation reports."""
    reported = recipe_class(cfg.recipe).reports(cfg.model)
    if objective not in reported:
        hint = ""
        if hasattr(cfg.model, "eval_metrics"):
            hint = "; add it to eval_metrics (a fixed value in the space)"
        raise PlanError(
            f"objective {objective}: {cfg.recipe}'s validation reports only "
            f"{', '.join(reported)}{hint}"
        )


def check_device(cfg: TrialConfig, request: SearchRequest) -> None:
    """The trials' device must exist where they run: a CUDA device needs GPUs per trial, and a
    local search's trials run on this machine."""
    device = cfg.trainer.device
    if device.startswith("cuda") and request.gpus_per_trial == 0:
        raise PlanError(f"device: {device!r} but --gpus-per-trial 0 gives the trials no GPU")
    if not (request.address or os.environ.get("RAY_ADDRESS")):
        pick_device(device)


def check_counts(request: SearchRequest, trials: int) -> None:
    """Trials, CPUs, GPUs and concurrency that a search can run with."""
    if trials < 1:
        raise PlanError(f"--trials {trials}: must be >= 1")
    if request.cpus_per_trial is not None and request.cpus_per_trial <= 0:
        raise PlanError(f"--cpus-per-trial {request.cpus_per_trial:g}: must be > 0")
    gpus = request.gpus_per_trial
    if gpus is not None and (gpus < 0 or (gpus > 1 and not float(gpus).is_integer())):
        raise PlanError(f"--gpus-per-trial {gpus:g}: use a fraction <= 1 or a whole number")
    if request.max_concurrent is not None and request.max_concurrent < 1:
        raise PlanError(f"--max-concurrent {request.max_concurrent}: must be >= 1")


def check_tracking(request: SearchRequest) -> None:
    """``--track``: a tracker that is installed; ``--track-uri`` only with it."""
    if request.track is not None:
        TrackingTarget(request.track, request.track_uri).check()
    elif request.track_uri is not None:
        raise PlanError(f"--track-uri {request.track_uri}: needs --track mlflow or wandb")


def data_folder(given: str | None) -> str | None:
    """``--data`` as an absolute folder that exists (None: the recipe's built-in data)."""
    if not given:
        return None
    if not Path(given).is_dir():
        raise PlanError(f"--data {given}: no such folder")
    return str(Path(given).resolve())


def check_population(
    request: SearchRequest,
    space: SearchSpace,
    base: TrialConfig,
    settings: PopulationSettings,
    scheduler: str,
    grace: int,
    max_t: int,
) -> None:
    """What population-based training needs of a search: one objective, keys to perturb, a
    checkpoint at every validation (a trial is copied from one), a validation between the
    discriminator's start and the budget, and its whole population live at once."""
    flag = f"--scheduler {scheduler}"
    if request.multi_objective:
        raise PlanError(f"{flag}: population-based training ranks trials on one objective")
    if request.max_concurrent is not None:
        raise PlanError(
            f"--max-concurrent: {flag} trains its population side by side as far as "
            "--cpus-per-trial and --gpus-per-trial allow, pausing trials in turn"
        )
    if not settings.mutable:
        raise PlanError(
            f"{flag}: {space.source} sweeps no key that may change while a trial trains; sweep "
            "a learning rate, beta, label smoothing or loss weight (or list one in pbt.mutable)"
        )
    if scheduler == "pbt2" and all(space.params[k].kind == "choice" for k in settings.mutable):
        raise PlanError(f"{flag}: PB2 models numeric keys; pbt.mutable holds only choices")
    for key in ("eval_every", "checkpoint_every"):
        if key in space.params:
            raise PlanError(f"{flag}: {space.source}: {key} cannot be swept under PBT")
    every = base.trainer.checkpoint_every
    if every not in (0, base.trainer.eval_every):
        raise PlanError(
            f"{flag}: checkpoint_every {every} must be 0 (a checkpoint at every validation): a "
            "trial is copied from the checkpoint of the validation that ranked it"
        )
    if grace >= max_t:
        raise PlanError(
            f"{flag}: no validation falls between the discriminator's start and the budget of "
            f"{max_t} batches, so no trial could ever be compared and copied"
        )


def pick_scheduler(
    asked: str | None, multi: bool, space: SearchSpace, recipe: str, budget: str
) -> tuple[str, int, int]:
    """(scheduler, grace, max_t): ASHA for single-objective searches unless no validation falls
    between the discriminator's start and the budget."""
    grace, max_t = asha_window(space, recipe, budget)
    scheduler = asked or ("none" if multi else "asha")
    if scheduler == "asha" and grace >= max_t:
        print_line(
            f"note: ASHA off: no validation between the discriminator start and {max_t} batches"
        )
        scheduler = "none"
    return scheduler, grace, max_t


def asha_window(space: SearchSpace, recipe: str, budget: str) -> tuple[int, int]:
    """(grace period, max_t) in batches drawn: ASHA may cut a trial only at a validation after
    the discriminator has started, whatever disc_start_step and g_steps the sampler picks
    (before D starts, an iteration draws g_steps batches)."""
    trainer = resolve_config(recipe, budget, sample=space.fixed).trainer

    def upper(key: str) -> int:
        param = space.params.get(key)
        if param is None:
            return int(getattr(trainer, key))
        return int(max(param.choices) if param.kind == "choice" else param.high)

    every = upper("eval_every")
    d_starts = upper("disc_start_step") * upper("g_steps")
    grace = (d_starts // every + 1) * every
    return grace, upper("batches")
