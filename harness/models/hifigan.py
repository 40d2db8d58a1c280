"""HiFi-GAN generator and discriminators (Kong et al., 2020), layer for layer as jik876/hifi-gan.

Parameter counts match the reference exactly (see tests/test_hifigan_models.py).  Differences:

- Weight and spectral norm use the parametrization API (``torch.nn.utils.parametrizations``);
  weight norm's g and v become ``parametrizations.weight.original0`` / ``original1``.
- Each discriminator's ``forward`` takes one batch and returns ``(logits, fmaps)``, one entry per
  sub-discriminator; the caller runs it separately on real and generated audio.
- A ``width`` factor scales every discriminator channel count, so smoke budgets can shrink them.
- The reference's ``init_weights`` (N(0, 0.01)) runs *after* ``weight_norm`` and so never reaches
  the weights (jik876/hifi-gan issue #145); its effective init is PyTorch's default, which is what
  these modules keep.  Re-initialisation is the trainer's ``init`` option.
- ``Generator(cfg, dc_free=True)`` starts ``conv_post`` with no gain at 0 Hz (each kernel's taps
  sum to zero, bias zero), so the untrained output carries no DC offset; with PyTorch's default
  init it does (docs/diagnostics.md, "Calibration").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

LRELU_SLOPE = 0.1

# MSD sub-discriminator layout (DiscriminatorS in the reference), one entry per conv before conv_post.
MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
MSD_KERNELS = (15, 41, 41, 41, 41, 41, 5)
MSD_STRIDES = (1, 2, 2, 4, 4, 1, 1)
MSD_GROUPS = (1, 4, 16, 16, 16, 16, 1)
MPD_CHANNELS = (32, 128, 512, 1024, 1024)
MPD_PERIODS = (2, 3, 5, 7, 11)

Logits = list[Tensor]
FeatureMaps = list[list[Tensor]]


class ModelConfigError(ValueError):
    """A network setting is invalid; the message is one line naming the setting and value."""


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of a stride-1 conv with an odd kernel."""
    return (kernel_size * dilation - dilation) // 2


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's shape, named as in the reference's config_v*.json files.

    ``resblock`` "1" is the MRF block with a (dilated conv, plain conv) pair per dilation; "2" has
    one dilated conv per dilation.  The upsampling product is the hop size in samples.
    """

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    n_mels: int = 80

    def __post_init__(self) -> None:
        # Accept lists (from YAML) but store tuples so the config stays hashable.
        set_ = object.__setattr__
        set_(self, "upsample_rates", tuple(self.upsample_rates))
        set_(self, "upsample_kernel_sizes", tuple(self.upsample_kernel_sizes))
        set_(self, "resblock_kernel_sizes", tuple(self.resblock_kernel_sizes))
        set_(self, "resblock_dilation_sizes", tuple(tuple(d) for d in self.resblock_dilation_sizes))
        self._check()

    def _check(self) -> None:
        def fail(key: str, why: str) -> None:
            raise ModelConfigError(f"generator {key}={getattr(self, key)!r}: {why}")

        if self.resblock not in ("1", "2"):
            fail("resblock", 'must be "1" or "2"')
        if not self.upsample_rates or min(self.upsample_rates) < 1:
            fail("upsample_rates", "must be a non-empty list of positive integers")
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates):
            fail("upsample_kernel_sizes", "needs one kernel per upsample rate")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if k < u or (k - u) % 2:
                fail("upsample_kernel_sizes", f"kernel {k} for rate {u} must be >= it, same parity")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates) or (
            self.upsample_initial_channel < 1
        ):
            fail(
                "upsample_initial_channel", "must be a positive multiple of 2**len(upsample_rates)"
            )
        if not self.resblock_kernel_sizes or any(k % 2 == 0 for k in self.resblock_kernel_sizes):
            fail("resblock_kernel_sizes", "must be a non-empty list of odd integers")
        dilations = self.resblock_dilation_sizes
        if len(dilations) != len(self.resblock_kernel_sizes) or not all(
            d and min(d) >= 1 for d in dilations
        ):
            fail("resblock_dilation_sizes", "needs a non-empty list of dilations >= 1 per kernel")
        if self.n_mels < 1:
            fail("n_mels", "must be >= 1")

    @property
    def hop_length(self) -> int:
        """Output samples per input frame."""
        return math.prod(self.upsample_rates)


GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    "v1": GeneratorConfig((8, 8, 2, 2), (16, 16, 4, 4), 512, "1", (3, 7, 11), ((1, 3, 5),) * 3),
    "v2": GeneratorConfig((8, 8, 2, 2), (16, 16, 4, 4), 128, "1", (3, 7, 11), ((1, 3, 5),) * 3),
    "v3": GeneratorConfig((8, 8, 4), (16, 16, 8), 256, "2", (3, 5, 7), ((1, 2), (2, 6), (3, 12))),
    # V1's topology at 1/8 of its width and two MRF branches: a real HiFi-GAN for CPU smoke runs.
    # Not 1/16: at width 32 only 2 channels reach conv_post and D holds 22x G's parameters (V1:
    # 5.1x; here 6.9x), see docs/diagnostics.md, "Calibration".
    "tiny": GeneratorConfig((8, 8, 2, 2), (16, 16, 4, 4), 64, "1", (3, 7), ((1, 3, 5),) * 2),
}


def generator_preset(name: str) -> GeneratorConfig:
    """The preset called ``name``, with a one-line error listing the valid names."""
    if name not in GENERATOR_PRESETS:
        raise ModelConfigError(
            f"generator preset {name!r} is unknown; valid: {', '.join(GENERATOR_PRESETS)}"
        )
    return GENERATOR_PRESETS[name]


def same_length_convs(channels: int, kernel_size: int, dilations: Sequence[int]) -> nn.ModuleList:
    """One weight-normed, length-preserving conv per dilation."""
    return nn.ModuleList(
        weight_norm(
            nn.Conv1d(
                channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d)
            )
        )
        for d in dilations
    )


class ResBlock1(nn.Module):
    """MRF residual block: per dilation, lrelu -> dilated conv -> lrelu -> conv, plus skip."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = same_length_convs(channels, kernel_size, dilations)
        self.convs2 = same_length_convs(channels, kernel_size, [1] * len(dilations))

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu(xt, LRELU_SLOPE))
            x = xt + x
        return x


