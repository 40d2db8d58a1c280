"""Generator-only preflight: can G fit one fixed batch with its reconstruction loss alone?

A practice of experienced GAN trainers: before any adversarial run, train G without D on a single
fixed batch (fixed inputs, fixed targets) and watch the reconstruction loss.  A generator that
cannot even overfit one batch will not train adversarially, and the learning rates at which it
fits steadily bound the ``lr_g`` range worth searching.  For every learning rate in a grid, G
starts from the same seeded initialisation and takes ``steps`` optimizer steps (the trial's own
optimizer, betas, weight decay and clipping; fp32; no scheduler); the curve is then called:

- ``diverges``: a non-finite loss, an end loss above 1.1x the start, or a rebound to above 3x
  the best loss reached (the learning rate is too high);
- ``stalls``: the end loss is less than 10 % below the start (too low, or a broken model);
- ``learns``: otherwise.

"End" is the mean of the last 10 % of steps.  The suggested range spans the learning rates that
learn (``--write-space`` puts it in a search space as ``lr_g: {loguniform: [low, high]}``, see
harness/results/space.py).  Adversarial training adds noise to G's gradient, so the top of that
range is an upper bound rather than a target.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.runs.resolve import make_recipe, resolve_config
from harness.training.config import RANGES, TrialConfig, parse_overrides
from harness.training.recipe import DiscriminatorSmoothing, Recipe
from harness.training.setup import (
    build_networks,
    generator_objective,
    make_optimizer,
    pick_device,
    seed_everything,
    set_threads,
)

MIN_DROP = 0.1  # a curve must end at least 10 % below its start to count as learning
BLOWUP_START = 1.1  # ending above 1.1x the start loss is divergence
BLOWUP_BEST = 3.0  # so is rebounding above 3x the best loss reached
BARS = "▁▂▃▄▅▆▇█"


class PreflightError(ValueError):
    """Preflight cannot run or cannot write its result; the message is one line."""


@dataclass
class LrResult:
    """One learning rate's fixed-batch curve and its verdict."""

    lr: float
    losses: list[float]
    seconds: float

    @property
    def start(self) -> float:
        return self.losses[0]

    @property
    def end(self) -> float:
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail)

    @property
    def best(self) -> float:
        return min(self.losses)

    @property
    def verdict(self) -> str:
        if not all(math.isfinite(x) for x in self.losses):
            return "diverges"
        if self.end > BLOWUP_START * self.start or self.end > BLOWUP_BEST * self.best:
            return "diverges"
        if self.end > (1 - MIN_DROP) * self.start:
            return "stalls"
        return "learns"

    def curve(self, width: int = 10) -> str:
        """The loss curve as ``width`` bars, each a bucket mean relative to the start loss."""
        n = len(self.losses)
        out = []
        for i in range(width):
            bucket = self.losses[i * n // width : max(i * n // width + 1, (i + 1) * n // width)]
            mean = sum(bucket) / len(bucket)
            share = mean / self.start if math.isfinite(mean) and self.start > 0 else 1.0
            out.append(BARS[min(len(BARS) - 1, max(0, round(share * (len(BARS) - 1))))])
        return "".join(out)


def default_lrs(lr_g: float) -> list[float]:
    """Seven learning rates in half-decade steps from lr_g / 100 to lr_g * 10."""
    return [float(f"{lr_g * 10 ** (k / 2):.3g}") for k in range(-4, 3)]


def reconstruction_loss(recipe: Recipe, generator: torch.nn.Module, batch: object) -> torch.Tensor:
    """G's loss without a discriminator: its reconstruction terms, as the trainer sums them."""
    out = recipe.generator_loss(
        None, batch, recipe.generate(generator, batch), DiscriminatorSmoothing()
    )
    return generator_objective(out.through_d, out.reconstruction)


def fixed_batch_curve(
    recipe: Recipe,
    generator: torch.nn.Module,
    cfg: TrialConfig,
    lr: float,
    steps: int,
    batch: object,
) -> list[float]:
    """Train ``generator`` (in place) on ``batch`` for ``steps`` steps; the loss before each."""
    t = cfg.trainer
    opt = make_optimizer(generator, t, lr, (t.b1_g, t.b2_g))
    losses: list[float] = []
    for _ in range(steps):
        loss = reconstruction_loss(recipe, generator, batch)
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.clip_grad_g > 0:
            torch.nn.utils.clip_grad_norm_(generator.parameters(), t.clip_grad_g)
        opt.step()
    return losses


def run_preflight(
    cfg: TrialConfig,
    lrs: list[float],
    steps: int,
    echo: Callable[[str], None] | None = None,
) -> list[LrResult]:
    """Fit one fixed training batch with G alone at every learning rate of ``lrs``."""
    if steps < 2:
        raise PreflightError(f"--steps: must be >= 2, got {steps}")
    bad = [lr for lr in lrs if not RANGES["lr_g"].admits(lr)]
    if bad:
        raise PreflightError(
            f"--lrs {' '.join(map(str, bad))}: every learning rate must be a finite number "
            f"{RANGES['lr_g'].describe()}"
        )
    t = cfg.trainer
    device = pick_device(t.device)
    set_threads(t.threads)
    recipe = make_recipe(cfg)
    (generator,) = build_networks(t, recipe.build_generator)  # the trainer's G at step 0
    generator.to(device).train()
    recipe.to(device)
    initial = copy.deepcopy(generator.state_dict())
    results = []
    try:
        batch = recipe.batch_to(recipe.train_data().batch(0), device)
        if not reconstruction_loss(recipe, generator, batch).requires_grad:
            raise PreflightError(
                f"preflight {cfg.recipe}: the recipe has no reconstruction loss (without a "
                "discriminator its generator loss is constant), so there is nothing to fit; "
                "give it a reconstruction weight with --set if its config has one, or go "
                f"straight to `run.py train {cfg.recipe}`"
            )
        say = echo or (lambda line: None)
        say(
            f"preflight {cfg.recipe} ({cfg.budget} budget): G alone on one fixed batch of "
            f"{t.batch_size}, {steps} steps per learning rate"
        )
        say(HEADER)
        for lr in sorted(lrs):
            generator.load_state_dict(initial)
            seed_everything(t.seed)
            began = time.perf_counter()
            losses = fixed_batch_curve(recipe, generator, cfg, lr, steps, batch)
            result = LrResult(lr, losses, time.perf_counter() - began)
            results.append(result)
            say(format_row(result))
    finally:
        recipe.close()
    return results


HEADER = f"{'lr_g':>9}  {'verdict':8}  {'start':>9}  {'best':>9}  {'end':>9}  {'drop':>5}  curve       {'s':>5}"


def format_row(r: LrResult) -> str:
    drop = f"{100 * (1 - r.end / r.start):4.0f}%" if math.isfinite(r.end) and r.start else "    -"
    return (
        f"{r.lr:9.3g}  {r.verdict:8}  {r.start:9.4g}  {r.best:9.4g}  {r.end:9.4g}  {drop:>5}  "
        f"{r.curve()}  {r.seconds:5.1f}"
    )


def suggest_range(results: list[LrResult]) -> tuple[float, float] | None:
    """The lowest and highest learning rates that learn; None when none does.

    When a single rate learns, the range reaches halfway (geometrically) to its neighbours.
    """
    rates = sorted(r.lr for r in results)
    learning = [r.lr for r in results if r.verdict == "learns"]
    if not learning:
        return None
    low, high = min(learning), max(learning)
    if low == high:
        i = rates.index(low)
        low = math.sqrt(rates[i - 1] * low) if i > 0 else low / math.sqrt(10)
        high = math.sqrt(high * rates[i + 1]) if i + 1 < len(rates) else high * math.sqrt(10)
    return low, high


def summary(results: list[LrResult], recipe: str) -> list[str]:
    """Plain-language conclusion lines under the table."""
    span = suggest_range(results)
    if span is None:
        return [
            f"{recipe}: the generator could not fit one fixed batch at any learning rate tried. "
            "It will not train adversarially either: check the model, the data and the "
            "reconstruction loss before searching."
        ]
    low, high = span
    lines = [f"suggested lr_g range: loguniform [{low:.3g}, {high:.3g}] (the rates that learn)"]
    gaps = [r.lr for r in results if low < r.lr < high and r.verdict != "learns"]
    if gaps:
        lines.append(f"note: rates inside that range did not learn: {', '.join(map(str, gaps))}")
    top = max(results, key=lambda r: r.lr)
    if top.verdict == "learns":
        lines.append("note: the highest rate tried still learns; try higher ones with --lrs")
    return lines


def preflight(
    recipe: str,
    budget: str | None,
    overrides: list[str],
    data: str | None,
    lrs: list[float] | None,
    steps: int,
    echo: Callable[[str], None],
) -> tuple[float, float] | None:
    """``run.py preflight``: the table and its conclusion through ``echo``; the suggested
    ``lr_g`` range, or None when no learning rate learns.  ``lrs`` None: :func:`default_lrs`."""
    cfg = resolve_config(recipe, budget, overrides=parse_overrides(overrides), data=data)
    results = run_preflight(cfg, lrs or default_lrs(cfg.trainer.lr_g), steps, echo=echo)
    echo("")
    for line in summary(results, recipe):
        echo(line)
    return suggest_range(results)
