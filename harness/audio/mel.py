"""Log-mel spectrogram exactly as HiFi-GAN computes it (jik876/hifi-gan, meldataset.py).

Reflect-pad by (n_fft - hop) / 2 on both sides, STFT without centring, magnitude with a 1e-9
floor under the square root, Slaney mel filterbank (librosa's default), then log with a 1e-5
clamp.  A clip of T samples (T a multiple of hop) gives exactly T / hop frames, so generator
output and mel input line up frame for frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.functional import melscale_fbanks


@dataclass(frozen=True)
class MelConfig:
    """STFT and mel settings; the defaults are HiFi-GAN's LJSpeech V1 (22.05 kHz, 80 bands)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0  # None = Nyquist (HiFi-GAN's fmax_for_loss)


class LogMel(nn.Module):
    """Audio [B, T] or [B, 1, T] -> log-mel [B, n_mels, T // hop_length], always in float32."""

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or MelConfig()
        f_max = c.f_max if c.f_max is not None else c.sample_rate / 2
        fbank = melscale_fbanks(
            n_freqs=c.n_fft // 2 + 1,
            f_min=c.f_min,
            f_max=f_max,
            n_mels=c.n_mels,
            sample_rate=c.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        # derived constants: they follow .to(device) but stay out of checkpoints
        self.register_buffer("mel_basis", fbank.T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(c.win_length), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        c = self.config
        if audio.dim() == 3:
            audio = audio.squeeze(1)
        pad = (c.n_fft - c.hop_length) // 2
        with torch.autocast(device_type=audio.device.type, enabled=False):
            x = F.pad(audio.float().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
            spec = torch.stft(
                x,
                c.n_fft,
                hop_length=c.hop_length,
                win_length=c.win_length,
                window=self.window,
                center=False,
                return_complex=True,
            )
            magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
            return torch.log(torch.clamp(self.mel_basis @ magnitude, min=1e-5))
