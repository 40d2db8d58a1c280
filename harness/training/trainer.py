"""The one alternating G/D training loop every recipe runs through.

An iteration (HiFi-GAN's order): ``d_steps`` D updates, each on its own batch and that batch's
generated output detached; then ``g_steps`` G updates with D frozen, the first on the batch D saw
last, judged by D after its update (``reevaluate_d``) or before it; before ``disc_start_step``
only G trains.  An iteration that ends a log window also measures what G receives through D and
the recipe's health signals.  The trainer owns this policy; the recipe says what is computed
(harness/training/recipe.py), the guards what is skipped (harness/training/guards.py).  It
reports through a callback and knows nothing of Ray.
"""

from __future__ import annotations

import copy
import dataclasses
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from harness.diagnostics.detectors import HealthConfig
from harness.diagnostics.monitor import HealthMonitor
from harness.files import remove_stale_temps
from harness.status import Status
from harness.training.budget import Budget
from harness.training.checkpoints import resumable_state, write_checkpoint
from harness.training.config import ConfigError, TrainerConfig
from harness.training.gradients import apply_update, frozen, generator_gradients
from harness.training.guards import Counters, Guards, StopTraining, require_scores
from harness.training.measuring import CompileClock, Interval, WallClock
from harness.training.recipe import DiscriminatorSmoothing, Recipe
from harness.training.regularisation import r1_penalty, smoothing_at
from harness.training.reporting import Reporter, RowLog, TrainResult
from harness.training.rng import capture_rng, preserved_rng, restore_rng
from harness.training.setup import (
    adopt_hyperparameters,
    autocast,
    autocast_dtype,
    build_networks,
    compiled,
    generator_objective,
    loss_scalers,
    make_optimizer,
    make_scheduler,
    pick_device,
    set_threads,
)


