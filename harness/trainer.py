"""The one alternating G/D training loop every recipe runs through.

Per iteration (HiFi-GAN order): ``d_steps`` discriminator updates, each on its own batch and on
that batch's generated output *detached*; then ``g_steps`` generator updates, the first on the
same generated batch D just saw (not a second draw), with D re-evaluated after its update.
Before ``disc_start_step`` only G trains, on its reconstruction loss.

At log steps only (cheap), the trainer also measures GAN health: the adversarial gradient that
reaches the generated batch, the recipe's own health signals (:meth:`Recipe.health`), and feeds
each step row to a :class:`~harness.health.HealthMonitor` whose flags travel in the checkpoint.
An optional R1 penalty (``HealthConfig.r1_gamma``) regularises D on real data.

The trainer owns the loop policy (order, ratio, precision, clipping, skips, schedulers,
checkpoints) and reports through a callback; it knows nothing of Ray or of any recipe's maths.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.config import ConfigError, TrainerConfig
from harness.files import atomic_output
from harness.health import HealthConfig, HealthMonitor
from harness.init import apply_init
from harness.recipes.base import Adversary, GeneratorLoss, Recipe

Reporter = Callable[[str, dict[str, Any], Path | None], None]
"""``report(kind, row, checkpoint)``: kind is "step" or "eval"; checkpoint is set on evals."""


class StopTraining(Exception):
    """Raised inside the loop when the trial must end early; carries a readable reason."""


@dataclass
class TrainResult:
    status: str  # "completed" | "stopped"
    reason: str
    step: int
    last_eval: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None


@dataclass
class Counters:
    """Cumulative skip counters, saved in checkpoints."""

    nonfinite_skips: int = 0
    oom_skips: int = 0
    threshold_skips: int = 0
    consecutive_nonfinite_g: int = 0  # per network: a healthy D must not mask a broken G
    consecutive_nonfinite_d: int = 0
    consecutive_oom: int = 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (validation) without disturbing the training random streams."""
    state = _rng_state()
    try:
        yield
    finally:
        _set_rng_state(state)


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


