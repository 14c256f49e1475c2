"""Reading another manifest's lock in the folder (state/siblings.py), as a plan that
removes or moves a file does: time and peak memory of a fresh process.

The lock beside is built as nebula-build writes one (state/lockfile.py): each image
with three earlier generations of 150-character prompts, a tenth of them with four
candidate draws; 100,000 such images are about 246 MiB. Each round runs one fresh
process per tree (this one, and each --baseline, a checkout of another version),
the order rotated every round; it prints min / median / max of --runs for the
read's time, and the process's peak memory (VmHWM) beside its size before the read.

Usage: python bench/sibling_locks.py [--images 50000] [--earlier 3] [--runs 5]
       [--baseline DIR ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from nebula_build.state import lockfile

HERE = Path(__file__).parents[1]
PROMPT = "a small fox sprite in a pixel-art forest at dusk, soft rim light, muted palette, "
#: one fresh process: argv[1] the project folder, argv[2] the tree it reads with; prints
#: seconds, files found, MB before the read and the process's peak MB
READ = """
import sys, time
from pathlib import Path
from nebula_build.state.project import Project
from nebula_build.state import siblings

def mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) // 1024

root = Path(sys.argv[1])
project = Project(root, root / "images.toml")
before = mb("VmRSS:")
started = time.perf_counter()
found = siblings._recorded_beside(project)
seconds = time.perf_counter() - started
assert siblings.__file__.startswith(sys.argv[2]), siblings.__file__
print(seconds, len(found), before, mb("VmHWM:"))
"""


def entry(n: int, earlier: int) -> lockfile.LockEntry:
    def key(kind: str, k: int = 0) -> str:
        return f"{n:016x}{k:08x}{kind:>8}".replace(" ", "0").ljust(64, "0")

    def params(k: int) -> dict[str, object]:
        prompt = f"{PROMPT}number {n}, take {k}"
        return {"height": 64, "prompt": prompt.ljust(150, "."), "width": 64, "seed": n}

    draws = tuple(
        lockfile.DrawRecord(key("draw", k), key("ddig", k)) for k in range(4 if n % 10 == 0 else 0)
    )
    history = tuple(
        lockfile.EarlierGeneration(
            generation_key=key("hist", k),
            digest=key("hdig", k),
            made="2026-12-01T12:00:00Z",
            backend="preview",
            model="black-forest-labs/FLUX.1-schnell",
            params=params(k),
        )
        for k in range(1, earlier + 1)
    )
    return lockfile.LockEntry(
        backend="preview",
        model="black-forest-labs/FLUX.1-schnell",
        output=f"out/{n // 1000:03}/sprite-{n:06}.png",
        digest=key("dig"),
        generation_key=key("gen"),
        output_key=key("out"),
        params=params(0),
        draws=draws,
        history=history,
    )


def write_project(root: Path, images: int, earlier: int = 3) -> int:
    """images.toml, other.toml, and other.lock of `images` entries with `earlier`
    generations each; its size."""
    (root / "images.toml").write_text("version = 1\n")
    (root / "other.toml").write_text("version = 1\n")
    lock = root / "other.lock"
    with lock.open("w", encoding="utf-8") as handle:
        handle.write(f"{lockfile.HEADER}version = {lockfile.LOCK_VERSION}\n")
        for n in range(images):
            handle.write(lockfile._table(f"sprite-{n:06}", entry(n, earlier)))
    return lock.stat().st_size


def read_once(tree: Path, root: Path) -> tuple[float, int, int, int]:
    done = subprocess.run(
        [sys.executable, "-c", READ, str(root), str(tree)],
        cwd=root,  # not this checkout: `-c` puts the working folder first on sys.path
        env={"PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, found, before, peak = done.stdout.split()
    return float(seconds), int(found), int(before), int(peak)


def _read_in_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(16 << 20):
            yield chunk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--earlier", type=int, default=3, help="generations kept per image")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, action="append", default=[])
    args = parser.parse_args()
    trees = [HERE, *args.baseline]
    with tempfile.TemporaryDirectory(prefix="bench-siblings-") as scratch:
        root = Path(scratch)
        size = write_project(root, args.images, args.earlier)
        lines = sum(chunk.count(b"\n") for chunk in _read_in_chunks(root / "other.lock"))
        print(
            f"other.lock: {args.images:,} images, {args.earlier} earlier generations each, "
            f"{size / (1 << 20):.0f} MiB, {lines:,} lines"
        )
        figures: dict[Path, list[tuple[float, int, int, int]]] = {tree: [] for tree in trees}
        for run in range(args.runs):
            for tree in trees[run % len(trees) :] + trees[: run % len(trees)]:
                figures[tree].append(read_once(tree, root))
        for tree, runs in figures.items():
            times = sorted(seconds for seconds, *_ in runs)
            found = {count for _, count, *_ in runs}
            before = max(mb for *_, mb, _ in runs)
            peaks = [peak for *_, peak in runs]
            print(
                f"{tree}: {times[0]:.2f} / {statistics.median(times):.2f} / {times[-1]:.2f} s, "
                f"files found {sorted(found)}, peak {min(peaks)}-{max(peaks)} MB "
                f"({before} MB before the read)"
            )


if __name__ == "__main__":
    main()
