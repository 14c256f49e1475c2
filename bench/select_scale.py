"""How long `nebula-build validate` takes on a hostile atlas: a 10,000-image matrix and
an atlas whose `images` lists 3,000 wildcard patterns (`m[*,vN]`, 2 images each), before and after
`core/selection.py` indexed the names (review finding 2).

Since the fix an atlas lists at most 1,000 entries, so the "after" side is timed on
1,000 distinct patterns (the most a manifest can now ask for) and on the attacker's
3,000 (refused, with one line, before any matching). The "before" side is another
checkout (`--before`, default /work/main), run with its own code on PYTHONPATH.
Processes are interleaved, round after round, each without the spec cache; each
figure is min / median / max. The figures include compiling the modules where no
.pyc exists (PYTHONDONTWRITEBYTECODE), the same for both sides.

Usage: python bench/select_scale.py [--before /work/main] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import AS_SCRIPT, HEADER, spread

AFTER = Path(__file__).resolve().parents[1]


def write(root: Path, patterns: int) -> None:
    """A 2 × 5,000 matrix (10,000 images) and an atlas of `patterns` entries, each
    `m[*,vN]`: every row's image of one value."""
    root.mkdir(parents=True)
    values = ", ".join(f'"v{i}"' for i in range(5000))
    listed = ", ".join(f'"m[*,v{i}]"' for i in range(patterns))
    (root / "images.toml").write_text(
        HEADER.format(max_images="")
        + f'\n[images.m]\nmatrix = {{ k = ["a", "b"], v = [{values}] }}\n'
        + 'prompt = "{k} {v}"\noutput = "m/{k}-{v}.png"\n'
        + f'\n[atlases.sheet]\nimages = [{listed}]\noutput = "sheet.png"\n'
    )


def timed(code: Path, root: Path) -> tuple[float, int]:
    """(wall seconds, exit code) of `validate` with `code`'s nebula_build, its spec
    cache removed first (a cached resolution would skip the selection timed here)."""
    shutil.rmtree(root / ".nebula-build", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", AS_SCRIPT, "validate"],
        cwd=root,
        env=env,
        capture_output=True,
        check=False,
    )
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=Path("/work/main"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cases = {
        "before, 3,000 patterns": (args.before, 3000),
        "before, 1,000 patterns": (args.before, 1000),
        "after, 1,000 patterns": (AFTER, 1000),
        "after, 3,000 patterns (refused)": (AFTER, 3000),
        "after, 1 pattern": (AFTER, 1),
    }
    with tempfile.TemporaryDirectory() as folder:
        roots = {}
        for name, (_, patterns) in cases.items():
            roots[name] = Path(folder) / f"p{len(roots)}"
            write(roots[name], patterns)
        times: dict[str, list[float]] = {name: [] for name in cases}
        codes: dict[str, set[int]] = {name: set() for name in cases}
        for _ in range(args.runs):
            for name, (code, _) in cases.items():
                elapsed, exit_code = timed(code, roots[name])
                times[name].append(elapsed)
                codes[name].add(exit_code)
    for name in cases:
        print(f"{name:34} {spread(times[name])}  exit {sorted(codes[name])}")


if __name__ == "__main__":
    main()
