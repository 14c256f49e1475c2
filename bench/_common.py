"""Helpers shared by the benchmarks: project builders and process timing."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = """version = 1
{max_images}
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64

[backends.preview]
concurrency = 4
"""


#: the floor a no-op plan is measured against: a Python process that parses the
#: manifest with tomllib and stats every output (argv[1]: the manifest)
FLOOR = """
import os, sys, tomllib
with open(sys.argv[1], "rb") as handle:
    images = tomllib.load(handle)["images"]
for image in images.values():
    os.stat(image["output"])
"""
#: engine/noop.py: files changed this recently get no snapshot
RACY_SECONDS = 2.0


def write_manifest(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    # above 10,000 images a manifest says how many it may declare (core/manifest.py)
    cap = f"max_images = {count}\n" if count > 10_000 else ""
    parts = [HEADER.format(max_images=cap)]
    for n in range(count):
        parts.append(
            f'\n[images.sprite-{n:05}]\nprompt = "a tiny sprite number {n} of a fox"\n'
            f'seed = {n}\noutput = "out/{n // 1000:02}/sprite-{n:05}.png"\n'
        )
    manifest = root / "images.toml"
    manifest.write_text("".join(parts))
    return manifest


#: GNU time, to read a child's peak memory: on Linux a process forked from this one
#: starts with this one's peak as its own (exec keeps it), so wait4's figure is
#: never below this benchmark's own size; one forked from `time` starts small
TIME = shutil.which("time")


#: said beside peak figures where GNU time is missing
PEAK_CAVEAT = "" if TIME else " (no GNU time: wait4's peak, at least this benchmark's own size)"


def run_timed(args: list[str], cwd: Path) -> tuple[float, int, int]:
    """(wall seconds, exit code, max RSS in MB) of one child process."""
    elapsed, code, peak, _ = run_output(args, cwd)
    return elapsed, code, peak


def run_output(args: list[str], cwd: Path) -> tuple[float, int, int, str]:
    """(wall seconds, exit code, max RSS in MB, standard output) of one child process;
    the output goes to a file, so the child never waits on a pipe."""
    with (
        tempfile.NamedTemporaryFile("r") as report,
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out,
    ):
        wrapped = [TIME, "-f", "%M", "-o", report.name, *args] if TIME else args
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        peak_kb = int(report.read().split()[-1]) if TIME else usage.ru_maxrss
        out.seek(0)
        return elapsed, process.returncode, peak_kb // 1024, out.read()


#: the `nebula-build` console script beside this interpreter: run as the user runs
#: it (`python -m` would put the project's folder on sys.path, and with it a
#: signature the no-op snapshot would check too)
SCRIPT = Path(sys.executable).with_name("nebula-build")
AS_SCRIPT = "import sys; from nebula_build.cli import main; sys.exit(main(sys.argv[1:]))"


def nebula_build(*args: str) -> list[str]:
    if SCRIPT.is_file():
        return [str(SCRIPT), *args]
    return [sys.executable, "-c", AS_SCRIPT, *args]


def spread(times: list[float]) -> str:
    """'min / median / max ms' of some timings in seconds."""
    ms = [t * 1000 for t in times]
    return f"{min(ms):7.1f} / {statistics.median(ms):7.1f} / {max(ms):7.1f} ms"
