"""How busy a search kept its GPU, and how fast its trials trained, from nvidia-smi's samples and
the trials' own step rows.

nvidia-smi samples the device while the search runs (``benchmarks/gpu_check.sh`` does this):

    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used \\
        --format=csv,noheader,nounits -lms 200 > smi.csv &
    python benchmarks/gpu_usage.py smi.csv results/NAME

Utilisation is the share of each sample period in which a kernel ran; the idle fraction is the
share of samples at 0 % between the first and the last busy sample (start-up and the driver's
closing work fall outside).  Throughput is each trial's median ``samples_per_s`` over its step
rows (training only, validation excluded), the first row (cuDNN's algorithm search) left out.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from harness.diagnostics.telemetry import read_diagnostics
from harness.results.folder import SearchFolder


def utilisation(smi_csv: Path) -> dict[str, float]:
    """Busy window, mean utilisation, idle fraction and peak memory of one nvidia-smi log."""
    with smi_csv.open() as f:
        rows = [(float(r[1]), float(r[2])) for r in csv.reader(f) if len(r) == 3]
    busy = [i for i, (util, _) in enumerate(rows) if util > 0]
    if not busy:
        return {"samples": float(len(rows)), "window": 0.0}
    window = rows[busy[0] : busy[-1] + 1]
    return {
        "samples": float(len(window)),
        "mean_util_pct": sum(u for u, _ in window) / len(window),
        "idle_fraction": sum(u == 0 for u, _ in window) / len(window),
        "peak_memory_mib": max(m for _, m in rows),
    }


def throughput(folder: SearchFolder) -> dict[str, float]:
    """Median training samples/s of each trial of a search."""
    steps = read_diagnostics(folder.diagnostics, kind="step")
    out = {}
    for trial_id, rows in steps.groupby("trial_id"):
        rates = rows["samples_per_s"].dropna().iloc[1:]
        if len(rates):
            out[str(trial_id)] = float(rates.median())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("smi_csv", type=Path)
    parser.add_argument("search", type=Path, help="the search's results folder")
    args = parser.parse_args()
    use = utilisation(args.smi_csv)
    rates = throughput(SearchFolder(args.search))
    print(f"{args.search.name}: " + ", ".join(f"{k} {v:.3g}" for k, v in use.items()))
    for trial_id, rate in rates.items():
        print(f"  trial {trial_id}: {rate:.2f} samples/s")
    print(f"  all {len(rates)} trials together: {sum(rates.values()):.2f} samples/s")


if __name__ == "__main__":
    main()
