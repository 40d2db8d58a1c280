"""`run.py score REF EST`: PESQ, STOI, SI-SNR, spectral distances, DNSMOS and pitch errors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.commands import call
from harness.scoring.checks import METRICS, MODES
from harness.scoring.files import score_files
from harness.scoring.formats import FORMATS

EPILOG = """\
REF and EST are two WAV files, or two folders whose WAVs (searched recursively) are paired by
relative path.  A file without its partner, an unreadable file, a sample rate below 8000 Hz or a
rate that differs between partners is left out and, after the scores of everything else,
reported on stderr, one line each; the exit status is then 1.  Pairs the metrics cannot score
(silent or too-short reference, PESQ finding no utterance) are listed as skipped and left out of
the mean, without failing the command unless no pair at all could be scored, and so are
references in which the pitch tracker finds no voiced frame when a pitch metric is asked for.
Silent, constant or non-finite estimates, and estimates too short to score, get worst-case
scores and are named on stderr, one line each.  DNSMOS (dnsmos_*) rates the
estimate alone; the pitch metrics use CREPE tiny.  DNSMOS and the pitch metrics each cost
several times all the others together (about a second per second of audio on one core): leave
them out with --metrics when that matters.
"""


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
        type=metric_names,
        default=METRICS,
        help=f"comma-separated subset of {','.join(METRICS)} (default: all)",
    )
    parser.add_argument("--format", dest="output_format", choices=FORMATS, default="table")
    parser.add_argument(
        "--workers", type=int, default=None, help="scoring processes (default: every usable CPU)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, print the report on stdout, problems on stderr; 0 when every file could be used."""
    return call(score_files, args)


def metric_names(text: str) -> tuple[str, ...]:
    """``--metrics A,B`` as its names (checked against the registry by the scoring)."""
    return tuple(m.strip() for m in text.split(",") if m.strip())
