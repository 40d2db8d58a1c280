"""The one alternating G/D training loop every recipe runs through.

Per iteration (HiFi-GAN order): ``d_steps`` discriminator updates, each on its own batch and on
that batch's generated output *detached*; then ``g_steps`` generator updates, the first on the
same generated batch D just saw (not a second draw), with D re-evaluated after its update.
Before ``disc_start_step`` only G trains, on its reconstruction loss.

At log steps only (cheap), the trainer also measures GAN health: the adversarial gradient that
reaches the generated batch, the recipe's own health signals (:meth:`Recipe.health`), and feeds
each step row to a :class:`~harness.diagnostics.health.HealthMonitor` whose flags travel in the checkpoint.
An optional R1 penalty (``TrainerConfig.r1_gamma``) regularises D on real data.

The trainer owns the loop policy (order, ratio, precision, clipping, schedulers, checkpoints;
the skip rules live in :class:`~harness.training.guards.Guards`) and reports through a callback; it knows
nothing of Ray or of any recipe's maths.  Its parts are built by harness/training/setup.py.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from harness.diagnostics.health import HealthConfig, HealthMonitor
from harness.files import remove_stale_temps
from harness.status import Status
from harness.training.checkpoints import resumable_state, write_checkpoint
from harness.training.config import ConfigError, TrainerConfig
from harness.training.gradients import frozen, generator_gradients, r1_penalty
from harness.training.guards import Counters, Guards, StopTraining
from harness.training.measuring import Interval, compile_seconds
from harness.training.recipe import DiscriminatorSmoothing, Recipe
from harness.training.rng import capture_rng, preserved_rng, restore_rng
from harness.training.setup import (
    build_networks,
    generator_objective,
    make_optimizer,
    make_scheduler,
    pick_device,
    set_threads,
)

Reporter = Callable[[str, dict[str, Any], Path | None], None]
"""``report(kind, row, checkpoint)``: kind is "step" or "eval"; checkpoint is set on evals."""


@dataclass
class TrainResult:
    """How :meth:`Trainer.fit` ended: COMPLETED or STOPPED (with the reason), and where."""

    status: Status
    reason: str
    step: int
    last_eval: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    compile_s: float = 0.0  # torch.compile's time (``cfg.compile``), left out of ``step_s``


class Trainer:
    """Trains one recipe under one :class:`TrainerConfig`, writing checkpoints to ``out_dir``.

    ``health`` sets the detectors' thresholds (default: the recipe's ``health_config``, its
    family's calibrated detectors); their window is
    ``cfg.health_window`` and the R1 weight ``cfg.r1_gamma``, whatever ``health`` says.
    """

    def __init__(
        self,
        recipe: Recipe,
        cfg: TrainerConfig,
        out_dir: Path,
        report: Reporter | None = None,
        health: HealthConfig | None = None,
    ) -> None:
        if cfg.r1_gamma > 0 and not recipe.supports_r1:
            raise ConfigError(
                f"r1_gamma: recipe {recipe.name!r} does not expose discriminator_outputs(), "
                "which the R1 penalty needs"
            )
        self.recipe = recipe
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        remove_stale_temps(self.ckpt_dir)  # a save a kill cut short (this is its only writer)
        self.report = report or (lambda kind, row, ckpt: None)
        self.device = pick_device(cfg.device)
        set_threads(cfg.threads)
        self.G, self.D = build_networks(cfg, recipe.build_generator, recipe.build_discriminator)
        self.G.to(self.device)
        self.D.to(self.device)
        recipe.to(self.device)
        # what the training passes call: compiled when cfg.compile (same weights); validation,
        # checkpoints and R1's double backward (which compiled graphs lack) use G and D as built
        self.G_train, self.D_train = self.G, self.D
        if cfg.compile:
            self.G_train, self.D_train = torch.compile(self.G), torch.compile(self.D)
        self.compile_s = 0.0  # torch.compile's seconds in this trainer so far
        self._compile_s_seen = compile_seconds() if cfg.compile else 0.0
        # D as it was before this iteration's updates, for the non-re-evaluating G loss
        self.D_before = None if cfg.reevaluate_d else copy.deepcopy(self.D).requires_grad_(False)
        self.opt_g = make_optimizer(self.G, cfg, cfg.lr_g, (cfg.b1_g, cfg.b2_g))
        self.opt_d = make_optimizer(self.D, cfg, cfg.lr_d, (cfg.b1_d, cfg.b2_d))
        self.sched_g = make_scheduler(self.opt_g, cfg)
        self.sched_d = make_scheduler(self.opt_d, cfg)
        fp16 = cfg.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)

        health = dataclasses.replace(health or recipe.health_config, window=cfg.health_window)
        self.monitor = HealthMonitor(health, cfg.batches // (cfg.d_steps + cfg.g_steps - 1))
        self.guards = Guards(cfg)
        self.interval = Interval()
        self.data = recipe.train_data()
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.batch_index = 0
        self._elapsed_before_resume = 0.0
        self._t0 = time.perf_counter()

    # ---------------------------------------------------------------- the loop
    def fit(self) -> TrainResult:
        """Train until ``cfg.batches`` batches are drawn; evaluate at step 0, whenever another
        ``eval_every`` batches are drawn, and at the end."""
        cfg = self.cfg
        last_eval: dict[str, Any] = {}
        ckpt: Path | None = None
        if self.step == 0:
            last_eval = self.evaluate()
            self.report("eval", last_eval, None)
        self.interval.restart_clock()
        try:
            while not self.done:
                batches_before = self.batch_index
                self._train_step()
                evaluating = self._crosses(cfg.eval_every, batches_before, self.batch_index)
                checkpointing = self._crosses(
                    cfg.checkpoint_every or cfg.eval_every, batches_before, self.batch_index
                )
                if evaluating:  # before the checkpoint, which then holds the health it saw
                    last_eval = self.evaluate()
                if checkpointing:
                    ckpt = self.save_checkpoint()
                if evaluating:
                    self.report("eval", last_eval, ckpt)
                if evaluating or checkpointing:
                    self.interval.restart_clock()
        except StopTraining as stop:
            ckpt = self.save_checkpoint()
            return TrainResult(
                Status.STOPPED, str(stop), self.step, last_eval, ckpt, self.compile_s
            )
        reason = f"reached its budget of {cfg.batches} batches"
        return TrainResult(Status.COMPLETED, reason, self.step, last_eval, ckpt, self.compile_s)

    def _train_step(self) -> None:
        """One iteration, its scheduler ticks and, where it ends a log window, its step row."""
        cfg = self.cfg
        batches_before, epoch_before = self.batch_index, self.schedule_epoch
        d_trained = self.step >= cfg.disc_start_step  # D's schedule starts when D does
        logging = self._crosses(cfg.log_every, batches_before, batches_before + self._drawn())
        if not self._guarded_iteration(logging):
            # out of memory part-way: the window ends only where the batches drawn cross it
            logging = self._crosses(cfg.log_every, batches_before, self.batch_index)
        self.step += 1
        self.interval.iterations += 1
        ticks = 1 if cfg.scheduler_interval == "per_step" else self.schedule_epoch - epoch_before
        for _ in range(ticks):
            self.sched_g.step()
            if d_trained:
                self.sched_d.step()
        if logging:
            self.report("step", self._step_row(), None)

    def _guarded_iteration(self, logging: bool) -> bool:
        """One iteration; False where a CUDA out-of-memory error skipped it (counted)."""
        try:
            self._iteration(logging)
        except RuntimeError as err:
            if not self.guards.skips_oom(err):
                raise
        else:
            self.guards.iteration_done()
            return True
        self.opt_g.zero_grad(set_to_none=True)  # outside the except: the error's frames are gone
        self.opt_d.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.guards.oom_skipped(self.step)
        return False

    # ---------------------------------------------------------------- one iteration
    def _iteration(self, logging: bool) -> None:
        """The D phase, then the G phase (D frozen) on the batch D saw last.  ``logging``: the
        iteration ends a log window, so it also measures what G receives and the recipe's health."""
        cfg = self.cfg
        adversarial = self.step >= cfg.disc_start_step
        smoothing = self._smoothing()
        batch = fake = None
        if adversarial:
            if self.D_before is not None:
                self.D_before.load_state_dict(self.D.state_dict())
            for k in range(cfg.d_steps):
                batch = self._next_batch()
                last = k == cfg.d_steps - 1  # only the batch G reuses needs G's graph
                with self._autocast(), torch.set_grad_enabled(last):
                    fake = self.recipe.generate(self.G_train, batch)
                self._d_step(batch, fake, smoothing)
        critic = None
        if adversarial:
            critic = self.D_train if self.D_before is None else self.D_before
        with frozen(self.D):
            for j in range(cfg.g_steps):
                if j > 0 or batch is None:
                    batch = self._next_batch()
                    with self._autocast():
                        fake = self.recipe.generate(self.G_train, batch)
                self._g_step(batch, fake, critic, smoothing, logging)
        if logging:  # the recipe's own signals, without touching the training RNG
            with torch.no_grad(), preserved_rng():
                self.interval.add(**self.recipe.health(batch, fake.detach()))

    def _d_step(self, batch: Any, fake: Tensor, smoothing: DiscriminatorSmoothing) -> None:
        """One D update on real data and the detached generated batch (+ R1 when on)."""
        gamma = self.cfg.r1_gamma
        with self._autocast():
            out = self.recipe.discriminator_loss(self.D_train, batch, fake.detach(), smoothing)
            r1 = r1_penalty(self.recipe, self.D, batch) if gamma > 0 else None
            loss = out.loss if r1 is None else out.loss + 0.5 * gamma * r1
        if not self.guards.loss_ok("d", loss, self.step):
            return
        if self.monitor.needs_d_loss:  # one host sync, on the first D update only
            self.monitor.note_d_loss(float(out.loss.detach()))
        norm = self._update("d", self.D, self.opt_d, self.scaler_d, loss, self.cfg.clip_grad_d)
        self.interval.add(loss_d=out.loss, grad_norm_d=norm, d_acc=out.accuracy, r1_penalty=r1)
        self.interval.add(**out.terms)
        self.interval.add_scores(out.real_scores, out.fake_scores)

    def _g_step(
        self,
        batch: Any,
        fake: Tensor,
        critic: nn.Module | None,
        smoothing: DiscriminatorSmoothing,
        logging: bool,
    ) -> None:
        """One G update judged by ``critic`` (None before D starts): the adversarial term plus the
        mean reconstruction loss of the examples ``loss_threshold`` keeps.  When ``logging``, the
        gradients G receives are measured first."""
        with self._autocast():
            out = self.recipe.generator_loss(critic, batch, fake, smoothing)
            recon = self.guards.hard_examples(out.reconstruction.float())
            if recon is None:
                return
            loss = generator_objective(out.through_d, recon)
        if not loss.requires_grad:  # e.g. a purely adversarial recipe before D starts
            return
        if not self.guards.loss_ok("g", loss, self.step):
            return
        if self.monitor.needs_recon:  # the untrained G's loss, one host sync on the first step
            self.monitor.note_recon(float(recon.detach().mean()))
        if logging and critic is not None:
            scale = self.scaler_g.get_scale()  # 1.0 unless fp16
            self.interval.add(**generator_gradients(out, recon, fake, scale))
        norm = self._update("g", self.G, self.opt_g, self.scaler_g, loss, self.cfg.clip_grad_g)
        if norm is not None:  # the weights changed
            self.recipe.after_generator_step(self.G)
        self.interval.add(loss_g=loss, loss_recon=recon.detach().mean(), grad_norm_g=norm)
        self.interval.add(loss_g_adv=out.adversarial, **out.terms)

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
        if not self.guards.gradient_ok(name, norm, scaler.is_enabled(), self.step):
            opt.zero_grad(set_to_none=True)
            return None
        if clip > 0 and math.isfinite(norm):
            torch.nn.utils.clip_grads_with_norm_(params, clip, torch.tensor(norm))
        scaler.step(opt)
        scaler.update()
        self.guards.updated(name, norm)
        return norm if math.isfinite(norm) else None  # fp16: the scaler skipped this step

    # ---------------------------------------------------------------- small policies
    @property
    def epoch(self) -> int:
        return self.batch_index // self.data.batches_per_epoch

    @property
    def schedule_epoch(self) -> int:
        """Epochs of ``cfg.epoch_samples`` examples drawn: the per_epoch schedule's clock, the
        same on a 300-clip corpus as on the 13k clips a paper's schedule was tuned on."""
        examples = self.cfg.epoch_samples or self.data.batches_per_epoch * self.cfg.batch_size
        return self.batch_index * self.cfg.batch_size // examples

    @property
    def counters(self) -> Counters:
        """The cumulative skip counters (kept by :attr:`guards`)."""
        return self.guards.counters

    def _drawn(self) -> int:
        """Batches the coming iteration draws."""
        cfg = self.cfg
        return cfg.d_steps + cfg.g_steps - 1 if self.step >= cfg.disc_start_step else cfg.g_steps

    def _crosses(self, every: int, before: int, after: int) -> bool:
        """Whether going from ``before`` to ``after`` batches drawn crosses a multiple of
        ``every`` or spends the budget."""
        return after // every > before // every or after >= self.cfg.batches

    @property
    def done(self) -> bool:
        """The budget is spent: ``cfg.batches`` batches drawn."""
        return self.batch_index >= self.cfg.batches

    def _next_batch(self) -> Any:
        batch = self.data.batch(self.batch_index)
        self.batch_index += 1
        return self.recipe.batch_to(batch, self.device)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _smoothing(self) -> DiscriminatorSmoothing:
        cfg = self.cfg
        noise = cfg.instance_noise
        if noise > 0 and cfg.instance_noise_anneal_steps > 0:
            noise *= max(0.0, 1.0 - self.step / cfg.instance_noise_anneal_steps)
        return DiscriminatorSmoothing(1.0 - cfg.label_smoothing, noise, self.noise_gen)

    # ---------------------------------------------------------------- rows
    def _step_row(self) -> dict[str, Any]:
        """The interval's means, with the loop's position, rates, counters, speed and health."""
        compiling = compile_seconds() - self._compile_s_seen if self.cfg.compile else 0.0
        self._compile_s_seen += compiling
        self.compile_s += compiling
        row, step_s = self.interval.close(excluded_s=compiling)
        batches = self.cfg.d_steps + self.cfg.g_steps - 1
        c = self.counters
        if self.cfg.compile:
            row["compile_s"] = compiling
        row.update(
            step=self.step,
            batches=self.batch_index,
            epoch=self.epoch,
            wall_s=self.wall_s(),
            lr_g=self.opt_g.param_groups[0]["lr"],
            lr_d=self.opt_d.param_groups[0]["lr"],
            nonfinite_skips=c.nonfinite_skips,
            oom_skips=c.oom_skips,
            scaler_skips=c.scaler_skips,
            threshold_skips=c.threshold_skips,
            step_s=step_s,
            samples_per_s=self.cfg.batch_size * batches / step_s if step_s > 0 else None,
        )
        row.update(self.monitor.update(row))
        return row

    def wall_s(self) -> float:
        return self._elapsed_before_resume + time.perf_counter() - self._t0

    def evaluate(self) -> dict[str, Any]:
        """Validate G on the recipe's fixed held-out set without touching training RNG."""
        self.G.eval()
        try:
            with preserved_rng(), torch.no_grad():
                metrics = self.recipe.validate(self.G, self.step, self.out_dir / "samples")
        finally:
            self.G.train()
        row = {"step": self.step, "batches": self.batch_index, "epoch": self.epoch}
        row = {**row, "wall_s": self.wall_s(), **metrics}
        return {**row, **self.monitor.update(row)}

    # ---------------------------------------------------------------- checkpoints
    def _stateful(self) -> dict[str, Any]:
        """The parts whose own ``state_dict`` goes into a checkpoint, by checkpoint key."""
        return {
            "generator": self.G,
            "discriminator": self.D,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "sched_g": self.sched_g,
            "sched_d": self.sched_d,
            "scaler_g": self.scaler_g,
            "scaler_d": self.scaler_d,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **{key: part.state_dict() for key, part in self._stateful().items()},
            "step": self.step,
            "batch_index": self.batch_index,
            "epoch": self.epoch,
            "counters": dataclasses.asdict(self.counters),
            "rng": capture_rng(),
            "noise_gen": self.noise_gen.get_state(),
            "wall_s": self.wall_s(),
            "health": self.monitor.state_dict(),
            "config": dataclasses.asdict(self.cfg),
            "recipe": self.recipe.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, part in self._stateful().items():
            part.load_state_dict(state[key])
        self.step = state["step"]
        self.batch_index = state["batch_index"]
        self.guards.counters = Counters(**state["counters"])
        restore_rng(state["rng"])
        self.noise_gen.set_state(state["noise_gen"])
        self.monitor.load_state_dict(state["health"])
        self.recipe.load_state_dict(state.get("recipe", {}))
        self._elapsed_before_resume = state["wall_s"]
        self._t0 = time.perf_counter()

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXXXX.pt`` atomically; prune old ones."""
        return write_checkpoint(
            self.state_dict(), self.ckpt_dir, self.step, self.cfg.keep_checkpoints
        )

    def resume(self, path: Path | None = None) -> bool:
        """Load ``path`` or the newest checkpoint in ``out_dir`` (see :func:`resumable_state`);
        False if there is none intact."""
        state = resumable_state(self.ckpt_dir, path, self.device)
        if state is not None:
            self.load_state_dict(state)
        return state is not None
