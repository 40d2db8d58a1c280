"""Building a training run's parts from its config: the one set-up path.

The trainer, the generator-only preflight, ``run_trial`` and the benchmarks all start a run here,
so they seed, pick threads and devices, initialise weights, build optimizers and sum the
generator's objective the same way.  Nothing here steps a loop.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
import torch._functorch.config
from torch import Tensor, nn

from harness.training.config import ConfigError, TrainerConfig
from harness.training.weight_init import apply_init


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random streams."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; a CUDA device this machine lacks is an
    error (the name's form is checked with the rest of the config, see ``config.DEVICE``).

    On CUDA, cuDNN may benchmark its convolution algorithms once per input shape and keep the
    fastest (training batches have one fixed shape).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device: {name!r} requested but this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        torch.backends.cudnn.benchmark = True
    return device


def compiled(net: nn.Module) -> nn.Module:
    """``torch.compile(net)`` for the training passes, with AOTAutograd's donated buffers off.

    A donated buffer lets the compiled backward free saved activations as it runs, which forbids
    ``retain_graph=True``; the diagnostics measure the gradient G receives through D with the graph
    kept for G's update (``gradients.gradient_norm_on``), so a compiled D must keep its buffers.
    The switch is process-wide: a trainer runs one per process (a trial, a command).
    """
    torch._functorch.config.donated_buffer = False
    return torch.compile(net)


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads: ``threads`` when > 0; for 0, ``OMP_NUM_THREADS`` when the
    environment sets it (Ray sets it per worker), else leave torch's count as it is."""
    if threads > 0:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(max(1, int(os.environ["OMP_NUM_THREADS"])))


def build_networks(cfg: TrainerConfig, *builders: Callable[[], nn.Module]) -> list[nn.Module]:
    """Seed every stream, call ``builders`` in order, then re-initialise each network with
    ``cfg.init`` from one init stream seeded by ``cfg.seed`` (on the CPU).

    ``build_networks(cfg, recipe.build_generator)`` is the same generator the trainer's
    ``build_networks(cfg, recipe.build_generator, recipe.build_discriminator)`` starts from.
    """
    seed_everything(cfg.seed)
    init_stream = torch.Generator().manual_seed(cfg.seed)
    networks = [build() for build in builders]
    for net in networks:
        apply_init(net, cfg.init, init_stream)
    return networks


def make_optimizer(
    net: nn.Module, cfg: TrainerConfig, lr: float, betas: tuple[float, float]
) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``net``'s parameters (weight decay for AdamW only), on torch's fused
    kernel when ``cfg.fused_optimizer`` (CPU and CUDA; the same update up to the last bits), else
    on torch's default implementation (the for-loop on a CPU; ``foreach`` is slower there)."""
    adamw = cfg.optimizer == "adamw"
    return (torch.optim.AdamW if adamw else torch.optim.Adam)(
        net.parameters(),
        lr=lr,
        betas=betas,
        weight_decay=cfg.weight_decay if adamw else 0.0,
        fused=cfg.fused_optimizer or None,  # None, not False: False would also turn foreach off
    )


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainerConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """Exponential decay by ``cfg.lr_decay`` per tick, or constant (an ExponentialLR of 1)."""
    return torch.optim.lr_scheduler.ExponentialLR(
        opt, gamma=schedule_gamma(cfg.scheduler, cfg.lr_decay)
    )


def loss_scalers(precision: str, device: torch.device) -> tuple[torch.amp.GradScaler, ...]:
    """G's and D's gradient scalers: active under fp16, pass-throughs otherwise."""
    fp16 = precision == "fp16"
    return tuple(torch.amp.GradScaler(device.type, enabled=fp16) for _ in "gd")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The forward passes' autocast dtype under ``precision``; None for fp32."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed precision in ``dtype`` for the forward passes, or nothing for fp32."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def schedule_gamma(scheduler: str, lr_decay: float) -> float:
    """The per-tick decay factor of a ``scheduler`` kind: ``lr_decay``, or 1 for constant."""
    return lr_decay if scheduler == "exponential" else 1.0


def adopt_hyperparameters(
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    cfg: TrainerConfig,
    net: str,
    trained_under: Mapping[str, Any],
) -> None:
    """Give one network's loaded optimizer and scheduler the hyperparameters of ``cfg`` where
    they differ from ``trained_under``, the config the checkpoint was saved under.

    ``load_state_dict`` restores an optimizer's learning rate, betas and weight decay and a
    scheduler's base rate and decay as they were saved; a run that continues another run's
    checkpoint under a new configuration (an exploit of population-based training) must train
    with the new ones.  ``net`` is "g" or "d" (the keys ``lr_g``, ``b1_g``...).  The learning
    rate keeps the decay the schedule has applied so far: the new base rate times the same
    factor.  Unchanged values are left exactly as loaded, so a plain resume stays bit-identical.
    """
    old_lr = float(trained_under.get(f"lr_{net}", getattr(cfg, f"lr_{net}")))
    new_lr = getattr(cfg, f"lr_{net}")
    betas = (getattr(cfg, f"b1_{net}"), getattr(cfg, f"b2_{net}"))
    old_betas = tuple(trained_under.get(f"b{i}_{net}", betas[i - 1]) for i in (1, 2))
    decay = cfg.weight_decay if cfg.optimizer == "adamw" else 0.0
    old_decay = trained_under.get("weight_decay", cfg.weight_decay) if decay else 0.0
    for group in opt.param_groups:
        if new_lr != old_lr:
            group["lr"] = group["lr"] / old_lr * new_lr
            group["initial_lr"] = new_lr
        if betas != old_betas:
            group["betas"] = betas
        if decay != old_decay:
            group["weight_decay"] = decay
    if new_lr != old_lr:
        sched.base_lrs = [new_lr for _ in opt.param_groups]
        sched._last_lr = [group["lr"] for group in opt.param_groups]
    gamma = schedule_gamma(cfg.scheduler, cfg.lr_decay)
    old_gamma = schedule_gamma(
        trained_under.get("scheduler", cfg.scheduler), trained_under.get("lr_decay", cfg.lr_decay)
    )
    if gamma != old_gamma:
        sched.gamma = gamma


def generator_objective(through_d: Tensor, reconstruction: Tensor) -> Tensor:
    """What G minimises: its terms through D plus the mean per-example reconstruction, in fp32."""
    return through_d.float() + reconstruction.float().mean()
