"""Log-mel features and corpus readers: shapes, reference values, layouts, bad data, purity."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torchaudio.functional import resample

from harness.audio.datasets import (
    AudioFile,
    DataError,
    SegmentBatches,
    load_audio,
    load_utterances,
    open_corpus,
    read_header,
)
from harness.audio.mel import LogMel, MelConfig

SR = 22050


def write_wav(path: Path, data: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def sine(seconds: float, sr: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --- LogMel -------------------------------------------------------------------------------


def slaney_filterbank(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """librosa.filters.mel with its defaults (Slaney scale, Slaney area normalisation)."""
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27

    def hz_to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m < min_log_mel, m * f_sp, min_log_hz * np.exp(logstep * (m - min_log_mel)))

    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]


def reference_log_mel(audio: torch.Tensor, c: MelConfig) -> torch.Tensor:
    """HiFi-GAN's mel_spectrogram written out plainly, in float64."""
    f_max = c.f_max if c.f_max is not None else c.sample_rate / 2
    basis = torch.from_numpy(slaney_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min, f_max))
    pad = (c.n_fft - c.hop_length) // 2
    x = torch.nn.functional.pad(audio.double().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(
        x,
        c.n_fft,
        c.hop_length,
        c.win_length,
        torch.hann_window(c.win_length, dtype=torch.float64),
        center=False,
        return_complex=True,
    )
    magnitude = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    return torch.log(torch.clamp(basis @ magnitude, min=1e-5))


def test_log_mel_gives_one_frame_per_hop() -> None:
    audio = torch.randn(2, 256 * 20) * 0.1
    mel = LogMel()
    out = mel(audio)
    assert out.shape == (2, 80, 20)
    assert out.dtype == torch.float32
    torch.testing.assert_close(mel(audio.unsqueeze(1)), out)


@pytest.mark.parametrize("f_max", [8000.0, None])
def test_log_mel_matches_hifigan_reference(f_max: float | None) -> None:
    gen = torch.Generator().manual_seed(0)
    audio = 0.05 * torch.randn(3, 256 * 32, generator=gen) + torch.from_numpy(sine(256 * 32 / SR))
    config = MelConfig(f_max=f_max)
    expected = reference_log_mel(audio, config).float()
    torch.testing.assert_close(LogMel(config)(audio), expected, atol=1e-4, rtol=0)


def test_log_mel_is_float32_under_autocast_and_keeps_constants_out_of_state() -> None:
    audio = torch.randn(1, 256 * 8)
    mel = LogMel()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mel(audio.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, mel(audio.bfloat16().float()))
    assert {"mel_basis", "window"} <= dict(mel.named_buffers()).keys()
    assert mel.state_dict() == {}


# --- corpus layouts and loading -------------------------------------------------------------


def make_ljspeech(root: Path, ids: list[str], seconds: float = 1.5) -> Path:
    lines = [f"{i}|Text {i}.|Text {i}." for i in ids]
    (root / "wavs").mkdir(parents=True)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for i in ids:
        write_wav(root / "wavs" / f"{i}.wav", sine(seconds))
    return root


def test_ljspeech_layout_follows_metadata_order(tmp_path: Path) -> None:
    root = make_ljspeech(tmp_path / "lj", ["LJ002", "LJ001", "LJ003"])
    write_wav(root / "wavs" / "unlisted.wav", sine(1.0))
    corpus = open_corpus(root, SR)
    assert corpus.layout == "ljspeech"
    assert [f.path.stem for f in corpus.files] == ["LJ002", "LJ001", "LJ003"]
    assert corpus.files[0].frames == int(1.5 * SR)


def test_folder_layout_is_recursive_and_sorted(tmp_path: Path) -> None:
    write_wav(tmp_path / "b" / "two.wav", sine(0.5))
    write_wav(tmp_path / "a" / "one.wav", sine(0.5))
    write_wav(tmp_path / "zero.wav", sine(0.5))
    (tmp_path / "notes.txt").write_text("not audio")
    corpus = open_corpus(tmp_path, SR)
    assert corpus.layout == "folder"
    assert [f.path.relative_to(tmp_path).as_posix() for f in corpus.files] == [
        "a/one.wav",
        "b/two.wav",
        "zero.wav",
    ]


def test_other_rates_are_resampled_to_the_right_length_and_pitch(tmp_path: Path) -> None:
    write_wav(tmp_path / "low.wav", sine(1.0, sr=16000, freq=1000.0), sr=16000)
    (file,) = open_corpus(tmp_path, SR).files
    assert file.sample_rate == 16000
    audio = load_audio(file, SR)
    assert audio.shape == (SR,) == (file.length_at(SR),)
    assert audio.dtype == torch.float32
    peak_hz = torch.fft.rfft(audio).abs().argmax().item() * SR / audio.numel()
    assert abs(peak_hz - 1000.0) < 2.0


@pytest.mark.parametrize("native", [16000, 44100])
def test_resampled_crops_equal_slices_of_the_whole_resampled_clip(
    tmp_path: Path, native: int
) -> None:
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, int(1.3 * native)).astype(np.float32)
    write_wav(tmp_path / "clip.wav", noise, sr=native, subtype="FLOAT")
    (file,) = open_corpus(tmp_path, SR).files
    whole = resample(torch.from_numpy(noise), native, SR)
    assert whole.numel() == file.length_at(SR)
    # 441-sample blocks start exactly where the 16 kHz -> 22.05 kHz kernel reaches back furthest
    for start, stop in [
        (0, 100),
        (441 * 28, 441 * 45),
        (12345, 20000),
        (whole.numel() - 999, None),
    ]:
        crop = load_audio(file, SR, start, stop)
        torch.testing.assert_close(crop, whole[start:stop], rtol=0, atol=5e-5)  # float32 sums


