"""How long a no-op `nebula-build plan` takes for 1k and 10k locked images.

Compared with a floor measured in the same run: a Python process that only
parses the same manifest with tomllib and stats every output. Goal: the no-op
plan (answered from the snapshot of engine/noop.py) at 10k <= 1.2x the floor,
at 1k <= 1.5x, peak memory <= 150 MB.

Every process is timed interleaved with the others (floor, plan, full plan,
interpreter, imports; round after round), and each figure is min / median / max
of `--runs` rounds. "full plan" is the same command with the snapshot removed:
the path a plan takes after any edit. The split shows where a no-op plan's time
goes: starting Python, importing what it needs, the work.

Usage: python bench/plan_scale.py [--sizes 1000 10000] [--runs 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import FLOOR, RACY_SECONDS, nebula_build, run_timed, spread, write_manifest

IMPORTS = "from nebula_build.cli import main"


def bench(count: int, root: Path, runs: int) -> None:
    write_manifest(root, count)
    started = time.perf_counter()
    _, code, _ = run_timed(nebula_build("apply", "-q"), root)
    if code != 0:
        raise SystemExit("setup apply failed")
    setup = time.perf_counter() - started
    time.sleep(RACY_SECONDS + 0.1)
    run_timed(nebula_build("plan"), root)  # the full path, which leaves the snapshot
    snapshot = root / ".nebula-build" / "noop"
    if not snapshot.exists():
        raise SystemExit("the warm-up plan left no snapshot")
    commands = {
        "floor": [sys.executable, "-c", FLOOR, "images.toml"],
        "plan": nebula_build("plan", "--detailed-exitcode"),
        "full plan": nebula_build("plan", "--detailed-exitcode"),
        "python": [sys.executable, "-c", "pass"],
        "imports": [sys.executable, "-c", IMPORTS],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, int] = dict.fromkeys(commands, 0)
    for _ in range(runs):
        for name, command in commands.items():
            if name == "full plan":
                snapshot.unlink()
            elapsed, code, peak = run_timed(command, root)
            if code not in (0, 2):
                raise SystemExit(f"{name} exited {code}")
            times[name].append(elapsed)
            peaks[name] = max(peaks[name], peak)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{count:,} images (setup apply {setup:.1f} s), min / median / max of {runs}:")
    for name in ("plan", "floor", "full plan"):
        print(f"  {name:<10} {spread(times[name])}  peak {peaks[name]:4d} MB")
    print(
        f"  no-op plan / floor: {median['plan'] / median['floor']:.2f}x   "
        f"full plan / floor: {median['full plan'] / median['floor']:.2f}x"
    )
    start, imports, plan = median["python"], median["imports"], median["plan"]
    print(
        f"  no-op plan split: Python start {start * 1000:.1f} ms, imports "
        f"{(imports - start) * 1000:.1f} ms, the work {(plan - imports) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build projects here and keep them")
    args = parser.parse_args()
    pyc = "without" if sys.flags.dont_write_bytecode else "with"
    print(f"no-op plan, whole processes, {pyc} .pyc files written for nebula-build's modules")
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        for count in args.sizes:
            bench(count, base / f"plan-{count}", args.runs)


if __name__ == "__main__":
    main()
