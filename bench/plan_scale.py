"""How long a no-op `nebula-build plan` takes for 1k and 10k locked images.

Compared with a floor measured in the same run: a Python process that only
parses the same manifest with tomllib and stats every output. Goal at 10k:
plan <= 2x the floor and <= 0.5 s, peak memory <= 200 MB.

Usage: python bench/plan_scale.py [--sizes 1000 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_of, nebula_build, run_timed, write_manifest

FLOOR = """
import os, sys, tomllib
with open(sys.argv[1], "rb") as handle:
    images = tomllib.load(handle)["images"]
for image in images.values():
    os.stat(image["output"])
"""


def bench(count: int, root: Path) -> None:
    write_manifest(root, count)
    started = time.perf_counter()
    _, code, _ = run_timed(nebula_build("apply", "-q"), root)
    if code != 0:
        raise SystemExit("setup apply failed")
    setup = time.perf_counter() - started
    run_timed(nebula_build("plan"), root)  # warm the OS file cache and the stat index
    floor, floor_peak = median_of([sys.executable, "-c", FLOOR, "images.toml"], root)
    plan, plan_peak = median_of(nebula_build("plan", "--detailed-exitcode"), root)
    print(
        f"{count:>6} images  plan {plan * 1000:7.1f} ms  floor {floor * 1000:7.1f} ms  "
        f"ratio {plan / floor:4.2f}  plan peak {plan_peak:4d} MB  "
        f"(floor peak {floor_peak} MB; setup apply {setup:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--keep", type=Path, help="build projects here and keep them")
    args = parser.parse_args()
    print("no-op plan, median of 5 whole-process runs")
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        for count in args.sizes:
            bench(count, base / f"plan-{count}")


if __name__ == "__main__":
    main()
