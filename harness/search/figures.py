"""Optuna's own plots of a search's study, for the HTML report (search code: imports Optuna).

Read-only: the study is read from its file in ``results/<name>/`` (harness/search/study_storage.py);
one that cannot be read is a warning and a note in place of the plots.  Every plot that cannot be
drawn yet (too few completed trials, no intermediate values) is replaced by the reason, so a
report of a young or failed search still renders.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.io as pio
from optuna import visualization as vis
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from harness.console import print_warning
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.search.optuna_bridge import IMPORTANCE_MINIMUM
from harness.search.study_storage import StudyUnreadable, load_study


def study_trials(study: optuna.Study) -> dict[int, str]:
    """Optuna trial number -> the Ray trial id it ran as (the leaderboard's ids)."""
    return {
        t.number: str(t.user_attrs["trial_id"])
        for t in study.get_trials(deepcopy=False)
        if "trial_id" in t.user_attrs
    }


@contextmanager
def white_template() -> Iterator[None]:
    """Optuna's figures on the report's white background (plotly's default template, set for
    the figures made inside the block; cheaper than restyling each figure afterwards)."""
    before = pio.templates.default
    pio.templates.default = "plotly_white"
    try:
        yield
    finally:
        pio.templates.default = before


def objective_value(trial: FrozenTrial) -> float:
    """A multi-objective trial's first value: the objective (the second is the cost)."""
    return trial.values[0]


def importances_figure(study: optuna.Study, complete: int, named: dict[str, Any]) -> go.Figure:
    """PED-ANOVA importances, once as many trials completed as importances.json needs."""
    if complete < IMPORTANCE_MINIMUM:
        raise ValueError(f"needs {IMPORTANCE_MINIMUM}+ completed trials, {complete} so far")
    return vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), **named)


def study_figures(
    folder: SearchFolder, plan: SearchPlan
) -> tuple[dict[str, go.Figure | str], dict[int, str]]:
    """(title -> figure, or why it is missing; Optuna trial number -> trial id)."""
    try:
        study = load_study(folder, plan.name)
    except StudyUnreadable as err:
        print_warning(f"{err.path}: {err.problem}; the report leaves out its plots; {err.advice}")
        return {"the study": f"not drawn: {err.problem}; {err.advice}"}, {}
    if study is None:
        return {}, {}
    target: Callable[[FrozenTrial], float] | None = None
    if plan.multi_objective:  # the objective; the cost is the second value
        target = objective_value
    named = {"target": target, "target_name": plan.objective}
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    plots: dict[str, Callable[[], go.Figure]] = {
        "optimisation history": lambda: vis.plot_optimization_history(study, **named),
        "parameter importances (PED-ANOVA)": lambda: importances_figure(study, complete, named),
        "parallel coordinates": lambda: vis.plot_parallel_coordinate(study, **named),
        "slices": lambda: vis.plot_slice(study, **named),
        "intermediate values (validations)": lambda: vis.plot_intermediate_values(study),
    }
    if plan.multi_objective:
        plots["Pareto front"] = lambda: vis.plot_pareto_front(
            study, target_names=[plan.objective, plan.cost]
        )
    figures: dict[str, go.Figure | str] = {}
    for title, draw in plots.items():
        with warnings.catch_warnings(), white_template():
            warnings.simplefilter("ignore")  # experimental-API and "no trials" warnings
            try:
                fig = draw()
            except (ValueError, RuntimeError) as err:
                figures[title] = f"not drawn: {str(err).splitlines()[0]}"
                continue
        figures[title] = (
            fig if fig.data else f"not drawn: nothing to plot yet ({complete} completed trials)"
        )
    return figures, study_trials(study)
