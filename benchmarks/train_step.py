"""Median time per HiFi-GAN training iteration, fp32 vs bf16 autocast, and the logging overhead;
and, with ``--compare REF``, the same iteration of commit REF against this tree, phase by phase.

One iteration = generate, one D update, one G update (the paper's 1:1 schedule) at each budget's
own batch and segment size, through the real Trainer on the built-in corpus.  Logging overhead is
the cost of building one step row and writing it to the Parquet writer (flushes amortised),
divided by the training time of the ``log_every`` iterations it summarises.  ``--compile`` adds
rows with ``compile=true`` (its compile time, spent in the warm-up, in its own column).

``--compare REF`` exports commit REF (``git archive``) and runs one worker process per code
version (plus one per ``--arm``), each holding a trainer of the same configuration; iterations
are requested from them in turn, alternating the order (ABBA), so load on a shared machine falls
on every arm alike.  Each iteration's wall time is split into exclusive phases by timing the
trainer's and recipe's own methods (present in REF too): G forward, D forward on real and the
detached batch, D backward, G loss (mel + D re-evaluated after its update), G backward (through
D), and each optimizer step.

    uv run python benchmarks/train_step.py                    # smoke, small, paper(V1) on CPU
    uv run python benchmarks/train_step.py --budgets small --precisions fp32 --repeats 3
    uv run python benchmarks/train_step.py --write            # also update benchmarks/README.md
    uv run python benchmarks/train_step.py --compare 6bfb109 --budgets paper --batch 2 \
        --threads 2 --arm fused_optimizer=false --write
    uv run python benchmarks/train_step.py --compare ref/ --budgets paper --precisions fp32 \
        --arm precision=bf16                  # REF exported beforehand: git archive 6bfb109
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from git_tree import export_commit

from harness.diagnostics.telemetry import DiagnosticsWriter
from harness.runs.resolve import make_recipe, resolve_config
from harness.training.trainer import Trainer

README = Path(__file__).with_name("README.md")
REPO = Path(__file__).resolve().parent.parent
RESULT = "@@ "  # a worker's result lines start with this (anything else it prints is passed on)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _overrides(args: argparse.Namespace, precision: str, **more: Any) -> dict[str, Any]:
    """The config overrides every measurement of this run shares."""
    out: dict[str, Any] = {"precision": precision, "device": args.device, **more}
    if args.batch:
        out["batch_size"] = args.batch
    if args.threads:
        out["threads"] = args.threads
    return out


def time_iterations(
    budget: str, overrides: dict[str, Any], repeats: int, warmup: int
) -> dict[str, Any]:
    # imported here: a --compare worker imports this file under REF's harness, which may lack it
    from harness.training.measuring import compile_seconds

    cfg = resolve_config("hifigan", budget, overrides=overrides)
    recipe = make_recipe(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, cfg.trainer, Path(tmp))
        cuda = trainer.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        compiled_before = compile_seconds() if cfg.trainer.compile else 0.0
        for _ in range(warmup):  # a compiled run compiles here
            trainer._iteration(logging=False)
        compile_s = compile_seconds() - compiled_before if cfg.trainer.compile else None
        times = []
        for _ in range(repeats):
            _synchronize(trainer.device)
            start = time.perf_counter()
            trainer._iteration(logging=False)
            _synchronize(trainer.device)
            times.append(time.perf_counter() - start)
        peak_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        logging_s = time_logging(trainer, Path(tmp) / "diag")
    recipe.close()
    median = statistics.median(times)
    return {
        "budget": budget,
        "generator": cfg.model.generator,
        "d_width": cfg.model.d_width,
        "batch": cfg.trainer.batch_size,
        "segment": cfg.model.segment_size,
        "precision": cfg.trainer.precision,
        "compiled": cfg.trainer.compile,
        "compile_s": compile_s,
        "median_s": median,
        "min_s": min(times),
        "samples_per_s": cfg.trainer.batch_size / median,
        "peak_gib": peak_gib,
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


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict]) -> str:
    head = (
        "| budget | G | D width | batch x segment | precision | compiled (compile s) "
        "| median s/iter | min | samples/s | bf16 speed-up | peak GPU GiB | logging overhead |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    fp32 = {
        (r["budget"], r["compiled"]): r["median_s"] for r in results if r["precision"] == "fp32"
    }
    lines = []
    for r in results:
        ratio = fp32.get((r["budget"], r["compiled"]), float("nan")) / r["median_s"]
        compiled = f"yes ({r['compile_s']:.1f})" if r["compiled"] else "no"
        lines.append(
            f"| {r['budget']} | {r['generator']} | {r['d_width']} | {r['batch']} x {r['segment']} "
            f"| {r['precision']} | {compiled} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
            f"{r['samples_per_s']:.2f} | {ratio:.2f}x | {_fmt(r['peak_gib'], '.2f')} | "
            f"{100 * r['log_overhead']:.3f} % (every {r['log_every']}) |"
        )
    return head + "\n".join(lines)


# ---------------------------------------------------------------- phases, and REF vs this tree
class PhaseClock:
    """Exclusive wall time per phase of an iteration, from timers wrapped around the trainer's and
    the recipe's methods (a phase nested in another is taken out of the outer one)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._nested: list[float] = []

    def wrap(self, owner: Any, method: str, phase: str | Callable[..., str]) -> None:
        """Time ``owner.method`` under ``phase`` (a name, or a function of the call's args)."""
        inner = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            _synchronize(self.device)
            start = time.perf_counter()
            self._nested.append(0.0)
            try:
                return inner(*args, **kwargs)
            finally:
                _synchronize(self.device)
                elapsed = time.perf_counter() - start
                name = phase(*args) if callable(phase) else phase
                self.seconds[name] += elapsed - self._nested.pop()
                if self._nested:
                    self._nested[-1] += elapsed

        setattr(owner, method, timed)

    def attach(self, trainer: Trainer) -> None:
        recipe = trainer.recipe
        self.wrap(recipe, "generate", "G forward")
        self.wrap(recipe, "discriminator_loss", "D forward (real + detached fake)")
        self.wrap(trainer, "_update", lambda name, *rest: f"{name.upper()} backward")
        self.wrap(trainer.opt_d, "step", "D optimizer step")
        self.wrap(recipe, "generator_loss", "G loss (mel + D re-evaluated)")
        self.wrap(trainer.opt_g, "step", "G optimizer step")


