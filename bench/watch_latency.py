"""Edit-to-image latency of `nebula-build watch` on the preview backend.

Saves a one-prompt edit to images.toml 20 times and times each save until the
new output file is complete (atomically renamed into place). Goal: median
<= 300 ms. For reference, watchfiles' own event latency here is ~72 ms with
default settings.

Usage: python bench/watch_latency.py [--edits 20] [--size 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANIFEST = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = {size}
height = {size}

[images.hero]
prompt = "a lighthouse, take {n}"
seed = 42
output = "img/hero.png"

[images.logo]
prompt = "a fox logo"
output = "img/logo.png"

[images.card]
prompt = "a paper crane"
output = "img/card.png"
"""


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def wait_for_change(path: Path, before: str | None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while digest(path) == before:
        if time.monotonic() > deadline:
            raise SystemExit("the output never changed: is watch running?")
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        manifest, output = root / "images.toml", root / "img/hero.png"
        manifest.write_text(MANIFEST.format(size=args.size, n=0))
        watch = subprocess.Popen(
            [sys.executable, "-m", "nebula_build", "watch"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_change(output, None, timeout=30)
            time.sleep(0.5)  # let the first round settle
            latencies = []
            for n in range(1, args.edits + 1):
                before = digest(output)
                saved = time.perf_counter()
                manifest.write_text(MANIFEST.format(size=args.size, n=n))
                wait_for_change(output, before)
                latencies.append(time.perf_counter() - saved)
                time.sleep(0.2)
        finally:
            watch.terminate()
            watch.wait()
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"{args.edits} edits, {args.size}x{args.size} preview: median "
        f"{statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms "
        f"(goal: median <= 300 ms)"
    )


if __name__ == "__main__":
    main()
