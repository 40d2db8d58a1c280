"""Bytes a search leaves on disk per trial, and what one checkpoint costs at each budget.

measure   runs ``run.py search RECIPE`` (of this checkout, or of ``--repo`` another one, such as
          the commit before a change, with its own ``.venv``) into a temporary folder and
          counts what it left (``analyse``).
analyse   counts a finished search folder: every file once per distinct inode (hard links share
          their bytes; sum of ``st_size``), split into checkpoints (``trials/*/checkpoints`` and
          Ray's ``tune/*/checkpoint_*``), samples, diagnostics and the rest, per trial.
compute   one checkpoint's size at a budget without training: the recipe's G and D at their
          initialisation and the optimizers' moments (filled by one step on zero gradients),
          serialised as the trainer's checkpoint holds them; the rest of a trainer checkpoint
          (RNG states, schedulers, health, config) adds a few kB.

    uv run python benchmarks/storage.py measure ring --trials 3
    uv run python benchmarks/storage.py measure hifigan --trials 2 --repo ../base-checkout
    uv run python benchmarks/storage.py analyse results/hifigan-smoke
    uv run python benchmarks/storage.py compute hifigan --budgets smoke small paper
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness.runs.resolve import make_recipe, resolve_config
from harness.training.setup import build_networks, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("checkpoints", "samples", "diagnostics", "other")
MB = 1e6


def part_of(relative: Path) -> str:
    """Which part of a search folder a file belongs to."""
    top, *rest = relative.parts
    inner = rest[1] if len(rest) > 1 else ""
    if (top == "trials" and inner == "checkpoints") or (
        top == "tune" and inner.startswith("checkpoint_")
    ):
        return "checkpoints"
    if top == "trials" and inner == "samples":
        return "samples"
    return "diagnostics" if top == "diagnostics" else "other"


def analyse(folder: Path) -> dict:
    """Bytes under a search folder: apparent (every name) and on disk (each inode once), by part."""
    trials = len([p for p in (folder / "trials").iterdir() if p.is_dir()])
    on_disk = dict.fromkeys(PARTS, 0)
    apparent, seen, checkpoint_names, checkpoint_sizes = 0, set(), 0, []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        st = path.stat()
        part = part_of(path.relative_to(folder))
        apparent += st.st_size
        checkpoint_names += part == "checkpoints"
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        on_disk[part] += st.st_size
        if part == "checkpoints":
            checkpoint_sizes.append(st.st_size)
    total = sum(on_disk.values())
    return {
        "search": folder.name,
        "trials": trials,
        "checkpoint_files": checkpoint_names,
        "distinct_checkpoints": len(checkpoint_sizes),
        "largest_checkpoint_mb": round(max(checkpoint_sizes, default=0) / MB, 3),
        "apparent_mb": round(apparent / MB, 2),
        "on_disk_mb": round(total / MB, 2),
        "on_disk_mb_per_trial": round(total / MB / trials, 3),
        **{f"{part}_mb_per_trial": round(on_disk[part] / MB / trials, 3) for part in PARTS},
    }


def measure(recipe: str, budget: str, trials: int, repo: Path, keep: Path | None) -> dict:
    """Run a search of ``trials`` trials with ``repo``'s code and analyse what it left."""
    python = repo / ".venv" / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="storage-", dir=keep) as tmp:
        name = f"{recipe}-{budget}"
        command = [
            str(python), "run.py", "search", recipe, "--budget", budget, "--trials", str(trials),
            "--name", name, "--results", tmp, "--quiet", "--seed", "0",
        ]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        row = analyse(Path(tmp) / name)
        statuses = json.loads((Path(tmp) / name / "summary.json").read_text())["statuses"]
        return {
            "repo": str(repo),
            "recipe": recipe,
            "budget": budget,
            "statuses": statuses,
            "wall_s": round(time.perf_counter() - t0, 1),
            **row,
        }


class ByteCounter:
    """A write-only file object that counts what is written to it."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def compute(recipe: str, budget: str) -> dict:
    """Parameters of G and D and the bytes of their checkpoint (weights and optimizer state)."""
    cfg = resolve_config(recipe, budget)
    t, parts = cfg.trainer, make_recipe(cfg)
    G, D = build_networks(t, parts.build_generator, parts.build_discriminator)  # on the CPU
    optimizers = [
        make_optimizer(G, t, t.lr_g, (t.b1_g, t.b2_g)),
        make_optimizer(D, t, t.lr_d, (t.b1_d, t.b2_d)),
    ]
    for net, opt in zip((G, D), optimizers, strict=True):
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()  # creates the moments a checkpoint after any training step holds
    state = {
        "generator": G.state_dict(),
        "discriminator": D.state_dict(),
        "opt_g": optimizers[0].state_dict(),
        "opt_d": optimizers[1].state_dict(),
    }
    sink = ByteCounter()
    torch.save(state, sink)
    return {
        "recipe": recipe,
        "budget": budget,
        "params_g": sum(p.numel() for p in G.parameters()),
        "params_d": sum(p.numel() for p in D.parameters()),
        "checkpoint_mb": round(sink.n / MB, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="run a search and count what it left")
    m.add_argument("recipe")
    m.add_argument("--budget", default="smoke")
    m.add_argument("--trials", type=int, default=2)
    m.add_argument("--repo", type=Path, default=ROOT, help="checkout whose run.py runs")
    m.add_argument("--tmp", type=Path, help="parent of the temporary results folder")
    a = sub.add_parser("analyse", help="count a finished search folder")
    a.add_argument("folder", type=Path)
    c = sub.add_parser("compute", help="one checkpoint's size per budget, without training")
    c.add_argument("recipe")
    c.add_argument("--budgets", nargs="+", default=["smoke", "small", "paper"])
    args = parser.parse_args()
    if args.command == "measure":
        rows = [measure(args.recipe, args.budget, args.trials, args.repo.resolve(), args.tmp)]
    elif args.command == "analyse":
        rows = [analyse(args.folder)]
    else:
        rows = [compute(args.recipe, budget) for budget in args.budgets]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