PHASES = (
    "G forward",
    "D forward (real + detached fake)",
    "D backward",
    "D optimizer step",
    "G loss (mel + D re-evaluated)",
    "G backward",
    "G optimizer step",
    "other",
)


def serve(spec: dict[str, Any]) -> None:
    """Worker: build the trainer ``spec`` describes, then run one timed iteration per "run" line
    on stdin and print its phases (the ``harness`` imported is whatever PYTHONPATH names)."""
    cfg = resolve_config("hifigan", spec["budget"], overrides=spec["overrides"])
    recipe = make_recipe(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, cfg.trainer, Path(tmp))
        clock = PhaseClock(trainer.device)
        clock.attach(trainer)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            clock.seconds.clear()
            start = time.perf_counter()
            trainer._iteration(logging=False)
            _synchronize(trainer.device)
            total = time.perf_counter() - start
            phases = {**clock.seconds, "other": total - sum(clock.seconds.values())}
            print(RESULT + json.dumps({"total": total, "phases": phases}), flush=True)
    recipe.close()


class Worker:
    """A :func:`serve` process importing the harness under ``root``."""

    def __init__(self, root: Path, spec: dict[str, Any]) -> None:
        # the tree's harness first, then whatever the caller's path adds (e.g. carried packages)
        paths = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        threads = spec["overrides"].get("threads")
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )

    def run(self) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT) :])
            print(line, end="", file=sys.stderr)
        raise RuntimeError(f"benchmark worker exited with code {self.proc.wait()}")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def compare(args: argparse.Namespace, budget: str, precision: str) -> dict[str, Any]:
    """Median phases and totals per arm (REF, this tree, this tree with each ``--arm``), from
    iterations requested in turn; ``ratio`` is each arm's median paired with REF's."""
    base = _overrides(args, precision)
    arms = [(f"before ({args.compare})", None, base), ("after", REPO, base)]
    for arm in args.arm:
        extra = dict(pair.split("=", 1) for pair in arm.split(","))
        arms.append((f"after, {arm}", REPO, {**base, **extra}))
    with tempfile.TemporaryDirectory() as tmp:
        ref_root = Path(args.compare)  # a tree exported beforehand, where git is not at hand
        if not ref_root.is_dir():
            ref_root = export_commit(args.compare, Path(tmp) / "ref")
        workers = [
            Worker(root or ref_root, {"budget": budget, "overrides": overrides})
            for _, root, overrides in arms
        ]
        try:
            for worker in workers:
                for _ in range(args.warmup):
                    worker.run()
            runs: list[list[dict]] = [[] for _ in arms]
            for repeat in range(args.repeats):
                order = range(len(arms)) if repeat % 2 == 0 else reversed(range(len(arms)))
                for i in order:
                    runs[i].append(workers[i].run())
                    print(f"  {arms[i][0]}: {runs[i][-1]['total']:.2f} s", flush=True)
        finally:
            for worker in workers:
                worker.close()
    cfg = resolve_config("hifigan", budget, overrides=base)
    out: dict[str, Any] = {"budget": budget, "precision": precision, "arms": {}}
    out["config"] = (
        f"{cfg.model.generator.upper()} G, D width {cfg.model.d_width}, batch "
        f"{cfg.trainer.batch_size} x {cfg.model.segment_size}, {precision}, "
        f"{cfg.trainer.threads or torch.get_num_threads()} threads"
    )
    for (label, _, _), arm_runs in zip(arms, runs, strict=True):
        totals = [r["total"] for r in arm_runs]
        out["arms"][label] = {
            "total": statistics.median(totals),
            "phases": {
                p: statistics.median(r["phases"].get(p, 0.0) for r in arm_runs) for p in PHASES
            },
            "paired_ratio": statistics.median(
                t / r["total"] for t, r in zip(totals, runs[0], strict=True)
            ),
        }
    return out


