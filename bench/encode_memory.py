"""Peak memory of an apply whose outputs are large sprites, two checkouts interleaved.

A project of `--images` preview images resized to `--side`² with `pad` and `extrude`
is applied from nothing (a fresh folder per run, so every run generates and encodes
each image), by the baseline and the candidate in turn (A B, then B A, …), each timed
with GNU time: wall seconds and peak MB, min / median / max of `--runs`. Eight 8192²
sprites with pad 256 and extrude 64 took 8 GB when their encodes overlapped.

Usage: python bench/encode_memory.py --baseline DIR [--candidate DIR] [--runs 3]
       [--images 4] [--side 8192]
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


def manifest(images: int, side: int) -> str:
    names = ", ".join(f'"{n}"' for n in range(images))
    return f"""version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 1024
height = 1024
background = "transparent"

[images.s]
prompt = "a sprite {{n}}"
matrix = {{ n = [{names}] }}
resize = [{side}, {side}]
pad = 256
extrude = 64
output = "sprites/s{{n}}.png"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, default=HERE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--side", type=int, default=8192)
    args = parser.parse_args()
    sides = [Side("baseline", args.baseline.resolve()), Side("candidate", args.candidate.resolve())]
    walls, peaks = Samples(), Samples()
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as scratch:
        for number, side in enumerate(turns(sides, args.runs)):
            root = Path(scratch) / f"{side.label}-{number}"
            root.mkdir()
            (root / "images.toml").write_text(manifest(args.images, args.side), encoding="utf-8")
            command = [sys.executable, "-m", "nebula_build", "apply", "-q"]
            done = run(command, root, {**os.environ, "PYTHONPATH": str(side.code)})
            if done.code != 0:
                raise SystemExit(f"{side.label}: apply exited {done.code}: {done.out[-2000:]}")
            walls.add(side.label, done.wall)
            peaks.add(side.label, done.peak_mb)
    print(f"{args.images} sprites of {args.side}² with pad 256 and extrude 64")
    for label, wall in walls.items():
        low, middle, high = spread(wall)
        plow, pmiddle, phigh = spread(peaks[label])
        print(
            f"  {label:9} wall {low:.1f} / {middle:.1f} / {high:.1f} s, "
            f"peak {plow:.0f} / {pmiddle:.0f} / {phigh:.0f} MB"
        )


if __name__ == "__main__":
    main()
