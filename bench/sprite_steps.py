"""What the sprite output steps cost per image: an opaque encode (A) against keying,
a palette, trim and checks (B), on the same 1024×1024 original drawn on a key colour.

Run: python bench/sprite_steps.py [rounds]. In process, interleaved A B A B, so both
see the same machine; prints min / median / max seconds per image. Goal: B under
0.5 s median for a 1024×1024 original (an apply of 100 sprites spends under a
minute on its output steps on one core).
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from nebula_build.outputs.encode import Encoding, render_checked
from nebula_build.outputs.keying import Keying

sys.path.insert(0, str(Path(__file__).parent))
from samples import Samples, spread

SIZE = 1024


def original() -> bytes:
    """A sprite on magenta with soft edges, like a model's answer."""
    big = Image.new("RGB", (SIZE * 2, SIZE * 2), (255, 0, 255))
    draw = ImageDraw.Draw(big)
    draw.ellipse((400, 300, 1650, 1800), fill=(60, 170, 90))
    draw.rectangle((800, 700, 1200, 1100), fill=(230, 200, 40))
    buffer = io.BytesIO()
    big.resize((SIZE, SIZE), Image.Resampling.LANCZOS).save(buffer, "PNG")
    return buffer.getvalue()


def timed(data: bytes, encoding: Encoding) -> float:
    started = time.perf_counter()
    render_checked(data, encoding)
    return time.perf_counter() - started


def main(rounds: int = 7) -> None:
    data = original()
    plain = Encoding("png", (SIZE, SIZE), texts=(("parameters", "x"),), checks=(("square", True),))
    sprite = Encoding(
        "png",
        (SIZE, SIZE),
        keying=Keying("#FF00FF"),
        steps=(("palette", 16), ("trim", True)),
        checks=(("alpha", "required"), ("max_colors", 16)),
    )
    times = Samples()
    for _ in range(rounds):
        times.add("A opaque encode", timed(data, plain))
        times.add("B key+palette+trim+checks", timed(data, sprite))
    print(f"{SIZE}x{SIZE} original, {rounds} rounds, seconds per image")
    for label, values in times.items():
        low, middle, high = spread(values)
        print(f"  {label:28} min {low:.3f}  median {middle:.3f}  max {high:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
