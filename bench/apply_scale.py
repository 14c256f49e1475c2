"""Apply 1k and 10k 64x64 images from scratch on the preview backend.

Prints wall time and per-image cost, and the per-image cost of the preview
render alone, so the engine's own overhead per image shows. Goal: per-image
cost at 10k within 1.5x of 1k (linear), engine overhead under 2 ms per image.

Usage: python bench/apply_scale.py [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import nebula_build, run_timed, write_manifest

from nebula_build.backends.preview import render
from nebula_build.plugin import GenerationRequest


def render_cost(samples: int = 500) -> float:
    started = time.perf_counter()
    for n in range(samples):
        render(
            GenerationRequest(
                image_name=f"sprite-{n:05}",
                generation_key=f"{n:064x}",
                model="black-forest-labs/FLUX.1-schnell",
                prompt=f"a tiny sprite number {n} of a fox",
                width=64,
                height=64,
                seed=n,
            )
        )
    return (time.perf_counter() - started) / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    render_alone = render_cost()
    print(f"preview render alone: {render_alone * 1000:.2f} ms per 64x64 image")
    per_image = {}
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.sizes:
            root = Path(scratch) / f"apply-{count}"
            write_manifest(root, count)
            wall, code, peak = run_timed(nebula_build("apply", "-q"), root)
            if code != 0:
                raise SystemExit(f"apply of {count} failed")
            per_image[count] = wall / count
            print(
                f"{count:>6} images  wall {wall:6.2f} s  per image "
                f"{per_image[count] * 1000:5.2f} ms  engine overhead "
                f"{(per_image[count] - render_alone) * 1000:5.2f} ms  peak {peak} MB"
            )
    if len(per_image) > 1:
        small, large = min(per_image), max(per_image)
        print(f"per-image cost {large} vs {small}: {per_image[large] / per_image[small]:.2f}x")


if __name__ == "__main__":
    main()
