"""Ranking, Pareto front and output formats of the leaderboard, on hand-made trials tables."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

import pytest

from harness.results.folder import ResultsError, SearchFolder, find_search
from harness.results.leaderboard import LeaderboardError, list_table, pareto_front, rank, render
from harness.results.plan import SearchPlan
from harness.results.trials import read_trials, write_trials

NAN = float("nan")
# mel_l1 (lower is better) vs generator size: a, b, c are the Pareto front, d is dominated by b
ROWS = [
    ("a", "completed", 0.30, 4e5, 1e-3, ""),
    ("b", "completed", 0.40, 1e5, 2e-4, ""),
    ("c", "completed", 0.50, 5e4, 5e-4, ""),
    ("d", "completed", 0.45, 2e5, 3e-4, ""),
    ("e", "pruned", 0.20, 1e5, 9e-4, "cut by ASHA at step 200"),
    ("f", "stopped", 0.10, 1e5, 8e-4, "diverged: 25 consecutive G updates skipped"),
    ("g", "errored", NAN, 1e5, 7e-4, "RuntimeError: boom (after 2 retries)"),
    ("h", "running", 0.90, 1e5, 6e-4, ""),
    ("i", "completed", NAN, 1e5, 1e-4, ""),
]


def make_search(root, name="demo", multi=True, rows=ROWS) -> SearchFolder:
    folder = SearchFolder(root / name)
    plan = SearchPlan(
        name=name,
        recipe="hifigan",
        budget="smoke",
        space_file="search_spaces/hifigan.yaml",
        space={},
        swept=["lr_g"],
        objective="mel_l1",
        mode="min",
        trials=len(rows),
        multi_objective=multi,
    )
    plan.save(folder)
    write_trials(
        folder,
        [
            {
                "search": name,
                "trial_id": t,
                "status": s,
                "reason": r,
                "mel_l1": m,
                "pesq": 1.0 + (1 - m if m == m else 0),
                "params_g": p,
                "config/lr_g": lr,
                "step": 400,
                "time_s": 60.0,
                "flag_collapse": t == "c",
                "flag_overpower": t in ("c", "d"),
            }
            for t, s, m, p, lr, r in rows
        ],
    )
    return folder


def test_finished_trials_rank_first_best_objective_first(tmp_path):
    folder = make_search(tmp_path)
    ranked = rank(read_trials(folder), SearchPlan.load(folder))
    assert ranked["trial_id"].tolist() == ["a", "b", "d", "c", "i", "e", "f", "g", "h"]
    assert ranked["rank"].tolist() == list(range(1, 10))


def test_sort_by_another_column_keeps_unfinished_trials_below(tmp_path):
    folder = make_search(tmp_path)
    plan, frame = SearchPlan.load(folder), read_trials(folder)
    by_size = rank(frame, plan, "params_g")["trial_id"].tolist()  # params_g: smaller is better
    assert by_size[:5] == ["c", "b", "i", "d", "a"]
    by_lr = rank(frame, plan, "lr_g:desc")["trial_id"].tolist()  # "lr_g" means config/lr_g
    assert by_lr[:5] == ["a", "c", "d", "b", "i"]
    with pytest.raises(LeaderboardError, match="--sort 'loss': no such column"):
        rank(frame, plan, "loss")


def test_pareto_front_of_quality_and_size(tmp_path):
    folder = make_search(tmp_path)
    assert pareto_front(read_trials(folder), SearchPlan.load(folder)) == ["a", "b", "c"]


def test_csv_and_json_parse(tmp_path):
    folder = make_search(tmp_path)
    rows = list(csv.DictReader(io.StringIO(render(folder, "csv"))))
    assert [r["trial"] for r in rows][:3] == ["a", "b", "d"]
    assert list(rows[0])[:5] == ["rank", "trial", "status", "mel_l1", "pareto"]
    assert rows[0]["pareto"] == "True" and rows[2]["pareto"] == "False"
    assert float(rows[1]["mel_l1"]) == 0.40 and rows[1]["lr_g"] == "0.0002"
    assert rows[7]["reason"] == "RuntimeError: boom (after 2 retries)"

    doc = json.loads(render(folder, "json", top=3))
    assert doc["search"] == "demo" and doc["objective"] == "mel_l1" and doc["mode"] == "min"
    assert [t["trial"] for t in doc["trials"]] == ["a", "b", "d"]
    assert doc["pareto"] == ["a", "b", "c"]
    assert doc["trials"][0]["pesq"] == pytest.approx(1.7)


def test_table_and_markdown_show_front_and_importances(tmp_path):
    folder = make_search(tmp_path)
    folder.importances.write_text(json.dumps({"importances": {"lr_g": 0.8, "d_steps": 0.2}}))
    table = render(folder, "table")
    assert table.splitlines()[0].startswith("search demo: hifigan (smoke), objective mel_l1")
    assert "Pareto front (mel_l1 min, params_g min): a, b, c" in table
    assert "parameter importance for mel_l1 (PED-ANOVA): lr_g 0.80, d_steps 0.20" in table
    assert "diverged: 25 consecutive G updates skipped" in table
    flags = {line.split()[1]: line for line in table.splitlines()[3:12]}
    assert "collapse,overpower" in flags["c"].split() and "overpower" in flags["d"].split()
    assert "collapse" not in flags["a"] and "overpower" not in flags["a"]
    markdown = render(folder, "markdown", top=2).splitlines()
    assert markdown[2].startswith("| rank | trial | status | mel_l1 | pareto |")
    assert markdown[3].startswith("|---|")
    assert sum(line.startswith("| 1 |") or line.startswith("| 2 |") for line in markdown) == 2


def test_single_objective_has_no_front(tmp_path):
    folder = make_search(tmp_path, multi=False)
    assert "pareto" not in render(folder, "csv").splitlines()[0]
    assert "Pareto" not in render(folder, "table")


def test_list_and_most_recent_search(tmp_path):
    older = make_search(tmp_path, "older", rows=ROWS[:2])
    os.utime(older.trials_table, (1, 1))
    os.utime(older.config, (1, 1))
    make_search(tmp_path, "newer", rows=ROWS[:3])
    assert find_search(tmp_path, None).name == "newer"
    lines = list_table(tmp_path).splitlines()
    assert lines[0].split()[:5] == ["search", "recipe", "budget", "objective", "trials"]
    assert lines[1].split()[:5] == ["newer", "hifigan", "smoke", "mel_l1", "3/3"]
    assert lines[2].split()[0] == "older"
    with pytest.raises(ResultsError, match="search 'nope' not found .*searches: newer, older"):
        find_search(tmp_path, "nope")


def test_rows_are_never_dropped_and_unknown_folders_are_recovered(tmp_path):
    folder = make_search(tmp_path, rows=ROWS[:2])
    write_trials(folder, [{"search": "demo", "trial_id": "z", "status": "running", "reason": ""}])
    trial = folder.trial_dir("y")  # a trial the table never heard of, whose training ended
    trial.mkdir(parents=True)
    (trial / "config.yaml").write_text("recipe: ring\nseed: 0\n")
    (trial / "result.json").write_text(json.dumps({
        "status": "completed", "reason": "reached 400 steps", "step": 400,
        "last_eval": {"step": 400, "wall_s": 9.0, "mel_l1": 0.2}, "params_g": 5.0,
    }))  # fmt: skip
    frame = write_trials(folder, [], every_live_trial=False).set_index("trial_id")
    assert sorted(frame.index) == ["a", "b", "y", "z"]
    assert frame.loc["y", "status"] == "completed" and frame.loc["y", "mel_l1"] == 0.2
    # a live view of the search without "z": it started after Ray's last snapshot
    frame = write_trials(folder, [], every_live_trial=True).set_index("trial_id")
    assert frame.loc["z", "status"] == "lost" and frame.loc["a", "status"] == "completed"


def test_cli_errors_are_one_line(tmp_path, capsys):
    from harness.cli import main

    make_search(tmp_path)
    assert main(["leaderboard", "nope", "--results", str(tmp_path)]) == 2
    assert main(["leaderboard", "--results", str(tmp_path), "--top", "0"]) == 2
    assert main(["leaderboard", "--results", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: search 'nope' not found")
    assert err[1] == "error: --top 0: must be >= 1"
    assert err[2].startswith("error: ") and "no searches yet" in err[2]


def test_healthy_only_drops_flagged_trials(tmp_path):
    folder = make_search(tmp_path)
    everyone = [r["trial"] for r in csv.DictReader(io.StringIO(render(folder, "csv")))]
    healthy = [
        r["trial"] for r in csv.DictReader(io.StringIO(render(folder, "csv", healthy_only=True)))
    ]
    assert {"c", "d"} <= set(everyone)
    assert set(healthy) == set(everyone) - {"c", "d"}


def test_default_table_of_a_real_search_fits_120_columns(ring_search):
    folder, _ = ring_search
    table = render(folder, "table")
    assert all(len(line) <= 120 for line in table.splitlines()), table
    header = table.splitlines()[2].split()
    assert header[:4] == ["rank", "trial", "status", "reverse_kl"]
    assert {"modes_covered", "high_quality", "train_s", "flags"} <= set(header)
    assert any(p in header for p in SearchPlan.load(folder).swept), table  # a swept parameter
    trials = read_trials(folder)
    rows = table.splitlines()[3 : 3 + len(trials)]
    assert sorted(line.split()[1] for line in rows) == sorted(trials["trial_id"])
    for trial in trials[trials["status"] != "completed"].itertuples():
        assert any(
            line.startswith(f"{trial.trial_id} {trial.status}: ") for line in table.splitlines()
        )


def test_wide_table_keeps_every_column(ring_search):
    folder, _ = ring_search
    columns = next(csv.reader(io.StringIO(render(folder, "csv"))))
    wide = render(folder, "table", wide=True).splitlines()[2].split()
    assert wide == columns and len(columns) > len(render(folder, "table").splitlines()[2].split())
    assert max(len(line) for line in render(folder, "table", wide=True).splitlines()) > 120


def test_an_enhancers_objective_comes_with_its_noisy_baseline_and_gain():
    import pandas as pd

    from harness.results.leaderboard import narrow_columns

    plan = SearchPlan(
        name="mg", recipe="metricgan", budget="smoke", space_file="x.yaml", space={},
        swept=["lr_g"], objective="pesq", mode="max", trials=1,
    )  # fmt: skip
    frame = pd.DataFrame(
        [{"rank": 1, "trial_id": "a", "status": "completed", "pesq": 1.4, "stoi": 0.9,
          "estoi": 0.7, "si_snr": 10.0, "pesq_noisy": 1.15, "pesq_gain": 0.25, "batches": 800,
          "train_s": 377.0, "flags": "", "config/lr_g": 1e-3}]
    )  # fmt: skip
    columns = narrow_columns(frame, plan, {})
    assert columns[:6] == ["rank", "trial_id", "status", "pesq", "pesq_noisy", "pesq_gain"]
    gain = narrow_columns(frame, dataclasses.replace(plan, objective="pesq_gain"), {})
    assert gain[3:6] == ["pesq_gain", "pesq", "pesq_noisy"]
