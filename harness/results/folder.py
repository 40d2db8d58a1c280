"""The results folder of a search: its paths, its lock, and finding searches under a root.

::

    results/<name>/
      config.yaml       the search as launched (harness/results/plan.py: SearchPlan) and the
                        share of the cluster each trial got (Resources, its ``resources:``)
      tune/             Ray Tune experiment (restorable), unless --storage moved it
      optuna.journal    the Optuna study, a journal file (harness/search/study_storage.py):
                        optuna-dashboard results/<name>/optuna.journal; optuna.db (SQLite) in
                        folders of older searches
      diagnostics/      Parquet dataset of step and eval rows, partitioned by trial_id
      trials/<id>/      one trial: config.yaml, checkpoints/, samples/, result.json (training
                        ended), outcome.json (how the search recorded its end)
      trials.parquet    one row per trial, rewritten atomically as trials finish
      importances.json  Optuna parameter importances, written when a search run ends
      summary.json      written when the search has finished
      search.log        what Ray and Optuna said while the search and its confirmation ran
      reruns/           ``run.py rerun`` output
      confirm/          the confirmation runs (``--confirm K`` / ``run.py confirm``)
      confirmation.parquet  one row per confirmation run (harness/results/confirmation.py)

No Ray here: the leaderboard and rerun read these files without starting anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.files import exclusive_lock, remove_stale_temps


class ResultsError(ValueError):
    """A results folder or trial is missing or unreadable; one line naming it."""


@dataclass(frozen=True)
class SearchFolder:
    """Paths inside ``results/<name>/``."""

    path: Path

    def __reduce__(self) -> tuple:
        """Pickled as its path in one string (a ``Path`` pickles as its parts), so a folder held
        in Ray's pickled experiment state can be re-rooted when the folder is copied or moved
        (harness/search/reroot.py)."""
        return (search_folder_at, (str(self.path),))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def tune(self) -> Path:
        return self.path / "tune"

    @property
    def optuna_journal(self) -> Path:
        """The Optuna study of a search: an append-only journal of operations."""
        return self.path / "optuna.journal"

    @property
    def optuna_db(self) -> Path:
        """The Optuna study (SQLite) of a search started before studies were journals."""
        return self.path / "optuna.db"

    @property
    def study_file(self) -> Path:
        """The file holding this search's Optuna study: the journal, unless the folder holds
        only an SQLite study (an older search, read and resumed as it is)."""
        if self.optuna_db.is_file() and not self.optuna_journal.is_file():
            return self.optuna_db
        return self.optuna_journal

    @property
    def diagnostics(self) -> Path:
        return self.path / "diagnostics"

    @property
    def trials_dir(self) -> Path:
        return self.path / "trials"

    def trial_dir(self, trial_id: str) -> Path:
        return self.trials_dir / trial_id

    @property
    def trials_table(self) -> Path:
        return self.path / "trials.parquet"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one process running this search (hidden from the globs)."""
        return self.path / ".search.lock"

    @property
    def log(self) -> Path:
        """Ray's and Optuna's output while this search or its confirmation runs."""
        return self.path / "search.log"

    @property
    def importances(self) -> Path:
        return self.path / "importances.json"

    @property
    def reruns(self) -> Path:
        return self.path / "reruns"

    @property
    def confirm_dir(self) -> Path:
        """The confirmation runs: a search folder of their own (tune/, trials/, diagnostics/)."""
        return self.path / "confirm"

    @property
    def confirmation_table(self) -> Path:
        return self.path / "confirmation.parquet"

    def finished(self) -> bool:
        return self.summary.is_file()

    def search_writes(self) -> tuple[Path, ...]:
        """The files in this folder that only the search holding :attr:`lock` writes (a
        leaderboard run beside it writes ``report.html``)."""
        return (
            self.config,
            self.optuna_journal,
            self.optuna_db,
            self.trials_table,
            self.summary,
            self.importances,
            self.confirmation_table,
        )

    @contextmanager
    def hold(self, advice: str = "") -> Iterator[None]:
        """Hold the search's lock for the block, one search or confirmation per folder at a
        time; a one-line error (ending in ``advice``, if given) if another process holds it.
        The kernel releases it if this process dies; the temp file of a write that death cut
        short is cleared here."""
        busy = (
            f"search {self.name!r} is already running in another process (it holds "
            f"{self.lock}); wait for it to end" + (f", or {advice}" if advice else "")
        )
        with exclusive_lock(self.lock, busy):
            remove_stale_temps(self.path, [path.name for path in self.search_writes()])
            yield

    def last_change(self) -> float:
        """Seconds since the epoch of the newest table or config write (for "most recent")."""
        stamps = [p.stat().st_mtime for p in (self.trials_table, self.config) if p.exists()]
        return max(stamps, default=0.0)


def search_folder_at(path: str) -> SearchFolder:
    """The :class:`SearchFolder` at ``path`` (how a pickled one is rebuilt)."""
    return SearchFolder(Path(path))


def list_searches(root: Path) -> list[SearchFolder]:
    """Every search under ``root``, most recently changed first."""
    if not Path(root).is_dir():
        return []
    found = [SearchFolder(p) for p in Path(root).iterdir() if (p / "config.yaml").is_file()]
    return sorted(found, key=lambda f: f.last_change(), reverse=True)


def find_search(root: Path, name: str | None) -> SearchFolder:
    """The search called ``name`` under ``root``, or the most recent one when ``name`` is None."""
    if name is None:
        found = list_searches(root)
        if not found:
            raise ResultsError(f"{root}: no searches yet; start one with `run.py search RECIPE`")
        return found[0]
    folder = SearchFolder(Path(root) / name)
    if not folder.config.is_file():
        names = ", ".join(f.name for f in list_searches(root)) or "none"
        raise ResultsError(f"search {name!r} not found in {root}; searches: {names}")
    return folder
