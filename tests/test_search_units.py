"""The search's pieces without a running Ray: how trial endings reach Optuna, resources, GPUs."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.space import parse_space
from harness.results.trial_files import read_outcome
from harness.search import STATUS, SearchError, TrialSetup
from harness.search.driver import fit_to
from harness.search.optuna_bridge import make_searcher, trial_seed
from harness.search.snapshot import KEPT, heal, keep, reads
from harness.status import Status

SPACE = {
    "objective": "reverse_kl",
    "space": {"lr_g": {"loguniform": [1e-4, 1e-2]}, "d_steps": {"int": [1, 3]}},
    "points_to_evaluate": [{"lr_g": 1e-3, "d_steps": 1}],
}
State = optuna.trial.TrialState


PLAN = dict(
    name="units",
    recipe="ring",
    budget="smoke",
    space_file="units.yaml",
    space=SPACE,
    swept=["lr_g", "d_steps"],
    objective="reverse_kl",
    mode="min",
    trials=6,
    gpus_per_trial=None,
)


def plan(**changes) -> SearchPlan:
    return SearchPlan(**{**PLAN, **changes})


@pytest.fixture
def searcher(tmp_path):
    folder = SearchFolder(tmp_path / "units")
    folder.path.mkdir()
    return make_searcher(plan(), parse_space(SPACE, "ring"), folder), folder


def states(searcher) -> dict[str, tuple[State, dict]]:
    study = searcher._ot_study
    return {t.user_attrs.get("trial_id"): (t.state, t) for t in study.get_trials()}


def test_each_ending_reaches_optuna_as_what_it_is(searcher):
    search, folder = searcher
    first = search.suggest("done")  # the known point first, with the trial's own seed
    assert first == {"lr_g": 1e-3, "d_steps": 1, "seed": trial_seed(0, 0)}
    for trial_id in ("cut", "diverged", "raised", "nan"):
        assert set(search.suggest(trial_id)) == {"lr_g", "d_steps", "seed"}
    for trial_id in ("done", "cut", "diverged", "nan"):
        search.on_trial_result(trial_id, {STATUS: "running", "reverse_kl": 1.5, "step": 100})
    search.on_trial_result("done", {STATUS: "running", "reverse_kl": 1.5, "step": 100})  # again
    search.on_trial_complete("done", {STATUS: "completed", "reverse_kl": 0.4, "step": 200})
    # ASHA stops a trial on the result it was cut at; Tune does not show that one to the searcher
    search.on_trial_complete("cut", {STATUS: "running", "reverse_kl": 1.9, "step": 200})
    search.on_trial_complete("diverged", {STATUS: "stopped", "reason": "diverged: x", "step": 7})
    search.on_trial_complete("raised", None, error=True)
    search.on_trial_complete("nan", {STATUS: "completed", "step": 200})  # no finite objective

    found = states(search)
    state, done = found["done"]
    assert state == State.COMPLETE and done.value == 0.4
    assert done.intermediate_values == {100: 1.5}
    state, cut = found["cut"]
    assert state == State.PRUNED and cut.intermediate_values == {100: 1.5, 200: 1.9}
    assert cut.user_attrs["reason"] == "cut by ASHA at step 200"
    # a trial that stopped itself is pruned at a NaN value, so TPE learns the region is bad;
    # a trial that raised is a failure (a crash says nothing about its configuration)
    for trial_id in ("diverged", "nan"):
        state, t = found[trial_id]
        assert state == State.PRUNED and t.value is None and t.user_attrs["status"] == "stopped"
        assert set(t.intermediate_values) == {100, 101 if trial_id == "diverged" else 200}
        assert math.isnan(t.intermediate_values[max(t.intermediate_values)])
    state, raised = found["raised"]
    assert state == State.FAIL and raised.value is None and raised.user_attrs["status"] == "errored"
    assert found["diverged"][1].user_attrs["reason"] == "diverged: x"
    assert found["nan"][1].user_attrs["reason"] == "no finite reverse_kl at the end"

    # the trial folders learned each ending first (the trials table and resume read them)
    assert read_outcome(folder.trial_dir("cut")) == {
        "status": "pruned", "reason": "cut by ASHA at step 200", "step": 200, "reverse_kl": 1.9,
    }  # fmt: skip
    assert read_outcome(folder.trial_dir("raised"))["status"] == "errored"


def test_the_study_decides_when_enough_trials_ran(searcher):
    search, _ = searcher
    for k in range(6):
        assert isinstance(search.suggest(f"t{k}"), dict)
    assert search.suggest("t6") == "FINISHED"


def test_restore_closes_trials_asked_after_the_last_snapshot(searcher, tmp_path):
    search, folder = searcher
    search.suggest("known")
    search.save(str(tmp_path / "searcher.pkl"))
    search.suggest("unknown")  # asked, then the driver was killed before Ray's next snapshot
    search.restore(str(tmp_path / "searcher.pkl"))
    found = states(search)
    assert found["known"][0] == State.RUNNING
    assert found["unknown"][0] == State.FAIL and "status" not in found["unknown"][1].user_attrs
    assert search._trials_run() == 1  # the closed one does not use up a trial
    assert read_outcome(folder.trial_dir("unknown"))["status"] == "lost"
    assert read_outcome(folder.trial_dir("known")) is None


def test_errored_trial_that_completes_on_resume_is_added_to_the_study(searcher):
    search, _ = searcher
    search.suggest("flaky")
    search.on_trial_complete("flaky", None, error=True)
    search._completed_trials.discard("flaky")  # resumed: Ray runs the errored trial again
    search.on_trial_complete("flaky", {STATUS: "completed", "reverse_kl": 0.3, "step": 200})
    trials = search._ot_study.get_trials()
    assert [t.state for t in trials] == [State.FAIL, State.COMPLETE]
    assert trials[1].params == trials[0].params and trials[1].value == 0.3
    assert trials[1].user_attrs["trial_id"] == "flaky"
    assert search._trials_run() == 1


@pytest.mark.parametrize("told", [True, False])
def test_an_ending_on_record_outlives_an_error_in_its_resume(searcher, told):
    """A trial that ended (cut, stopped, completed) before the driver was killed can fail to
    resume when its checkpoint is already gone; that error must not replace the ending on
    record, nor reach Optuna as a second ending."""
    search, folder = searcher
    endings = {
        "done": (Status.COMPLETED, "", {STATUS: "completed", "reverse_kl": 0.4, "step": 200}),
        "cut": (Status.PRUNED, "cut by ASHA at step 100", {STATUS: "running", "step": 100}),
        "diverged": (Status.STOPPED, "diverged: x", {STATUS: "stopped", "step": 7}),
    }
    for trial_id, (status, reason, result) in endings.items():
        search.suggest(trial_id)
        if told:
            search.on_trial_complete(trial_id, {"reason": reason, **result})
        else:  # killed after the driver recorded the ending, before Optuna was told
            search._record(trial_id, status, reason, result)
    records = {t: read_outcome(folder.trial_dir(t)) for t in endings}
    for trial_id in endings:
        search._completed_trials.discard(trial_id)  # resumed: Ray restores it, and fails
        search.on_trial_complete(trial_id, None, error=True)
    assert {t: read_outcome(folder.trial_dir(t)) for t in endings} == records
    found = states(search)
    assert len(search._ot_study.get_trials()) == 3
    assert found["done"][0] == State.COMPLETE and found["done"][1].value == 0.4
    for trial_id in ("cut", "diverged"):
        state, trial = found[trial_id]
        assert state == State.PRUNED and trial.user_attrs["status"] == endings[trial_id][0]
    nan_reports = found["diverged"][1].intermediate_values.values()
    assert len(nan_reports) == 1 and all(math.isnan(v) for v in nan_reports)


@pytest.mark.parametrize(
    "cpus,gpus,per_cpu,per_gpu,trials,expected_slots,expected_gpus",
    [
        (2, 0, 1, None, 8, 2, 0.0),  # the 2-core laptop: two trials of one CPU
        (16, 1, 1, 0.25, 8, 4, 0.25),  # four trials share one GPU
        (16, 2, 1, None, 8, 2, 1.0),  # a GPU per trial where there are GPUs
        (16, 8, 4, None, 3, 3, 1.0),  # never more at once than trials
    ],
)
def test_concurrency_is_what_the_resources_allow(
    cpus, gpus, per_cpu, per_gpu, trials, expected_slots, expected_gpus
):
    fitted = fit_to(plan(cpus_per_trial=per_cpu, gpus_per_trial=per_gpu, trials=trials), cpus, gpus)
    assert (fitted.trials_at_once, fitted.gpus_per_trial) == (expected_slots, expected_gpus)


def test_a_trial_that_cannot_fit_is_refused():
    with pytest.raises(
        SearchError, match="a trial needs 1 CPU and 1 GPU but the cluster has 4 CPU"
    ):
        fit_to(plan(gpus_per_trial=1.0), 4, 0)


def test_fractional_gpu_trial_caps_its_own_memory(monkeypatch):
    """Ray does not enforce a fraction of a GPU; the trial must (the GPU itself is faked)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f: calls.append(f))
    threads = torch.get_num_threads()
    try:
        setup = TrialSetup("s", "/tmp/s", "ring", "harness.recipes.ring:RingRecipe", "smoke",
                           None, cpus=2, gpus=0.25)  # fmt: skip
        setup.prepare_process()
        assert calls == [0.25] and torch.get_num_threads() == 2
        TrialSetup("s", "/tmp/s", "ring", "x:Y", "smoke", None, cpus=1, gpus=1).prepare_process()
        assert calls == [0.25]  # a whole GPU needs no cap
    finally:
        torch.set_num_threads(threads)