def test_stereo_is_folded_to_mono(tmp_path: Path) -> None:
    left, right = sine(0.5, freq=300.0), sine(0.5, freq=700.0)
    write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    (file,) = open_corpus(tmp_path, SR).files
    assert file.channels == 2
    np.testing.assert_allclose(load_audio(file, SR).numpy(), (left + right) / 2, atol=1e-7)


def test_load_utterances_keeps_order_and_truncates(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", sine(2.0))
    write_wav(tmp_path / "b.wav", sine(0.5))
    files = open_corpus(tmp_path, SR).files
    lengths = [u.numel() for u in load_utterances(files, SR, max_seconds=1.0)]
    assert lengths == [SR, SR // 2]
    assert [u.numel() for u in load_utterances(files[::-1], SR)] == [SR // 2, 2 * SR]


# --- bad data ------------------------------------------------------------------------------


def test_missing_and_empty_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        open_corpus(tmp_path / "nowhere", SR)
    (tmp_path / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError, match=f"no audio files .* under {tmp_path}"):
        open_corpus(tmp_path, SR)


def test_corrupt_file_is_named(tmp_path: Path) -> None:
    write_wav(tmp_path / "good.wav", sine(0.5))
    (tmp_path / "x.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match=r"x\.wav: unreadable audio"):
        open_corpus(tmp_path, SR)


def test_non_finite_samples_are_named_when_opened_and_when_read(tmp_path: Path) -> None:
    bad = sine(1.0)
    bad[100] = np.nan
    write_wav(tmp_path / "nan.wav", bad, subtype="FLOAT")
    with pytest.raises(DataError, match=r"nan\.wav: contains NaN"):
        open_corpus(tmp_path, SR)  # the scan when the corpus is opened
    files = [read_header(tmp_path / "nan.wav")]
    with pytest.raises(DataError, match=r"nan\.wav: contains NaN"):
        load_utterances(files, SR)
    with pytest.raises(DataError, match=r"nan\.wav: contains NaN"):
        SegmentBatches(files, segment_size=SR, batch_size=1, seed=0, sample_rate=SR).batch(0)


def test_metadata_id_without_wav_is_named(tmp_path: Path) -> None:
    root = make_ljspeech(tmp_path, ["LJ001", "LJ002"])
    (root / "wavs" / "LJ002.wav").unlink()
    with pytest.raises(DataError, match=r"metadata\.csv:2: clip 'LJ002' has no file"):
        open_corpus(root, SR)


def test_short_clips_never_validate_and_are_counted(tmp_path: Path) -> None:
    for i in range(6):
        write_wav(tmp_path / f"long{i}.wav", sine(1.2))
    for i in range(3):
        write_wav(tmp_path / f"short{i}.wav", sine(0.4))
    corpus = open_corpus(tmp_path, SR)
    with pytest.warns(UserWarning, match="3 of 9 clips are shorter than 1 s") as caught:
        train, valid = corpus.split(n_valid=4, seed=0)
    assert len(caught) == 1
    assert len(valid) == 4 and all(f.path.stem.startswith("long") for f in valid)
    assert len(train) == 5 and sum(f.path.stem.startswith("short") for f in train) == 3
    with pytest.raises(DataError, match="only 6 are at least 1 s long"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus.split(n_valid=7, seed=0)


def test_split_depends_on_seed_alone(tmp_path: Path) -> None:
    for i in range(12):
        write_wav(tmp_path / f"c{i:02d}.wav", sine(1.0))
    corpus = open_corpus(tmp_path, SR)
    train, valid = corpus.split(3, seed=7)
    assert open_corpus(tmp_path, SR).split(3, seed=7) == (train, valid)
    assert sorted(train + valid, key=lambda f: f.path) == corpus.files
    assert [f.path for f in train] == sorted(f.path for f in train)
    assert {tuple(corpus.split(3, seed=s)[1]) for s in range(5)} != {tuple(valid)}


# --- training batches ----------------------------------------------------------------------


def constant_clips(root: Path, n: int, seconds: float = 0.5) -> list[AudioFile]:
    """Clip k holds (k + 1) / 100 +- 0.001 (a constant would be refused as holding no signal),
    so a crop tells which clip it came from."""
    for k in range(n):
        wiggle = 0.001 * (-1.0) ** np.arange(int(seconds * SR))
        write_wav(root / f"k{k:02d}.wav", (k + 1) / 100 + wiggle, subtype="FLOAT")
    return open_corpus(root, SR).files


def clip_ids(audio: torch.Tensor) -> list[int]:
    return [round(v * 100) - 1 for v in audio[:, 0].tolist()]


def test_batches_are_a_pure_function_of_seed_and_index(tmp_path: Path) -> None:
    write_wav(tmp_path / "noise.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 2 * SR))
    constant_clips(tmp_path, 6)
    files = open_corpus(tmp_path, SR).files

    def make(seed: int) -> SegmentBatches:
        return SegmentBatches(files, segment_size=2048, batch_size=2, seed=seed, sample_rate=SR)

    source = make(seed=3)
    assert source.batches_per_epoch == 3
    first = [source.batch(i)[0] for i in range(7)]
    for i in (5, 0, 6):
        torch.testing.assert_close(source.batch(i)[0], first[i], rtol=0, atol=0)
        torch.testing.assert_close(make(seed=3).batch(i)[0], first[i], rtol=0, atol=0)
    assert not torch.equal(make(seed=4).batch(0)[0], first[0])
    assert all(b.shape == (2, 2048) and b.dtype == torch.float32 for b in first)


def test_each_epoch_visits_every_clip_once_in_a_new_order(tmp_path: Path) -> None:
    files = constant_clips(tmp_path, 6)
    source = SegmentBatches(files, segment_size=1024, batch_size=2, seed=0, sample_rate=SR)
    epochs = [sum((clip_ids(source.batch(e * 3 + b)[0]) for b in range(3)), []) for e in range(3)]
    assert all(sorted(ids) == list(range(6)) for ids in epochs)
    assert len({tuple(ids) for ids in epochs}) > 1


def test_crops_are_contiguous_in_range_and_short_clips_padded(tmp_path: Path) -> None:
    n = SR
    write_wav(tmp_path / "ramp.wav", np.arange(n, dtype=np.float32) / n, subtype="FLOAT")
    write_wav(tmp_path / "short.wav", np.full(100, 0.5, dtype=np.float32), subtype="FLOAT")
    ramp, short = (read_header(tmp_path / name) for name in ("ramp.wav", "short.wav"))
    crops = SegmentBatches([ramp], 4096, batch_size=8, seed=1, sample_rate=SR).batch(0)[0]
    starts = (crops[:, 0] * n).round().long()
    assert len(set(starts.tolist())) > 1 and all(0 <= s <= n - 4096 for s in starts.tolist())
    expected = (starts[:, None] + torch.arange(4096)).float() / n
    torch.testing.assert_close(crops, expected, rtol=0, atol=1e-6)
    (padded,) = SegmentBatches([short], 1000, batch_size=1, seed=0, sample_rate=SR).batch(0)
    assert torch.all(padded[0, :100] == 0.5) and torch.all(padded[0, 100:] == 0)


def test_resampled_clips_give_full_segments(tmp_path: Path) -> None:
    write_wav(tmp_path / "low.wav", sine(2.0, sr=16000), sr=16000)
    files = open_corpus(tmp_path, SR).files
    (audio,) = SegmentBatches(files, SR, batch_size=4, seed=0, sample_rate=SR).batch(0)
    assert audio.shape == (4, SR)
    assert len({round(v, 6) for v in audio[:, 0].tolist()}) > 1  # different offsets
    assert torch.all(audio[:, -100:].abs().amax(dim=1) > 0.4)  # never runs off the end