class ResBlock2(nn.Module):
    """Light residual block (V3): per dilation, lrelu -> dilated conv, plus skip."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = same_length_convs(channels, kernel_size, dilations)

    def forward(self, x: Tensor) -> Tensor:
        for c in self.convs:
            x = c(F.leaky_relu(x, LRELU_SLOPE)) + x
        return x


def zero_dc_gain_(conv: nn.Conv1d) -> None:
    """Re-initialise ``conv`` in place so that a constant input gives a zero output: every kernel's
    taps are shifted to sum to zero and the bias is zeroed (set through weight norm, if any)."""
    with torch.no_grad():
        weight = conv.weight
        conv.weight = weight - weight.mean(dim=-1, keepdim=True)
        if conv.bias is not None:
            conv.bias.zero_()


class Generator(nn.Module):
    """Mel spectrogram ``[B, n_mels, frames]`` -> waveform ``[B, 1, frames * hop_length]`` in [-1, 1].

    ``dc_free`` starts the output conv with zero gain at 0 Hz (:func:`zero_dc_gain_`): with the
    default init the untrained output is mostly a DC offset (up to 3x speech's RMS level on a
    64-channel G), which the mel loss hardly sees and a discriminator hears at once.
    """

    def __init__(self, cfg: GeneratorConfig, dc_free: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        ch = cfg.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(cfg.n_mels, ch, 7, 1, padding=3))
        resblock = ResBlock1 if cfg.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for u, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
            self.ups.append(
                weight_norm(nn.ConvTranspose1d(ch, ch // 2, k, u, padding=(k - u) // 2))
            )
            ch //= 2
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(resblock(ch, rk, rd))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))
        if dc_free:
            zero_dc_gain_(self.conv_post)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = F.leaky_relu(x)  # default slope 0.01 here, as in the reference
        return torch.tanh(self.conv_post(x))

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (for inference); the output is unchanged."""
        for module in list(self.modules()):
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")


