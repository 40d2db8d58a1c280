"""The shared trainer's loop policy, on the toy ring recipe (seconds on a CPU)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from weights_digest import digests_with_and_without_freezing

from harness.recipes.ring import RingRecipe
from harness.runs.resolve import resolve_config
from harness.training.recipe import DiscriminatorSmoothing
from harness.training.setup import make_optimizer
from harness.training.trainer import Trainer
from harness.training.weight_init import apply_init

SMALL = {"g_hidden": 32, "g_layers": 2, "d_hidden": 32, "d_layers": 2, "eval_samples": 200}


def make(tmp_path, recipe_cls=RingRecipe, **overrides):
    settings = {
        "batches": 20,
        "batch_size": 32,
        "eval_every": 10,
        "log_every": 5,
        **SMALL,
        **overrides,
    }
    cfg = resolve_config("ring", "smoke", overrides=settings)
    recipe = recipe_cls(cfg.model, None, cfg.trainer.seed, cfg.trainer.batch_size)
    rows: list[tuple[str, dict]] = []
    trainer = Trainer(recipe, cfg.trainer, tmp_path, lambda k, r, c: rows.append((k, r)))
    return trainer, rows


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"G.{k}": v.clone() for k, v in trainer.G.state_dict().items()}
    out.update({f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()})
    return out


def count_steps(opt: torch.optim.Optimizer) -> list[int]:
    calls = [0]
    opt.register_step_post_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("reevaluate", [True, False])
def test_resume_is_bit_exact(tmp_path, reevaluate):
    policy = {
        "d_steps": 2,
        "instance_noise": 0.05,
        "label_smoothing": 0.1,
        "scheduler": "exponential",
        "lr_decay": 0.9,
        "scheduler_interval": "per_step",
        "reevaluate_d": reevaluate,
    }
    # budgets count batches drawn: 2:1 draws two per iteration, so 40 batches are 20 iterations
    straight, _ = make(tmp_path / "straight", batches=80, **policy)
    straight.fit()

    first, _ = make(tmp_path / "split", batches=40, **policy)
    first.fit()
    second, rows = make(tmp_path / "split", batches=80, **policy)
    assert second.resume()
    assert second.step == 20 and second.batch_index == 40
    second.fit()

    a, b = weights(straight), weights(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.opt_g.param_groups[0]["lr"] == second.opt_g.param_groups[0]["lr"]
    assert all(r["step"] > 20 for k, r in rows), "a resumed run must not redo step 0 evaluation"


@pytest.mark.parametrize("d_steps,g_steps", [(3, 1), (1, 2)])
def test_d_to_g_ratio(tmp_path, d_steps, g_steps):
    per_iteration = d_steps + g_steps - 1  # the budget counts batches: ten iterations' worth
    trainer, _ = make(tmp_path, batches=10 * per_iteration, d_steps=d_steps, g_steps=g_steps)
    d_calls, g_calls = count_steps(trainer.opt_d), count_steps(trainer.opt_g)
    trainer.fit()
    assert d_calls[0] == 10 * d_steps
    assert g_calls[0] == 10 * g_steps
    # each D update on its own batch; extra G updates draw new batches
    assert trainer.batch_index == 10 * (d_steps + g_steps - 1)


def test_disc_start_step_leaves_d_untouched(tmp_path):
    trainer, rows = make(tmp_path, batches=8, disc_start_step=5, log_every=1)
    d_before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    d_calls = count_steps(trainer.opt_d)
    trainer.cfg.batches = 5
    trainer.fit()
    assert d_calls[0] == 0
    for k, v in trainer.D.state_dict().items():
        assert torch.equal(v, d_before[k]), k
    assert not any("loss_d" in r for kind, r in rows if kind == "step")
    trainer.cfg.batches = 8
    trainer.fit()
    assert d_calls[0] == 3
    assert any(not torch.equal(v, d_before[k]) for k, v in trainer.D.state_dict().items())


class TargetSpy(RingRecipe):
    """Ring recipe that records the real-label target the trainer hands to D."""

    targets: list[float]

    def discriminator_loss(self, discriminator, batch, fake, smoothing: DiscriminatorSmoothing):
        self.targets = [*getattr(self, "targets", []), smoothing.real_target]
        return super().discriminator_loss(discriminator, batch, fake, smoothing)


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_label_smoothing_changes_d_target(tmp_path, loss):
    plain, _ = make(tmp_path / "a", recipe_cls=TargetSpy, batches=3, loss=loss)
    plain.fit()
    smooth, _ = make(
        tmp_path / "b", recipe_cls=TargetSpy, batches=3, loss=loss, label_smoothing=0.2
    )
    smooth.fit()
    assert set(plain.recipe.targets) == {1.0}
    assert smooth.recipe.targets == pytest.approx([0.8] * len(smooth.recipe.targets))
    # and the discriminator learns something different
    assert not torch.equal(plain.D[0].linear.weight, smooth.D[0].linear.weight)


class NanAt(RingRecipe):
    """Injects NaN into the generator loss on chosen calls."""

    nan_calls: set[int] = set()
    calls = 0

    def generator_loss(self, discriminator, batch, fake, smoothing):
        out = super().generator_loss(discriminator, batch, fake, smoothing)
        self.calls += 1
        if self.calls in self.nan_calls:
            out.through_d = out.through_d * float("nan")
        return out


def test_nan_loss_is_skipped_counted_and_training_continues(tmp_path):
    NanAt.nan_calls = {3, 4, 7}
    trainer, rows = make(tmp_path, recipe_cls=NanAt, batches=12, log_every=1)
    snapshots = []
    trainer.opt_g.register_step_post_hook(lambda *a: snapshots.append(trainer.step))
    result = trainer.fit()
    assert result.status == "completed" and result.step == 12
    assert trainer.counters.nonfinite_skips == 3
    assert sorted(set(range(12)) - set(snapshots)) == [2, 3, 6]  # 1-based calls 3, 4, 7
    last = [r for k, r in rows if k == "step"][-1]
    assert last["nonfinite_skips"] == 3
    assert all(math.isfinite(v) for v in trainer.G.state_dict()["0.weight"].flatten().tolist())


def test_too_many_nonfinite_losses_stop_the_trial(tmp_path):
    NanAt.nan_calls = set(range(1, 100))
    trainer, _ = make(tmp_path, recipe_cls=NanAt, batches=50, max_consecutive_nonfinite=5)
    result = trainer.fit()
    assert result.status == "stopped"
    assert "5 consecutive G updates skipped" in result.reason
    assert result.step < 50 and result.checkpoint is not None


class OomAt(RingRecipe):
    """Raises CUDA's out-of-memory error on chosen batches.

    A mock at the one boundary we cannot reach here: there is no GPU to exhaust.
    """

    def generate(self, generator, batch):
        self.n = getattr(self, "n", 0) + 1
        if self.n in (2, 5):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().generate(generator, batch)


def test_oom_batch_is_skipped_and_counted(tmp_path):
    trainer, _ = make(tmp_path, recipe_cls=OomAt, batches=8)
    result = trainer.fit()
    assert result.status == "completed" and result.step == 8
    assert trainer.counters.oom_skips == 2


def test_oom_is_raised_when_skipping_is_off(tmp_path):
    trainer, _ = make(tmp_path, recipe_cls=OomAt, batches=8, skip_oom=False)
    with pytest.raises(torch.OutOfMemoryError):
        trainer.fit()


class Reconstructing(RingRecipe):
    """Adds a per-example reconstruction loss (distance to the real sample)."""

    def generator_loss(self, discriminator, batch, fake, smoothing):
        out = super().generator_loss(discriminator, batch, fake, smoothing)
        out.reconstruction = (fake - batch[0]).pow(2).sum(-1)
        return out


def test_loss_threshold_skips_batches_left_empty(tmp_path):
    trainer, _ = make(tmp_path, recipe_cls=Reconstructing, batches=4, loss_threshold=1e9)
    g_calls = count_steps(trainer.opt_g)
    trainer.fit()
    assert g_calls[0] == 0
    assert trainer.counters.threshold_skips == 4
    kept, _ = make(tmp_path / "b", recipe_cls=Reconstructing, batches=4, loss_threshold=1e-9)
    g_calls = count_steps(kept.opt_g)
    kept.fit()
    assert g_calls[0] == 4 and kept.counters.threshold_skips == 0


def test_schedulers_per_step_and_per_epoch(tmp_path):
    per_step, _ = make(
        tmp_path / "a",
        batches=10,
        scheduler="exponential",
        lr_decay=0.5,
        scheduler_interval="per_step",
        lr_g=1.0,
        lr_d=1.0,
    )
    per_step.fit()
    assert per_step.opt_g.param_groups[0]["lr"] == pytest.approx(0.5**10)
    per_epoch, _ = make(
        tmp_path / "b",
        batches=250,
        scheduler="exponential",
        lr_decay=0.5,
        scheduler_interval="per_epoch",
        lr_g=1e-3,  # not 1.0: 250 batches at that rate can diverge and stop the run early
        lr_d=1e-3,
        eval_every=1000,
    )
    assert per_epoch.fit().status == "completed"
    # 100 batches per nominal epoch -> 2 epochs in 250 batches
    assert per_epoch.opt_d.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs(tmp_path, precision):
    trainer, rows = make(tmp_path, batches=6, precision=precision)
    assert trainer.scaler_g.is_enabled() == (precision == "fp16")
    assert trainer.scaler_g is not trainer.scaler_d
    result = trainer.fit()
    assert result.status == "completed"
    assert any(k == "step" and math.isfinite(r["loss_d"]) for k, r in rows)


def test_gradient_clipping_records_preclip_norm(tmp_path):
    trainer, rows = make(tmp_path, batches=5, clip_grad_d=1e-6, log_every=1, lr_d=1.0)
    before = trainer.D[0].linear.weight.detach().clone()
    trainer.fit()
    norms = [r["grad_norm_d"] for k, r in rows if k == "step"]
    assert min(norms) > 1e-3  # recorded before clipping
    # clipped to 1e-6 total norm: Adam normalises step size, so compare with an unclipped twin
    free, _ = make(tmp_path / "free", batches=5, log_every=1, lr_d=1.0)
    free.fit()
    assert not torch.equal(trainer.D[0].linear.weight, free.D[0].linear.weight)
    assert not torch.equal(trainer.D[0].linear.weight, before)


def test_init_schemes():
    layer = torch.nn.Linear(400, 300)
    apply_init(layer, "normal", torch.Generator().manual_seed(0))
    assert float(layer.weight.std()) == pytest.approx(1 / 20, rel=0.02)
    eq = torch.nn.Linear(400, 300)
    apply_init(eq, "equalized", torch.Generator().manual_seed(0))
    stored = eq.parametrizations.weight.original
    assert float(stored.std()) == pytest.approx(1.0, rel=0.02)
    assert torch.allclose(eq.weight, layer.weight)  # same function as "normal" at init
    wn = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(16, 8, 3))
    apply_init(wn, "normal", torch.Generator().manual_seed(0))
    assert float(wn.weight.std()) == pytest.approx(1 / math.sqrt(48), rel=0.15)


def test_step_rows_come_every_log_every_batches_at_any_d_to_g_ratio(tmp_path):
    """Like evaluations, step rows count batches: a 3:1 run logs as often per batch as a 1:1
    run, so a health window spans the same compute at every ratio."""
    trainer, rows = make(tmp_path, batches=30, eval_every=30, log_every=5, d_steps=3)
    trainer.fit()
    step_rows = [r for k, r in rows if k == "step"]
    assert [r["batches"] for r in step_rows] == [6, 12, 15, 21, 27, 30]
    assert [r["step"] for r in step_rows] == [2, 4, 5, 7, 9, 10]
    assert all("loss_d" in r for r in step_rows)


def test_rows_and_evaluations(tmp_path):
    trainer, rows = make(tmp_path, batches=20, eval_every=10, log_every=5)
    trainer.fit()
    evals = [r["step"] for k, r in rows if k == "eval"]
    steps = [r["step"] for k, r in rows if k == "step"]
    assert evals == [0, 10, 20] and steps == [5, 10, 15, 20]
    row = [r for k, r in rows if k == "step"][-1]
    for key in (
        "loss_d",
        "loss_g",
        "d_acc",
        "grad_norm_g",
        "grad_norm_d",
        "lr_g",
        "step_s",
        "samples_per_s",
        "d_real_mean",
        "d_fake_mean",
    ):
        assert key in row, key
    assert row["d_real_by_group"].keys() == {"mlp"}
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt")) == [
        "step_00000010.pt",
        "step_00000020.pt",
    ]


@pytest.mark.parametrize("d_steps,g_steps", [(1, 1), (2, 1), (3, 1), (1, 2)])
def test_every_ratio_validates_after_the_same_batches_and_stops_at_the_budget(
    tmp_path, d_steps, g_steps
):
    """Equal compute: a 3:1 trial and a 1:1 trial are validated (and ASHA compares them) after
    the same number of batches drawn, and both stop at the same budget."""
    trainer, rows = make(tmp_path, batches=60, eval_every=20, d_steps=d_steps, g_steps=g_steps)
    result = trainer.fit()
    per_iteration = d_steps + g_steps - 1
    evals = [r["batches"] for k, r in rows if k == "eval"]
    # the first iteration at or past each multiple of 20 batches validates
    assert evals == [0, *(per_iteration * -(-n // per_iteration) for n in (20, 40, 60))]
    assert trainer.batch_index == evals[-1] and result.step == evals[-1] // per_iteration
    assert "budget of 60 batches" in result.reason


def test_d_schedule_starts_when_d_does_and_epochs_count_examples(tmp_path):
    trainer, _ = make(
        tmp_path, batches=12, disc_start_step=4, lr_decay=0.5, scheduler_interval="per_step"
    )
    trainer.fit()
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(trainer.cfg.lr_g * 0.5**12)
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(trainer.cfg.lr_d * 0.5**8)
    # per_epoch with epochs of 64 examples: batch 32 ticks every second batch
    epochs, _ = make(
        tmp_path / "e", batches=12, lr_decay=0.5, epoch_samples=64, scheduler_interval="per_epoch"
    )
    epochs.fit()
    assert epochs.opt_g.param_groups[0]["lr"] == pytest.approx(epochs.cfg.lr_g * 0.5**6)


def _grads(net: torch.nn.Module) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("reevaluate", [True, False])
def test_the_g_step_computes_no_d_gradient_yet_trains_g_through_d(tmp_path, reevaluate):
    trainer, rows = make(tmp_path, batches=4, log_every=1, r1_gamma=1.0, reevaluate_d=reevaluate)
    g_step, seen = trainer._g_step, []

    def spy(*args):
        d_grads = _grads(trainer.D)  # what D's own update (with R1) left
        g_step(*args)
        assert not any(p.requires_grad for p in trainer.D.parameters())  # frozen meanwhile
        for before, after in zip(d_grads, _grads(trainer.D), strict=True):
            assert (before is None and after is None) or torch.equal(before, after)
        seen.append(sum(float(p.grad.abs().sum()) for p in trainer.G.parameters()))

    trainer._g_step = spy
    trainer.fit()
    assert len(seen) == 4 and min(seen) > 0
    assert all(p.requires_grad for p in trainer.D.parameters())  # trainable again for D's turn
    # D's verdict on the generated batch still reaches G, through D's input
    assert min(r["adv_grad_norm"] for k, r in rows if k == "step") > 0


@pytest.mark.parametrize("reevaluate", [True, False])
def test_freezing_d_during_the_g_step_changes_no_bit(tmp_path, monkeypatch, reevaluate):
    """4 iterations of 2 D updates each, R1 on, torch's for-loop AdamW."""

    def train(name: str) -> Trainer:
        trainer, _ = make(
            tmp_path / name, d_steps=2, r1_gamma=1.0, reevaluate_d=reevaluate, fused_optimizer=False
        )
        for _ in range(4):
            trainer._train_step()
        return trainer

    frozen, unfrozen = digests_with_and_without_freezing(train, monkeypatch)
    assert frozen == unfrozen


