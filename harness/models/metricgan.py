"""MetricGAN+ (Fu et al., 2021) networks, layer for layer as SpeechBrain's reference.

Reference: ``speechbrain/lobes/models/MetricGAN.py`` (EnhancementGenerator, MetricDiscriminator,
Learnable_sigmoid) with ``recipes/Voicebank/enhance/MetricGAN/hparams/train.yaml``.  Parameter
counts match it exactly (tests/test_metricgan_models.py).

- The generator maps a log1p magnitude spectrogram [B, T, 257] to a mask in (0, 1.2): a
  2-layer BLSTM (200 per direction), Linear 400->300, LeakyReLU(0.3), Linear 300->257 and a
  learnable sigmoid ``1.2 * sigmoid(slope * x)`` with one slope per frequency bin, initialised
  to 1.  The recipe floors the mask at 0.05 and clamps the slopes (:meth:`clamp_slopes`).
- The discriminator predicts the normalised metric score of (estimate, clean) log1p magnitude
  pairs [B, 2, T, F]: BatchNorm2d(2), four 5x5 convolutions of 15 channels (no padding) with
  LeakyReLU(0.3), a global average, and Linear 15->50->10->1; convolutions and linears are
  spectrally normalised.

Initialisation as the reference: LSTM input weights Xavier-uniform, recurrent weights
orthogonal, biases zero; every linear and convolution Xavier-uniform with zero bias.
Spectral norm uses the parametrization API, so ``weight`` is ``parametrizations.weight.original``.
``hidden`` / ``linear`` / ``channels`` shrink the networks for CPU budgets.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

N_FREQ = 257  # 512-point STFT
MASK_SCALE = 1.2  # the learnable sigmoid's fixed ceiling (beta in the paper)
LRELU_SLOPE = 0.3


def _xavier(layer: nn.Module, spectral: bool) -> nn.Module:
    """Xavier-uniform weight, zero bias, optionally spectrally normalised (reference order)."""
    nn.init.xavier_uniform_(layer.weight, gain=1.0)
    nn.init.zeros_(layer.bias)
    return spectral_norm(layer) if spectral else layer


class LearnableSigmoid(nn.Module):
    """``scale * sigmoid(slope * x)`` with one trainable slope per feature (initialised to 1)."""

    def __init__(self, features: int, scale: float = MASK_SCALE) -> None:
        super().__init__()
        self.scale = scale
        self.slope = nn.Parameter(torch.ones(features))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * torch.sigmoid(self.slope * x)

    @torch.no_grad()
    def clamp_(self, max_slope: float) -> None:
        """Clamp the slopes to ``max_slope`` and reset NaN slopes to it (the reference's guard
        against the sigmoid's gradient blowing up)."""
        slope = self.slope
        slope.copy_(torch.nan_to_num(slope, nan=max_slope).clamp(max=max_slope))


class EnhancementGenerator(nn.Module):
    """BLSTM mask estimator: log1p magnitudes [B, T, n_freq] -> mask [B, T, n_freq]."""

    def __init__(
        self, n_freq: int = N_FREQ, hidden: int = 200, layers: int = 2, linear: int = 300
    ) -> None:
        super().__init__()
        self.blstm = nn.LSTM(n_freq, hidden, layers, batch_first=True, bidirectional=True)
        for name, param in self.blstm.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            elif "weight_ih" in name:
                nn.init.xavier_uniform_(param)
            elif "weight_hh" in name:
                nn.init.orthogonal_(param)
        self.linear1 = _xavier(nn.Linear(2 * hidden, linear), spectral=False)
        self.activation = nn.LeakyReLU(LRELU_SLOPE)
        self.linear2 = _xavier(nn.Linear(linear, n_freq), spectral=False)
        self.sigmoid = LearnableSigmoid(n_freq)

    def forward(self, features: Tensor) -> Tensor:
        out, _ = self.blstm(features)
        return self.sigmoid(self.linear2(self.activation(self.linear1(out))))

    def clamp_slopes(self, max_slope: float) -> None:
        """See :meth:`LearnableSigmoid.clamp_`; called after every generator update."""
        self.sigmoid.clamp_(max_slope)


class MetricDiscriminator(nn.Module):
    """Metric predictor: (estimate, clean) log1p magnitudes [B, 2, T, F] -> score [B, 1]."""

    def __init__(self, channels: int = 15, kernel_size: int = 5) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(2, momentum=0.01)
        convs = []
        for c_in in (2, channels, channels, channels):
            convs.append(_xavier(nn.Conv2d(c_in, channels, kernel_size), spectral=True))
        self.convs = nn.ModuleList(convs)
        self.linears = nn.ModuleList(
            _xavier(nn.Linear(a, b), spectral=True) for a, b in ((channels, 50), (50, 10), (10, 1))
        )
        self.activation = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, pair: Tensor) -> Tensor:
        out = self.norm(pair)
        for conv in self.convs:
            out = self.activation(conv(out))
        out = out.mean(dim=(2, 3))
        for linear in self.linears[:-1]:
            out = self.activation(linear(out))
        return self.linears[-1](out)
