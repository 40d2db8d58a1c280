"""Population-based training in a real search: ``run.py search --scheduler pbt`` on a local Ray
with the toy ring (with failure injection, tests/flaky_recipe.py), inspected by several tests.

The population: a working configuration, a weak one, and one that raises at its first
validation every time (errored after its retries, without holding the rest up).  Learning rates
are constant and every checkpoint is kept, so an exploit can be checked to the bit: the trial
that copies trains on from the donor's checkpoint with the new learning rates.
"""

from __future__ import annotations

import html
import json
import sys

import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_RING, flaky_recipe, run_cli

from harness.diagnostics.telemetry import read_diagnostics
from harness.report import NO_STUDY_PBT
from harness.results.folder import SearchFolder
from harness.results.lineage import LINEAGE_TABLE, read_copies
from harness.results.space import parse_space
from harness.results.trials import read_trials
from harness.runs.resolve import config_from_flat
from harness.runs.schedule import SegmentEnd, stop_at
from harness.runs.trial import run_trial

FIXED = {
    **TINY_RING,
    "batches": 600,
    "scheduler": "constant",  # the learning rate a row shows is the configuration's
    "keep_checkpoints": 100,  # every checkpoint stays, for the bit-exact check
    "fail_at_step": 100,
}
GOOD = {"lr_g": 3e-3, "lr_d": 3e-3, "fail_times": 0}
WEAK = {"lr_g": 3e-4, "lr_d": 3e-4, "fail_times": 0}
BROKEN = {**GOOD, "fail_times": 9}  # raises at its first validation, every time
SPACE = {
    "objective": "reverse_kl",
    "space": {
        "lr_g": {"loguniform": [3e-4, 1e-2]},
        "lr_d": {"loguniform": [3e-4, 1e-2]},
        "fail_times": {"choice": [0, 9]},
        **FIXED,
    },
    "points_to_evaluate": [GOOD, WEAK, BROKEN],
    "pbt": {"mutable": ["lr_g", "lr_d"]},
}


@pytest.fixture(scope="module")
def pbt_search(tmp_path_factory):
    root = tmp_path_factory.mktemp("pbt")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    with flaky_recipe():
        code, out = run_cli(
            "search", "flaky", "--space", str(root / "space.yaml"), "--trials", "3", "--name",
            "pbt", "--results", str(root), "--scheduler", "pbt", "--seed", "0",
            "--cpus-per-trial", "0.5",  # the three side by side: no trial waits its turn
        )  # fmt: skip
        yield SearchFolder(root / "pbt"), code, out


def copies_made(folder: SearchFolder) -> list[tuple[str, dict]]:
    """(receiver, its last copy) for every trial that copied another's checkpoint."""
    made = []
    for trial_id in read_trials(folder)["trial_id"]:
        copies = read_copies(folder.trial_dir(trial_id))
        if copies:
            made.append((trial_id, copies[-1]))
    return made


def rows_since_copy(folder: SearchFolder, trial_id: str, batches: int):
    """The trial's step rows written after it continued a checkpoint at ``batches``: after the
    last time its batch count went back (it went back to the donor's), those past ``batches``."""
    rows = read_diagnostics(folder.diagnostics, trial_id=trial_id, kind="step")
    drawn = rows["batches"].tolist()
    back = max((i for i in range(1, len(drawn)) if drawn[i] < drawn[i - 1]), default=0)
    rows = rows.iloc[back:]
    return rows[rows["batches"] > batches]


@pytest.mark.slow
def test_the_population_trains_and_a_crashed_trial_holds_nothing_up(pbt_search):
    folder, code, out = pbt_search
    assert code == 0, out
    trials = read_trials(folder)
    assert sorted(trials["status"]) == ["completed", "completed", "errored"], out
    assert folder.summary.is_file() and not folder.optuna_db.exists()  # no study under PBT
    assert all((folder.trial_dir(t) / "outcome.json").is_file() for t in trials["trial_id"])
    assert "continues" in out and "checkpoint at batch" in out  # the console says each copy


@pytest.mark.slow
def test_an_exploit_trains_on_from_the_donors_weights_with_the_new_learning_rates(
    pbt_search, tmp_path
):
    folder, _, out = pbt_search
    made = copies_made(folder)
    assert made, f"no trial copied another's checkpoint:\n{out}"
    checked = 0
    for receiver, copy in made:
        at, new = copy["batches"], copy["params"]
        # its next step rows train with the new learning rates
        rows = rows_since_copy(folder, receiver, at)
        assert len(rows) and rows["batches"].iloc[0] <= at + FIXED["log_every"], receiver
        assert (rows["lr_g"] == new["lr_g"]).all() and (rows["lr_d"] == new["lr_d"]).all()
        # its weights were the donor's at the copy: the donor's checkpoint there, trained on
        # under the receiver's new configuration, is the receiver's next checkpoint to the bit
        donor = (
            folder.trial_dir(copy["donor"]) / "checkpoints" / f"step_{copy['donor_step']:08d}.pt"
        )
        if not donor.is_file():  # the donor copied another later and left its own lineage
            continue
        flat = yaml.safe_load((folder.trial_dir(receiver) / "config.yaml").read_text())
        with pytest.raises(SegmentEnd) as reached:
            run_trial(
                config_from_flat(flat),
                tmp_path / receiver,
                checkpoint=donor,
                on_report=stop_at(at + FIXED["eval_every"], None),
            )
        again = torch.load(reached.value.checkpoint, weights_only=True)
        mine = folder.trial_dir(receiver) / "checkpoints" / reached.value.checkpoint.name
        recorded = torch.load(mine, weights_only=True)
        for net in ("generator", "discriminator"):
            for key, tensor in recorded[net].items():
                assert torch.equal(tensor, again[net][key]), (receiver, net, key)
        checked += 1
    assert checked, "no copy left its donor's checkpoint to check against"


