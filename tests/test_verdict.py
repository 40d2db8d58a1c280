"""What a confirmation says, from its rows: the winner re-picked by confirmed means, the guard
metrics, whether the search's ranking held, and old tables read as they were written.

The rows are built by hand (as ``confirmation.parquet`` holds them), so every answer is known;
tests/test_confirm.py runs the same on real confirmations of the toy ring.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest
import yaml
from scipy import stats

from harness.diagnostics.telemetry import write_table_atomic
from harness.results.confirmation import DEFAULT_LABEL, search_confirmation_finished
from harness.results.confirmation_summary import summarise_confirmation, summarise_confirmations
from harness.results.folder import SearchFolder
from harness.results.plan import SearchPlan
from harness.results.sequential import Design, schedule
from harness.results.verdict import summary_dict, summary_lines, verdict_line

PLAN = SearchPlan(
    name="toy",
    recipe="ring",
    budget="smoke",
    space_file="ring.yaml",
    space={"objective": "reverse_kl", "space": {"lr_g": {"loguniform": [1e-4, 1e-2]}}},
    swept=["lr_g"],
    objective="reverse_kl",
    mode="min",
    trials=4,
)
SEEDS = [11, 12, 13, 14, 15]


def rows(label: str, trial: str, objective: list[float], **guards: list[float]) -> list[dict]:
    """One completed run per value, seeds in order, the guard metrics beside the objective."""
    out = []
    for i, value in enumerate(objective):
        row = {
            "candidate": label,
            "source_trial": trial,
            "seed": SEEDS[i],
            "trial_id": f"{trial}-{i}",
            "status": "completed",
            "reason": "ok",
            "reverse_kl": value,
        }
        row.update({metric: values[i] for metric, values in guards.items()})
        out.append(row)
    return out


def ranked(*trials: tuple[str, float]) -> pd.DataFrame:
    """The search's leaderboard: trial ids in rank order with their objective."""
    return pd.DataFrame(
        {
            "rank": range(1, len(trials) + 1),
            "trial_id": [t for t, _ in trials],
            "reverse_kl": [v for _, v in trials],
            "status": "completed",
        }
    )


def test_the_winner_is_the_confirmed_best_not_the_search_rank_1():
    """Rank 1 confirms worse than rank 2 (the winner's curse): the verdict is about rank 2, the
    table lists it first, and the ranking line says the order changed beyond seed noise."""
    runs = pd.DataFrame(
        rows("rank 1", "t1", [0.90, 0.95, 0.92])
        + rows("rank 2", "t2", [0.20, 0.25, 0.22])
        + rows(DEFAULT_LABEL, "t3", [1.50, 1.40, 1.45])
    )
    design = Design((3,), candidates=2, margin=0.1)
    summary = summarise_confirmation(runs, PLAN, ranked(("t1", 0.1), ("t2", 0.2), ("t3", 0.9)),
                                     design=design)  # fmt: skip
    assert [c.label for c in summary.candidates] == ["rank 2", "rank 1", DEFAULT_LABEL]
    assert summary.best.label == "rank 2" and summary.progress.outcome == "better"
    verdict = verdict_line(summary)
    assert verdict.startswith("verdict: the winner is better than the paper default on reverse_kl")
    assert "the winner: rank 2 (trial t2), the best confirmed mean of 2 candidates" in verdict
    assert "could detect a gain of" in verdict
    text = "\n".join(summary_lines(summary))
    assert "the search's order changed beyond seed noise" in text
    assert "rank 2 (search #2) above rank 1 (search #1)" in text
    doc = summary_dict(summary)
    moves = {c["label"]: c["rank_change"] for c in doc["candidates"]}
    assert moves == {"rank 2": 1, "rank 1": -1, DEFAULT_LABEL: 0}
    assert doc["ranking"] == {"pairs": 3, "held": False, "reversed": [["rank 1", "rank 2"]]}


def test_a_win_that_costs_a_guard_metric_says_so():
    """Better on the objective, much worse on sample quality (a guard): the verdict names the
    loss; a guard that moves within noise is not called a loss."""
    runs = pd.DataFrame(
        rows("rank 1", "t1", [0.20, 0.25, 0.22, 0.21],
             high_quality=[0.30, 0.31, 0.29, 0.30], modes_covered=[8, 7, 8, 8])
        + rows(DEFAULT_LABEL, "t2", [1.50, 1.40, 1.45, 1.42],
               high_quality=[0.90, 0.91, 0.89, 0.90], modes_covered=[8, 8, 7, 8])
    )  # fmt: skip
    summary = summarise_confirmation(runs, PLAN)
    checks = {g.metric: g for g in summary.guards}
    assert set(checks) == {"modes_covered", "high_quality"}  # the ring's guards but its objective
    assert checks["high_quality"].loss and not checks["modes_covered"].loss
    assert verdict_line(summary).endswith("but the win costs a significant loss on high_quality")
    guards = next(line for line in summary_lines(summary) if line.startswith("guards"))
    assert "high_quality -0.6 (p = " in guards and "a significant loss on high_quality" in guards


