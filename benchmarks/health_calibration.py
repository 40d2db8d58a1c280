"""The labelled health set: rigged and healthy HiFi-GAN smoke runs, and each detector's verdict.

Every run is a `run.py train`-equivalent trial (harness.trial.run_trial) on the built-in corpus at
the smoke budget, labelled before it is trained: the paper configuration with several seeds is
the healthy class; each rig forces one failure a vocoder user meets.  `train` trains the runs that
have no result yet (their diagnostics go to results/health_calibration/<run>/); `table` replays
every run's stored step rows through the recipe's detectors (harness.health.HealthMonitor, the
same code the trainer runs) and prints runs x detectors: the step a flag was raised at and the
peak score, so thresholds can be changed and re-judged without training again.

    uv run python benchmarks/health_calibration.py train --jobs 2     # ~25 min on 2 cores
    uv run python benchmarks/health_calibration.py table              # seconds
    uv run python benchmarks/health_calibration.py table --write      # also into the docs
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from harness.health import DETECTORS, HealthConfig, HealthMonitor
from harness.recipes import RECIPES, recipe_class
from harness.recipes.hifigan import HifiganRecipe
from harness.results import read_result
from harness.telemetry import read_diagnostics
from harness.trial import resolve_config, run_trial

ROOT = Path("results/health_calibration")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "diagnostics.md"
BEGIN, END = "<!-- health_calibration:begin -->", "<!-- health_calibration:end -->"


class ConstantHifigan(HifiganRecipe):
    """Rig: the generator's output is multiplied by zero, a constant (silent) output."""

    name = "hifigan_constant"

    def generate(self, generator, batch: tuple[Tensor]) -> Tensor:
        return super().generate(generator, batch) * 0.0


class InputFreeHifigan(HifiganRecipe):
    """Rig: every clip of a batch is generated from the first clip's mel, so the output does
    not depend on its input (G is still trained, against every clip)."""

    name = "hifigan_input_free"

    def generate(self, generator, batch: tuple[Tensor]) -> Tensor:
        mel = self.input_mel(batch[0])
        return generator(mel[:1].expand_as(mel).contiguous())


class MelOnlyHifigan(HifiganRecipe):
    """Rig: the generator's adversarial and feature-matching terms are switched off (D still
    trains), so G learns from the mel L1 alone: the over-smoothed vocoder."""

    name = "hifigan_mel_only"

    def generator_loss(self, discriminator, batch, fake, adv):
        out = super().generator_loss(discriminator, batch, fake, adv)
        out.adversarial = out.adversarial * 0.0
        if out.adversarial_only is not None:
            out.adversarial_only = out.adversarial_only * 0.0
        return out


RIGS = (ConstantHifigan, InputFreeHifigan, MelOnlyHifigan)
for _rig in RIGS:
    RECIPES.setdefault(_rig.name, f"{__name__}:{_rig.__name__}")


@dataclass(frozen=True)
class Run:
    """One labelled run: recipe, ``--set`` overrides, and the failure it should be flagged for
    (None for the healthy class)."""

    recipe: str
    expect: str | None
    overrides: dict[str, Any] = field(default_factory=dict)


RUNS: dict[str, Run] = {
    "healthy_seed0": Run("hifigan", None, {"seed": 0}),
    "healthy_seed1": Run("hifigan", None, {"seed": 1}),
    "healthy_seed2": Run("hifigan", None, {"seed": 2}),
    # the "new user" rig: D at 10x the learning rate, 3 D steps per G step
    "overpower_lr10_d3": Run("hifigan", "overpower", {"lr_d": 2e-3, "d_steps": 3}),
    "overpower_lr50_d5": Run("hifigan", "overpower", {"lr_d": 1e-2, "d_steps": 5}),
    "constant": Run(ConstantHifigan.name, "collapse"),
    "input_free": Run(InputFreeHifigan.name, "collapse"),
    "mel_only": Run(MelOnlyHifigan.name, "oversmooth"),
    "diverging_lr": Run("hifigan", "diverge", {"lr_g": 5e-2, "lr_d": 5e-2}),
}


def train_one(name: str, threads: int) -> str:
    run = RUNS[name]
    out = ROOT / name
    if (out / "result.json").is_file():
        return f"{name}: already trained"
    cfg = resolve_config(run.recipe, "smoke", overrides={**run.overrides, "threads": threads})
    result = run_trial(cfg, out)
    return f"{name}: {result.status} at step {result.step} ({result.reason})"


def train(names: list[str], jobs: int) -> None:
    threads = max(1, 2 // jobs)
    with ProcessPoolExecutor(jobs) as pool:
        for line in pool.map(train_one, names, [threads] * len(names)):
            print(line, flush=True)


def replay(rows: pd.DataFrame, cfg: HealthConfig, total_steps: int) -> list[dict[str, Any]]:
    """The health columns the detectors of ``cfg`` give the stored rows, in order.  L0 (the
    first D loss) is recovered from the stored ``d_loss_share``."""
    monitor = HealthMonitor(cfg, total_steps)
    shared = rows.dropna(subset=["loss_d", "d_loss_share"])
    if len(shared):
        first = shared.iloc[0]
        monitor.note_d_loss(first["loss_d"] / first["d_loss_share"])
    out = []
    for row in rows.to_dict("records"):
        clean = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        out.append({**clean, **monitor.update(clean)})
    return out


def judge(name: str) -> dict[str, Any]:
    """One table row: how the run ended (the trainer's own stop, e.g. non-finite losses, is not a
    detector), per detector the step its flag was raised at ("-": never) and its peak score."""
    run = RUNS[name]
    cfg = resolve_config(run.recipe, "smoke", overrides=run.overrides)
    trainer = cfg.trainer
    health = replace(recipe_class(run.recipe).health_config, window=trainer.health_window)
    rows = read_diagnostics(ROOT / name / "diagnostics", kind="step").sort_values("step")
    judged = replay(rows, health, trainer.steps // (trainer.d_steps + trainer.g_steps - 1))
    ended = read_result(ROOT / name)
    line: dict[str, Any] = {
        "run": name,
        "label": run.expect or "healthy",
        "ended": f"{ended['status']} at {ended['step']}" if ended else "unfinished",
    }
    flagged = []
    for det in DETECTORS:
        first = next((r for r in judged if r.get(f"flag_{det}")), None)
        peak = judged[-1].get(f"{det}_peak") if judged else None
        mark = f"step {first['step']}" if first else "-"
        line[det] = mark + (f" ({peak:.2f})" if peak is not None else "")
        if first:
            flagged.append(det)
    line["flagged"] = ",".join(flagged) or "none"
    line["right"] = (run.expect in flagged) if run.expect else not flagged
    return line


def table(names: list[str]) -> str:
    lines = [judge(n) for n in names if (ROOT / n / "diagnostics").is_dir()]
    frame = pd.DataFrame(lines)
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("train", "table"))
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated run names")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--write", action="store_true", help="table: update docs/diagnostics.md")
    args = parser.parse_args(argv)
    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        print(f"--runs: unknown run {unknown[0]!r}; valid: {', '.join(RUNS)}", file=sys.stderr)
        return 2
    if args.action == "train":
        train(names, args.jobs)
        return 0
    text = table(names)
    print(text)
    if args.write:
        pre, rest = DOCS.read_text().split(BEGIN, 1)
        DOCS.write_text(f"{pre}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
