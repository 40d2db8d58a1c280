"""Median time per HiFi-GAN training iteration, fp32 vs bf16 autocast, and the logging overhead.

One iteration = generate, one D update, one G update (the paper's 1:1 schedule) at each budget's
own batch and segment size, through the real Trainer on the built-in corpus.  Logging overhead is
the cost of building one step row and writing it to the Parquet writer (flushes amortised),
divided by the training time of the ``log_every`` iterations it summarises.

    uv run python benchmarks/train_step.py                    # smoke, small, paper(V1) on CPU
    uv run python benchmarks/train_step.py --budgets small --precisions fp32 --repeats 3
    uv run python benchmarks/train_step.py --write            # also update benchmarks/README.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from harness.build import make_recipe
from harness.telemetry import DiagnosticsWriter
from harness.trainer import Trainer
from harness.trial import resolve_config

README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- train_step:begin -->", "<!-- train_step:end -->"


def time_iterations(budget: str, precision: str, repeats: int, warmup: int, device: str) -> dict:
    cfg = resolve_config("hifigan", budget, overrides={"precision": precision, "device": device})
    recipe = make_recipe(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, cfg.trainer, Path(tmp))
        for _ in range(warmup):
            trainer._iteration()
        times = []
        for _ in range(repeats):
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer._iteration()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        logging_s = time_logging(trainer, Path(tmp) / "diag")
    recipe.close()
    median = statistics.median(times)
    return {
        "budget": budget,
        "generator": cfg.model.generator,
        "d_width": cfg.model.d_width,
        "batch": cfg.trainer.batch_size,
        "segment": cfg.model.segment_size,
        "precision": precision,
        "median_s": median,
        "min_s": min(times),
        "samples_per_s": cfg.trainer.batch_size / median,
        "log_overhead": logging_s / (cfg.trainer.log_every * median),
        "log_every": cfg.trainer.log_every,
    }


def time_logging(trainer: Trainer, root: Path, rows: int = 400) -> float:
    """Seconds to build and write one step row, flushes (every 200 rows) included."""
    with DiagnosticsWriter(root, "bench", "t0", flush_rows=200) as writer:
        start = time.perf_counter()
        for _ in range(rows):
            trainer.interval.add(
                loss_d=1.0, loss_g=2.0, grad_norm_d=3.0, grad_norm_g=4.0, d_acc=0.5
            )
            trainer.interval.add_scores({"mpd": 0.1, "msd": 0.2}, {"mpd": 0.0})
            trainer.interval.iterations += 1
            writer.write({"kind": "step", **trainer._step_row()})
        writer.flush()
        return (time.perf_counter() - start) / rows


def table(results: list[dict]) -> str:
    head = (
        "| budget | G | D width | batch x segment | precision | median s/iter | min | samples/s "
        "| bf16 speed-up | logging overhead |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    fp32 = {r["budget"]: r["median_s"] for r in results if r["precision"] == "fp32"}
    lines = []
    for r in results:
        ratio = fp32.get(r["budget"], float("nan")) / r["median_s"]
        lines.append(
            f"| {r['budget']} | {r['generator']} | {r['d_width']} | {r['batch']} x {r['segment']} "
            f"| {r['precision']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
            f"{r['samples_per_s']:.2f} | {ratio:.2f}x | {100 * r['log_overhead']:.3f} % "
            f"(every {r['log_every']}) |"
        )
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", default="smoke,small,paper")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--write", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    results = []
    for budget in args.budgets.split(","):
        for precision in args.precisions.split(","):
            results.append(
                time_iterations(budget, precision, args.repeats, args.warmup, args.device)
            )
            print(f"{budget} {precision}: {results[-1]['median_s']:.3f} s/iter", flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    text = (
        f"{table(results)}\n\nDevice: {device or 'CPU'}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.repeats} iterations after "
        f"{args.warmup} warm-up.\n"
    )
    print(text)
    if args.write:
        body = README.read_text() if README.exists() else "# Benchmarks\n"
        section = f"{BEGIN}\n{text}{END}"
        if BEGIN in body:
            pre, rest = body.split(BEGIN, 1)
            body = pre + section + rest.split(END, 1)[1]
        else:
            body += f"\n## Training step (HiFi-GAN)\n\n`uv run python benchmarks/train_step.py --write`\n\n{section}\n"
        README.write_text(body)


if __name__ == "__main__":
    main()