@pytest.mark.slow
def test_every_value_of_every_schedule_stays_in_the_space(pbt_search):
    folder, _, _ = pbt_search
    space = parse_space(SPACE, "flaky")
    lineage = pd.read_parquet(folder.path / LINEAGE_TABLE)
    assert set(lineage["trial_id"]) >= {t for t, _ in copies_made(folder)}
    for key in ("lr_g", "lr_d"):
        assert lineage[f"config/{key}"].map(space.params[key].contains).all(), lineage
    for _, row in read_trials(folder).iterrows():  # a trial's values are its last segment's
        if row["status"] == "completed":
            segments = json.loads(row["schedule"])
            assert segments[0]["batches"] == 0
            assert segments[-1]["params"]["lr_g"] == row["config/lr_g"]


@pytest.mark.slow
def test_rerun_replays_a_copied_schedule_from_scratch_to_the_same_scores(pbt_search):
    folder, _, _ = pbt_search
    trials = read_trials(folder).set_index("trial_id")
    copied = [t for t, _ in copies_made(folder) if trials.loc[t, "status"] == "completed"]
    assert copied
    code, out = run_cli(
        "rerun", folder.name, "--trial", copied[0], "--results", str(folder.path.parent)
    )
    assert code == 0, out
    assert "replaying its schedule: [0: " in out
    (summary,) = folder.reruns.glob(f"{copied[0]}-*/summary.json")
    (run,) = json.loads(summary.read_text())["seeds"]
    for metric, value in run["scores"].items():
        assert value == trials.loc[copied[0], metric], (metric, value)


@pytest.mark.slow
def test_the_report_draws_each_schedule_and_the_leaderboard_counts_copies(pbt_search):
    folder, _, _ = pbt_search
    ids = ",".join(read_trials(folder)["trial_id"])
    code, out = run_cli(
        "report", folder.name, "--trials", ids, "--results", str(folder.path.parent)
    )
    assert code == 0, out
    page = (folder.path / "report.html").read_text()
    assert page.count("schedule (population-based training)") == 3
    assert html.escape(NO_STUDY_PBT) in page and "copies this trial made: at batch" in page
    code, table = run_cli("leaderboard", folder.name, "--results", str(folder.path.parent))
    assert "exploits" in table.splitlines()[2]


