"""Building a training run's parts from its config: the one set-up path.

The trainer, the generator-only preflight, ``run_trial`` and the benchmarks all start a run here,
so they seed, pick threads and devices, initialise weights, build optimizers and sum the
generator's objective the same way.  Nothing here steps a loop.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import numpy as np
import torch
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
    gamma = cfg.lr_decay if cfg.scheduler == "exponential" else 1.0
    return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)


def generator_objective(through_d: Tensor, reconstruction: Tensor) -> Tensor:
    """What G minimises: its terms through D plus the mean per-example reconstruction, in fp32."""
    return through_d.float() + reconstruction.float().mean()
