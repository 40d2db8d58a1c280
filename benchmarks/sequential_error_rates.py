"""Error rates and cost of the sequential confirmation, on simulated seeds (no training).

Every confirmation here is ``harness.results.sequential.advance`` run to its end on seed scores
drawn from normal distributions (``sequential.simulate``), so the rates are those of the code the
confirmation stage runs.  Printed as Markdown tables:

- identical configurations (every candidate equal to the default): how often the verdict says
  "better" (the false-positive rate, to stay at or under alpha), with the same looks at an
  uncorrected per-look level beside it, and how often it ends bounded, open or undecided;
- a candidate better by exactly the margin: how often "not better by more than the margin" is
  said (the bounded claim's error rate);
- a HiFi-GAN smoke-like confirmation (seed std 0.03 STOI, margin 0.02, the best of 2): the
  outcomes and the runs trained for a few true gains, to size a confirmation before running it.

    uv run python benchmarks/sequential_error_rates.py --runs 20000
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import numpy as np

from harness.results.sequential import BETTER, BOUNDED, Design, schedule, simulate

DEFAULT = "paper default"


@dataclass(frozen=True)
class Uncorrected(Design):
    """The same looks, each at the plain level alpha: what the correction prevents."""

    @property
    def level(self) -> float:
        return self.alpha


def outcomes(
    rng: np.random.Generator, means: dict[str, float], design: Design, sd: float, runs: int
) -> tuple[Counter, float]:
    """Outcome shares and the mean number of training runs over ``runs`` confirmations."""
    counts: Counter = Counter()
    trained = 0
    for _ in range(runs):
        end, scores = simulate(rng, means, DEFAULT, design, sd)
        counts[end.outcome] += 1
        trained += sum(len(v) for v in scores.values())
    return counts, trained / runs


def means_for(candidates: int, gain: float) -> dict[str, float]:
    """The first candidate better by ``gain``, the others equal to the default."""
    rest = {f"rank {k + 1}": 0.0 for k in range(1, candidates)}
    return {"rank 1": gain, **rest, DEFAULT: 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20000, help="confirmations per row")
    parser.add_argument("--max-seeds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    looks = schedule(args.max_seeds)
    n = args.runs

    print(f"looks at {looks} seeds, {n} confirmations per row\n")
    print("| identical configurations | per-look p < | better | uncorrected: better |")
    print("|---|---|---|---|")
    for k in (1, 2, 3):
        design = Design(looks, k, margin=0.5)
        counts, _ = outcomes(rng, means_for(k, 0.0), design, 1.0, n)
        loose, _ = outcomes(rng, means_for(k, 0.0), Uncorrected(looks, k, margin=0.5), 1.0, n)
        print(
            f"| best of {k} | {design.level:.4f} | {counts[BETTER] / n:.4f} | "
            f"{loose[BETTER] / n:.4f} |"
        )

    print("\n| better by exactly the margin (1 sd) | says bounded |")
    print("|---|---|")
    for k in (1, 2):
        counts, _ = outcomes(rng, means_for(k, 1.0), Design(looks, k, margin=1.0), 1.0, n)
        print(f"| best of {k} | {counts[BOUNDED] / n:.4f} |")

    sd, margin, k = 0.03, 0.02, 2
    title = f"HiFi-GAN smoke-like: sd {sd}, margin {margin}, best of {k}"
    print(f"\n| {title} | better | bounded | open at the maximum | too few | runs trained |")
    print("|---|---|---|---|---|---|")
    for gain in (0.0, 0.02, 0.05):
        counts, trained = outcomes(rng, means_for(k, gain), Design(looks, k, margin), sd, n)
        shares = " | ".join(f"{counts[o] / n:.3f}" for o in (BETTER, BOUNDED, "open", "too few"))
        print(f"| true gain {gain:+.2f} | {shares} | {trained:.1f} |")


if __name__ == "__main__":
    main()