def test_identical_seeds_end_bounded_at_the_margin_and_say_what_the_test_could_see():
    same = [0.50, 0.62, 0.55, 0.58, 0.60]
    runs = pd.DataFrame(rows("rank 1", "t1", same) + rows(DEFAULT_LABEL, "t2", same))
    summary = summarise_confirmation(runs, PLAN, design=Design(schedule(5), 1, margin=0.2))
    assert summary.finished and summary.progress.outcome == "bounded"
    verdict = verdict_line(summary)
    assert "is not better than the paper default on reverse_kl by more than 0.2, the margin: " \
           "gain +0, at most +" in verdict  # fmt: skip
    # a margin it cannot reach by the last look: the bound it did reach is stated instead
    summary = summarise_confirmation(runs, PLAN, design=Design(schedule(5), 1, margin=0.01))
    look = summary.progress.look
    assert summary.finished and summary.progress.outcome == "open"
    assert f"by more than {look.upper:+.3g}, its corrected upper bound" in verdict_line(summary)


def test_an_unfinished_sequential_confirmation_says_so():
    runs = pd.DataFrame(
        rows("rank 1", "t1", [0.50, 0.90, 0.55]) + rows(DEFAULT_LABEL, "t2", [0.60, 0.70, 0.85])
    )
    summary = summarise_confirmation(runs, PLAN, design=Design(schedule(10), 1, margin=0.05))
    assert not summary.finished and summary.progress.wanted == {"rank 1": 5, DEFAULT_LABEL: 5}
    assert verdict_line(summary).startswith("verdict so far (more seeds to run;")


def test_a_new_best_catching_up_says_so_before_it_is_compared():
    runs = pd.DataFrame(
        rows("rank 1", "t1", [0.50, 0.90, 0.55, 0.95, 0.99])
        + rows("rank 2", "t3", [0.40, 0.45, 0.42])
        + rows(DEFAULT_LABEL, "t2", [0.60, 0.70, 0.85, 0.80, 0.75])
    )
    summary = summarise_confirmation(runs, PLAN, design=Design(schedule(10), 2, margin=0.05))
    assert summary.progress.wanted == {"rank 2": 5} and summary.comparison is None
    assert verdict_line(summary) == (
        "verdict so far (more seeds to run; the same command continues): rank 2 now has the best "
        "confirmed mean, over 3 seeds; it runs up to the paper default's 5 before the two are "
        "compared"
    )


def test_an_enhancers_winner_is_checked_against_doing_nothing():
    noisy = {"stoi_noisy": [0.90] * 5, "pesq_noisy": [1.15] * 5}
    runs = pd.DataFrame(
        rows(
            "rank 1",
            "t1",
            [0.2, 0.3, 0.25, 0.22, 0.28],
            stoi=[0.88, 0.87, 0.89, 0.88, 0.87],
            pesq=[1.16, 1.10, 1.22, 1.18, 1.14],
            **noisy,
        )
        + rows(
            DEFAULT_LABEL,
            "t2",
            [1.4, 1.5, 1.45, 1.42, 1.48],
            stoi=[0.91] * 5,
            pesq=[1.2] * 5,
            **noisy,
        )
    )
    summary = summarise_confirmation(runs, PLAN)
    checks = {c.metric: c for c in summary.against_input}
    assert set(checks) == {"stoi", "pesq"}  # the scores the rows hold for the input too
    gains = [v - 0.90 for v in (0.88, 0.87, 0.89, 0.88, 0.87)]
    assert checks["stoi"].stats.gain == pytest.approx(-0.022)
    assert checks["stoi"].p_value == pytest.approx(stats.ttest_1samp(gains, 0.0).pvalue)
    assert checks["stoi"].loss and not checks["pesq"].loss  # STOI below the input beyond noise
    line = next(x for x in summary_lines(summary) if x.startswith("against the noisy input"))
    assert line.endswith("a significant loss on stoi")
    data = summary_dict(summary)["against_input"]
    assert {d["metric"]: d["significant_loss"] for d in data} == {"stoi": True, "pesq": False}
    plain = summarise_confirmation(runs.drop(columns=list(noisy)), PLAN)
    assert plain.against_input == []  # not an enhancer: no line
    assert not any(x.startswith("against the noisy") for x in summary_lines(plain))


@pytest.fixture
def old_folder(tmp_path) -> SearchFolder:
    """A search whose confirmation was written before rounds, budgets and designs: no
    ``budget``, ``batches`` or ``round`` column, a plan.yaml of seeds and candidates only."""
    folder = SearchFolder(tmp_path / "toy")
    folder.path.mkdir()
    PLAN.save(folder)
    runs = pd.DataFrame(
        rows("rank 1", "t1", [0.2, 0.3, 0.25]) + rows(DEFAULT_LABEL, "t2", [1.4, 1.5, 1.45])
    )
    write_table_atomic(folder.confirmation_table, pa.Table.from_pandas(runs))
    folder.confirm_dir.mkdir()
    plan = {"seeds": SEEDS[:3], "candidates": [{"label": "rank 1"}, {"label": DEFAULT_LABEL}]}
    (folder.confirm_dir / "plan.yaml").write_text(yaml.safe_dump(plan))
    return folder


def test_an_old_confirmation_table_reads_as_the_search_budget_with_its_seeds(old_folder):
    (summary,) = summarise_confirmations(old_folder, PLAN)
    assert summary.setting.search and summary.setting.batches == 3000  # the ring's smoke budget
    assert summary.design.looks == (3,) and summary.design.candidates == 1
    assert summary.finished and summary.progress.outcome == "better"
    assert search_confirmation_finished(old_folder)  # written once, at its end
    assert json.loads(json.dumps(summary_dict(summary)))["seeds"] == 3