class Trainer:
    """Trains one recipe under one :class:`TrainerConfig`, writing checkpoints to ``out_dir``.

    ``health`` sets the detectors' thresholds and the R1 penalty (defaults: HealthConfig()).
    """

    def __init__(
        self,
        recipe: Recipe,
        cfg: TrainerConfig,
        out_dir: Path,
        report: Reporter | None = None,
        health: HealthConfig | None = None,
    ) -> None:
        self.recipe = recipe
        self.cfg = cfg
        self.health = health or HealthConfig()
        overridden = type(recipe).discriminator_outputs is not Recipe.discriminator_outputs
        if self.health.r1_gamma > 0 and not overridden:
            raise ConfigError(
                f"r1_gamma: recipe {recipe.name!r} does not expose discriminator_outputs(), "
                "which the R1 penalty needs"
            )
        self.monitor = HealthMonitor(self.health, cfg.steps)
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.report = report or (lambda kind, row, ckpt: None)
        self.device = pick_device(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)

        seed_everything(cfg.seed)
        init_gen = torch.Generator().manual_seed(cfg.seed)
        self.G = recipe.build_generator()
        self.D = recipe.build_discriminator()
        apply_init(self.G, cfg.init, init_gen)
        apply_init(self.D, cfg.init, init_gen)
        self.G.to(self.device)
        self.D.to(self.device)
        recipe.to(self.device)
        # D as it was before this iteration's updates, for the non-re-evaluating G loss
        self.D_before = None if cfg.reevaluate_d else copy.deepcopy(self.D).requires_grad_(False)

        self.opt_g = self._optimizer(self.G, cfg.lr_g, (cfg.b1_g, cfg.b2_g))
        self.opt_d = self._optimizer(self.D, cfg.lr_d, (cfg.b1_d, cfg.b2_d))
        self.sched_g = self._scheduler(self.opt_g)
        self.sched_d = self._scheduler(self.opt_d)
        fp16 = cfg.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)

        self.data = recipe.train_data()
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.batch_index = 0
        self._logging = False  # True during an iteration whose end writes a step row
        self.counters = Counters()
        self._interval: dict[str, list[float]] = {}
        self._elapsed_before_resume = 0.0
        self._t0 = time.perf_counter()

    # ---------------------------------------------------------------- construction helpers
    def _optimizer(
        self, net: nn.Module, lr: float, betas: tuple[float, float]
    ) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.cfg.optimizer == "adamw" else torch.optim.Adam
        decay = self.cfg.weight_decay if self.cfg.optimizer == "adamw" else 0.0
        return cls(net.parameters(), lr=lr, betas=betas, weight_decay=decay)

    def _scheduler(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        gamma = self.cfg.lr_decay if self.cfg.scheduler == "exponential" else 1.0
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)

    # ---------------------------------------------------------------- small policies
    @property
    def epoch(self) -> int:
        return self.batch_index // self.data.batches_per_epoch

    def _next_batch(self) -> Any:
        batch = self.data.batch(self.batch_index)
        self.batch_index += 1
        return self.recipe.batch_to(batch, self.device)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _adversary(self) -> Adversary:
        cfg = self.cfg
        noise = cfg.instance_noise
        if noise > 0 and cfg.instance_noise_anneal_steps > 0:
            noise *= max(0.0, 1.0 - self.step / cfg.instance_noise_anneal_steps)
        return Adversary(1.0 - cfg.label_smoothing, noise, self.noise_gen)

    def _loss_ok(self, net: str, loss: Tensor) -> bool:
        """False (and counted) when a loss is non-finite or above the divergence limit."""
        value = float(loss.detach())
        if math.isfinite(value) and value <= self.cfg.loss_upper_limit:
            return True
        self._skip_nonfinite(net, f"loss {value:.4g}")
        return False

    def _skip_nonfinite(self, net: str, what: str) -> None:
        c = self.counters
        c.nonfinite_skips += 1
        key = f"consecutive_nonfinite_{net}"
        setattr(c, key, getattr(c, key) + 1)
        if getattr(c, key) >= self.cfg.max_consecutive_nonfinite:
            raise StopTraining(
                f"diverged: {getattr(c, key)} consecutive {net.upper()} updates skipped for a "
                f"non-finite or exploding {what} (step {self.step})"
            )

    def _update(
        self,
        name: str,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        loss: Tensor,
        clip: float,
    ) -> float | None:
        """Backward, unscale, record the pre-clip norm, clip, step.  None if skipped."""
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        params = [p for p in net.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
        if not math.isfinite(norm) and not scaler.is_enabled():
            opt.zero_grad(set_to_none=True)
            self._skip_nonfinite(name, "gradient norm")
            return None
        if clip > 0 and math.isfinite(norm):
            torch.nn.utils.clip_grads_with_norm_(params, clip, torch.tensor(norm))
        scaler.step(opt)
        scaler.update()
        setattr(self.counters, f"consecutive_nonfinite_{name}", 0)
        return norm if math.isfinite(norm) else None  # fp16: the scaler skipped this step

    def _log(self, **values: float | None) -> None:
        for key, value in values.items():
            if value is not None:
                self._interval.setdefault(key, []).append(float(value))

    # ---------------------------------------------------------------- health measurements
    def _r1_penalty(self, batch: Any) -> Tensor:
        """Mean over real examples of ‖∇ₓ Σ D(x)‖², differentiable (Mescheder et al. 2018)."""
        real = self.recipe.real_input(batch).detach().requires_grad_(True)
        outputs = self.recipe.discriminator_outputs(self.D, real)
        total = sum(o.float().sum() for o in outputs)
        (grad,) = torch.autograd.grad(total, real, create_graph=True)
        return grad.float().pow(2).flatten(1).sum(1).mean()

    def _adv_grad_norm(self, out: GeneratorLoss, fake: Tensor) -> float | None:
        """‖∂L_adv/∂x̂‖₂ over the generated batch: the signal G actually receives from D."""
        term = out.terms.get("loss_g_adv", out.adversarial)
        if not (term.requires_grad and fake.requires_grad):
            return None
        scale = self.scaler_g.get_scale() if self.scaler_g.is_enabled() else 1.0
        (grad,) = torch.autograd.grad(
            term.float() * scale, fake, retain_graph=True, allow_unused=True
        )
        return 0.0 if grad is None else float(grad.float().norm()) / scale

    def _recipe_health(self, batch: Any, fake: Tensor) -> None:
        """The recipe's own signals on this batch, without touching the training RNG."""
        with torch.no_grad(), preserved_rng():
            self._log(**self.recipe.health(batch, fake.detach()))

    # ---------------------------------------------------------------- the two updates
    def _discriminator_update(self, batch: Any, fake: Tensor, adv: Adversary) -> None:
        r1 = None
        with self._autocast():
            out = self.recipe.discriminator_loss(self.D, batch, fake.detach(), adv)
            loss = out.loss
            if self.health.r1_gamma > 0:
                r1 = self._r1_penalty(batch)
                loss = loss + 0.5 * self.health.r1_gamma * r1
        if not self._loss_ok("d", loss):
            return
        self.monitor.note_d_loss(float(out.loss.detach()))
        norm = self._update("d", self.D, self.opt_d, self.scaler_d, loss, self.cfg.clip_grad_d)
        self._log(loss_d=float(out.loss.detach()), grad_norm_d=norm, d_acc=out.accuracy)
        if r1 is not None:
            self._log(r1_penalty=float(r1.detach()))
        self._log(**{k: float(v.detach()) for k, v in out.terms.items()})
        for group, value in out.real_scores.items():
            self._log(**{f"d_real/{group}": value})
        for group, value in out.fake_scores.items():
            self._log(**{f"d_fake/{group}": value})

    def _generator_update(self, batch: Any, fake: Tensor, adversarial: bool) -> None:
        critic = None
        if adversarial:
            critic = self.D if self.D_before is None else self.D_before
        with self._autocast():
            out = self.recipe.generator_loss(critic, batch, fake, self._adversary())
            recon = out.reconstruction.float()
            if self.cfg.loss_threshold > 0:
                keep = recon.detach() >= self.cfg.loss_threshold
                if not bool(keep.any()):
                    self.counters.threshold_skips += 1
                    return
                recon = recon[keep]
            loss = out.adversarial.float() + recon.mean()
        if not loss.requires_grad:  # e.g. a purely adversarial recipe before D starts
            return
        if not self._loss_ok("g", loss):
            return
        if self._logging and adversarial:
            self._log(adv_grad_norm=self._adv_grad_norm(out, fake))
        norm = self._update("g", self.G, self.opt_g, self.scaler_g, loss, self.cfg.clip_grad_g)
        if norm is not None:  # the weights changed
            self.recipe.after_generator_step(self.G)
        self._log(
            loss_g=float(loss.detach()), loss_recon=float(recon.detach().mean()), grad_norm_g=norm
        )
        self._log(**{k: float(v.detach()) for k, v in out.terms.items()})

    def _iteration(self) -> None:
        """One D phase then one G phase."""
        cfg = self.cfg
        adversarial = self.step >= cfg.disc_start_step
        self._logging = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.steps
        batch = fake = None
        if adversarial:
            if self.D_before is not None:
                self.D_before.load_state_dict(self.D.state_dict())
            adv = self._adversary()
            for k in range(cfg.d_steps):
                batch = self._next_batch()
                last = k == cfg.d_steps - 1  # only the batch G reuses needs G's graph
                with self._autocast(), torch.set_grad_enabled(last):
                    fake = self.recipe.generate(self.G, batch)
                self._discriminator_update(batch, fake, adv)
        for j in range(cfg.g_steps):
            if j > 0 or batch is None:
                batch = self._next_batch()
                with self._autocast():
                    fake = self.recipe.generate(self.G, batch)
            self._generator_update(batch, fake, adversarial)
        if self._logging:
            self._recipe_health(batch, fake)

    # ---------------------------------------------------------------- schedule, logging, eval
    def _step_schedulers(self, epoch_before: int) -> None:
        ticks = 1 if self.cfg.scheduler_interval == "per_step" else self.epoch - epoch_before
        for _ in range(ticks):
            self.sched_g.step()
            self.sched_d.step()

    def wall_s(self) -> float:
        return self._elapsed_before_resume + time.perf_counter() - self._t0

    def _step_row(self, step_s: float) -> dict[str, Any]:
        means = {k: float(np.mean(v)) for k, v in self._interval.items()}
        self._interval = {}
        real = {k.split("/", 1)[1]: v for k, v in means.items() if k.startswith("d_real/")}
        fake = {k.split("/", 1)[1]: v for k, v in means.items() if k.startswith("d_fake/")}
        row: dict[str, Any] = {k: v for k, v in means.items() if "/" not in k}
        if real:
            row.update(d_real_mean=float(np.mean(list(real.values()))), d_real_by_group=real)
        if fake:
            row.update(d_fake_mean=float(np.mean(list(fake.values()))), d_fake_by_group=fake)
        batches = self.cfg.d_steps + self.cfg.g_steps - 1
        row.update(
            step=self.step,
            epoch=self.epoch,
            wall_s=self.wall_s(),
            lr_g=self.opt_g.param_groups[0]["lr"],
            lr_d=self.opt_d.param_groups[0]["lr"],
            nonfinite_skips=self.counters.nonfinite_skips,
            oom_skips=self.counters.oom_skips,
            threshold_skips=self.counters.threshold_skips,
            step_s=step_s,
            samples_per_s=self.cfg.batch_size * batches / step_s if step_s > 0 else None,
        )
        row.update(self.monitor.update(row))
        return row

    def evaluate(self) -> dict[str, Any]:
        """Validate G on the recipe's fixed held-out set without touching training RNG."""
        self.G.eval()
        try:
            with preserved_rng(), torch.no_grad():
                metrics = self.recipe.validate(self.G, self.step, self.out_dir / "samples")
        finally:
            self.G.train()
        row = {"step": self.step, "epoch": self.epoch, "wall_s": self.wall_s(), **metrics}
        return {**row, **self.monitor.update(row)}

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "step": self.step,
            "batch_index": self.batch_index,
            "epoch": self.epoch,
            "counters": dataclasses.asdict(self.counters),
            "rng": _rng_state(),
            "noise_gen": self.noise_gen.get_state(),
            "wall_s": self.wall_s(),
            "health": self.monitor.state_dict(),
            "config": dataclasses.asdict(self.cfg),
            "recipe": self.recipe.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.step = state["step"]
        self.batch_index = state["batch_index"]
        self.counters = Counters(**state["counters"])
        _set_rng_state(state["rng"])
        self.noise_gen.set_state(state["noise_gen"])
        self.monitor.load_state_dict(state["health"])
        self.recipe.load_state_dict(state.get("recipe", {}))
        self._elapsed_before_resume = state["wall_s"]
        self._t0 = time.perf_counter()

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXXXX.pt`` atomically; prune old ones."""
        path = self.ckpt_dir / f"step_{self.step:08d}.pt"
        with atomic_output(path) as handle:
            torch.save(self.state_dict(), handle)
        for old in sorted(self.ckpt_dir.glob("step_*.pt"))[: -max(1, self.cfg.keep_checkpoints)]:
            old.unlink()
        return path

    def resume(self, path: Path | None = None) -> bool:
        """Load ``path`` or the newest checkpoint in ``out_dir``; False if there is none."""
        path = path or latest_checkpoint(self.ckpt_dir)
        if path is None:
            return False
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))
        return True

    # ---------------------------------------------------------------- the loop
    def fit(self) -> TrainResult:
        """Train until ``cfg.steps``; evaluate at step 0, every ``eval_every`` and at the end."""
        cfg = self.cfg
        last_eval: dict[str, Any] = {}
        ckpt: Path | None = None
        if self.step == 0:
            last_eval = self.evaluate()
            self.report("eval", last_eval, None)
        interval_start = time.perf_counter()
        interval_steps = 0
        status, reason = "completed", f"reached {cfg.steps} steps"
        try:
            while self.step < cfg.steps:
                epoch_before = self.epoch
                self._guarded_iteration()
                self.step += 1
                interval_steps += 1
                self._step_schedulers(epoch_before)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    self.report(
                        "step", self._step_row((now - interval_start) / interval_steps), None
                    )
                    interval_steps = 0
                    interval_start = now
                evaluating = self.step % cfg.eval_every == 0 or self.step == cfg.steps
                checkpointing = (
                    evaluating
                    if cfg.checkpoint_every == 0
                    else (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps)
                )
                if evaluating:  # before the checkpoint, which then holds the health it saw
                    last_eval = self.evaluate()
                if checkpointing:
                    ckpt = self.save_checkpoint()
                if evaluating:
                    self.report("eval", last_eval, ckpt)
                if evaluating or checkpointing:
                    interval_start = time.perf_counter()  # keep eval/IO out of step_s
        except StopTraining as stop:
            status, reason = "stopped", str(stop)
            ckpt = self.save_checkpoint()
        return TrainResult(status, reason, self.step, last_eval, ckpt)

    def _guarded_iteration(self) -> None:
        """One iteration; a CUDA out-of-memory error skips the batch and is counted."""
        try:
            self._iteration()
            self.counters.consecutive_oom = 0
        except RuntimeError as err:
            if not (self.cfg.skip_oom and is_oom(err)):
                raise
            self.opt_g.zero_grad(set_to_none=True)
            self.opt_d.zero_grad(set_to_none=True)
            del err
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.counters.oom_skips += 1
            self.counters.consecutive_oom += 1
            if self.counters.consecutive_oom >= self.cfg.max_consecutive_nonfinite:
                raise StopTraining(
                    f"out of memory: {self.counters.consecutive_oom} consecutive batches "
                    f"skipped (step {self.step})"
                ) from None


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = sorted(Path(ckpt_dir).glob("step_*.pt"))
    return found[-1] if found else None
