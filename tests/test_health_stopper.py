"""The HealthStopper in a real search: a rigged ring trial is ended when its overpowering flag is
raised, recorded as stopped with its reason; a healthy trial beside it trains to its budget.

One search on a local Ray (two ring trials of 300 iterations, about a minute on 2 cores).  The
rig is test_ring.OVERPOWER (D at 100x G's learning rate, 5 D steps, a 2 x 16 generator), whose
flag test_ring shows is raised near iteration 200 of 300 without a stopper.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import run_cli

from harness.diagnostics.telemetry import read_diagnostics
from harness.results.folder import SearchFolder
from harness.results.leaderboard import render
from harness.results.trials import read_trials

BATCHES = 1500  # 300 iterations of the rig's 5 D steps; 1,500 iterations of the healthy 1:1
FIXED = {"batches": BATCHES, "eval_every": 300, "log_every": 20, "lr_decay": 0.01 ** (1 / BATCHES)}
RIGGED = {
    "lr_g": 1e-5,
    "lr_d": 1e-3,
    "d_steps": 5,
    "g_hidden": 16,
    "g_layers": 2,
    "scheduler": "constant",
}
HEALTHY = {  # the recipe's defaults, its smoke budget shortened
    "lr_g": 3e-3,
    "lr_d": 3e-3,
    "d_steps": 1,
    "g_hidden": 32,
    "g_layers": 12,
    "scheduler": "exponential",
}


@pytest.fixture(scope="module")
def stopped_search(tmp_path_factory):
    root = tmp_path_factory.mktemp("stopper")
    space = {
        "objective": "reverse_kl",
        "space": {
            **{key: {"choice": [RIGGED[key], HEALTHY[key]]} for key in RIGGED},
            **FIXED,
        },
        "points_to_evaluate": [RIGGED, HEALTHY],
    }
    (root / "space.yaml").write_text(yaml.safe_dump(space))
    code, out = run_cli(
        "search", "ring", "--space", str(root / "space.yaml"), "--trials", "2", "--name",
        "stopper", "--results", str(root), "--scheduler", "none", "--seed", "0",
        "--max-concurrent", "2", "--quiet",
    )  # fmt: skip
    assert code == 0, out
    return SearchFolder(root / "stopper")


def test_rigged_trial_is_stopped_with_its_reason_and_healthy_one_completes(stopped_search):
    trials = read_trials(stopped_search).set_index("config/g_hidden")
    rigged, healthy = trials.loc[RIGGED["g_hidden"]], trials.loc[HEALTHY["g_hidden"]]
    assert rigged["status"] == "stopped", rigged.to_dict()
    assert rigged["reason"].startswith("discriminator overpowering since step ")
    assert rigged["batches"] < BATCHES  # ended before its budget
    assert bool(rigged["flag_overpower"]) and rigged["overpower_peak"] == 1.0
    assert healthy["status"] == "completed", healthy.to_dict()
    assert healthy["batches"] == BATCHES
    assert not healthy["flag_overpower"] and not healthy["flag_collapse"]
    assert healthy["overpower_peak"] < 1.0  # the graded score is recorded for a healthy trial too

    # the truth the stop stands for, from the rigged trial's own diagnostics
    rows = read_diagnostics(stopped_search.diagnostics, trial_id=rigged["trial_id"], kind="step")
    since = int(rigged["reason"].rsplit(" ", 1)[1])
    after = rows[rows["step"] >= since]
    assert len(after) >= 5 and (after["d_acc"] >= 0.98).all()


def test_leaderboard_shows_the_flag_and_the_graded_score(stopped_search):
    table = render(stopped_search, "table")
    assert all(len(line) <= 120 for line in table.splitlines()), table
    header = table.splitlines()[2].split()
    assert {"flags", "health"} <= set(header)
    trials = read_trials(stopped_search).set_index("trial_id")
    for line in table.splitlines()[3:5]:
        cells = line.split()
        (health,) = [c for c in cells if "=" in c]  # the empty flags cell of a healthy trial
        if trials.loc[cells[1], "status"] == "stopped":  # leaves no token, so find it by "="
            assert "overpower" in cells and health == "overpower=1.00"
        else:
            assert float(health.split("=")[1]) < 1.0
