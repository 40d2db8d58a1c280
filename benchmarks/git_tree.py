"""A commit's files written out, for the benchmarks that time this tree against an older one
(standard library only: gpu_stack.py runs where torch is not installed)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def export_commit(ref: str, dest: Path, *paths: str) -> Path:
    """The tree of commit ``ref`` of this repository (only ``paths`` if given) under ``dest``."""
    tar = subprocess.run(["git", "archive", ref, *paths], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(dest, filter="data")
    return dest
