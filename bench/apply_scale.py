"""A first apply of 1k and 10k 64x64 images on the preview backend: time and memory.

For each size: wall time and per-image cost, peak memory (max RSS), the share
of the run spent rewriting images.lock, and the peak of `nebula-build plan` on
the same fresh project (prepare + plan alone: the floor apply's peak stands on).
Each figure is min / median / max of `--runs` runs. Goals (issue 16): peak
memory of a 100k apply <= 400 MB, per-image cost at 100k <= 1.2x that at 1k,
lock rewrites a few percent of the run.

`--baseline DIR` runs another checkout (`git archive main | tar -x -C DIR`)
interleaved with this one, run for run (A B A B ...), so both see the same
machine. 100k takes minutes: `--sizes 100000 --runs 1`.

Usage: python bench/apply_scale.py [--sizes 1000 10000] [--runs 5] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_manifest

#: `nebula-build apply` with images.lock's rewrites timed (any version: `_rewrite` is old)
DRIVER = """
import atexit, json, os, sys, time
from nebula_build.state import lockfile
stats = {"rewrites": 0, "seconds": 0.0}
inner = lockfile.LockWriter._rewrite
def timed(self, *args, **kwargs):
    started = time.perf_counter()
    try:
        return inner(self, *args, **kwargs)
    finally:
        stats["rewrites"] += 1
        stats["seconds"] += time.perf_counter() - started
lockfile.LockWriter._rewrite = timed
def save():
    with open(os.environ["APPLY_SCALE_STATS"], "w") as handle:
        json.dump(stats, handle)
atexit.register(save)
from nebula_build.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)
    share: list[float] = field(default_factory=list)
    rewrites: list[int] = field(default_factory=list)
    plan_peak: list[float] = field(default_factory=list)


def spread(values: list[float], form: str = "{:.2f}") -> str:
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(form.format(v) for v in (low, mid, high))


def run(
    args: list[str], root: Path, code_path: Path, stats: Path | None = None
) -> tuple[float, float]:
    """(wall seconds, max RSS in MB) of one child process; exits on a failure."""
    env = dict(os.environ, PYTHONPATH=str(code_path))
    if stats is not None:
        env["APPLY_SCALE_STATS"] = str(stats)
    started = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args[-2:])} failed in {root} ({code_path})")
    return elapsed, usage.ru_maxrss / 1024


def project(root: Path, count: int) -> None:
    """`count` images; a manifest of more than 10,000 says so (`max_images`, which
    `write_manifest` sets)."""
    write_manifest(root, count)


def fresh(root: Path) -> None:
    """The project as before its first apply: no outputs, no lock, no state."""
    for name in ("out", ".nebula-build"):
        shutil.rmtree(root / name, ignore_errors=True)
    (root / "images.lock").unlink(missing_ok=True)


def once(root: Path, code_path: Path, runs: Runs) -> None:
    fresh(root)
    _, plan_peak = run([sys.executable, "-m", "nebula_build", "plan"], root, code_path)
    fresh(root)
    stats = root.parent / f"{root.name}-stats.json"
    wall, peak = run([sys.executable, "-c", DRIVER, "apply", "-q"], root, code_path, stats)
    rewrites = json.loads(stats.read_text())
    runs.wall.append(wall)
    runs.peak.append(peak)
    runs.plan_peak.append(plan_peak)
    runs.share.append(rewrites["seconds"] / wall)
    runs.rewrites.append(rewrites["rewrites"])


def report(label: str, count: int, runs: Runs) -> None:
    per_image = [wall / count * 1000 for wall in runs.wall]
    print(
        f"{label:>9} {count:>7} images  wall {spread(runs.wall, '{:.1f}')} s  "
        f"per image {spread(per_image)} ms  peak {spread(runs.peak, '{:.0f}')} MB  "
        f"plan peak {spread(runs.plan_peak, '{:.0f}')} MB  lock rewrites "
        f"{spread([s * 100 for s in runs.share], '{:.1f}')} % of the run "
        f"({spread([float(r) for r in runs.rewrites], '{:.0f}')} rewrites)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout, run interleaved")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    versions = {"this": here}
    if args.baseline is not None:
        versions = {"baseline": args.baseline.resolve(), "this": here}
    print(
        f"min / median / max of {args.runs} runs; PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    per_image: dict[str, dict[int, float]] = {label: {} for label in versions}
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.sizes:
            root = Path(scratch) / f"apply-{count}"
            project(root, count)
            results = {label: Runs() for label in versions}
            for _ in range(args.runs):
                for label, code_path in versions.items():
                    once(root, code_path, results[label])
            for label, runs in results.items():
                report(label, count, runs)
                per_image[label][count] = statistics.median(runs.wall) / count
    for label, costs in per_image.items():
        if len(costs) > 1:
            small, large = min(costs), max(costs)
            print(
                f"{label}: per-image cost at {large} vs {small}: "
                f"{costs[large] / costs[small]:.2f}x (goal <= 1.2x at 100k vs 1k)"
            )


if __name__ == "__main__":
    main()
