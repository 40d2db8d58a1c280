"""The console of a search speaks with one voice: the harness's lines on it, Ray's and Optuna's
output in ``results/<name>/search.log`` (on the console too only with ``--verbose``)."""

from __future__ import annotations

import contextlib
import io
import logging
import sys

import yaml
from conftest import TINY_RING, run_cli

from harness.console import print_line, print_warning
from harness.results.folder import SearchFolder
from harness.search.chatter import chatter_to_log

RAY_BOX = "Configuration for experiment"
RAY_RESULTS = "View detailed results here"
OPTUNA_NO_TRIALS = ("There are no complete trials", "does not have any completed trials")
THIRD_PARTY = (
    RAY_BOX,
    RAY_RESULTS,
    "Tuner.restore",
    "RAY_AUTH_MODE",
    "Token authentication",
    *OPTUNA_NO_TRIALS,
    "[W ",
)


def test_a_search_console_holds_our_lines_and_its_log_the_rest(tmp_path):
    """Every trial diverges at once (a loss limit of 1e-9), so no trial completes and Optuna
    warns, for each of its plots in the report, that there are no complete trials."""
    swept = {"lr_g": {"loguniform": [1e-4, 1e-3]}, "loss_upper_limit": 1e-9}
    space = {"objective": "reverse_kl", "space": {**TINY_RING, **swept}}
    (tmp_path / "ring.yaml").write_text(yaml.safe_dump(space))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code, out = run_cli(
            "search", "ring", "--space", str(tmp_path / "ring.yaml"), "--trials", "2",
            "--name", "quiet", "--results", str(tmp_path), "--max-concurrent", "1",
        )  # fmt: skip
    console = out + err.getvalue()
    assert code == 0, console
    assert "search 'quiet': ring (smoke budget), 2 trials" in out
    assert "stopped at step" in out and "search quiet: ring (smoke)" in out  # progress, table
    assert "report: " in out and "finished (search" in out
    assert not [line for line in THIRD_PARTY if line in console], console
    log = SearchFolder(tmp_path / "quiet").log.read_text()
    assert RAY_BOX in log and RAY_RESULTS in log
    assert sum(log.count(warning) for warning in OPTUNA_NO_TRIALS) == 3, log


def third_party_chatter() -> None:
    print("a library's print")
    print("a library's complaint", file=sys.stderr)
    logging.getLogger("ray.tune").warning("a library's log record")
    print_line("our progress line")
    print_warning("our warning")


def test_chatter_goes_to_the_log_and_with_verbose_to_the_console_too(tmp_path):
    for verbose in (False, True):
        log = tmp_path / f"verbose-{verbose}.log"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with chatter_to_log(log, verbose):
                third_party_chatter()
            print("after the block")
        theirs = ["a library's print", "a library's complaint", "a library's log record"]
        console = out.getvalue() + err.getvalue()
        if not verbose:
            assert out.getvalue() == "our progress line\nafter the block\n"
            assert err.getvalue() == "warning: our warning\n"
        assert out.getvalue().endswith("our progress line\nafter the block\n")
        assert all(line in log.read_text() for line in theirs)
        assert "our progress line" not in log.read_text() and "our warning" not in log.read_text()
        assert [line for line in theirs if line in console] == (theirs if verbose else [])


def test_a_log_that_cannot_be_written_leaves_the_chatter_on_the_console(tmp_path):
    """The log is for reading later; where it cannot be written (here: no such folder; a full
    disk alike) the search goes on and the console shows everything, as without a log."""
    log = tmp_path / "gone" / "search.log"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), chatter_to_log(log):
        third_party_chatter()
    assert out.getvalue() == "a library's print\nour progress line\n"
    assert "a library's complaint" in err.getvalue() and "a library's log record" in err.getvalue()
    assert not log.parent.exists()