def test_trial_config_gives_torch_the_cpus_of_the_trial():
    setup = TrialSetup("s", "/tmp/s", "ring", "x:Y", "smoke", None, cpus=3, gpus=0)
    cfg = setup.trial_config({"lr_g": 5e-4, "g_hidden": 16})
    assert cfg.trainer.threads == 3 and cfg.trainer.lr_g == 5e-4 and cfg.model.g_hidden == 16
    assert cfg.budget == "smoke" and cfg.recipe == "ring"


def test_resources_are_saved_beside_the_plan_and_checked_on_resume(tmp_path):
    """The fitted resources, not the request, are what a resumed search must be given again."""
    from harness.cli import build_parser
    from harness.commands import request_of
    from harness.results.plan import Resources
    from harness.results.request import PlanError, SearchRequest, check_same_search

    folder = SearchFolder(tmp_path / "units")
    folder.path.mkdir()
    launched = plan()  # no --gpus-per-trial, no --max-concurrent: fitted to the cluster
    launched.save(folder, fit_to(launched, 2, 0, address="10.0.0.1:6379"))
    resources = Resources.load(folder)
    assert resources == Resources(1.0, 0.0, 2, "10.0.0.1:6379")
    assert SearchPlan.load(folder) == launched

    def args(*options: str) -> SearchRequest:
        return request_of(SearchRequest, build_parser().parse_args(["search", "ring", *options]))

    check_same_search(launched, resources, args("--max-concurrent", "2", "--gpus-per-trial", "0"))
    with pytest.raises(PlanError, match="launched with --max-concurrent 2, not 3"):
        check_same_search(launched, resources, args("--max-concurrent", "3"))


