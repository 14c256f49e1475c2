"""How large a saved plan (`plan --out`) is, and what saving and checking it cost.

For a project of N new images (the largest plan: every image is a line to compare),
with names and outputs about 40 characters long under `--long-names`: the size of
the file, and, timed interleaved round after round (min / median / max of `--runs`):

- `plan` against `plan --out plan.json` (what writing the file costs);
- `apply --locked` against `apply --locked --plan plan.json`: both plan and stop
  before any generation (exit 2), the second after reading the file and comparing
  it with the plan made (what `--plan` costs an apply).

Usage: python bench/saved_plan.py [--sizes 1000 10000 100000] [--runs 5] [--long-names]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import HEADER, nebula_build, run_timed, spread, write_manifest


def write_long_manifest(root: Path, count: int) -> None:
    """Names and outputs about 40 characters long, as a game's sprites might be."""
    root.mkdir(parents=True, exist_ok=True)
    cap = f"max_images = {count}\n" if count > 10_000 else ""
    parts = [HEADER.format(max_images=cap)]
    for n in range(count):
        name = f"enemy-goblin-archer-walk-left-frame-{n:06}"
        parts.append(
            f'\n[images.{name}]\nprompt = "a goblin archer walking, frame {n}"\nseed = {n}\n'
            f'output = "assets/sprites/goblins/{n // 1000:03}/{name}.png"\n'
        )
    (root / "images.toml").write_text("".join(parts))


def bench(count: int, root: Path, runs: int, *, long_names: bool) -> None:
    if long_names:
        write_long_manifest(root, count)
    else:
        write_manifest(root, count)
    _, code, _ = run_timed(nebula_build("plan", "--out", "plan.json"), root)
    if code != 0:
        raise SystemExit(f"plan --out exited {code}")
    size = (root / "plan.json").stat().st_size
    commands = {
        "plan": nebula_build("plan"),
        "plan --out": nebula_build("plan", "--out", "plan.json"),
        "apply --locked": nebula_build("apply", "--locked"),
        "apply --locked --plan": nebula_build("apply", "--locked", "--plan", "plan.json"),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, int] = dict.fromkeys(commands, 0)
    for _ in range(runs):
        for name, command in commands.items():
            elapsed, code, peak = run_timed(command, root)
            if code not in (0, 2):
                raise SystemExit(f"{name} exited {code}")
            times[name].append(elapsed)
            peaks[name] = max(peaks[name], peak)
    print(f"{count:,} new images: plan.json {size / 2**20:.2f} MiB ({size / count:.0f} B/image)")
    print(f"  min / median / max of {runs}:")
    for name in commands:
        print(f"  {name:<22} {spread(times[name])}  peak {peaks[name]:4d} MB")
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"  --out adds {(median['plan --out'] - median['plan']) * 1000:.0f} ms, --plan adds "
        f"{(median['apply --locked --plan'] - median['apply --locked']) * 1000:.0f} ms (medians)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--long-names", action="store_true", help="40-character names")
    parser.add_argument("--keep", type=Path, help="build projects here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        for count in args.sizes:
            bench(count, base / f"saved-{count}", args.runs, long_names=args.long_names)


if __name__ == "__main__":
    main()