# ------------------------------------------------------------------ health-aware exploitation
@pytest.mark.heavy
def test_an_unhealthy_trial_is_rescued_by_a_healthy_donor_and_ends_healthy(tmp_path):
    """The rig of tests/test_health_stopper.py (D at 100x G's learning rate, 5 D steps, a small
    generator) beside a healthy trial: instead of being stopped when its overpowering flag is
    raised, the rigged trial continues the healthy one's checkpoint at its next perturbation
    (quantile 0: only the unhealthy are replaced) and ends healthy."""
    from test_health_stopper import BATCHES, HEALTHY, RIGGED

    fixed = {"batches": BATCHES, "eval_every": 150, "log_every": 20}
    fixed["lr_decay"] = 0.01 ** (1 / BATCHES)
    space = {
        "objective": "reverse_kl",
        "space": {
            "lr_g": {"loguniform": [1e-5, 1e-2]},
            "lr_d": {"loguniform": [1e-5, 1e-2]},
            **{k: {"choice": [RIGGED[k], HEALTHY[k]]} for k in RIGGED if k not in ("lr_g", "lr_d")},
            **fixed,
        },
        "points_to_evaluate": [RIGGED, HEALTHY],
        "pbt": {"mutable": ["lr_g", "lr_d"], "quantile": 0},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    code, out = run_cli(
        "search", "ring", "--space", str(tmp_path / "space.yaml"), "--trials", "2", "--name",
        "rescue", "--results", str(tmp_path), "--scheduler", "pbt", "--seed", "0",
    )  # fmt: skip
    assert code == 0, out
    folder = SearchFolder(tmp_path / "rescue")
    trials = read_trials(folder).set_index("trial_id")
    rescued = [t for t in trials.index if read_copies(folder.trial_dir(t))]
    assert len(rescued) == 1, out  # at quantile 0 only an unhealthy trial is replaced
    (rigged,) = rescued
    (rescue,) = read_copies(folder.trial_dir(rigged))
    assert rescue["reason"].startswith("rescued: discriminator overpowering since step"), rescue
    assert trials.loc[rigged, "rescues"] == 1
    rows = read_diagnostics(folder.diagnostics, trial_id=rigged, kind="step")
    before = rows.iloc[: len(rows) - len(rows_since_copy(folder, rigged, rescue["batches"]))]
    assert (before["lr_d"] == RIGGED["lr_d"]).all()  # it was the rig until the rescue
    assert before["flag_overpower"].any()  # the flag the rescue answered
    # ... and the rescue: it ends completed, on the healthy lineage, with no flag raised
    row = trials.loc[rigged]
    assert row["status"] == "completed" and row["batches"] == BATCHES
    assert not row["flag_overpower"] and not row["flag_collapse"], row.to_dict()
    after = rows_since_copy(folder, rigged, rescue["batches"])
    assert len(after) and not after["flag_overpower"].any()
    assert json.loads(row["schedule"])[-1]["donor"] == rescue["donor"] != rigged
    assert "rescued: discriminator overpowering" in out  # the console says so as it happens


# ------------------------------------------------------------------ PB2
@pytest.mark.heavy
def test_pb2_chooses_new_values_inside_the_space(tmp_path):
    space = {
        "objective": "reverse_kl",
        "space": {
            "lr_g": {"loguniform": [3e-4, 1e-2]},
            "lr_d": {"loguniform": [3e-4, 1e-2]},
            "d_steps": {"int": [1, 2]},
            **TINY_RING,
            "batches": 800,
        },
        "pbt": {"mutable": ["lr_g", "lr_d", "d_steps"]},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    code, out = run_cli(
        "search", "ring", "--space", str(tmp_path / "space.yaml"), "--trials", "3", "--name",
        "pb2", "--results", str(tmp_path), "--scheduler", "pbt2", "--seed", "0",
        "--cpus-per-trial", "0.5",
    )  # fmt: skip
    assert code == 0, out
    folder = SearchFolder(tmp_path / "pb2")
    assert (read_trials(folder)["status"] == "completed").all()
    lineage = pd.read_parquet(folder.path / LINEAGE_TABLE)
    parsed = parse_space(space, "ring")
    for key in ("lr_g", "lr_d", "d_steps"):
        assert lineage[f"config/{key}"].map(parsed.params[key].contains).all(), lineage
    copies = [c for t, c in copies_made(folder)]
    assert copies, out
    segments = [s for raw in read_trials(folder)["schedule"] for s in json.loads(raw)]
    assert all(s["meta"]["lr_g"] == "GP-UCB" for s in segments if s["donor"])


# ------------------------------------------------------------------ a killed search resumes
@pytest.mark.heavy
def test_a_killed_pbt_search_resumes_with_every_trial_accounted_for(tmp_path):
    """The driver SIGKILLed once a trial has copied another's checkpoint, mid-way through the
    population's training; the same command then completes the search, every trial ended and
    recorded once, every schedule in the space, nothing that had ended trained again."""
    from test_faults import assert_records_intact, kill_session, launch, run, snapshot, wait_until

    space = {
        "objective": "reverse_kl",
        "space": {
            "lr_g": {"loguniform": [3e-4, 1e-2]},
            "lr_d": {"loguniform": [3e-4, 1e-2]},
            **TINY_RING,
            "batches": 1500,
        },
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    argv = [
        sys.executable, "run.py", "search", "ring", "--space", str(tmp_path / "space.yaml"),
        "--trials", "4", "--name", "killed", "--results", str(tmp_path), "--scheduler", "pbt",
        "--cpus-per-trial", "0.5", "--quiet",
    ]  # fmt: skip
    folder = SearchFolder(tmp_path / "killed")
    first = launch(argv, tmp_path / "first.log")
    try:
        wait_until(lambda: bool(copies_made(folder)), first, "a trial copied another")
    finally:
        kill_session(first)
    assert not folder.finished()
    before = snapshot(folder) if folder.diagnostics.is_dir() else {}
    assert_records_intact(folder, just_killed=True)

    second = run(argv)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    trials = read_trials(folder)
    assert (trials["status"] == "completed").all(), trials[["trial_id", "status", "reason"]]
    assert len(trials) == 4 and folder.summary.is_file()
    assert_records_intact(folder, before)
    parsed = parse_space(space, "ring")
    lineage = pd.read_parquet(folder.path / LINEAGE_TABLE)
    for key in ("lr_g", "lr_d"):
        assert lineage[f"config/{key}"].map(parsed.params[key].contains).all(), lineage
    assert set(lineage["donor"].dropna()) <= set(trials["trial_id"])
    for trial_id in trials["trial_id"]:  # each ending recorded once, as what it was
        ending = json.loads((folder.trial_dir(trial_id) / "outcome.json").read_text())
        assert ending["status"] == "completed", (trial_id, ending)
