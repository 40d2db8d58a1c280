"""``run.py enhance``: noisy recordings in, enhanced WAVs at the recipe's rate out.

Each file is read as training reads it (any format libsndfile decodes, channels averaged,
resampled to the recipe's rate by the same sinc resampler) and enhanced in chunks with the
recipe's own framing (:class:`~harness.recipes.enhancement.Framing`): memory stays bounded
whatever the file's length, and a chunk comes out as it does when the whole file is enhanced
at once (SEGAN exactly; MetricGAN+'s BLSTM with a training crop of context each side).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from harness.audio.datasets import AUDIO_EXTENSIONS, load_audio, read_header
from harness.console import print_line
from harness.inference.generator import LoadedGenerator, load_generator, require_recipe
from harness.inference.jobs import (
    ApplyRequest,
    Job,
    JobError,
    Throughput,
    no_progress,
    plan_jobs,
    wav_writer,
)
from harness.inference.source import find_run
from harness.recipes.enhancement import EnhancementRecipe

INPUTS = AUDIO_EXTENSIONS
Reader = Callable[[int, int], Tensor]  # (start, stop) -> samples [stop - start]


def enhance(request: ApplyRequest) -> int:
    """``run.py enhance``: SOURCE's enhancer over ``given_in`` (a file or a folder) into
    ``given_out``; everything is checked before the first file is written."""
    r = request
    run = find_run(r.source, rank_k=r.rank_k, trial_id=r.trial_id, results=r.results)
    require_recipe(run, EnhancementRecipe, "enhance")
    if not r.chunk_seconds > 0:
        raise JobError(f"--chunk-seconds {r.chunk_seconds:g}: must be > 0")
    jobs = plan_jobs(r.given_in, r.given_out, INPUTS, "audio files")
    loaded = load_generator(run, r.device)
    rate = loaded.recipe.cfg.sample_rate
    print_line(f"enhancing {len(jobs)} file(s) with {loaded.describe()}")
    echo = print_line if r.progress else no_progress
    done = enhance_files(loaded, jobs, chunk_seconds=r.chunk_seconds, subtype=r.subtype, echo=echo)
    print_line(f"enhanced {done.line()}; {rate} Hz WAVs in {r.given_out}")
    return 0


def enhance_files(
    loaded: LoadedGenerator,
    jobs: list[Job],
    *,
    chunk_seconds: float,
    subtype: str,
    echo: Callable[[str], None],
) -> Throughput:
    """Enhance every job's input into its output WAV; a progress line per file.

    Every header is read first, so an unreadable file is refused before anything is written; a
    file that turns out damaged while it is decoded stops the run there, its output unwritten
    (the files before it are complete).
    """
    recipe = loaded.recipe
    assert isinstance(recipe, EnhancementRecipe)
    rate = recipe.cfg.sample_rate
    headers = [read_header(job.source) for job in jobs]
    chunk = max(1, round(chunk_seconds * rate))
    done = Throughput()
    started = time.perf_counter()
    for index, (job, header) in enumerate(zip(jobs, headers, strict=True), start=1):
        length = header.length_at(rate)
        t0 = time.perf_counter()
        with wav_writer(job.target, rate, subtype) as out:
            read = functools.partial(load_audio, header, rate)
            for piece in enhance_in_chunks(recipe, loaded.generator, read, length, chunk):
                out.write(piece)
        done.files, done.audio_s = index, done.audio_s + length / rate
        took = time.perf_counter() - t0
        echo(f"[{index}/{len(jobs)}] {job.name}: {length / rate:.1f} s of audio in {took:.1f} s")
    done.wall_s = time.perf_counter() - started
    return done


def enhance_in_chunks(
    recipe: EnhancementRecipe, generator: nn.Module, read: Reader, length: int, chunk: int
) -> Iterator[np.ndarray]:
    """The enhanced utterance of ``length`` samples, chunk by chunk: each chunk of about
    ``chunk`` samples (a whole number of the framing's units) is read with its context, enhanced
    on the recipe's device, and its own samples kept."""
    framing = recipe.framing()
    step = max(1, round(chunk / framing.unit)) * framing.unit
    for start in range(0, length, step):
        stop = min(length, start + step)
        first, last = max(0, start - framing.left), min(length, stop + framing.right)
        noisy = read(first, last).to(recipe.device).unsqueeze(0)
        with torch.inference_mode():
            out = recipe.enhance_span(generator, noisy, first, length).float()
        out = torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)  # as validation does
        yield out[0, start - first : stop - first].cpu().numpy()
