"""`validate` of manifests with masses of problems, two checkouts interleaved.

Each case is a manifest that fails with many problems of one kind (written once under
--keep or a temporary folder); each side's `nebula-build validate` of it is timed in
turn (A B, then B A, …) with GNU time: wall and CPU (user + system) seconds and peak MB,
min / median / max of `--runs`, beside the floor (tomllib's parse of the same text in a
fresh process). On a shared machine CPU seconds say more than wall.

- settings: N unknown keys in [backends.preview] (1,190,000 took 63 s and 2.2 GB)
- prompt: N images missing `prompt` (100,000 took 11.6 s)
- seed: N images with `seed = "x"`, the same wrong value in each

Usage: python bench/problem_bounds.py --baseline DIR [--candidate DIR] [--runs 5]
       [--only settings,prompt,seed] [--settings N] [--images N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compare import Side, run, turns
from samples import Samples, spread

HERE = Path(__file__).resolve().parents[1]
HEAD = """version = 1
max_images = 100000

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""
CASES = ("settings", "prompt", "seed")
PARSE = "import sys, tomllib; tomllib.loads(open(sys.argv[1], encoding='utf-8').read())"


def manifest(case: str, settings: int, images: int) -> str:
    if case == "settings":
        image = '\n[images.a]\nprompt = "a"\noutput = "out/a.png"\n\n[backends.preview]\n'
        return HEAD + image + "".join(f"k{n} = 1\n" for n in range(settings))
    if case == "prompt":
        return HEAD + "".join(f'\n[images.i{n}]\noutput = "out/i{n}.png"\n' for n in range(images))
    return HEAD + "".join(
        f'\n[images.i{n}]\nprompt = "p"\nseed = "x"\noutput = "out/i{n}.png"\n'
        for n in range(images)
    )


def shown(values: list[float], unit: str) -> str:
    low, middle, high = spread(values)
    return f"{low:.2f} / {middle:.2f} / {high:.2f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, default=HERE)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--settings", type=int, default=1_190_000)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    sides = [Side("baseline", args.baseline.resolve()), Side("candidate", args.candidate.resolve())]
    floor = Side("parse", HERE)
    with tempfile.TemporaryDirectory(prefix="bench-problems-") as scratch:
        for case in args.only.split(","):
            root = (args.keep or Path(scratch)) / f"{case}-{args.settings}-{args.images}"
            root.mkdir(parents=True, exist_ok=True)
            path = root / "images.toml"
            if not path.exists():
                path.write_text(manifest(case, args.settings, args.images), encoding="utf-8")
            walls, cpus, peaks = Samples(), Samples(), Samples()
            lines: dict[str, str] = {}
            for side in turns([*sides, floor], args.runs):
                command = [sys.executable, "-m", "nebula_build", "validate"]
                if side is floor:
                    command = [sys.executable, "-c", PARSE, str(path)]
                done = run(command, root, {**os.environ, "PYTHONPATH": str(side.code)})
                walls.add(side.label, done.wall)
                cpus.add(side.label, done.cpu)
                peaks.add(side.label, done.peak_mb)
                lines[side.label] = done.out.rstrip("\n").rpartition("\n")[2][:120]
            print(f"{case} ({path.stat().st_size / 1e6:.1f} MB)")
            for label, wall in walls.items():
                print(
                    f"  {label:9} wall {shown(wall, 's')}, cpu {shown(cpus[label], 's')}, "
                    f"peak {shown(peaks[label], 'MB')}  {lines[label]}"
                )


if __name__ == "__main__":
    main()