def test_config_written_before_resources_had_a_section_still_reads(tmp_path):
    import yaml

    from harness.results.plan import Resources

    folder = SearchFolder(tmp_path / "old")
    folder.path.mkdir()
    fitted = {"cpus_per_trial": 1.0, "gpus_per_trial": 0.0, "max_concurrent": 2, "address": "a:1"}
    old = {**PLAN, **fitted}  # the whole plan, as SearchPlan.save wrote it then
    folder.config.write_text(yaml.safe_dump(old))
    assert Resources.load(folder) == Resources(1.0, 0.0, 2, "a:1")
    assert SearchPlan.load(folder).trials == 6


def test_scoped_environ_restores_and_leaves_user_values_alone(monkeypatch):
    from harness.scoped import scoped_environ

    monkeypatch.setenv("GH_TEST_USER", "mine")
    monkeypatch.delenv("GH_TEST_UNSET", raising=False)
    monkeypatch.setenv("GH_TEST_FORCED", "before")
    with scoped_environ(
        forced={"GH_TEST_FORCED": "1"}, defaults={"GH_TEST_USER": "0", "GH_TEST_UNSET": "2"}
    ):
        assert os.environ["GH_TEST_FORCED"] == "1"
        assert os.environ["GH_TEST_USER"] == "mine" and os.environ["GH_TEST_UNSET"] == "2"
    assert os.environ["GH_TEST_FORCED"] == "before" and os.environ["GH_TEST_USER"] == "mine"
    assert "GH_TEST_UNSET" not in os.environ