class Trainer:
    """Trains one recipe under one :class:`TrainerConfig`, writing checkpoints to ``out_dir``.

    ``health`` sets the detectors' thresholds (default: the recipe's ``health_config``, its
    family's calibrated detectors); their window is ``cfg.health_window`` whatever it says.

    Every row goes to ``log`` as soon as it exists, and the log is flushed after each eval row
    and before each checkpoint is written: every row up to a checkpoint's step is on record
    before the checkpoint is, so a run resumed from it needs only the rows after it again.
    ``report`` sees each row after that (an eval row with the checkpoint written at its step).
    """

    def __init__(
        self,
        recipe: Recipe,
        cfg: TrainerConfig,
        out_dir: Path,
        report: Reporter | None = None,
        health: HealthConfig | None = None,
        log: RowLog | None = None,
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
        self.log = log
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
            self.G_train, self.D_train = compiled(self.G), compiled(self.D)
        self.compile_clock = CompileClock(cfg.compile)
        # D as it was before this iteration's updates, for the non-re-evaluating G loss
        self.D_before = None if cfg.reevaluate_d else copy.deepcopy(self.D).requires_grad_(False)
        self.opt_g = make_optimizer(self.G, cfg, cfg.lr_g, (cfg.b1_g, cfg.b2_g))
        self.opt_d = make_optimizer(self.D, cfg, cfg.lr_d, (cfg.b1_d, cfg.b2_d))
        self.sched_g = make_scheduler(self.opt_g, cfg)
        self.sched_d = make_scheduler(self.opt_d, cfg)
        self.scaler_g, self.scaler_d = loss_scalers(cfg.precision, self.device)
        self.autocast_dtype = autocast_dtype(cfg.precision)
        self.data = recipe.train_data()
        self.budget = Budget(cfg, self.data.batches_per_epoch)
        health = dataclasses.replace(health or recipe.health_config, window=cfg.health_window)
        self.monitor = HealthMonitor(health, cfg.batches // self.budget.per_iteration)
        self.guards = Guards(cfg)
        self.interval = Interval()
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.batch_index = 0
        self.wall = WallClock()

    # ---------------------------------------------------------------- the loop
    def fit(self) -> TrainResult:
        """Train until ``cfg.batches`` batches are drawn; evaluate at step 0, whenever another
        ``eval_every`` batches are drawn, and at the end."""
        cfg = self.cfg
        last_eval: dict[str, Any] = {}
        ckpt: Path | None = None
        try:
            if self.step == 0:
                last_eval = self.evaluate()
                self._record("eval", last_eval)
                self.report("eval", last_eval, None)
                require_scores(last_eval, self.recipe.reports(self.recipe.cfg))
            self.interval.restart_clock()
            while not self.budget.spent(self.batch_index):
                before = self.batch_index
                self._train_step()
                evaluating = self.budget.crosses(cfg.eval_every, before, self.batch_index)
                every = cfg.checkpoint_every or cfg.eval_every
                checkpointing = self.budget.crosses(every, before, self.batch_index)
                if evaluating:  # before the checkpoint, which then holds the health it saw
                    last_eval = self.evaluate()
                    self._record("eval", last_eval)
                if checkpointing:
                    ckpt = self.save_checkpoint()
                if evaluating:
                    self.report("eval", last_eval, ckpt)
                    require_scores(last_eval, self.recipe.reports(self.recipe.cfg))
                if evaluating or checkpointing:
                    self.interval.restart_clock()
        except StopTraining as stop:
            status, reason, ckpt = Status.STOPPED, str(stop), self.save_checkpoint()
        else:
            status, reason = Status.COMPLETED, f"reached its budget of {cfg.batches} batches"
        return TrainResult(status, reason, self.step, last_eval, ckpt, self.compile_clock.total)

    def _train_step(self) -> None:
        """One iteration, its scheduler ticks and, where it ends a log window, its step row."""
        cfg, budget, before = self.cfg, self.budget, self.batch_index
        d_trained = self.step >= cfg.disc_start_step  # D's schedule starts when D does
        logging = budget.crosses(cfg.log_every, before, before + budget.drawn(self.step))
        if not self._guarded_iteration(logging):
            # out of memory part-way: the window ends only where the batches drawn cross it
            logging = budget.crosses(cfg.log_every, before, self.batch_index)
        self.step += 1
        self.interval.iterations += 1
        epochs = budget.schedule_epoch(self.batch_index) - budget.schedule_epoch(before)
        ticks = 1 if cfg.scheduler_interval == "per_step" else epochs
        for _ in range(ticks):
            self.sched_g.step()
            if d_trained:
                self.sched_d.step()
        if logging:
            row = self._step_row()
            self._record("step", row)
            self.report("step", row, None)

    def _record(self, kind: str, row: dict[str, Any]) -> None:
        """``row`` to the log; an eval row durable at once."""
        if self.log is not None:
            self.log.write({"kind": kind, **row})
            if kind == "eval":
                self.log.flush()

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
        smoothing = smoothing_at(cfg, self.step, self.noise_gen)
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
        norm = self._update("d", self.D, self.opt_d, self.scaler_d, loss)
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
        """One G update, judged by ``critic`` (None before D starts), on its terms through D plus
        the mean reconstruction of the examples ``loss_threshold`` keeps; ``logging``: the
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
        norm = self._update("g", self.G, self.opt_g, self.scaler_g, loss)
        if norm is not None:  # the weights changed
            self.recipe.after_generator_step(self.G)
        self.interval.add(loss_g=loss, loss_recon=recon.detach().mean(), grad_norm_g=norm)
        self.interval.add(loss_g_adv=out.adversarial, **out.terms)

    # ---------------------------------------------------------------- small policies
    @property
    def epoch(self) -> int:
        return self.budget.epoch(self.batch_index)

    @property
    def counters(self) -> Counters:
        """The cumulative skip counters (kept by :attr:`guards`)."""
        return self.guards.counters

    def _next_batch(self) -> Any:
        batch = self.data.batch(self.batch_index)
        self.batch_index += 1
        return self.recipe.batch_to(batch, self.device)

    def _autocast(self) -> AbstractContextManager:
        """Mixed precision for the forward passes (``cfg.precision``), or nothing for fp32."""
        return autocast(self.device, self.autocast_dtype)

    def _update(
        self,
        name: str,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        loss: Tensor,
    ) -> float | None:
        """``net``'s guarded update on ``loss`` (:func:`apply_update`); None if skipped."""
        clip = self.cfg.clip_grad_g if name == "g" else self.cfg.clip_grad_d
        return apply_update(net, opt, scaler, loss, clip, self.guards, name, self.step)

    # ---------------------------------------------------------------- rows
    def _step_row(self) -> dict[str, Any]:
        """The interval's means, with the loop's position, rates, counters, speed and health."""
        compiling = self.compile_clock.lap()
        row, step_s = self.interval.close(excluded_s=compiling)
        if self.cfg.compile:
            row["compile_s"] = compiling
        samples = self.cfg.batch_size * self.budget.per_iteration
        row.update(
            step=self.step,
            batches=self.batch_index,
            epoch=self.epoch,
            wall_s=self.wall.seconds(),
            lr_g=self.opt_g.param_groups[0]["lr"],
            lr_d=self.opt_d.param_groups[0]["lr"],
            **self.counters.skips(),
            step_s=step_s,
            samples_per_s=samples / step_s if step_s > 0 else None,
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
        row = {"step": self.step, "batches": self.batch_index, "epoch": self.epoch}
        row = {**row, "wall_s": self.wall.seconds(), **metrics}
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
            "wall_s": self.wall.seconds(),
            "health": self.monitor.state_dict(),
            "config": dataclasses.asdict(self.cfg),
            "recipe": self.recipe.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; where this trainer's config changes a hyperparameter the
        checkpoint was trained under (``MID_RUN_KEYS``), the optimizers train with the new one."""
        for key, part in self._stateful().items():
            part.load_state_dict(state[key])
        trained_under = state.get("config", {})
        adopt_hyperparameters(self.opt_g, self.sched_g, self.cfg, "g", trained_under)
        adopt_hyperparameters(self.opt_d, self.sched_d, self.cfg, "d", trained_under)
        self.step = state["step"]
        self.batch_index = state["batch_index"]
        self.guards.counters = Counters(**state["counters"])
        restore_rng(state["rng"])
        self.noise_gen.set_state(state["noise_gen"])
        self.monitor.load_state_dict(state["health"])
        self.recipe.load_state_dict(state.get("recipe", {}))
        self.wall = WallClock(before=state["wall_s"])

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXXXX.pt`` atomically, once every row logged so far is
        durable; prune old ones."""
        if self.log is not None:
            self.log.flush()
        state, keep = self.state_dict(), self.cfg.keep_checkpoints
        return write_checkpoint(state, self.ckpt_dir, self.step, keep)

    def resume(self, path: Path | None = None) -> bool:
        """Load ``path`` or the newest checkpoint in ``out_dir`` (see :func:`resumable_state`);
        False if there is none intact."""
        state = resumable_state(self.ckpt_dir, path, self.device)
        if state is not None:
            self.load_state_dict(state)
        return state is not None
