"""How far HiFi-GAN's objective metrics move on the built-in corpus, per batch drawn and per seed.

The evidence behind the CPU default budget (README, "Budgets"): the paper configuration is trained
at the smoke model size with every metric scored at each validation (DNSMOS and pitch included,
which the smoke budget leaves out for time), once per seed, and the eval rows are printed as one
Markdown table per seed and, over the seeds, mean +- std at each validation.

    uv run python benchmarks/budget_calibration.py --seeds 0 --batches 1200 --eval-every 150
    uv run python benchmarks/budget_calibration.py --seeds 0 1 2 --batches 300 --eval-every 100
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from harness.recipes.hifigan import DNSMOS_AND_PITCH, SCORED
from harness.runs.resolve import resolve_config
from harness.runs.trial import run_trial

SHOWN = ("mel_l1", "stoi", "pesq", "dnsmos_ovrl", "pitch_rmse_cents", "periodicity_rmse", "vuv_f1")


def train(seed: int, batches: int, eval_every: int, sample: dict[str, object]) -> list[dict]:
    """Eval rows of one smoke-size run of the given configuration and seed."""
    overrides = {
        "seed": seed,
        "batches": batches,
        "eval_every": eval_every,
        "eval_metrics": (*SCORED, *DNSMOS_AND_PITCH),
        "threads": 2,
    }
    cfg = resolve_config("hifigan", "smoke", sample=sample, overrides=overrides)
    rows: list[dict] = []

    def keep(kind: str, row: dict, _checkpoint: object) -> None:
        if kind == "eval":
            rows.append(dict(row))
            print(f"seed {seed} batches {row['batches']}: stoi {row['stoi']:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as out:
        run_trial(cfg, Path(out), on_report=keep)
    return rows


def table(rows_by_seed: dict[int, list[dict]]) -> str:
    """Mean (+- std over seeds when there are several) of each shown metric per validation."""
    head = ["batches", "wall s", *SHOWN]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    runs = list(rows_by_seed.values())
    for k in range(min(len(r) for r in runs)):
        at = [r[k] for r in runs]
        cells = [str(at[0]["batches"]), f"{np.median([a['wall_s'] for a in at]):.0f}"]
        for metric in SHOWN:
            values = np.array([a[metric] for a in at], dtype=float)
            cell = f"{values.mean():.3f}"
            if len(values) > 1:
                cell += f" ± {values.std(ddof=1):.3f}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batches", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    sample = dict(pair.split("=", 1) for pair in args.set)
    runs = {seed: train(seed, args.batches, args.eval_every, sample) for seed in args.seeds}
    label = ", ".join(f"{k}={v}" for k, v in sample.items()) or "paper configuration"
    print(f"\nHiFi-GAN smoke size, {label}, seeds {args.seeds}\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