def test_importing_the_search_turns_ray_uv_shipping_off_without_leaving_it_set():
    """Ray reads RAY_ENABLE_UV_RUN_RUNTIME_ENV once, on import (a fresh interpreter, so that
    this one's imports do not count); a value the user sets wins (scoped_environ's defaults)."""
    code = (
        "import os, harness.search, ray._private.ray_constants as c; "
        "print(c.RAY_ENABLE_UV_RUN_RUNTIME_ENV, os.environ.get('RAY_ENABLE_UV_RUN_RUNTIME_ENV'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_UV_RUN_RUNTIME_ENV"}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.split() == ["False", "None"]


def test_each_trial_trains_with_its_own_seed_derived_from_the_search_seed(tmp_path):
    seeds = {}
    for search_seed in (0, 0, 5):
        folder = SearchFolder(tmp_path / f"s{search_seed}-{len(seeds)}")
        folder.path.mkdir()
        search = make_searcher(plan(seed=search_seed), parse_space(SPACE, "ring"), folder)
        seeds[folder.name] = [search.suggest(f"t{k}")["seed"] for k in range(4)]
    same_a, same_b, other = seeds.values()
    assert same_a == same_b  # the same search seed reproduces every trial's seed
    assert len(set(same_a)) == 4  # every trial has its own
    assert not set(same_a) & set(other)  # another search seed gives other seeds
    assert all(0 <= s < 2**31 for s in same_a + other)


def test_failed_trials_teach_tpe_to_avoid_their_region(tmp_path):
    """An unstable trial is one of TPE's observations (a FAIL is not) and ranks below a trial
    ASHA cut at the same point, even one that scored far worse before the cut."""
    from optuna.samplers._tpe.sampler import _split_trials

    folder = SearchFolder(tmp_path / "teach")
    folder.path.mkdir()
    search = make_searcher(plan(), parse_space(SPACE, "ring"), folder)
    for trial_id, value in (("cut", 0.9), ("unstable", 0.1)):
        search.suggest(trial_id)
        search.on_trial_result(trial_id, {STATUS: "running", "reverse_kl": value, "step": 100})
    search.on_trial_complete("cut", {STATUS: "running", "reverse_kl": 0.95, "step": 200})
    # the HealthStopper ends "unstable" at a validation with a raised flag and a good score
    flagged = {STATUS: "running", "reverse_kl": 0.05, "step": 200, "flag_overpower": True}
    search.on_trial_result("unstable", flagged)
    search.on_trial_complete("unstable", flagged)
    study = search._ot_study
    observed = study.get_trials(deepcopy=False, states=(State.COMPLETE, State.PRUNED))
    assert {t.user_attrs["trial_id"] for t in observed} == {"cut", "unstable"}
    unstable = next(t for t in observed if t.user_attrs["trial_id"] == "unstable")
    assert unstable.user_attrs["status"] == "stopped" and unstable.intermediate_values[100] == 0.1
    assert math.isnan(unstable.intermediate_values[200])  # not the flagged row's 0.05
    below, above = _split_trials(study, observed, n_below=1)
    assert [t.user_attrs["trial_id"] for t in below] == ["cut"]
    assert [t.user_attrs["trial_id"] for t in above] == ["unstable"]


@pytest.mark.parametrize("grace,max_t", [(100, 300), (100, 900), (200, 600), (100, 250)])
def test_no_asha_rung_falls_on_the_final_validation(grace, max_t):
    from harness.search.driver import COST, make_scheduler

    scheduler = make_scheduler(plan(grace_period=grace, max_t=max_t))
    assert scheduler._time_attr == COST == "batches"
    rungs = [milestone for bracket in scheduler._brackets for milestone, _ in bracket._rungs]
    assert rungs and max(rungs) < max_t and min(rungs) == grace


def test_a_search_as_long_as_its_known_points_runs_them_all(tmp_path):
    """Queued points are not trials yet: with --trials equal to their number, each runs."""
    folder = SearchFolder(tmp_path / "points")
    folder.path.mkdir()
    space = {
        **SPACE,
        "points_to_evaluate": [{"lr_g": 1e-3, "d_steps": 1}, {"lr_g": 2e-3, "d_steps": 2}],
    }
    search = make_searcher(plan(trials=2, space=space), parse_space(space, "ring"), folder)
    asked = [search.suggest(f"p{k}") for k in range(3)]
    assert [a["lr_g"] for a in asked[:2]] == [1e-3, 2e-3] and asked[2] == "FINISHED"


