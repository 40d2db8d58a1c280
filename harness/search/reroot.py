"""A search folder that was copied or moved resumes as itself and never touches the original.

Ray keeps absolute paths in the experiment it writes to ``tune/``: the search folder inside the
searcher and callbacks pickled in ``tuner.pkl`` and ``searcher-state-*.pkl`` (the trial setup,
the trials table, the checkpoint linker, the Optuna storage URL ``sqlite:////.../optuna.db``), and
the experiment's own storage in its search generator's state (``search_gen_state-*.json``, a
pickle), from which the trials it creates after a restore take their folders.
``Tuner.restore(path)`` re-roots the trials it restores and their checkpoints, not these
(ray-project/ray#38894).  Left alone, a resumed copy would write the original's study, trials
table and new trial folders, and a moved folder would fail on the old path.

So the experiment records the folder it was written for (:data:`MARK`), and before a restore from
anywhere else every string in those pickles that names the old folder (or a path under it) is
rewritten to name this one.  The rewrite works on the pickles' opcodes: nothing is unpickled, so
nothing (the Optuna storage least of all, which connects as it is unpickled) ever reaches the old
folder.  Each file is replaced atomically and the mark last, so a kill in the middle is finished
by the next resume.
"""

from __future__ import annotations

import base64
import json
import pickletools
import re
import struct
from pathlib import Path

from harness.files import atomic_write

MARK = ".written_for"
"""In the experiment folder: the absolute path of the search (or confirmation) folder that Ray's
pickled state there names."""
KEPT_SNAPSHOT = ".last_good_snapshot.json"  # harness/search/snapshot.py: {name: base64 bytes}
STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}


class FolderCopied(ValueError):
    """A copied search folder shares its Ray experiment with the original; one line."""


def mark(experiment: Path, folder: Path) -> None:
    """Record that the experiment in ``experiment`` was written for ``folder``."""
    atomic_write(Path(experiment) / MARK, str(Path(folder).resolve()))


def reroot(experiment: Path, folder: Path) -> str | None:
    """Before a restore: where the experiment was written for another folder, rewrite its pickled
    paths to ``folder`` and say so in a line (None where nothing needed rewriting).

    An experiment outside ``folder`` (``--storage``) is shared by every copy of the folder; it is
    refused while the folder it was written for still holds a search, since rewriting it would
    take it from that search.
    """
    experiment, folder = Path(experiment), Path(folder).resolve()
    try:
        old = (experiment / MARK).read_text().strip()
    except FileNotFoundError:
        return None  # written before experiments recorded their folder
    if old == str(folder):
        return None
    if folder not in experiment.resolve().parents and Path(old, "config.yaml").is_file():
        raise FolderCopied(
            f"{folder}: a copy of the search in {old}, whose Ray experiment in {experiment} it "
            "shares; resume the search there, or start a new one"
        )
    for path in sorted(p for p in experiment.iterdir() if p.is_file()):
        data = path.read_bytes()
        new = rewrite_kept(data, old, str(folder)) if path.name == KEPT_SNAPSHOT else None
        new = new or rewrite_pickle(data, old, str(folder))
        if new is not None:
            atomic_write(path, new)
    mark(experiment, folder)
    return f"note: this search folder was copied or moved from {old}; its Ray state now names it"


def rewrite_pickle(data: bytes, old: str, new: str) -> bytes | None:
    """``data`` with every pickled string naming ``old`` (the path itself or one under it,
    anywhere in the string: a ``sqlite:///`` URL too) naming ``new``; None where ``data`` is not
    a whole pickle or names nothing under ``old``.

    Frames are left out of the result (their lengths no longer hold; unpicklers read a pickle
    without them)."""
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # not a pickle: genops raises ValueError, or others on some garbage
        return None
    if not ops or ops[-1][0].name != "STOP":
        return None
    pattern = re.compile(re.escape(old) + r"(?=/|$)")
    out, changed = bytearray(), False
    for index, (op, arg, pos) in enumerate(ops):
        end = ops[index + 1][2] if index + 1 < len(ops) else len(data)
        if op.name == "FRAME":
            continue
        if op.name in STRING_OPCODES and isinstance(arg, str) and pattern.search(arg):
            out += encode_string(pattern.sub(new, arg), short=op.name == "SHORT_BINUNICODE")
            changed = True
        else:
            out += data[pos:end]
    return bytes(out) if changed else None


def encode_string(text: str, short: bool) -> bytes:
    """A pickle opcode pushing ``text``: SHORT_BINUNICODE where it replaces one and fits,
    else BINUNICODE (every binary protocol reads it)."""
    raw = text.encode("utf-8", "surrogatepass")
    if short and len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def rewrite_kept(data: bytes, old: str, new: str) -> bytes | None:
    """The kept snapshot (JSON of base64 files) with each pickled file in it rewritten."""
    try:
        kept = {name: base64.b64decode(text) for name, text in json.loads(data).items()}
    except (ValueError, AttributeError, TypeError):
        return None
    rewritten = {name: rewrite_pickle(raw, old, new) for name, raw in kept.items()}
    if not any(rewritten.values()):
        return None
    encoded = {
        name: base64.b64encode(rewritten[name] or raw).decode() for name, raw in kept.items()
    }
    return json.dumps(encoded).encode()
