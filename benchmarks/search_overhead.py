"""How much of a search's wall time goes to anything but training steps and validation.

Runs ``run.py search`` (default: the smoke HiFi-GAN search as a fresh clone runs it) into a
temporary results folder, or analyses a finished one (``--analyse NAME --results DIR``), and
splits its trial-slot time (wall time x trials allowed at once):

    training     sum over trials of step_s x steps                (diagnostics step rows)
    validation   sum over validations of their duration           (eval row wall_s minus the
                 wall_s of the step row logged just before it, at the same step)
    overhead     everything else: Ray start-up, trial start (process, imports, data), reporting
                 and checkpoints, logging, scheduling gaps and the tail where fewer trials than
                 slots were left

    uv run python benchmarks/search_overhead.py                       # ~10 min on 2 cores
    uv run python benchmarks/search_overhead.py --recipe ring --trials 8
    uv run python benchmarks/search_overhead.py --analyse hifigan-smoke --results results
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from harness.cli import main as cli
from harness.diagnostics.telemetry import read_diagnostics
from harness.results.folder import SearchFolder
from harness.results.plan import Resources, SearchPlan
from harness.results.trials import read_trials


def useful_seconds(folder: SearchFolder) -> tuple[float, float]:
    """(training, validation) seconds summed over every trial of the search."""
    rows = read_diagnostics(folder.diagnostics)
    configs = read_trials(folder).set_index("trial_id")["resolved_config"]
    train = valid = 0.0
    for trial_id, trial in rows.groupby("trial_id", sort=False):
        log_every = json.loads(configs[trial_id])["log_every"]
        last_step, previous = 0, None
        for row in trial.itertuples():  # in write order; a resumed attempt repeats steps
            if row.kind == "step":
                gap = row.step - last_step
                train += row.step_s * (gap if gap > 0 else row.step % log_every or log_every)
                last_step = row.step
            elif row.step == 0:  # the first validation starts the trainer's clock
                valid += row.wall_s
            elif previous is not None and previous.kind == "step" and previous.step == row.step:
                valid += row.wall_s - previous.wall_s  # (includes the checkpoint write)
            previous = row
    return train, valid


def report(folder: SearchFolder, wall_s: float, ray_start_s: float | None) -> dict:
    plan, at_once = SearchPlan.load(folder), Resources.load(folder).trials_at_once
    trials = read_trials(folder)
    train, valid = useful_seconds(folder)
    slots = at_once * wall_s
    in_trials = float(trials["time_s"].fillna(0).sum())  # Ray's time per trial, start-up included
    in_trainer = float(trials["train_s"].fillna(0).sum())
    out = {
        "search": folder.name,
        "recipe": plan.recipe,
        "budget": plan.budget,
        "trials": len(trials),
        "statuses": trials["status"].value_counts().to_dict(),
        "slots": at_once,
        "wall_s": round(wall_s, 1),
        "ray_start_s": None if ray_start_s is None else round(ray_start_s, 1),
        "training_s": round(train, 1),
        "validation_s": round(valid, 1),
        "trainer_other_s": round(in_trainer - train - valid, 1),  # checkpoints, reports, logs
        "trial_start_s": round(in_trials - in_trainer, 1),  # process, imports, model, data
        "idle_slot_s": round(slots - in_trials, 1),  # Ray start, gaps, the tail
        "overhead": round(1.0 - (train + valid) / slots, 4),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="hifigan")
    p.add_argument("--trials", type=int, help="default: the search's own default (8 at smoke)")
    p.add_argument("--results", type=Path, help="results root (default: a temporary folder)")
    p.add_argument("--analyse", metavar="NAME", help="analyse this finished search instead")
    args = p.parse_args(argv)

    if args.analyse:
        folder = SearchFolder((args.results or Path("results")) / args.analyse)
        summary = json.loads(folder.summary.read_text())
        print(json.dumps(report(folder, summary["wall_s"], summary.get("ray_start_s")), indent=2))
        return 0
    root = args.results or Path(tempfile.mkdtemp(prefix="search-overhead-"))
    command = ["search", args.recipe, "--name", "overhead", "--results", str(root), "--quiet"]
    if args.trials:
        command += ["--trials", str(args.trials)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli(command)
    wall_s = time.perf_counter() - t0
    if code != 0:
        print(f"search failed with exit status {code}", file=sys.stderr)
        return code
    folder = SearchFolder(root / "overhead")
    summary = json.loads(folder.summary.read_text())
    print(json.dumps(report(folder, wall_s, summary.get("ray_start_s")), indent=2))
    print(f"results: {folder.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
