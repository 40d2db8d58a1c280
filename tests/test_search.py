"""One real search on a local Ray, inspected by several tests (about a minute on 2 cores).

The recipe is the toy ring with failure injection (``FlakyRecipe`` in tests/flaky_recipe.py,
imported by the Ray workers through PYTHONPATH).  Its space starts with four known points, one per way a
trial can end: completes; raises once and resumes from its checkpoint; keeps raising; diverges.
"""

from __future__ import annotations

import csv
import io
import json
import math

import optuna
import pandas as pd
import pytest
import yaml
from conftest import TINY_RING, flaky_recipe, run_cli

from harness.diagnostics.telemetry import read_diagnostics
from harness.recipes import RECIPES
from harness.results.folder import SearchFolder
from harness.results.trials import read_trials
from harness.search.study_storage import load_study

TINY = {**TINY_RING, "max_consecutive_nonfinite": 3, "fail_at_step": 200}
NORMAL = {"lr_g": 1e-3, "fail_times": 0, "loss_upper_limit": 1e6}
FLAKY = {**NORMAL, "fail_times": 1}  # raises once at step 200, then succeeds
BROKEN = {**NORMAL, "fail_times": 9}  # raises at step 200 every time
DIVERGING = {**NORMAL, "loss_upper_limit": 1e-9}  # every loss "explodes": the trial stops itself


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    space = {
        "objective": "reverse_kl",
        "space": {
            "lr_g": {"loguniform": [3e-4, 3e-3]},
            "fail_times": {"choice": [0, 1, 9]},
            "loss_upper_limit": {"choice": [1e6, 1e-9]},
            **TINY,
        },
        "points_to_evaluate": [NORMAL, FLAKY, BROKEN, DIVERGING],
    }
    (root / "flaky.yaml").write_text(yaml.safe_dump(space))
    with flaky_recipe():
        code, out = run_cli(
            "search", "flaky", "--space", str(root / "flaky.yaml"), "--trials", "5",
            "--name", "e2e", "--results", str(root), "--scheduler", "none", "--seed", "3",
            "--max-concurrent", "2",
        )  # fmt: skip
        yield SearchFolder(root / "e2e"), code, out


def row_for(trials: pd.DataFrame, point: dict) -> pd.Series:
    match = trials
    for key, value in point.items():
        match = match[match[f"config/{key}"] == value]
    assert len(match) >= 1, point
    return match.iloc[0]


def test_search_runs_every_trial_and_prints_the_leaderboard(search):
    folder, code, out = search
    assert code == 0, out
    trials = read_trials(folder)
    assert len(trials) == 5 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "stopped", "errored"}
    for path in (folder.config, folder.optuna_journal, folder.tune, folder.summary):
        assert path.exists(), path
    for trial_id in trials["trial_id"]:
        assert (folder.trial_dir(trial_id) / "config.yaml").is_file()
    diagnostics = read_diagnostics(folder.diagnostics)
    assert set(diagnostics["trial_id"]) == set(trials["trial_id"])
    assert (diagnostics["search"] == "e2e").all()
    assert "search e2e: flaky (smoke), objective reverse_kl (min), 5/5 trials" in out
    assert all(trial_id in out for trial_id in trials["trial_id"])
    # TensorBoard: our step and eval rows in each trial's tune folder, named on the console;
    # Ray's CSV and TensorBoard loggers (a second copy of the eval rows, a banner naming a
    # temporary folder) off; its JSON logger kept for its ResultGrid, which then warns of nothing
    assert f"tensorboard --logdir {folder.tune}" in out and "To visualize" not in out
    assert "Failed to fetch metrics" not in out
    for trial_id in trials["trial_id"]:
        written = {p.name.split(".")[0] for p in (folder.tune / trial_id).iterdir()}
        assert {"events", "result"} <= written and "progress" not in written, written


def test_points_to_evaluate_run_first_and_end_as_designed(search):
    folder, _, _ = search
    trials = read_trials(folder)
    assert row_for(trials, NORMAL)["status"] == "completed"
    assert row_for(trials, FLAKY)["status"] == "completed"
    assert row_for(trials, BROKEN)["status"] == "errored"
    assert row_for(trials, DIVERGING)["status"] == "stopped"
    plan = yaml.safe_load(folder.config.read_text())
    assert plan["trials"] == 5 and plan["seed"] == 3 and plan["max_concurrent"] == 2


def test_failed_trial_resumes_from_its_last_checkpoint(search):
    folder, _, _ = search
    flaky = row_for(read_trials(folder), FLAKY)
    assert flaky["retries"] == 1 and flaky["step"] == 300
    rows = read_diagnostics(folder.diagnostics, trial_id=flaky["trial_id"])
    evals = rows[rows["kind"] == "eval"]["step"].tolist()
    assert evals == [0, 100, 200, 300]  # step 0 once: the retry did not start over
    steps = rows[rows["kind"] == "step"]["step"].tolist()
    # the first attempt logged up to 200 and raised; the retry restarted at the step-100
    # checkpoint, dropping the rows logged past it first, so no step is on record twice
    assert steps == [50, 100, 150, 200, 250, 300]