def test_the_fused_optimizer_matches_the_for_loop_but_for_the_last_bits():
    """Same gradients, same updates up to float32 rounding.  (Whole GAN runs drift further
    apart: on the ring, 8 iterations turn those last bits into 1e-3 differences in G.)"""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64)
    grads = [torch.randn(64, 64) for _ in range(8)]
    updated = {}
    for fused in (True, False):
        cfg = resolve_config("ring", "smoke", overrides={"fused_optimizer": fused}).trainer
        net = copy.deepcopy(layer)
        opt = make_optimizer(net, cfg, 1e-3, (0.5, 0.99))
        assert bool(opt.defaults["fused"]) == fused
        for grad in grads:
            net.weight.grad, net.bias.grad = grad, grad[0]
            opt.step()
        updated[fused] = net.weight.detach()
    assert torch.allclose(updated[True], updated[False], rtol=0, atol=1e-7)
    assert not torch.equal(updated[True], layer.weight)


@pytest.mark.heavy  # torch.compile's C++ builds take about a minute on 2 cores
def test_compiled_networks_train_and_their_compile_time_is_reported_apart(tmp_path):
    trainer, rows = make(tmp_path, batches=6, eval_every=6, log_every=3, compile=True)
    result = trainer.fit()
    assert result.status == "completed"
    assert trainer.G_train is not trainer.G and trainer.D_train is not trainer.D
    steps = [r for k, r in rows if k == "step"]
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in steps)
    assert steps[0]["compile_s"] > 0  # the first interval compiles G and D
    assert result.compile_s == pytest.approx(sum(r["compile_s"] for r in steps))
    assert all(r["step_s"] > 0 for r in steps)
