"""Open a search report in headless Chromium: fail on any console error, save a screenshot.

Talks to the browser over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so it needs nothing but a Chromium binary
(Debian: ``apt-get install chromium``).  Console errors, uncaught exceptions and failed loads
all count; the screenshot is of the whole page.  Also times writing the report and its size.

    uv run python benchmarks/report_browser.py results/hifigan-smoke/report.html --png shot.png
    uv run python benchmarks/report_browser.py --write hifigan-smoke --results results
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WIDTH = 1400


class Browser:
    """A headless Chromium driven over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        # the child's pipe ends, moved above fd 10 so that placing them on 3 and 4 clobbers none
        read_end, self._to_browser = os.pipe()
        self._from_browser, write_end = os.pipe()
        child_in = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(read_end)
        os.close(write_end)

        def wire() -> None:  # in the child, before exec: 3 and 4, inheritable
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", f"--user-data-dir={profile}", f"--window-size={WIDTH},900",
             "about:blank"],
            preexec_fn=wire, close_fds=False,  # our other pipe ends are close-on-exec
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Run one command and return its result; events met meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> None:
        """Read events until ``method`` arrives (or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout:.0f} s")
            self.events.append(self._read())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and browser log errors among ``events``."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a)) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            thrown = details.get("exception", {}).get("description", details["text"])
            found.append(f"exception: {thrown}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append("log: " + params["entry"]["text"])
    return found


def check(report: Path, png: Path, binary: str, settle_s: float) -> list[str]:
    """Load ``report``, save a full-page screenshot to ``png``; return the errors seen."""
    with tempfile.TemporaryDirectory() as profile:
        return _check(Browser(binary, Path(profile)), report, png, settle_s)


def _check(browser: Browser, report: Path, png: Path, settle_s: float) -> list[str]:
    try:
        targets = browser.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        session = browser.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        sid = session["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", sid)
        t0 = time.perf_counter()
        browser.send("Page.navigate", sid, url=report.resolve().as_uri())
        browser.wait_for("Page.loadEventFired", timeout=120)
        print(f"loaded in {time.perf_counter() - t0:.1f} s")
        time.sleep(settle_s)  # let plotly finish laying out responsive figures
        height = browser.send("Page.getLayoutMetrics", sid)["cssContentSize"]["height"]
        browser.send("Emulation.setDeviceMetricsOverride", sid, width=WIDTH,
                     height=int(height), deviceScaleFactor=1, mobile=False)  # fmt: skip
        time.sleep(settle_s)
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": int(height), "scale": 1}
        shot = browser.send(
            "Page.captureScreenshot", sid, format="png", captureBeyondViewport=True, clip=clip
        )
        png.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot {png} ({WIDTH} x {int(height)} px)")
        return errors(browser.events)
    finally:
        browser.close()


def write(name: str, results: str | None) -> Path:
    """Write the report of search ``name`` and print how long it took and its size."""
    t0 = time.perf_counter()
    from harness.files import results_root
    from harness.report import write_search_report
    from harness.results.folder import find_search

    folder = find_search(results_root(results), name)
    t1 = time.perf_counter()
    path = write_search_report(folder)
    t2 = time.perf_counter()
    size = path.stat().st_size / 2**20
    print(f"wrote {path}: {size:.1f} MiB in {t2 - t1:.1f} s ({t1 - t0:.1f} s of imports before)")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, help="report.html to open")
    parser.add_argument("--write", metavar="NAME", help="first write the report of search NAME")
    parser.add_argument("--results", help="results root for --write")
    parser.add_argument("--png", type=Path, help="screenshot file (default: beside the report)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to let figures draw")
    args = parser.parse_args()
    report = write(args.write, args.results) if args.write else args.report
    if report is None:
        parser.error("give a report.html or --write NAME")
    found = check(report, args.png or report.with_suffix(".png"), args.chromium, args.settle)
    for line in found:
        print(line, file=sys.stderr)
    print(f"{len(found)} console errors")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
