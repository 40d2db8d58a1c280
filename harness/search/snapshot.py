"""Ray's experiment snapshot, kept restorable across a driver killed while Ray writes it.

Ray rewrites ``experiment_state-<session>.json`` and its searcher's files in place: a driver killed
in the middle leaves one of them empty or cut short, ``Tuner.restore`` then cannot read the run
("Failed to restore the run state") and none of its trials come back, on every later attempt.
The driver therefore keeps the newest snapshot that reads whole in one file beside it
(:class:`SnapshotKeeper`, at every trial start, result and end), and before a restore puts it back
in place of a newest snapshot that does not read (:func:`heal`).  Ray's snapshot may lag the
trials a little either way; a trial's recorded ending (``outcome.json``) outlives that
(docs/reliability.md).
"""

from __future__ import annotations

import base64
import json
import pickletools
from pathlib import Path

from ray import tune

from harness.files import atomic_write

STATE = "experiment_state-"
KEPT = ".last_good_snapshot.json"
"""Beside the snapshot: {file name: base64 bytes} of the newest session files that read whole
(a dot name, which Ray's ``experiment_state-*.json`` pattern does not match)."""


def reads(data: bytes) -> bool:
    """Whether ``data`` is a whole JSON document or a whole pickle (its opcodes walked to STOP
    without building anything): Ray writes both, a pickle under a ``.json`` name too."""
    try:
        json.loads(data)
        return True
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        for _ in pickletools.genops(data):
            pass
    except ValueError:
        return False
    return bool(data)


def newest_state(tune_dir: Path) -> Path | None:
    """Ray's newest ``experiment_state-<session>.json`` (the one a restore reads), if any."""
    return max(tune_dir.glob(f"{STATE}*.json"), default=None)


def newest_session(tune_dir: Path) -> dict[str, bytes]:
    """The files of Ray's newest snapshot (``*-<session>.json|pkl``), by name, as they are now."""
    state = newest_state(tune_dir)
    if state is None:
        return {}
    session = state.name.removeprefix(STATE).removesuffix(".json")
    files = {}
    for path in tune_dir.glob(f"*-{session}.*"):
        try:
            files[path.name] = path.read_bytes()
        except OSError:  # being replaced: read whole next time
            return {}
    return files


def keep(tune_dir: Path) -> bool:
    """Store the newest snapshot in :data:`KEPT` if every file of it reads whole; True if so."""
    files = newest_session(tune_dir)
    if not files or not all(map(reads, files.values())):
        return False
    kept = {name: base64.b64encode(data).decode() for name, data in files.items()}
    atomic_write(tune_dir / KEPT, json.dumps(kept))
    return True


def heal(tune_dir: Path) -> str | None:
    """Before a restore: where the newest snapshot does not read whole, put the kept one in its
    place; a line saying so, or None where nothing needed mending or nothing was kept."""
    files = newest_session(tune_dir)
    if not files or all(map(reads, files.values())):
        return None
    try:
        kept = json.loads((tune_dir / KEPT).read_text())
    except (OSError, ValueError):
        return None
    for name in files:
        (tune_dir / name).unlink()
    for name, encoded in kept.items():
        atomic_write(tune_dir / name, base64.b64decode(encoded))
    broken = sorted(name for name, data in files.items() if not reads(data))
    return f"note: Ray's snapshot {', '.join(broken)} was cut short; restoring the last whole one"


class SnapshotKeeper(tune.Callback):
    """Calls :func:`keep` whenever Ray may have written a new snapshot since the last call that
    kept one (its newest experiment state changed on disk)."""

    def __init__(self, tune_dir: Path) -> None:
        self.folder = str(tune_dir)  # one string, which harness/search/reroot.py can re-root
        self.seen: tuple[str, int, int] | None = None

    @property
    def tune_dir(self) -> Path:
        return Path(self.folder)

    def __setstate__(self, state: dict) -> None:
        """A keeper pickled by an older harness held its folder as ``tune_dir``, a ``Path``."""
        state = dict(state)
        if "tune_dir" in state:
            state["folder"] = str(state.pop("tune_dir"))
        self.__dict__.update(state)

    def _keep(self) -> None:
        state = newest_state(self.tune_dir)
        if state is None:
            return
        try:
            stat = state.stat()
        except OSError:  # being replaced
            return
        mark = (state.name, stat.st_mtime_ns, stat.st_size)
        if mark != self.seen and keep(self.tune_dir):
            self.seen = mark

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._keep()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._keep()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._keep()
