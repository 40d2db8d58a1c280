"""Population-based training against TPE + ASHA on the same recipe, at equal total batches.

Reads two finished and confirmed searches (``run.py search ... --scheduler pbt`` and the default
search, each then ``run.py confirm NAME --top 1``) and prints, as Markdown for
docs/search-protocol.md: each search's trials, the training batches they drew in all (a PBT
trial's copies that sent it back to an earlier batch drew those batches again, counted from its
``copies.json``), its wall time and best trial; each winner's objective over the confirmation's
fresh seeds (the PBT winner through its replayed schedule); and the verdict: a one-sided Welch
t-test of the PBT winner against the TPE + ASHA winner over those seeds (both searches seeded
alike, so both winners ran the same confirmation seeds).

    uv run python benchmarks/pbt_comparison.py cmp-pbt cmp-asha --results results
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from harness.files import results_root
from harness.results.confirmation import read_confirmation
from harness.results.folder import SearchFolder, find_search
from harness.results.leaderboard import rank
from harness.results.lineage import read_copies
from harness.results.plan import SearchPlan
from harness.results.stats import compare, summarise
from harness.results.trials import read_trials
from harness.scoring.registry import SCORES


def batches_drawn(folder: SearchFolder, trials: pd.DataFrame) -> int:
    """Training batches every trial drew: where it ended, plus what each copy of a donor's
    earlier checkpoint made it draw again."""
    total = 0
    for _, row in trials.iterrows():
        reached = 0 if pd.isna(row.get("batches")) else int(row["batches"])
        again = sum(
            max(0, int(c["left_at"]) - int(c["batches"]))
            for c in read_copies(folder.trial_dir(row["trial_id"]))
            if c.get("left_at") is not None
        )
        total += reached + again
    return total


def winner_runs(folder: SearchFolder, objective: str) -> tuple[str, list[float]]:
    """(the confirmed winner's trial, its objective over the fresh seeds that completed)."""
    runs = read_confirmation(folder)
    if runs is None:
        raise SystemExit(f"error: search {folder.name!r} is not confirmed; run `run.py confirm`")
    top = runs[runs["candidate"].str.startswith("rank 1")]
    done = top[(top["status"] == "completed") & top[objective].notna()]
    return str(top["source_trial"].iloc[0]), [float(v) for v in done[objective]]


def describe(folder: SearchFolder) -> dict:
    plan = SearchPlan.load(folder)
    trials = read_trials(folder)
    ranked = rank(trials, plan)
    summary = json.loads(folder.summary.read_text())
    trial, values = winner_runs(folder, plan.objective)
    return {
        "plan": plan,
        "trials": len(trials),
        "batches": batches_drawn(folder, trials),
        "wall_s": summary["wall_s"],
        "best": ranked.iloc[0],
        "winner": trial,
        "values": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pbt", help="the population-based search's name")
    parser.add_argument("asha", help="the TPE + ASHA search's name")
    parser.add_argument("--results", help="results root (default ./results)")
    args = parser.parse_args()
    root = results_root(args.results)
    pbt, asha = (describe(find_search(root, name)) for name in (args.pbt, args.asha))
    objective = pbt["plan"].objective
    higher = SCORES[objective].higher_is_better
    print(f"| search | trials | batches drawn | wall time | best in the search ({objective}) "
          f"| winner over {len(pbt['values'])} fresh seeds |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, got in (("PBT", pbt), ("TPE + ASHA", asha)):
        best = got["best"]
        print(
            f"| {name} (`{got['plan'].name}`) | {got['trials']} | {got['batches']:,} | "
            f"{got['wall_s'] / 60:.1f} min | {best[objective]:.4g} ({best['trial_id']}) | "
            f"{summarise(got['values']).format()} ({got['winner']}) |"
        )
    verdict = compare(pbt["values"], asha["values"], higher)
    print()
    print(verdict.verdict("the PBT winner", "the TPE + ASHA winner", objective))


if __name__ == "__main__":
    main()