def compare_table(result: dict[str, Any]) -> str:
    arms = result["arms"]
    labels = list(arms)
    before = arms[labels[0]]
    lines = [
        "| phase | " + " | ".join(f"{label}, s" for label in labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for phase in PHASES:
        cells = [f"{arms[label]['phases'][phase]:.3f}" for label in labels]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append(
        "| **iteration (median)** | "
        + " | ".join(f"**{arms[label]['total']:.3f}**" for label in labels)
        + " |"
    )
    lines.append(
        "| **ratio to before** (medians; median of paired) | "
        + " | ".join(
            f"**{arms[label]['total'] / before['total']:.3f}**; {arms[label]['paired_ratio']:.3f}"
            for label in labels
        )
        + " |"
    )
    return "\n".join(lines)


def write_section(name: str, text: str, heading: str) -> None:
    """Replace README's ``name`` section (between its markers) with ``text``, or append it."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    body = README.read_text() if README.exists() else "# Benchmarks\n"
    section = f"{begin}\n{text}{end}"
    if begin in body:
        pre, rest = body.split(begin, 1)
        body = pre + section + rest.split(end, 1)[1]
    else:
        body += f"\n{heading}\n\n{section}\n"
    README.write_text(body)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", default="smoke,small,paper")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", default="false", help="false, true or false,true")
    parser.add_argument("--batch", type=int, default=0, help="batch size (0 = the budget's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = as is)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="time commit REF (or a tree exported from it) against this tree",
    )
    parser.add_argument(
        "--arm", action="append", default=[], help="with --compare: this tree with KEY=VALUE,..."
    )
    parser.add_argument("--write", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    footer = (
        f"Device: {device or 'CPU'}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; median of {args.repeats} iterations after {args.warmup} warm-up"
    )
    if args.compare:
        parts = []
        for budget in args.budgets.split(","):
            for precision in args.precisions.split(","):
                result = compare(args, budget, precision)
                parts.append(f"{result['config']}:\n\n{compare_table(result)}")
        text = "\n\n".join(parts) + f"\n\n{footer} per arm, arms interleaved (ABBA).\n"
        print(text)
        if args.write:
            write_section("train_step_compare", text, "## Training step: before and after")
        return
    results = []
    for budget in args.budgets.split(","):
        for precision in args.precisions.split(","):
            for compiled in args.compile.split(","):
                overrides = _overrides(args, precision, compile=compiled)
                results.append(time_iterations(budget, overrides, args.repeats, args.warmup))
                print(f"{budget} {precision}: {results[-1]['median_s']:.3f} s/iter", flush=True)
    text = f"{table(results)}\n\n{footer}.\n"
    print(text)
    if args.write:
        write_section("train_step", text, "## Training step (HiFi-GAN)")


if __name__ == "__main__":
    main()
