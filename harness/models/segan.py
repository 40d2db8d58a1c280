"""SEGAN (Pascual et al., 2017) networks, as the reference santi-pdp/segan (TensorFlow).

Reference: ``model.py`` / ``generator.py`` (AEGenerator) / ``discriminator.py`` / ``ops.py``
with the settings of ``train_segan.sh`` (``--g_nl prelu``, no conv biases: ``bias_downconv``,
``bias_deconv`` and ``bias_D_conv`` default to False).  Parameter counts match it exactly
(tests/test_segan_models.py).

- Generator: an encoder of 11 strided convolutions (kernel 31, stride 2, 'same' padding;
  channels 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 1024) with PReLU, so 16384 samples
  become a [1024, 8] code c; a latent z of the same shape is concatenated in front of c; the
  decoder mirrors the encoder with transposed convolutions (stride 2) and concatenates each
  encoder output (before its PReLU, as the reference) to the matching decoder output; the last
  layer maps to one channel with tanh.  PReLU slopes start at 0 (the reference's init).
- Discriminator: the same strided convolutions on the 2-channel (clean or enhanced, noisy)
  pair, each followed by virtual batch norm and LeakyReLU(0.3); a 1x1 convolution to one channel
  and a linear layer over the remaining time steps give one logit.  Virtual batch norm as the
  reference's ``bnorm.VBN`` (Salimans et al., 2016): its reference batch is the step's real
  pairs, so the real batch is normalised with its own statistics and the generated batch with
  the real batch's, mixed with its own at weight 1 / (B + 1).  Plain batch norm, run on each
  batch apart, would normalise a generated batch with its own statistics and hide from D what
  sets it apart as a whole (a quiet or loud output): a 1/8-width D then needed about 200
  batches to tell near-silence from speech (docs/diagnostics.md).

Every convolution starts from the reference's truncated N(0, 0.02) (TensorFlow truncates at two
standard deviations); the final linear layer keeps PyTorch's default, close to TensorFlow's
Xavier.  ``channels`` scales every width for CPU budgets; any input length that is a multiple of
``2 ** len(channels)`` works for the generator, the discriminator is built for one length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

PAPER_CHANNELS = (16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 1024)
KERNEL = 31
LRELU_SLOPE = 0.3


def scaled_channels(width: float) -> tuple[int, ...]:
    """The paper's widths times ``width`` (at least 1 channel each)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(max(1, round(c * width)) for c in PAPER_CHANNELS)


INIT_STD = 0.02


def _reference_init(conv: nn.Module) -> nn.Module:
    nn.init.trunc_normal_(conv.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
    return conv


def _down(c_in: int, c_out: int) -> nn.Conv1d:
    """Stride-2 convolution with TensorFlow's 'same' padding: length L -> ceil(L / 2)."""
    return _reference_init(
        nn.Conv1d(c_in, c_out, KERNEL, stride=2, padding=KERNEL // 2, bias=False)
    )


class SeganGenerator(nn.Module):
    """Encoder-decoder with skips: noisy [B, 1, L] and z [B, C, L / 2**n] -> clean [B, 1, L]."""

    def __init__(self, channels: Sequence[int] = PAPER_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        widths = (1, *self.channels)
        self.encoder = nn.ModuleList(_down(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.enc_act = nn.ModuleList(nn.PReLU(c, init=0.0) for c in self.channels)
        # decoder layer i outputs the width of encoder layer n-2-i, then gains that skip
        outs = (*self.channels[:-1][::-1], 1)
        ins = (2 * self.channels[-1], *(2 * c for c in outs[:-1]))
        self.decoder = nn.ModuleList(
            _reference_init(
                nn.ConvTranspose1d(
                    a, b, KERNEL, stride=2, padding=KERNEL // 2, output_padding=1, bias=False
                )
            )
            for a, b in zip(ins, outs, strict=True)
        )
        self.dec_act = nn.ModuleList(nn.PReLU(c, init=0.0) for c in outs[:-1])

    @property
    def hop(self) -> int:
        """Input samples per code step: lengths must be a multiple of this."""
        return 2 ** len(self.channels)

    def latent_shape(self, batch: int, length: int) -> tuple[int, int, int]:
        """Shape of z for ``batch`` inputs of ``length`` samples."""
        if length % self.hop:
            raise ValueError(f"input length {length} is not a multiple of {self.hop}")
        return (batch, self.channels[-1], length // self.hop)

    def forward(self, noisy: Tensor, z: Tensor) -> Tensor:
        h = noisy
        skips = []
        for conv, act in zip(self.encoder, self.enc_act, strict=True):
            h = conv(h)
            skips.append(h)  # the reference keeps the pre-activation output
            h = act(h)
        h = torch.cat([z, h], dim=1)
        skips = skips[:-1][::-1]
        for i, deconv in enumerate(self.decoder):
            h = deconv(h)
            if i < len(self.dec_act):
                h = torch.cat([self.dec_act[i](h), skips[i]], dim=1)
        return torch.tanh(h)


class VirtualBatchNorm1d(nn.Module):
    """Batch norm over (batch, time) per channel, with the statistics of a reference batch.

    ``forward(x)`` normalises ``x`` [B, C, L] with its own statistics (batch norm in training
    mode, with no running averages: train and eval behave alike); ``forward(x, reference)`` with
    the reference's mean and mean square mixed with ``x``'s at weight 1 / (B_ref + 1), as the
    reference's ``bnorm.VBN``.  Scale and shift start at N(1, 0.02) and 0, as there.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(channels).normal_(1.0, INIT_STD))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, reference: Tensor | None = None) -> Tensor:
        mean, mean_sq = _moments(x)
        if reference is not None:
            own = 1.0 / (reference.shape[0] + 1.0)
            ref_mean, ref_mean_sq = _moments(reference)
            mean = own * mean + (1.0 - own) * ref_mean
            mean_sq = own * mean_sq + (1.0 - own) * ref_mean_sq
        scale = self.weight.view(1, -1, 1) * torch.rsqrt(mean_sq - mean.square() + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1)


def _moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and mean square over batch and time of [B, C, L]."""
    return x.mean(dim=(0, 2), keepdim=True), x.square().mean(dim=(0, 2), keepdim=True)


class SeganDiscriminator(nn.Module):
    """(clean or enhanced, noisy) pairs [B, 2, L] -> one logit per pair [B, 1]."""

    def __init__(self, length: int, channels: Sequence[int] = PAPER_CHANNELS) -> None:
        super().__init__()
        widths = (2, *channels)
        self.convs = nn.ModuleList(_down(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.norms = nn.ModuleList(VirtualBatchNorm1d(c) for c in channels)
        self.act = nn.LeakyReLU(LRELU_SLOPE)
        self.to_logit = _reference_init(nn.Conv1d(channels[-1], 1, 1, bias=False))
        steps = length
        for _ in channels:
            steps = -(-steps // 2)
        self.linear = nn.Linear(steps, 1)

    def _logit(self, h: Tensor) -> Tensor:
        return self.linear(self.to_logit(h).flatten(1))

    def forward(self, real: Tensor, fake: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits of the ``real`` pairs (normalised with their own statistics) and, given
        ``fake`` pairs, theirs, normalised with the real pairs' statistics (virtual batch norm:
        the real pairs are the reference batch)."""
        h, g = real, fake
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = conv(h)
            if g is not None:
                g = self.act(norm(conv(g), reference=h))
            h = self.act(norm(h))
        return self._logit(h), None if g is None else self._logit(g)
