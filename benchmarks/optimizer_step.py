"""AdamW's step on the HiFi-GAN V1 generator's and full discriminator's parameters: torch's
default (the for-loop on a CPU), ``foreach`` and ``fused``, and how far each lands from the
default after the same steps (harness/training/setup.py make_optimizer picks from this).

    uv run python benchmarks/optimizer_step.py --threads 2 --steps 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness.models.hifigan import Generator, HifiganDiscriminator, generator_preset

VARIANTS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def run(params: list[torch.Tensor], grads: list[list[torch.Tensor]], steps: int, **kw):
    """Median seconds per step (the first two left out) and the parameters after ``steps``."""
    trained = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch.optim.AdamW(trained, lr=2e-4, betas=(0.8, 0.99), weight_decay=0.01, **kw)
    times = []
    for i in range(steps):
        for p, g in zip(trained, grads[i % len(grads)], strict=True):
            p.grad = g.clone()
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]), [p.detach() for p in trained]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {
        "G (V1)": Generator(generator_preset("v1")),
        "D (MPD + MSD)": HifiganDiscriminator({"width": 1.0}, {"width": 1.0}),
    }
    print("| network | parameters | variant | ms per step | max abs difference from default |")
    print("|---|---|---|---|---|")
    for name, net in nets.items():
        params = list(net.parameters())
        grads = [[torch.randn_like(p) * 1e-2 for p in params] for _ in range(3)]
        reference = None
        for variant, kw in VARIANTS.items():
            seconds, trained = run(params, grads, args.steps, **kw)
            reference = reference or trained
            diff = max(float((a - b).abs().max()) for a, b in zip(reference, trained, strict=True))
            count = f"{sum(p.numel() for p in params) / 1e6:.1f} M"
            print(f"| {name} | {count} | {variant} | {1e3 * seconds:.0f} | {diff:.2g} |")


if __name__ == "__main__":
    main()
