"""``--track mlflow|wandb`` on ``train`` and ``search``: the runs read back through MLflow's own
client and from W&B's offline run files, and what happens where the extra is missing.

The tests that use a tracker need the optional extra (``uv sync --extra tracking``, which
``.ci/run`` installs); they are skipped, saying so, where it is absent.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from conftest import TINY_RING, flaky_recipe, run_cli

from harness.diagnostics.telemetry import read_diagnostics
from harness.results.trials import read_trials
from harness.tracking import (
    TrackedRun,
    Tracker,
    TrackingError,
    TrackingTarget,
    TrackingWarning,
    TrainingTracking,
    metrics_of,
    step_of,
)

needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason="MLflow is not installed (the tracking extra: uv sync --extra tracking)",
)
needs_wandb = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None,
    reason="wandb is not installed (the tracking extra: uv sync --extra tracking)",
)
TRAIN_RING = [f"{k}={v}" for k, v in TINY_RING.items()]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Results, and every place W&B reads or writes, under ``tmp_path``; nobody logged in."""
    monkeypatch.setenv("GAN_HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def train_ring(out, *extra: str) -> tuple[int, str]:
    sets = [a for s in TRAIN_RING for a in ("--set", s)]
    return run_cli("train", "ring", "--out", str(out), *sets, *extra)


def test_rows_become_metrics_at_their_batches():
    row = {"step": 7, "batches": 14, "epoch": 0, "pesq": 2.5, "flag_collapse": True, "n": 3}
    row |= {"reason": "text", "nan": float("nan"), "since": None}
    assert metrics_of(row) == {"pesq": 2.5, "flag_collapse": 1.0, "n": 3.0}
    assert step_of(row) == 14 and step_of({"step": 5}) == 5


def test_a_missing_extra_is_one_line_and_nothing_starts(isolated, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    code, _ = train_ring(isolated / "out", "--track", "mlflow")
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert last == "error: --track mlflow: MLflow is not installed; run `uv sync --extra tracking`"
    assert not (isolated / "out").exists() and not (isolated / "results").exists()
    with pytest.raises(ValueError, match="MLflow is not installed"):
        TrackingTarget("mlflow").check()


def test_a_track_uri_needs_a_tracker(isolated, capsys):
    code, _ = train_ring(isolated / "out", "--track-uri", "http://localhost:5000")
    assert code == 2 and "needs --track mlflow or wandb" in capsys.readouterr().err
    assert not (isolated / "out").exists()


def test_wandb_is_offline_unless_logged_in(isolated, monkeypatch):
    from harness.tracking.wandb_backend import logged_in

    assert not logged_in("https://api.wandb.ai")
    (isolated / "no-netrc").write_text("machine api.wandb.ai login user password k" + "0" * 39)
    assert logged_in("https://api.wandb.ai") and not logged_in("https://wandb.example.org")
    monkeypatch.setenv("NETRC", str(isolated / "nothing-here"))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert logged_in("https://wandb.example.org")


@needs_mlflow
@pytest.mark.slow
def test_train_is_tracked_in_mlflow(isolated):
    from mlflow.tracking import MlflowClient

    code, out = train_ring(isolated / "ring", "--track", "mlflow")
    assert code == 0, out
    store = f"sqlite:///{isolated / 'results' / 'mlruns' / 'mlflow.db'}"
    assert f"tracking: MLflow: {store}" in out
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("train")
    (run,) = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == ("ring", "FINISHED")
    assert run.data.tags["harness.status"] == "completed"
    assert run.data.tags["recipe"] == "ring"
    config = yaml.safe_load((isolated / "ring" / "config.yaml").read_text())
    assert {k: run.data.params[k] for k in config} == {k: str(v) for k, v in config.items()}
    assert float(run.data.params["params_g"]) > 0
    evals = read_diagnostics(isolated / "ring" / "diagnostics", kind="eval").sort_values("step")
    history = client.get_metric_history(run.info.run_id, "reverse_kl")
    assert [(m.step, m.value) for m in history] == list(
        zip(evals["batches"], evals["reverse_kl"], strict=True)
    )
    assert {"flag_collapse", "flag_overpower", "modes_covered"} <= set(run.data.metrics)


@needs_wandb
@pytest.mark.slow
def test_train_is_tracked_in_a_wandb_offline_run(isolated):
    from wandb_records import read_finished_run

    code, out = train_ring(isolated / "ring", "--track", "wandb")
    assert code == 0, out
    assert "tracking: W&B (offline)" in out
    (path,) = (isolated / "ring" / "wandb").glob("offline-run-*/run-*.wandb")
    run = read_finished_run(path)
    assert (run.name, run.group, run.exit_code) == ("ring", "train", 0)
    assert {"ring", "smoke", "completed"} <= set(run.tags)
    config = yaml.safe_load((isolated / "ring" / "config.yaml").read_text())
    assert {k: run.config[k] for k in config} == config
    evals = read_diagnostics(isolated / "ring" / "diagnostics", kind="eval").sort_values("step")
    logged = [(row["_step"], row["reverse_kl"]) for row in run.history if "reverse_kl" in row]
    assert logged == list(zip(evals["batches"], evals["reverse_kl"], strict=True))
    assert all("flag_collapse" in row for row in run.history if "reverse_kl" in row)
    assert run.summary["status"] == "completed"
    assert run.summary["reason"] == "reached its budget of 300 batches"


NORMAL = {"lr_g": 1e-3, "fail_times": 0, "loss_upper_limit": 1e6}
BROKEN = {**NORMAL, "fail_times": 9}  # raises at step 200 every time: errored
DIVERGING = {**NORMAL, "loss_upper_limit": 1e-9}  # stops itself: stopped


def tracked_search(root, name: str, tracker: str, points: list[dict]) -> None:
    """A search of the flaky ring whose trials are ``points``, tracked by ``tracker``."""
    space = {
        "objective": "reverse_kl",
        "space": {
            "lr_g": {"loguniform": [3e-4, 3e-3]},
            "fail_times": {"choice": [0, 9]},
            "loss_upper_limit": {"choice": [1e6, 1e-9]},
            **TINY_RING,
            "max_consecutive_nonfinite": 3,
            "fail_at_step": 200,
        },
        "points_to_evaluate": points,
    }
    (root / "space.yaml").write_text(yaml.safe_dump(space))
    with flaky_recipe():
        code, out = run_cli(
            "search", "flaky", "--space", str(root / "space.yaml"), "--trials", str(len(points)),
            "--name", name, "--results", str(root / "results"), "--scheduler", "none",
            "--max-concurrent", "2", "--track", tracker, "--quiet",
        )  # fmt: skip
    assert code == 0, out


@needs_mlflow
@pytest.mark.slow
def test_a_search_tracks_every_trial_and_its_ending_in_mlflow(isolated):
    from mlflow.tracking import MlflowClient

    from harness.results.folder import SearchFolder

    tracked_search(isolated, "tracked", "mlflow", [NORMAL, DIVERGING])
    folder = SearchFolder(isolated / "results" / "tracked")
    trials = read_trials(folder).set_index("trial_id")
    assert sorted(trials["status"]) == ["completed", "stopped"]
    client = MlflowClient(f"sqlite:///{isolated / 'results' / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(trials.index)
    expected = {"completed": "FINISHED", "stopped": "FAILED"}
    for trial_id, run in runs.items():
        row = trials.loc[trial_id]
        assert run.data.tags["harness.status"] == row["status"]
        assert run.info.status == expected[row["status"]]
        assert run.data.tags["harness.reason"] == row["reason"]
        resolved = json.loads(row["resolved_config"])
        assert run.data.params["lr_g"] == str(resolved["lr_g"])
        assert run.data.params["loss_upper_limit"] == str(resolved["loss_upper_limit"])
        evals = read_diagnostics(folder.diagnostics, trial_id=trial_id, kind="eval")
        reported = evals.drop_duplicates("batches", keep="last").sort_values("batches")
        history = client.get_metric_history(run.info.run_id, "reverse_kl")
        assert sorted({m.step for m in history}) == list(reported["batches"])
        assert {"flag_collapse", "wall_s"} <= set(run.data.metrics)
        assert not {"done", "should_checkpoint", "time_total_s", "pid"} & set(run.data.metrics)


@needs_wandb
@pytest.mark.heavy
def test_a_search_tracks_every_trial_in_wandb_offline_runs(isolated):
    from wandb_records import read_finished_run

    from harness.results.folder import SearchFolder

    tracked_search(isolated, "tracked", "wandb", [NORMAL, BROKEN, DIVERGING])
    folder = SearchFolder(isolated / "results" / "tracked")
    trials = read_trials(folder).set_index("trial_id")
    assert sorted(trials["status"]) == ["completed", "errored", "stopped"]
    runs = {}
    for path in (folder.path / "wandb").glob("offline-run-*/run-*.wandb"):
        run = read_finished_run(path)
        runs.setdefault(run.name, []).append(run)
    assert set(runs) == set(trials.index)
    for trial_id, parts in runs.items():
        row = trials.loc[trial_id]
        last = parts[-1]  # a retried trial resumes its run: one part per start
        assert {p.run_id for p in parts} == {f"tracked-{trial_id}"}
        assert last.group == "tracked" and last.summary["status"] == row["status"]
        assert last.exit_code == (0 if row["status"] == "completed" else 1)
        assert last.config["lr_g"] == json.loads(row["resolved_config"])["lr_g"]
        assert any("reverse_kl" in h for p in parts for h in p.history)


class Unreachable(TrackedRun):
    """A run whose tracking server went away after it started."""

    calls = 0

    def _log(self, metrics, step):
        Unreachable.calls += 1
        raise ConnectionError("connection refused\nmore detail")

    def _params(self, params):
        raise AssertionError("not called")

    def _finish(self, status, reason):
        Unreachable.calls += 1


class Refusing(Tracker):
    def start(self, name, params, tags, key=None):
        raise TrackingError("--track mlflow: cannot start a run in http://x: refused")

    def where(self):
        return "nowhere"


def test_a_failing_tracker_never_stops_the_training(tmp_path):
    from harness.runs.resolve import resolve_config
    from harness.runs.trial import run_trial

    run = Unreachable("ring")
    with pytest.warns(TrackingWarning, match="tracking ring: connection refused; the run goes on"):
        run.log_row({"batches": 100, "reverse_kl": 0.5})
    run.log_row({"batches": 200, "reverse_kl": 0.4})
    run.finish("completed", "done")
    assert Unreachable.calls == 1  # after the first failure, nothing more is tried

    tracking = TrainingTracking(Refusing(), "ring", {}, {})
    cfg = resolve_config("ring", "smoke", overrides=TINY_RING)
    with pytest.warns(TrackingWarning, match="refused; the run goes on untracked"), tracking:
        result = run_trial(cfg, tmp_path, on_start=tracking.on_start, on_report=tracking.on_report)
        tracking.finish(result.status, result.reason)
    assert result.status == "completed" and tracking.run is None
