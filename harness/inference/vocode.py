"""``run.py vocode``: speech or saved mel spectrograms in, a trained HiFi-GAN's waveforms out.

An audio file is read as training reads it (any format libsndfile decodes, channels averaged,
resampled to the recipe's rate) and its log-mel computed by the recipe's own input transform,
exactly as training computes it.  A ``.npy`` file holds a log-mel in the reference's layout,
``[n_mels, frames]`` (or ``[1, n_mels, frames]``), on the same scale (natural log of the
magnitude mel, floored at 1e-5).  Each utterance is vocoded whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from harness.audio.datasets import AUDIO_EXTENSIONS, DataError, load_audio, read_header
from harness.console import print_line
from harness.inference.generator import LoadedGenerator, load_generator, require_recipe
from harness.inference.jobs import ApplyRequest, Job, Throughput, no_progress, plan_jobs, wav_writer
from harness.inference.source import find_run
from harness.recipes.hifigan import HifiganRecipe

MEL_SUFFIX = ".npy"
INPUTS = (*AUDIO_EXTENSIONS, MEL_SUFFIX)


def vocode(request: ApplyRequest) -> int:
    """``run.py vocode``: SOURCE's vocoder over ``given_in`` (a file or a folder of audio files
    and ``.npy`` log-mels) into ``given_out``; everything is checked before the first write."""
    r = request
    run = find_run(r.source, rank_k=r.rank_k, trial_id=r.trial_id, results=r.results)
    require_recipe(run, HifiganRecipe, "vocode")
    jobs = plan_jobs(r.given_in, r.given_out, INPUTS, "audio files or .npy log-mels")
    loaded = load_generator(run, r.device)
    print_line(f"vocoding {len(jobs)} file(s) with {loaded.describe()}")
    echo = print_line if r.progress else no_progress
    done = vocode_files(loaded, jobs, subtype=r.subtype, echo=echo)
    rate = loaded.recipe.cfg.sample_rate
    print_line(f"vocoded {done.line()}; {rate} Hz WAVs in {r.given_out}")
    return 0


def vocode_files(
    loaded: LoadedGenerator, jobs: list[Job], *, subtype: str, echo: Callable[[str], None]
) -> Throughput:
    """Vocode every job's input into its output WAV; a progress line per file.  Every input is
    checked (audio header, or mel shape) before anything is written."""
    recipe = _recipe(loaded)
    rate = recipe.cfg.sample_rate
    readers = [_mel_reader(loaded, job.source) for job in jobs]
    done = Throughput()
    started = time.perf_counter()
    for index, (job, read) in enumerate(zip(jobs, readers, strict=True), start=1):
        t0 = time.perf_counter()
        audio = vocode_mel(loaded, read())
        with wav_writer(job.target, rate, subtype) as out:
            out.write(audio.cpu().numpy())
        seconds = len(audio) / rate
        done.files, done.audio_s = index, done.audio_s + seconds
        took = time.perf_counter() - t0
        echo(f"[{index}/{len(jobs)}] {job.name}: {seconds:.1f} s of audio in {took:.1f} s")
    done.wall_s = time.perf_counter() - started
    return done


def vocode_mel(loaded: LoadedGenerator, mel: Tensor) -> Tensor:
    """The waveform [frames * hop] the generator makes of a log-mel [n_mels, frames]."""
    with torch.inference_mode():
        wave = loaded.generator(mel.to(loaded.device, torch.float32).unsqueeze(0)).float()
    return wave.reshape(-1)


def mel_of(loaded: LoadedGenerator, audio: Tensor) -> Tensor:
    """The log-mel [n_mels, frames] of ``audio`` [samples] at the recipe's rate, as training
    computes the generator's input."""
    recipe = _recipe(loaded)
    with torch.inference_mode():
        return recipe.input_mel(audio.to(loaded.device).unsqueeze(0))[0]


def _recipe(loaded: LoadedGenerator) -> HifiganRecipe:
    recipe = loaded.recipe
    assert isinstance(recipe, HifiganRecipe)
    return recipe


def _mel_reader(loaded: LoadedGenerator, path: Path) -> Callable[[], Tensor]:
    """A reader of the file's log-mel, the file checked now: a ``.npy`` is loaded (it is small),
    an audio file's header read and its length checked against the STFT's."""
    if path.suffix.lower() == MEL_SUFFIX:
        mel = read_mel(path, loaded.recipe.g_cfg.n_mels)
        return lambda: mel
    recipe = _recipe(loaded)
    header = read_header(path)
    rate, n_fft = recipe.cfg.sample_rate, recipe.input_mel.config.n_fft
    if header.length_at(rate) < n_fft:
        raise DataError(
            f"{path}: {header.length_at(rate)} samples at {rate} Hz, shorter than one STFT "
            f"window ({n_fft})"
        )
    return lambda: mel_of(loaded, load_audio(header, rate))


def read_mel(path: Path, n_mels: int) -> Tensor:
    """A saved log-mel ``[n_mels, frames]`` (or ``[1, n_mels, frames]``), checked."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: not a saved NumPy array ({reason})") from None
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape[0] != n_mels or array.shape[1] < 1:
        raise DataError(
            f"{path}: shape {list(array.shape)}; the generator takes a log-mel [{n_mels}, frames]"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: {array.dtype} values; a log-mel is floating point")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    return torch.from_numpy(array.astype(np.float32))
