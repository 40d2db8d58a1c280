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

import pytest
import yaml
from conftest import TINY_RING, run_cli

from harness.cli import main
from harness.files import exclusive_lock
from harness.results.confirmation import read_confirmation
from harness.results.folder import SearchFolder
from harness.results.trials import read_trials

SLOW, WORKING = 3e-5, 1e-3


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