def run_search_cli(tmp_path, *argv: str) -> tuple[int, str]:
    import contextlib
    import io

    from harness.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["search", *argv, "--results", str(tmp_path), "--trials", "0"])
    return code, err.getvalue()


def test_a_space_that_sweeps_the_weight_of_its_objective_is_refused(tmp_path):
    code, err = run_search_cli(tmp_path, "hifigan", "--objective", "mel_l1")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "hifigan.yaml: objective mel_l1 is a loss term hifigan trains on" in err
    assert "sweeps lambda_fm, lambda_mel, disc_start_step" in err
    # the explicit override gets past the check (to the next one: --trials 0)
    code, err = run_search_cli(
        tmp_path, "hifigan", "--objective", "mel_l1", "--allow-trained-objective"
    )
    assert code == 2 and "--trials 0: must be >= 1" in err
    # an objective no loss term optimises is accepted, and so is the shipped space's default
    for objective in (["--objective", "pesq"], []):
        code, err = run_search_cli(tmp_path, "hifigan", *objective)
        assert "--trials 0: must be >= 1" in err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_an_objective_the_validation_does_not_report_is_refused(tmp_path, capsys):
    from harness.cli import main

    argv = ["search", "hifigan", "--objective", "dnsmos_ovrl", "--results", str(tmp_path)]
    code, err = main(argv), capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "objective dnsmos_ovrl: hifigan's validation reports only mel_l1, pesq" in err
    assert "add it to eval_metrics" in err
    assert not any(tmp_path.iterdir())


def test_budgets_and_spaces_choose_what_a_validation_reports():
    from harness.results.request import PlanError, check_reported
    from harness.runs.resolve import resolve_config
    from harness.training.config import ConfigError

    # the small and paper budgets score DNSMOS and pitch; smoke leaves them out for time
    check_reported("dnsmos_ovrl", resolve_config("hifigan", "small"))
    check_reported("pitch_rmse_cents", resolve_config("hifigan", "paper"))
    smoke = resolve_config("hifigan", "smoke")
    with pytest.raises(PlanError, match="dnsmos_ovrl"):
        check_reported("dnsmos_ovrl", smoke)
    fixed = {"eval_metrics": ["stoi", "dnsmos_ovrl"]}  # a space's fixed value opts in
    check_reported("dnsmos_ovrl", resolve_config("hifigan", "smoke", sample=fixed))
    check_reported("pesq_gain", resolve_config("metricgan", "smoke"))
    check_reported("modes_covered", resolve_config("ring", "smoke"))
    with pytest.raises(ConfigError, match="eval_metrics: \\['pesk'\\] not among"):
        check_reported(
            "pesq", resolve_config("hifigan", "smoke", sample={"eval_metrics": ["pesk"]})
        )


def test_a_snapshot_that_does_not_read_whole_is_replaced_by_the_last_kept_one(tmp_path):
    """Ray's files as it writes them: JSON, and pickles under both names."""
    whole = pickle.dumps({"trials": list(range(50))})
    assert reads(b'{"a": 1}') and reads(whole)
    assert not reads(b"") and not reads(whole[:-3]) and not reads(b'{"a": ')
    older = {"experiment_state-s1.json": b'{"n": 1}', "searcher-state-s1.pkl": whole}
    for name, data in older.items():
        (tmp_path / name).write_bytes(data)
    assert heal(tmp_path) is None  # whole: nothing to mend
    assert keep(tmp_path) and (tmp_path / KEPT).is_file()
    (tmp_path / "experiment_state-s1.json").write_bytes(b"")  # a kill inside Ray's write
    assert not keep(tmp_path)  # the kept one stays
    assert heal(tmp_path) == (
        "note: Ray's snapshot experiment_state-s1.json was cut short; restoring the last whole one"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*-s1.*")} == older
    # a newer session cut short before any of it was kept gives way to the older one
    (tmp_path / "experiment_state-s2.json").write_bytes(b'{"n": ')
    (tmp_path / "searcher-state-s2.pkl").write_bytes(whole)
    assert heal(tmp_path) is not None
    assert sorted(p.name for p in tmp_path.glob("*-s*.*")) == sorted(older)
