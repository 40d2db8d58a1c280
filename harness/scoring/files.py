"""Score WAV files: two files, or two folders whose WAVs (searched recursively, symlinked folders
followed once each) pair by relative path; the report goes to standard output, every file that
could not be used to standard error.

A file without its partner, an unreadable file, a sample rate below 8000 Hz or a rate that
differs between partners is left out and reported after the scores, one line each; so is every
estimate scored worst-case (silent, non-finite or too short), by its own path.  Pairs are
scored per sample rate, then reported together in file order.  A file name that is not UTF-8 is
read all the same and shown with its odd bytes as ``\\xNN``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from harness.audio.walk import UnreadableFolder, files_under, printable
from harness.scoring.checks import MIN_SAMPLE_RATE, ScoringError, check_settings
from harness.scoring.formats import FORMATTERS
from harness.scoring.pairs import ScorePair, score_pairs, summarize


@dataclass
class Inputs:
    """Readable pairs grouped by sample rate, one message per file that could not be used, and
    each pair's (reference, estimate) files by its name."""

    by_rate: dict[int, list[ScorePair]]
    problems: list[str]
    files: dict[str, tuple[Path, Path]]


def score_files(
    ref: Path,
    est: Path,
    *,
    mode: str,
    metrics: Sequence[str],
    workers: int | None,
    output_format: str,
) -> int:
    """Score, print the report on stdout, problems on stderr; the exit status: 0 when every file
    could be used, 1 when some could not (or no pair could be scored), 2 for bad settings."""
    try:
        check_settings(MIN_SAMPLE_RATE, mode, metrics)
        if workers is not None and workers < 1:
            raise ScoringError(f"--workers {workers}: expected 1 or more")
        inputs = collect(ref, est)
        per_item = []
        for rate, pairs in sorted(inputs.by_rate.items()):
            report = score_pairs(pairs, rate, workers=workers, mode=mode, metrics=metrics)
            per_item += report.per_item
    except ScoringError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if per_item:
        per_item.sort(key=lambda item: item["id"])
        report = summarize(per_item, metrics)
        print(FORMATTERS[output_format](report, list(metrics), mode), end="", flush=True)
    scored = any(not item.get("skipped") for item in per_item)
    failure = None if scored else nothing_scored(ref, est, per_item, inputs.problems)
    for item in per_item:
        if item.get("worst_case"):
            estimate = printable(inputs.files[item["id"]][1])
            print(f"note: {estimate}: worst-case scores: {item['worst_case']}", file=sys.stderr)
    for problem in inputs.problems:
        if problem != failure:
            print(problem, file=sys.stderr)
    if failure:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if inputs.problems or failure else 0


def nothing_scored(
    ref: Path, est: Path, per_item: list[dict[str, Any]], problems: list[str]
) -> str:
    """One line saying which file kept the first pair from being scored, and why."""
    if per_item:  # every pair was skipped: the first reference's reason
        first = per_item[0]
        path = printable(ref if ref.is_file() else ref / first["id"])
        more = f" (and {len(per_item) - 1} more pairs skipped)" if len(per_item) > 1 else ""
        return f"{path}: cannot be scored: {first['skipped']}{more}"
    if problems:
        more = f" (and {len(problems) - 1} more, listed above)" if len(problems) > 1 else ""
        return problems[0] + more
    return f"no WAV files under {ref} or {est}"


def collect(ref: Path, est: Path) -> Inputs:
    """Pair two files, or two folders by relative path, and read them."""
    if ref.is_file() and est.is_file():
        names = {printable(ref.name): (ref, est)}
        problems: list[str] = []
    elif ref.is_dir() and est.is_dir():
        names, problems = match_folders(ref, est)
    else:
        kinds = ", ".join(f"{p} is {_kind(p)}" for p in (ref, est))
        raise ScoringError(f"expected two WAV files or two folders: {kinds}")
    by_rate: dict[int, list[ScorePair]] = {}
    for name, (ref_path, est_path) in sorted(names.items()):
        try:
            ref_audio, ref_rate = _read(ref_path)
            est_audio, est_rate = _read(est_path)
        except ScoringError as err:
            problems.append(str(err))
            continue
        if ref_rate != est_rate:
            problems.append(
                f"{printable(est_path)}: {est_rate} Hz but its reference is {ref_rate} Hz"
            )
            continue
        by_rate.setdefault(ref_rate, []).append(ScorePair(name, ref_audio, est_audio))
    return Inputs(by_rate, problems, names)


def match_folders(ref: Path, est: Path) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """Pair WAVs of two folders by relative path; a file without its partner is a problem."""
    ref_files, est_files = _wavs(ref), _wavs(est)
    pairs = {name: (ref_files[name], est_files[name]) for name in ref_files.keys() & est_files}
    problems = [
        f"{printable(ref_files[n])}: no partner in {printable(est)}"
        for n in sorted(ref_files - est_files.keys())
    ]
    problems += [
        f"{printable(est_files[n])}: no partner in {printable(ref)}"
        for n in sorted(est_files - ref_files.keys())
    ]
    return pairs, problems


def _wavs(folder: Path) -> dict[str, Path]:
    """Every WAV under ``folder``, by its path relative to it (as :func:`printable` shows it)."""
    try:
        found = files_under(folder, (".wav",))
    except UnreadableFolder as err:
        reason = f"cannot list this folder ({err.strerror})"
        raise ScoringError(f"{printable(err.filename)}: {reason}") from None
    return {printable(p.relative_to(folder).as_posix()): p for p in found}


def _read(path: Path) -> tuple[Any, int]:
    """Samples (float32) and rate of one file; :class:`ScoringError` naming it if unusable.

    The name goes to libsndfile as the file system's bytes, so any name opens."""
    try:
        audio, rate = sf.read(os.fsencode(path), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        reason = str(getattr(err, "error_string", err)).splitlines()[0]
        raise ScoringError(f"{printable(path)}: unreadable: {reason}") from None
    if rate < MIN_SAMPLE_RATE:
        raise ScoringError(
            f"{printable(path)}: sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz"
        )
    return audio, rate


def _kind(path: Path) -> str:
    return "a folder" if path.is_dir() else "a file" if path.is_file() else "missing"
