"""A pickle that runs code when loaded, for the checkpoint-safety tests."""

from __future__ import annotations

from pathlib import Path


class WritesAFile:
    """Unpickling this calls ``open(path, "w")``: code run by merely loading a checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")
