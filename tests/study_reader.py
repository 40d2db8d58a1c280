"""A reader polling a search's Optuna study while the search writes it (test_study_storage.py).

``python tests/study_reader.py FOLDER NAME OUT`` reads the study of the search folder FOLDER
in a loop, the harness's way (:func:`harness.search.study_storage.load_study`) and the way
optuna-dashboard opens a journal file (``JournalStorage(JournalFileBackend(path))``, with its
default lock), until ``summary.json`` appears; each read is one JSON line in OUT:
``{"harness": {number: [state, intermediate values, values]}, "dashboard": {...}}``, or
``{"error": "..."}`` for a read that raised, and the reader goes on.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from harness.results.folder import SearchFolder
from harness.search.study_storage import load_study


def summary(study: optuna.Study | None) -> dict[int, list]:
    if study is None:
        return {}
    return {
        t.number: [t.state.name, len(t.intermediate_values), t.values is not None]
        for t in study.get_trials(deepcopy=False)
    }


def dashboard_view(folder: SearchFolder, name: str) -> optuna.Study | None:
    path = folder.optuna_journal
    if not path.is_file():
        return None
    storage = JournalStorage(JournalFileBackend(str(path)))
    if name not in {s.study_name for s in storage.get_all_studies()}:
        return None
    return optuna.load_study(study_name=name, storage=storage)


def main(folder: SearchFolder, name: str, out: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with open(out, "w") as log:
        while not folder.summary.is_file():
            try:
                read = {
                    "harness": summary(load_study(folder, name)),
                    "dashboard": summary(dashboard_view(folder, name)),
                }
            except Exception as err:  # noqa: BLE001 (any failure is what the test looks for)
                read = {"error": f"{type(err).__name__}: {err}"}
            log.write(json.dumps(read) + "\n")
            log.flush()
            time.sleep(0.05)


if __name__ == "__main__":
    main(SearchFolder(Path(sys.argv[1])), sys.argv[2], Path(sys.argv[3]))
