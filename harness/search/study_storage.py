"""Where a search's Optuna study lives, and opening it for the search or for a reader.

A search keeps its study in ``results/<name>/optuna.journal``: Optuna's journal storage on a
file, one JSON line appended per operation.  Not SQLite, because of where the study is read:

- on a cluster ``results/`` is a shared file system (NFS), where SQLite's ``fcntl`` locks are
  unreliable (SQLite's FAQ and Optuna's documentation warn against it); the journal is appended
  under a lock taken by creating a file with ``O_EXCL`` (``JournalFileOpenLock``), which NFS
  honours from version 3 on;
- a reader beside a running search (the report, ``optuna-dashboard results/<name>/
  optuna.journal``) takes no lock at all: it reads the lines written so far and leaves a line
  still being appended for its next read, so it can neither block the search nor end it (a
  dashboard reading a running SQLite study has ended the search with "database is locked",
  optuna-dashboard#545).

Older search folders hold an SQLite study (``optuna.db``); they are read and resumed as they
are.  Only the process holding the search's lock writes the study; a reader creates nothing.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from harness.results.folder import SearchFolder

REBUILT = "rebuilt_from"
"""The study attribute that marks a rebuilt study (harness/search/study_rebuild.py): its value
says what it was rebuilt from."""

UNREADABLE = (
    ValueError,  # a journal line that is not JSON, or not whole before the lines after it
    LookupError,  # a journal line without the fields of its operation
    TypeError,
    sqlite3.Error,
    sqlalchemy.exc.SQLAlchemyError,
    optuna.exceptions.StorageInternalError,
)
"""What reading a damaged study raises: a journal that does not replay, an SQLite file that
is not a whole database."""


class StudyUnreadable(ValueError):
    """A search's Optuna study cannot be read; one line naming the file, why, and what to do."""

    def __init__(self, path: Path, problem: str, advice: str) -> None:
        super().__init__(f"{path}: {problem}; {advice}")
        self.path, self.problem, self.advice = path, problem, advice


def journal_storage(path: Path) -> JournalStorage:
    """The journal at ``path`` (created if missing), locked for appends by ``O_EXCL``."""
    backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    return JournalStorage(backend)


def journal_lock(path: Path) -> Path:
    """The file ``JournalFileOpenLock`` creates beside the journal at ``path`` while appending."""
    return Path(f"{path}.lock")


def open_storage(folder: SearchFolder, *, create: bool = False) -> BaseStorage | None:
    """The storage of ``folder``'s study: for the search (``create``: a new search's journal
    is made), or for a reader (None while there is no study file; nothing is created)."""
    path = folder.study_file
    if not create and not path.is_file():
        return None
    if path == folder.optuna_db:
        if create:
            return RDBStorage(f"sqlite:///{path}")
        return RDBStorage(
            f"sqlite:///{path}", skip_compatibility_check=True, skip_table_creation=True
        )
    return journal_storage(path)


def load_study(folder: SearchFolder, name: str) -> optuna.Study | None:
    """The study ``name`` of ``folder`` for reading, every trial read once; None if there is
    none yet.  A study that cannot be read raises :class:`StudyUnreadable`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = folder.study_file
    try:
        storage = open_storage(folder)
        if storage is None or name not in {s.study_name for s in storage.get_all_studies()}:
            return None
        study = optuna.load_study(study_name=name, storage=storage)
        study.get_trials(deepcopy=False)
    except UNREADABLE as err:
        reason = describe(err)
        if "locked" in reason:  # an SQLite study that a search is writing
            raise StudyUnreadable(
                path, f"the Optuna study is busy ({reason})", "try again in a moment"
            ) from None
        raise StudyUnreadable(
            path,
            f"the Optuna study is damaged ({reason})",
            f"`run.py search {folder.name}` rebuilds it from trials.parquet",
        ) from None
    return study


def describe(err: BaseException) -> str:
    """The first line of what went wrong at the bottom, under Optuna's and SQLAlchemy's
    wrapping (sqlite3's "database disk image is malformed", not "An exception is raised
    during the commit")."""
    while err.__cause__ is not None:
        err = err.__cause__
    inner = getattr(err, "orig", None) or err
    text = str(inner).strip().splitlines()
    return text[0] if text else type(inner).__name__


def damage(folder: SearchFolder, name: str) -> str | None:
    """Why the study ``name`` of ``folder`` cannot be resumed (missing, or not read whole), or
    None where it reads whole.  An SQLite study is checked page by page first (``PRAGMA
    quick_check``), since SQLite reads a damaged page only when a query reaches it."""
    path = folder.study_file
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        if path == folder.optuna_db:
            sqlite_check(path)
        storage = open_storage(folder)
        assert storage is not None
        names = {s.study_name for s in storage.get_all_studies()}
        if name not in names:
            return f"it holds no study named {name!r}"
        storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    except UNREADABLE as err:
        return describe(err)
    return None


def sqlite_check(path: Path) -> None:
    """Raise ``sqlite3.DatabaseError`` unless ``path`` is a whole SQLite database."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        found = db.execute("PRAGMA quick_check").fetchall()
    if found != [("ok",)]:
        raise sqlite3.DatabaseError(str(found[0][0]) if found else "quick_check said nothing")


def tidy_journal(folder: SearchFolder) -> None:
    """Before the search holding ``folder``'s lock appends to its journal again: cut off a last
    line that a kill or a full disk left unfinished (the next line appended would join it into
    one line no reader can parse), and remove the journal's lock file a killed writer left
    (the next append would wait out Optuna's 30 s grace period first)."""
    path = folder.optuna_journal
    if path.is_file():
        with open(path, "rb+") as journal:
            end = whole_lines_end(journal)
            if end < journal.seek(0, 2):
                journal.truncate(end)
    journal_lock(path).unlink(missing_ok=True)


def whole_lines_end(handle: BinaryIO) -> int:
    """The offset just past the last newline of the open binary file ``handle`` (0: none)."""
    end = handle.seek(0, 2)
    chunk = 4096
    while end > 0:
        start = max(0, end - chunk)
        handle.seek(start)
        block = handle.read(end - start)
        found = block.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0
