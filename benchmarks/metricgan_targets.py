"""What MetricGAN+'s PESQ targets cost per training iteration, and what ``pesq_lag`` saves.

For each lag, trains ``--iters`` iterations of a budget on the built-in noisy corpus (after
``--warmup`` ones) and reports the wall time per iteration and the part of it the training
process spent blocked waiting for PESQ scores.  Separately, the CPU time PESQ takes for one
iteration's pairs (in-process, one thread), so the share of a step it would cost serially is
known.  Run on an otherwise idle machine for numbers worth quoting.

    uv run python benchmarks/metricgan_targets.py --budget smoke --lags 0 1 --iters 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from harness.recipes import metric_targets
from harness.recipes.metricgan import MetricganRecipe
from harness.runs.resolve import resolve_config
from harness.scoring.utterance import score_pair
from harness.training.trainer import Trainer

_waited = [0.0]
_original_resolve = metric_targets.ScoringPipeline._resolve


def _timed_resolve(batch, futures):
    began = time.perf_counter()
    try:
        return _original_resolve(batch, futures)
    finally:
        _waited[0] += time.perf_counter() - began


def pesq_cpu_per_iteration(recipe: MetricganRecipe, scored_per_iteration: float) -> float:
    """CPU seconds of the PESQ calls one iteration needs (every estimate and noisy input of
    each batch it scores)."""
    clean, noisy = recipe.train_data().batch(0)
    g = recipe.build_generator()
    with torch.no_grad():
        enhanced = recipe.generate(g, (clean, noisy))
    began = time.process_time()
    for i in range(len(clean)):
        for estimate in (enhanced[i], noisy[i]):
            score_pair(
                clean[i].double().numpy(), estimate.double().numpy(), 16000, metrics=("pesq",)
            )
    return (time.process_time() - began) * scored_per_iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="smoke")
    parser.add_argument("--lags", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    metric_targets.ScoringPipeline._resolve = staticmethod(_timed_resolve)
    print(f"torch threads {torch.get_num_threads()}, budget {args.budget}, overrides {overrides}")
    for lag in args.lags:
        cfg = resolve_config("metricgan", args.budget, overrides={**overrides, "pesq_lag": lag})
        t = cfg.trainer
        recipe = MetricganRecipe(cfg.model, None, t.seed, t.batch_size)
        try:
            if lag == args.lags[0]:
                serial = pesq_cpu_per_iteration(recipe, t.d_steps / cfg.model.pesq_every)
                print(f"PESQ CPU per iteration (serial, 1 thread): {serial:.3f} s")
            with tempfile.TemporaryDirectory() as out:
                trainer = Trainer(recipe, t, Path(out))
                for _ in range(args.warmup):
                    trainer._iteration(logging=False)
                _waited[0] = 0.0
                began = time.perf_counter()
                for _ in range(args.iters):
                    trainer._iteration(logging=False)
                wall = (time.perf_counter() - began) / args.iters
        finally:
            recipe.close()
        blocked = _waited[0] / args.iters
        print(
            f"pesq_lag {lag}: {wall:.3f} s per iteration, of which {blocked:.3f} s "
            f"({100 * blocked / wall:.0f} %) blocked waiting for PESQ"
        )


if __name__ == "__main__":
    main()
