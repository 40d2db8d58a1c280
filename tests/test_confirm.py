"""The confirmation stage on a real local Ray, on the toy ring where the answer is known.

The space's first point (the "paper default") trains G at a learning rate 30x too low; the
other point is the ring's working rate.  The search ranks the working rate first; confirmation
retrains both with four fresh seeds, and the verdict must say the winner beats the default by
more than seed noise.  (The statistics themselves are checked by hand in tests/test_stats.py.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RING, run_cli

from harness.cli import main
from harness.files import exclusive_lock
from harness.results.confirmation import read_confirmation
from harness.results.folder import SearchFolder
from harness.results.trials import read_trials

SLOW, WORKING = 3e-5, 1e-3
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    space = {
        "objective": "reverse_kl",
        "space": {"lr_g": {"choice": [SLOW, WORKING]}, **TINY_RING},
        "points_to_evaluate": [{"lr_g": SLOW}, {"lr_g": WORKING}],
    }
    (root / "ring.yaml").write_text(yaml.safe_dump(space))
    code, out = run_cli(
        "search", "ring", "--space", str(root / "ring.yaml"), "--trials", "2", "--name", "c",
        "--results", str(root), "--scheduler", "none", "--confirm", "1", "--confirm-seeds", "4",
    )  # fmt: skip
    return SearchFolder(root / "c"), code, out


def test_confirmation_retrains_winner_and_default_with_the_same_fresh_seeds(confirmed):
    folder, code, out = confirmed
    assert code == 0, out
    runs = read_confirmation(folder)
    assert len(runs) == 8 and (runs["status"] == "completed").all()
    by_label = {label: group for label, group in runs.groupby("candidate")}
    assert set(by_label) == {"rank 1", "paper default"}
    winner, default = by_label["rank 1"], by_label["paper default"]
    assert sorted(winner["seed"]) == sorted(default["seed"])  # the same seeds for both
    trials = read_trials(folder)
    assert not set(winner["seed"]) & set(trials["seed"])  # none a search trial used
    top = trials.sort_values("reverse_kl").iloc[0]
    assert winner["source_trial"].iloc[0] == top["trial_id"]
    assert json.loads(top["sample"])["lr_g"] == WORKING
    assert winner["reverse_kl"].mean() < default["reverse_kl"].mean()


def test_leaderboard_states_the_verdict(confirmed):
    folder, _, out = confirmed
    assert "confirmation: reverse_kl over 4 fresh seeds" in out
    assert "verdict: the winner is better than the paper default on reverse_kl beyond seed" in out
    code, text = run_cli(
        "leaderboard", "c", "--results", str(folder.path.parent), "--format", "json"
    )
    doc = json.loads(text)["confirmation"]
    assert doc["p_value"] < 0.05 and doc["seeds"] == 4
    labels = [c["label"] for c in doc["candidates"]]
    assert labels == ["rank 1", "paper default"]
    for c in doc["candidates"]:
        assert c["completed"] == 4 and c["ci95"][0] <= c["mean"] <= c["ci95"][1]
    report = (folder.path / "report.html").read_text()  # written after the confirmation
    assert "confirmed reverse_kl" in report and "verdict: the winner is better" in report


def test_confirm_again_resumes_and_refuses_another_request(confirmed):
    folder, _, _ = confirmed
    root = str(folder.path.parent)
    before = read_confirmation(folder)
    trial_dirs = sorted(p.name for p in folder.confirm_dir.joinpath("trials").iterdir())
    # what a kill in the middle of writing the table leaves, and a leaderboard's write in flight
    cut_short = folder.path / f".{folder.confirmation_table.name}.0badc0de.tmp"
    in_flight = folder.path / ".report.html.0badc0de.tmp"
    for temp in (cut_short, in_flight):
        temp.write_bytes(b"half")
    code, out = run_cli("confirm", "c", "--results", root, "--top", "1", "--seeds", "4")
    assert code == 0, out
    assert not cut_short.exists() and in_flight.exists()  # only the search's own writes cleared
    in_flight.unlink()
    assert read_confirmation(folder).equals(before)
    assert sorted(p.name for p in folder.confirm_dir.joinpath("trials").iterdir()) == trial_dirs
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["confirm", "c", "--results", root, "--top", "1", "--seeds", "3"])
    assert code == 2
    assert "a confirmation of other configurations or seeds is on record" in err.getvalue()


def test_confirm_is_refused_while_the_search_holds_its_folder(confirmed):
    """One process at a time runs a search's trials: `confirm` beside a running `search
    --confirm` of the same name would train the same confirmation twice."""
    folder, _, _ = confirmed
    err = io.StringIO()
    with exclusive_lock(folder.lock, "held by the test"), contextlib.redirect_stderr(err):
        code = main(["confirm", "c", "--results", str(folder.path.parent)])
    assert code == 2
    assert err.getvalue().splitlines() == [
        f"error: search 'c' is already running in another process (it holds {folder.lock}); "
        "wait for it to end"
    ]


def test_a_run_the_health_stopper_ended_counts_as_stopped_not_completed(tmp_path):
    """A stopped run leaves outcome.json, not result.json; it is kept out of the statistics."""
    from harness.files import atomic_write
    from harness.search.confirm import RUN_FILE, collect

    confirm = SearchFolder(tmp_path / "confirm")
    for k, (label, ending) in enumerate(
        [
            (
                "rank 1",
                {"status": "completed", "reason": "ok", "step": 3, "last_eval": {"stoi": 0.6}},
            ),
            ("paper default", None),
        ]
    ):
        trial_dir = confirm.trial_dir(f"t{k}")
        run = {"candidate": label, "source_trial": "", "sample": {"seed": 7}}
        atomic_write(trial_dir / RUN_FILE, json.dumps(run))
        if ending:
            atomic_write(trial_dir / "result.json", json.dumps(ending))
        else:
            reason = "mode collapse since step 200"
            atomic_write(
                trial_dir / "outcome.json", json.dumps({"status": "stopped", "reason": reason})
            )
    frame = collect(confirm, ["rank 1", "paper default"], "stoi")
    assert frame["status"].tolist() == ["completed", "stopped"]
    assert frame["reason"].iloc[1].startswith("mode collapse")
    assert frame["stoi"].iloc[0] == 0.6 and frame["stoi"].isna().iloc[1]


@pytest.mark.slow  # a second confirmation on Ray
def test_a_longer_budget_is_confirmed_apart_and_a_large_gap_decided_in_the_first_round(confirmed):
    """`confirm --batches 600` (seeds auto) confirms the same candidates at twice the search's
    budget: the default 30x too slow is decided after the first round of 3 seeds each; its rows
    record the budget beside the search budget's, which stay as they were, and the leaderboard
    says whether the search's ranking held there."""
    folder, _, _ = confirmed
    root = str(folder.path.parent)
    before = read_confirmation(folder)
    code, out = run_cli("confirm", "c", "--results", root, "--top", "1", "--batches", "600")
    assert code == 0, out
    table = read_confirmation(folder)
    longer = table[table["batches"] == 600]
    assert len(longer) == 6 and set(longer["round"]) == {1}  # one round: decided at once
    assert (longer["budget"] == "smoke").all() and (longer["status"] == "completed").all()
    assert set(longer["seed"]) < set(before["seed"])  # the first 3 of the same seeds
    kept = table[table["batches"] == 300].reset_index(drop=True)
    assert kept[before.columns].equals(before)  # the search budget's confirmation untouched
    assert (folder.path / "confirm-smoke-600" / "finished.json").is_file()
    assert "confirmation at 600 batches (smoke budget)" in out
    assert "ranking at 600 batches (smoke budget): the search's order held" in out
    code, text = run_cli("leaderboard", "c", "--results", root, "--format", "json")
    doc = json.loads(text)
    (check,) = doc["budget_checks"]
    assert (check["batches"], check["search_batches"], check["seeds"]) == (600, 300, 3)
    assert check["outcome"] == "better" and check["finished"] and check["ranking"]["held"]
    assert [c["rank_change"] for c in check["candidates"]] == [0, 0]
    assert doc["confirmation"]["batches"] == 300 and doc["confirmation"]["seeds"] == 4
    report = (folder.path / "report.html").read_text()
    assert "confirmed reverse_kl at 600 batches" in report


SAME = {
    "objective": "reverse_kl",
    "space": {"loss_upper_limit": {"choice": [1e6, 1e5]}, "lr_g": WORKING, **TINY_RING},
    "points_to_evaluate": [{"loss_upper_limit": 1e6}, {"loss_upper_limit": 1e5}],
}  # two configurations that train identically: no ring loss comes near either limit


@pytest.mark.heavy
def test_identical_configurations_end_bounded_and_a_killed_confirmation_resumes(tmp_path):
    """`search --confirm 2` of two configurations that train the same: every seed scores the
    same for both, so the verdict cannot say better; with a margin of 0.3 nats it ends "not
    better by more than the margin" within the maximum of 5 seeds, after more than one round.
    The driver is SIGKILLed while the second round trains; the same command finishes it, every
    seed run once to its end, and nothing that had ended trained again."""
    (tmp_path / "same.yaml").write_text(yaml.safe_dump(SAME))
    argv = [
        sys.executable, "run.py", "search", "ring", "--space", str(tmp_path / "same.yaml"),
        "--trials", "2", "--name", "same", "--results", str(tmp_path), "--scheduler", "none",
        "--quiet", "--confirm", "2", "--confirm-max-seeds", "5", "--confirm-margin", "0.3",
    ]  # fmt: skip
    folder = SearchFolder(tmp_path / "same")
    confirm = folder.confirm_dir

    def in_round_two() -> bool:
        runs = [json.loads(p.read_text()) for p in confirm.glob("trials/*/run.json")]
        return any(run["round"] == 2 for run in runs)

    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 900
        while not in_round_two() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_round_two(), (tmp_path / "first.log").read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (confirm / "finished.json").is_file()
    ended = {p.parent.name: p.stat().st_mtime_ns for p in confirm.glob("trials/*/result.json")}
    assert len(ended) >= 6  # the first round, 3 seeds of each

    second = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for trial_id, stamp in ended.items():  # nothing that had ended trained again
        assert (confirm / "trials" / trial_id / "result.json").stat().st_mtime_ns == stamp
    table = read_confirmation(folder)
    done = table[table["status"] == "completed"]
    assert not done.duplicated(["candidate", "seed"]).any()  # every seed ran once to its end
    per_seed = done.pivot(index="seed", columns="candidate", values="reverse_kl")
    assert per_seed.shape[1] == 2 and (per_seed.iloc[:, 0] == per_seed.iloc[:, 1]).all()
    assert 3 < len(per_seed) <= 5  # more than one round, never past the maximum
    rounds = yaml.safe_load((confirm / "rounds.yaml").read_text())
    assert len(rounds) >= 2 and all(len(r) == 2 for r in rounds[1:])  # the best and the default
    code, text = run_cli("leaderboard", "same", "--results", str(tmp_path), "--format", "json")
    doc = json.loads(text)["confirmation"]
    assert doc["finished"] and doc["outcome"] == "bounded" and doc["gain"] == 0
    assert "by more than 0.3, the margin" in doc["verdict"]
    third = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "has already finished" in third.stdout