def run_conv_stack(
    convs: nn.ModuleList, conv_post: nn.Module, x: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """A sub-discriminator's body: lrelu convs then the output conv; (flat logits, feature maps)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


def _norm(use_spectral_norm: bool) -> Callable[[nn.Module], nn.Module]:
    return spectral_norm if use_spectral_norm else weight_norm


def _check_width(width: float) -> None:
    if not width > 0:
        raise ModelConfigError(f"discriminator width={width!r}: must be > 0")


class PeriodDiscriminator(nn.Module):
    """Looks at every ``period``-th sample: folds ``[B, 1, T]`` to ``[B, 1, T/p, p]``, 2-D convs."""

    def __init__(
        self,
        period: int,
        channels: Sequence[int] = MPD_CHANNELS,
        kernel_size: int = 5,
        stride: int = 3,
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.period = period
        norm = _norm(use_spectral_norm)
        pad = (get_padding(kernel_size), 0)
        ins = (1, *channels[:-1])
        strides = [stride] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            norm(nn.Conv2d(i, o, (kernel_size, 1), (s, 1), padding=pad))
            for i, o, s in zip(ins, channels, strides, strict=True)
        )
        self.conv_post = norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
        x = x.view(b, c, -1, self.period)
        return run_conv_stack(self.convs, self.conv_post, x)


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period; channels scale by ``width`` (at least 1)."""

    def __init__(
        self,
        periods: Sequence[int] = MPD_PERIODS,
        channels: Sequence[int] = MPD_CHANNELS,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        _check_width(width)
        if not periods or min(periods) < 1:
            raise ModelConfigError(f"mpd periods={list(periods)!r}: must be positive integers")
        if not channels or min(channels) < 1:
            raise ModelConfigError(f"mpd channels={list(channels)!r}: must be positive integers")
        scaled = [max(1, round(c * width)) for c in channels]
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, scaled) for p in periods)

    def forward(self, x: Tensor) -> tuple[Logits, FeatureMaps]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class ScaleDiscriminator(nn.Module):
    """Strided, grouped 1-D convs over the raw (or average-pooled) waveform."""

    def __init__(self, channels: Sequence[int] = MSD_CHANNELS, use_spectral_norm: bool = False):
        super().__init__()
        norm = _norm(use_spectral_norm)
        ins = (1, *channels[:-1])
        layout = zip(ins, channels, MSD_KERNELS, MSD_STRIDES, MSD_GROUPS, strict=True)
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(i, o, k, s, groups=g, padding=k // 2)) for i, o, k, s, g in layout
        )
        self.conv_post = norm(nn.Conv1d(channels[-1], 1, 3, 1, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return run_conv_stack(self.convs, self.conv_post, x)


class MultiScaleDiscriminator(nn.Module):
    """``scales`` :class:`ScaleDiscriminator` s on x, x pooled once, twice...; the first is spectral-normed.

    Every channel count becomes ``c * width`` rounded to the nearest multiple of 16 (at least 16),
    16 being the largest group count, so the grouped convs keep the reference's grouping at any
    width.  The reference channels are multiples of 16 already, so width 1.0 reproduces them.
    """

    def __init__(
        self, scales: int = 3, channels: Sequence[int] = MSD_CHANNELS, width: float = 1.0
    ) -> None:
        super().__init__()
        _check_width(width)
        if scales < 1:
            raise ModelConfigError(f"msd scales={scales!r}: must be >= 1")
        if len(channels) != len(MSD_CHANNELS) or min(channels) < 1:
            raise ModelConfigError(
                f"msd channels={list(channels)!r}: need {len(MSD_CHANNELS)} positive integers"
            )
        m = max(MSD_GROUPS)
        scaled = [max(m, m * round(c * width / m)) for c in channels]
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(scaled, use_spectral_norm=i == 0) for i in range(scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: Tensor) -> tuple[Logits, FeatureMaps]:
        logits, fmaps = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            logit, fmap = d(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps


class HifiganDiscriminator(nn.Module):
    """MPD and MSD together; ``forward`` returns ``{"mpd": (logits, fmaps), "msd": (...)}``."""

    def __init__(
        self, mpd_kwargs: dict[str, Any] | None = None, msd_kwargs: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(**(mpd_kwargs or {}))
        self.msd = MultiScaleDiscriminator(**(msd_kwargs or {}))

    def forward(self, x: Tensor) -> dict[str, tuple[Logits, FeatureMaps]]:
        return {"mpd": self.mpd(x), "msd": self.msd(x)}
