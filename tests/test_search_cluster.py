"""A small multi-objective search on an existing two-node Ray cluster, reached through --address.

Heavy (two Ray nodes and a search, about a minute): `uv run pytest -m heavy`.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import yaml

import harness.search  # noqa: F401  (imported before ray: keeps Ray from shipping the tree)
from harness.cli import main
from harness.results.folder import SearchFolder
from harness.results.plan import Resources, SearchPlan
from harness.results.trials import read_trials
from harness.search.study_storage import load_study

SPACE = {
    "objective": "reverse_kl",
    "cost": "params_g",
    "space": {
        "lr_g": {"loguniform": [3e-4, 3e-3]},
        "g_hidden": {"choice": [16, 32, 64]},
        "batches": 200,
        "eval_every": 100,
        "log_every": 50,
        "batch_size": 64,
        "g_layers": 2,
        "d_hidden": 32,
        "d_layers": 2,
        "eval_samples": 500,
    },
    "points_to_evaluate": [{"lr_g": 1e-3, "g_hidden": 16}, {"lr_g": 1e-3, "g_hidden": 64}],
}


@pytest.mark.heavy
def test_two_node_cluster_runs_a_multi_objective_search(tmp_path):
    from ray.cluster_utils import Cluster

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    address = cluster.address
    out = io.StringIO()
    try:
        cluster.wait_for_nodes()
        with contextlib.redirect_stdout(out):
            code = main(
                [
                    "search",
                    "ring",
                    "--space",
                    str(tmp_path / "space.yaml"),
                    "--trials",
                    "4",
                    "--name",
                    "mo",
                    "--results",
                    str(tmp_path),
                    "--multi-objective",
                    "--address",
                    address,
                ]  # fmt: skip
            )
    finally:
        cluster.shutdown()
    assert code == 0, out.getvalue()

    folder = SearchFolder(tmp_path / "mo")
    plan, resources = SearchPlan.load(folder), Resources.load(folder)
    assert resources.address == address
    assert resources.trials_at_once == 2  # one CPU on each node: both nodes ran trials
    assert plan.multi_objective and plan.scheduler == "none"
    trials = read_trials(folder)
    assert len(trials) == 4 and (trials["status"] == "completed").all()

    study = load_study(folder, "mo")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    by_id = trials.set_index("trial_id")
    for t in study.trials:
        row = by_id.loc[t.user_attrs["trial_id"]]
        assert t.values == pytest.approx([row["reverse_kl"], row["params_g"]])

    doc = json.loads(render_json(tmp_path))
    front = set(doc["pareto"])
    assert front and front <= set(trials["trial_id"])
    assert {t.user_attrs["trial_id"] for t in study.best_trials} == front
    assert "Pareto front (reverse_kl min, params_g min)" in out.getvalue()


def render_json(root) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["leaderboard", "mo", "--results", str(root), "--format", "json"])
    return out.getvalue()
