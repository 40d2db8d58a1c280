"""`run.py score REF EST`: PESQ, STOI, SI-SNR, spectral distances, DNSMOS and pitch errors."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from harness.scoring.speech import (
    METRICS,
    MIN_SAMPLE_RATE,
    MODES,
    ScorePair,
    ScoreReport,
    ScoringError,
    check_settings,
    score_pairs,
    summarize,
)

EPILOG = """\
REF and EST are two WAV files, or two folders whose WAVs (searched recursively) are paired by
relative path.  A file without its partner, an unreadable file, a sample rate below 8000 Hz or a
rate that differs between partners is left out and, after the scores of everything else,
reported on stderr, one line each; the exit status is then 1.  Pairs the metrics cannot score
(silent or too-short reference, PESQ finding no utterance) are listed as skipped and left out of
the mean, without failing the command unless no pair at all could be scored, and so are
references in which the pitch tracker finds no voiced frame when a pitch metric is asked for.
Silent, constant or non-finite estimates get worst-case scores.  DNSMOS (dnsmos_*) rates the
estimate alone; the pitch metrics use CREPE tiny.  DNSMOS and the pitch metrics each cost
several times all the others together (about a second per second of audio on one core): leave
them out with --metrics when that matters.
"""


@dataclass
class Inputs:
    """Readable pairs grouped by sample rate, and one message per file that could not be used."""

    by_rate: dict[int, list[ScorePair]]
    problems: list[str]


def add_parser(subparsers: Any) -> None:
    """Register the ``score`` subcommand."""
    parser = subparsers.add_parser(
        "score",
        help="score estimated speech against references (PESQ, STOI, SI-SNR, DNSMOS, pitch, ...)",
        description="Score estimated speech (generated, enhanced) against its references.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ref", type=Path, help="reference WAV file or folder")
    parser.add_argument("est", type=Path, help="estimated (generated, enhanced) WAV file or folder")
    parser.add_argument("--mode", choices=MODES, default="wb", help="PESQ band (default: wb)")
    parser.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help=f"comma-separated subset of {','.join(METRICS)} (default: all)",
    )
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument(
        "--workers", type=int, default=None, help="scoring processes (default: every usable CPU)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, print the report on stdout, problems on stderr; 0 when every file could be used."""
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    try:
        check_settings(MIN_SAMPLE_RATE, args.mode, metrics)
        if args.workers is not None and args.workers < 1:
            raise ScoringError(f"--workers {args.workers}: expected 1 or more")
        inputs = collect(args.ref, args.est)
        per_item = []
        for rate, pairs in sorted(inputs.by_rate.items()):
            report = score_pairs(pairs, rate, workers=args.workers, mode=args.mode, metrics=metrics)
            per_item += report.per_item
    except ScoringError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if per_item:
        per_item.sort(key=lambda item: item["id"])
        report = summarize(per_item, metrics)
        print(FORMATTERS[args.format](report, list(metrics), args.mode), end="", flush=True)
    scored = any(not item.get("skipped") for item in per_item)
    failure = None if scored else nothing_scored(args.ref, args.est, per_item, inputs.problems)
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
        path = ref if ref.is_file() else ref / first["id"]
        more = f" (and {len(per_item) - 1} more pairs skipped)" if len(per_item) > 1 else ""
        return f"{path}: cannot be scored: {first['skipped']}{more}"
    if problems:
        more = f" (and {len(problems) - 1} more, listed above)" if len(problems) > 1 else ""
        return problems[0] + more
    return f"no WAV files under {ref} or {est}"


# ---------------------------------------------------------------- inputs


def collect(ref: Path, est: Path) -> Inputs:
    """Pair two files, or two folders by relative path, and read them."""
    if ref.is_file() and est.is_file():
        names = {ref.name: (ref, est)}
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
            problems.append(f"{est_path}: {est_rate} Hz but its reference is {ref_rate} Hz")
            continue
        by_rate.setdefault(ref_rate, []).append(ScorePair(name, ref_audio, est_audio))
    return Inputs(by_rate, problems)


def match_folders(ref: Path, est: Path) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """Pair WAVs of two folders by relative path; a file without its partner is a problem."""
    ref_files, est_files = _wavs(ref), _wavs(est)
    pairs = {name: (ref_files[name], est_files[name]) for name in ref_files.keys() & est_files}
    problems = [
        f"{ref_files[n]}: no partner in {est}" for n in sorted(ref_files - est_files.keys())
    ]
    problems += [
        f"{est_files[n]}: no partner in {ref}" for n in sorted(est_files - ref_files.keys())
    ]
    return pairs, problems


def _wavs(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.suffix.lower() == ".wav" and p.is_file()
    }


def _read(path: Path) -> tuple[Any, int]:
    try:
        audio, rate = sf.read(path, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise ScoringError(f"{path}: unreadable: {err}") from None
    if rate < MIN_SAMPLE_RATE:
        raise ScoringError(f"{path}: sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz")
    return audio, rate


def _kind(path: Path) -> str:
    return "a folder" if path.is_dir() else "a file" if path.is_file() else "missing"


# ---------------------------------------------------------------- output


def _status(item: dict[str, Any]) -> tuple[str, str]:
    if item.get("skipped"):
        return "skipped", item["skipped"]
    if item.get("worst_case"):
        return "worst_case", item["worst_case"]
    return "ok", ""


def _summary(report: ScoreReport) -> str:
    return f"n_valid={report.n_valid} n_skipped={report.n_skipped}"


def format_table(report: ScoreReport, columns: list[str], mode: str) -> str:
    """Aligned rows: file, metrics, note; then the mean and the counts."""
    header = ["file", *_labels(columns, mode), "note"]
    rows = []
    for item in report.per_item:
        status, reason = _status(item)
        values = [_number(item.get(c)) for c in columns]
        rows.append([item["id"], *values, "" if status == "ok" else f"{status}: {reason}"])
    rows.append(["mean", *(_number(report.mean[c]) for c in columns), _summary(report)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: list[str]) -> str:
        name, *values, note = cells
        text = "  ".join(
            [name.ljust(widths[0])] + [v.rjust(w) for v, w in zip(values, widths[1:], strict=True)]
        )
        return f"{text}  {note}".rstrip() + "\n"

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1)) + "\n"
    return line(header) + rule + "".join(line(r) for r in rows[:-1]) + rule + line(rows[-1])


def format_csv(report: ScoreReport, columns: list[str], mode: str) -> str:
    """One row per file (status ok / worst_case / skipped), then a ``mean`` row with the counts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "status", *_labels(columns, mode), "note"])
    for item in report.per_item:
        status, reason = _status(item)
        writer.writerow([item["id"], status, *(item.get(c, "") for c in columns), reason])
    writer.writerow(["", "mean", *(report.mean[c] for c in columns), _summary(report)])
    return out.getvalue()


def format_json(report: ScoreReport, columns: list[str], mode: str) -> str:
    """``{"mode", "n_valid", "n_skipped", "mean", "items"}``; NaN becomes null."""
    doc = {
        "mode": mode,
        "n_valid": report.n_valid,
        "n_skipped": report.n_skipped,
        "mean": {c: _json_number(report.mean[c]) for c in columns},
        "items": [{k: _json_number(v) for k, v in item.items()} for item in report.per_item],
    }
    return json.dumps(doc, indent=2) + "\n"


FORMATTERS = {"table": format_table, "csv": format_csv, "json": format_json}


def _labels(columns: list[str], mode: str) -> list[str]:
    """Column names for humans and spreadsheets: ``pesq`` says which band it is."""
    return [f"pesq_{mode}" if c == "pesq" else c for c in columns]


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
