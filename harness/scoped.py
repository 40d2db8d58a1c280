"""Process-wide settings changed for one block and restored after it.

Environment variables (what libraries read on import and what child processes started meanwhile
inherit) and torch's intra-op thread count are global to the process; these context managers
change them for the block alone, so a caller's own settings survive.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch


@contextmanager
def scoped_environ(
    forced: Mapping[str, str] | None = None, defaults: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Set ``forced`` and, where the variable is unset, ``defaults`` for the block only."""
    forced, defaults = dict(forced or {}), dict(defaults or {})
    saved = {name: os.environ.get(name) for name in {**defaults, **forced}}
    os.environ.update({k: v for k, v in defaults.items() if k not in os.environ})
    os.environ.update(forced)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch on one thread for the block: short FFTs and resampling only lose to thread
    hand-offs, and one thread gives the same bytes whatever the caller's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
