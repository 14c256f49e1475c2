"""What a 10,000-row CSV adds to a `nebula-build plan` that finds nothing to do.

Two projects make the same 10,000 images (same prompts, same outputs): "rows"
declares them with `rows = "data/products.csv"`, "written" spells each one out in
images.toml. Their difference is what reading images from data costs. Goal: the
rows project's no-op plan adds at most 1.5x the CSV's own parse time (csv.reader
over the file, measured in this process) to the written one's.

Three paths, each process timed interleaved (rows, written, written, rows…) and
reported as min / median / max of `--runs` rounds; what rows adds is the median
of the paired differences (rows minus the written run beside it), which cancels
the drift of a busy machine better than a difference of medians:
- no-op: the snapshot of engine/noop.py answers from stats (the data file's
  signature is in it);
- spec cache: the snapshot removed, so the plan loads the cached specs, checks
  the CSV's digest (from the stat cache) and diffs against the lock;
- full: the spec cache removed too, so the CSV is parsed and every row resolved:
  the path a plan takes after an edit to the data.

Usage: python bench/rows_scale.py [--rows 10000] [--runs 15] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import HEADER, nebula_build, run_timed

RACY_SECONDS = 2.0  # engine/noop.py: files changed this recently get no snapshot
PATHS = ("no-op", "spec cache", "full")


def product(n: int) -> tuple[str, str, str, str, str]:
    return (f"sku-{n:05}", f"fox {n}", f"a tiny sprite of fox number {n}", f"{n % 97}.50", "3")


def write_projects(base: Path, rows: int) -> dict[str, Path]:
    data = io.StringIO()
    writer = csv.writer(data, lineterminator="\n")
    writer.writerow(["sku", "name", "description", "price", "stock"])
    writer.writerows(product(n) for n in range(rows))
    from_rows = base / "rows"
    (from_rows / "data").mkdir(parents=True, exist_ok=True)
    (from_rows / "data/products.csv").write_text(data.getvalue())
    (from_rows / "images.toml").write_text(
        HEADER + '\n[images.product]\nrows = "data/products.csv"\nid = "sku"\n'
        'prompt = "{name}: {description}"\noutput = "out/{sku}.png"\n'
    )
    written = base / "written"
    written.mkdir(parents=True, exist_ok=True)
    parts = [HEADER]
    for n in range(rows):
        sku, name, description, _, _ = product(n)
        parts.append(
            f'\n[images."product-{sku}"]\nprompt = "{name}: {description}"\n'
            f'output = "out/{sku}.png"\n'
        )
    (written / "images.toml").write_text("".join(parts))
    return {"rows": from_rows, "written": written}


def parse_time(path: Path, runs: int) -> list[float]:
    """The CSV's own parse time: read the file, csv.reader over every record."""
    times = []
    for _ in range(max(runs, 5)):
        started = time.perf_counter()
        with path.open(newline="", encoding="utf-8") as handle:
            for _ in csv.reader(handle):
                pass
        times.append(time.perf_counter() - started)
    return times


def spread(times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return f"{min(ms):7.1f} / {statistics.median(ms):7.1f} / {max(ms):7.1f} ms"


def prepare(projects: dict[str, Path]) -> None:
    for name, root in projects.items():
        started = time.perf_counter()
        _, code, _ = run_timed(nebula_build("apply", "-q"), root)
        if code != 0:
            raise SystemExit(f"setup apply of {name} failed")
        print(f"  setup apply ({name}): {time.perf_counter() - started:.1f} s")
    time.sleep(RACY_SECONDS + 0.1)
    for name, root in projects.items():
        run_timed(nebula_build("plan"), root)  # the full path, which leaves the snapshot
        if not (root / ".nebula-build/noop").exists():
            raise SystemExit(f"the warm-up plan of {name} left no snapshot")


def forget(root: Path, path: str) -> None:
    """Take the plan off its fast path: the no-op snapshot, and with "full" the specs."""
    if path in ("spec cache", "full"):
        (root / ".nebula-build/noop").unlink(missing_ok=True)
    if path == "full":
        (root / ".nebula-build/specs.json").unlink(missing_ok=True)


def bench(base: Path, rows: int, runs: int) -> None:
    projects = write_projects(base, rows)
    csv_path = projects["rows"] / "data/products.csv"
    print(f"{rows:,} rows, {csv_path.stat().st_size / 1e6:.2f} MB of CSV")
    prepare(projects)
    times = {(path, name): [] for path in PATHS for name in projects}
    for round_number in range(runs):
        # Which project goes first alternates: the process after a full plan (which
        # writes megabytes of caches) is slowed by the writes it follows.
        order = list(projects.items())[:: 1 if round_number % 2 == 0 else -1]
        for path in PATHS:
            for name, root in order:
                forget(root, path)
                elapsed, code, _ = run_timed(nebula_build("plan", "--detailed-exitcode"), root)
                if code != 0:
                    raise SystemExit(f"{path} plan of {name} exited {code}")
                times[path, name].append(elapsed)
    parse = parse_time(csv_path, runs)
    print(f"min / median / max of {runs}:")
    print(f"  csv parse    {spread(parse)}")
    for path in PATHS:
        for name in projects:
            print(f"  {path:<10} {name:<8} {spread(times[path, name])}")
    median_parse = statistics.median(parse)
    for path in PATHS:
        pairs = zip(times[path, "rows"], times[path, "written"], strict=True)
        added = statistics.median(rows - written for rows, written in pairs)
        verdict = "goal <= 1.5x" if path == "no-op" else "for reference"
        print(
            f"  {path:<10} rows adds {added * 1000:+7.1f} ms = "
            f"{added / median_parse:+.2f}x the parse time ({verdict})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="build the projects here and keep them")
    args = parser.parse_args()
    pyc = "without" if sys.flags.dont_write_bytecode else "with"
    print(f"no-op plans, whole processes, {pyc} .pyc files written for nebula-build's modules")
    with tempfile.TemporaryDirectory() as scratch:
        bench(args.keep or Path(scratch), args.rows, args.runs)


if __name__ == "__main__":
    main()
