"""Re-rooting Ray's pickled experiment state when a search folder is copied or moved
(harness/search/reroot.py): the rewrite works on pickle opcodes, never unpickles, and touches
only paths at or under the old folder."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pytest

from harness.results.folder import SearchFolder
from harness.search.reroot import MARK, FolderCopied, mark, reroot, rewrite_pickle
from harness.search.snapshot import SnapshotKeeper

OLD, NEW = "/results/a", "/elsewhere/b"


def state(root: str) -> dict:
    """What Ray pickles, in small: plain path strings, an Optuna URL, our own objects."""
    return {
        "folder": root,
        "trial": f"{root}/trials/x1",
        "url": f"sqlite:///{root}/optuna.db",
        "search": SearchFolder(Path(root)),
        "keeper": SnapshotKeeper(Path(root, "tune")),
        "sibling": f"{root}b/trials/x1",  # another folder whose name starts the same
        "long": f"{root}/" + "d" * 300,  # over 255 bytes: another string opcode
        "same": [f"{root}/tune"] * 3,  # memoised: one string, three references
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_path_under_the_old_folder_names_the_new_one(protocol: int) -> None:
    data = pickle.dumps(state(OLD), protocol=protocol)
    rewritten = rewrite_pickle(data, OLD, NEW)
    assert rewritten is not None
    back = pickle.loads(rewritten)
    expected = state(NEW)
    assert back["folder"] == NEW and back["trial"] == expected["trial"]
    assert back["url"] == f"sqlite:///{NEW}/optuna.db"
    assert back["search"] == SearchFolder(Path(NEW))
    assert back["keeper"].tune_dir == Path(NEW, "tune")
    assert back["sibling"] == f"{OLD}b/trials/x1"  # not under the old folder: left alone
    assert back["long"] == expected["long"] and back["same"] == expected["same"]
    assert OLD.encode() not in rewritten.replace(f"{OLD}b".encode(), b"")


def test_what_names_nothing_under_the_old_folder_or_is_no_pickle_is_left_alone() -> None:
    assert rewrite_pickle(pickle.dumps({"x": "/somewhere/else"}), OLD, NEW) is None
    assert rewrite_pickle(b'{"json": "' + OLD.encode() + b'"}', OLD, NEW) is None
    assert rewrite_pickle(pickle.dumps(OLD)[:-1], OLD, NEW) is None  # cut short: no STOP
    assert rewrite_pickle(b"", OLD, NEW) is None


def make_experiment(tmp_path: Path, written_for: Path) -> Path:
    tune = tmp_path / "b" / "tune"
    tune.mkdir(parents=True)
    (tune / "tuner.pkl").write_bytes(pickle.dumps(state(str(written_for))))
    (tune / "experiment_state-x.json").write_text(json.dumps({"path": str(written_for)}))
    kept = {"searcher-state-x.pkl": base64.b64encode(pickle.dumps(str(written_for))).decode()}
    (tune / ".last_good_snapshot.json").write_text(json.dumps(kept))
    mark(tune, written_for)
    return tune


def test_reroot_rewrites_the_pickles_and_the_kept_snapshot_then_marks_the_new_folder(tmp_path):
    original = tmp_path / "a"  # gone: a moved folder
    tune = make_experiment(tmp_path, original)
    here = tmp_path / "b"
    note = reroot(tune, here)
    assert note is not None and str(original) in note
    assert pickle.loads((tune / "tuner.pkl").read_bytes())["url"] == f"sqlite:///{here}/optuna.db"
    kept = json.loads((tune / ".last_good_snapshot.json").read_text())
    assert pickle.loads(base64.b64decode(kept["searcher-state-x.pkl"])) == str(here)
    # Ray's JSON state is Ray's to re-root (Tuner.restore does): left as it was
    assert json.loads((tune / "experiment_state-x.json").read_text())["path"] == str(original)
    assert (tune / MARK).read_text() == str(here)
    before = {p.name: p.read_bytes() for p in tune.iterdir()}
    assert reroot(tune, here) is None  # once re-rooted, nothing more to do
    assert {p.name: p.read_bytes() for p in tune.iterdir()} == before


def test_an_experiment_outside_the_folder_is_not_taken_from_the_search_it_was_written_for(
    tmp_path,
):
    original = tmp_path / "a"
    original.mkdir()
    (original / "config.yaml").write_text("name: a\n")  # the original search is still there
    shared = tmp_path / "storage" / "a"  # --storage: the experiment lives outside the folder
    shared.parent.mkdir()
    make_experiment(tmp_path, original).rename(shared)
    before = {p.name: p.read_bytes() for p in shared.iterdir()}
    with pytest.raises(FolderCopied, match="shares"):
        reroot(shared, tmp_path / "c")
    assert {p.name: p.read_bytes() for p in shared.iterdir()} == before