def test_trial_that_keeps_failing_is_errored_with_its_reason(search):
    folder, _, _ = search
    broken = row_for(read_trials(folder), BROKEN)
    assert broken["status"] == "errored"
    assert broken["retries"] == 3  # the first attempt and max_failures=2 retries
    assert "InjectedFailure: injected failure at step 200" in broken["reason"]
    assert "after 2 retries" in broken["reason"]


def test_optuna_is_told_how_each_trial_ended(search):
    folder, _, _ = search
    trials = read_trials(folder).set_index("trial_id")
    study = load_study(folder, "e2e")
    assert len(study.trials) == 5
    for t in study.trials:
        row = trials.loc[t.user_attrs["trial_id"]]
        assert t.user_attrs["status"] == row["status"]
        assert t.params["lr_g"] == pytest.approx(row["config/lr_g"])
        if row["status"] == "completed":
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.value == pytest.approx(row["reverse_kl"])
            assert sorted(t.intermediate_values) == [0, 100, 200, 300]
        elif row["status"] == "stopped":  # diverged: pruned at NaN, so TPE learns the region
            assert t.state == optuna.trial.TrialState.PRUNED and t.value is None
            assert math.isnan(t.intermediate_values[max(t.intermediate_values)])
        else:  # errored trials are failures, never scores
            assert t.state == optuna.trial.TrialState.FAIL and t.value is None
    stopped = trials[trials["status"] == "stopped"]
    assert stopped["reason"].str.startswith("diverged:").all()


def test_leaderboard_ranks_finished_trials_first_in_every_format(search):
    folder, _, _ = search
    root = str(folder.path.parent)
    trials = read_trials(folder)

    code, text = run_cli("leaderboard", "e2e", "--results", root, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert code == 0 and len(table) == 5
    assert [r["rank"] for r in table] == ["1", "2", "3", "4", "5"]
    statuses = [r["status"] for r in table]
    assert statuses == sorted(statuses, key=["completed", "stopped", "errored"].index)
    done = trials[trials["status"] == "completed"].sort_values("reverse_kl")
    assert table[0]["trial"] == done.iloc[0]["trial_id"]
    assert float(table[0]["reverse_kl"]) == pytest.approx(done.iloc[0]["reverse_kl"])
    assert {"lr_g", "fail_times", "loss_upper_limit", "step", "reason"} <= set(table[0])

    code, text = run_cli("leaderboard", "--results", root, "--format", "json", "--top", "2")
    doc = json.loads(text)  # no name: the most recent search
    assert doc["search"] == "e2e" and doc["objective"] == "reverse_kl"
    assert [t["trial"] for t in doc["trials"]] == [r["trial"] for r in table[:2]]

    code, text = run_cli("leaderboard", "e2e", "--results", root, "--sort", "lr_g:desc")
    assert code == 0 and text.splitlines()[0].startswith("search e2e")
    code, text = run_cli("leaderboard", "e2e", "--results", root, "--format", "markdown")
    assert text.splitlines()[2].startswith("| rank | trial | status | reverse_kl")
    code, text = run_cli("leaderboard", "--list", "--results", root)
    assert "e2e" in text and "5/5" in text and "finished" in text


def test_rerun_reproduces_the_recorded_scores(search, monkeypatch):
    folder, _, _ = search
    monkeypatch.setitem(RECIPES, "flaky", "flaky_recipe:FlakyRecipe")
    normal = row_for(read_trials(folder), NORMAL)
    code, out = run_cli("rerun", "e2e", "--results", str(folder.path.parent), "--trial",
                        normal["trial_id"])  # fmt: skip
    assert code == 0, out
    (summary,) = folder.reruns.glob(f"{normal['trial_id']}-*/summary.json")
    doc = json.loads(summary.read_text())
    (seed,) = doc["seeds"]
    assert seed["seed"] == json.loads(normal["resolved_config"])["seed"] and seed["step"] == 300
    for metric in ("reverse_kl", "modes_covered", "high_quality"):
        assert seed["scores"][metric] == normal[metric], metric
    assert "search (step 300)" in out


def test_rerun_more_seeds_for_fewer_steps(search, monkeypatch):
    folder, _, _ = search
    monkeypatch.setitem(RECIPES, "flaky", "flaky_recipe:FlakyRecipe")
    code, out = run_cli("rerun", "e2e", "--results", str(folder.path.parent), "--rank", "1",
                        "--seeds", "2", "--batches", "100")  # fmt: skip
    assert code == 0, out
    assert out.count("seed ") >= 2 and "mean ± std" in out
    assert "search (step 100)" in out and "search (step 300)" in out
    docs = [json.loads(p.read_text()) for p in folder.reruns.glob("*/summary.json")]
    (doc,) = [d for d in docs if len(d["seeds"]) == 2]
    first = doc["seeds"][0]["seed"]
    assert [s["seed"] for s in doc["seeds"]] == [first, first + 1]
    assert doc["seeds"][0]["scores"] == doc["recorded_at_same_step"]  # seed 0: the search's run
    assert doc["seeds"][1]["scores"] != doc["seeds"][0]["scores"]
