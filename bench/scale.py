"""Every figure of issue 16 (100,000 images on one machine), beside its goal.

For each size (1k and 10k; 100k with --100k, which takes many minutes) it builds
a preview project and measures, in this order:

- first apply: wall, per-image cost, peak memory
- no-op plan, status and apply (the snapshot of engine/noop.py), interleaved with
  the floor (a Python process that parses the manifest with tomllib and stats
  every output; mostly the parse, which the snapshot skips by design) round
  after round, the order rotated each round (whichever runs first warms the
  page cache for the others): min / median / max of --runs, peak memory; each
  answer is checked to say there is nothing to do, not only by its exit code
- full plan after an edit (one image's prompt changed each round)
- lock read (cold: the TOML; warm: the sealed snapshot) and rewrite, timed in
  this process with state/lockfile.py, per entry; the periodic rewrite's share
  of an apply, bounded by LockWriter's rule (a rewrite at most every
  max(min_interval, its cost / max_share))
- watch single-edit latency and gallery page-open time, from the companion
  modules below (reported as not measured where they are missing)

Projects can be kept and reused with --keep DIR (a project found there already
applied is reused: its first-apply figures are then not measured).

Usage: python bench/scale.py [--sizes 1000 10000] [--100k] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    FLOOR,
    PEAK_CAVEAT,
    RACY_SECONDS,
    nebula_build,
    run_output,
    run_timed,
    spread,
    write_manifest,
)

BENCH = Path(__file__).parent

#: sections other modules provide: (label, module, function, goal); each function
#: takes (project root, image count, runs) and returns timings in seconds.
COMPANIONS = (
    ("watch: one prompt edited, saved to output", "watch_latency", "edit_latency", "<= 300 ms"),
    ("gallery: page open to first cards", "gallery_open", "page_open", "< 2000 ms"),
)
NOOP_COMMANDS = {
    "floor": [sys.executable, "-c", FLOOR, "images.toml"],
    "plan": nebula_build("plan", "--detailed-exitcode"),
    "status": nebula_build("status", "--detailed-exitcode"),
    "apply": nebula_build("apply", "-q"),
}
#: what each no-op answer's last line must say (the floor prints nothing)
NOOP_SAYS = {"floor": "", "plan": "No changes", "status": "up to date", "apply": "No changes"}


def section(title: str) -> None:
    print(f"\n  {title}")


def first_apply(count: int, root: Path) -> float | None:
    """The first apply's wall seconds per image (None where a kept project is reused)."""
    section("first apply (goals at 100k: peak <= 400 MB, per image <= 1.2x that at 1k)")
    if (root / "images.lock").exists():
        print("    reused a project applied earlier: not measured in this run")
        return None
    write_manifest(root, count)
    wall, code, peak = run_timed(nebula_build("apply", "-q"), root)
    if code != 0:
        raise SystemExit(f"the first apply of {count} images exited {code}")
    print(
        f"    wall {wall:7.1f} s   per image {wall / count * 1000:6.2f} ms   "
        f"peak {peak} MB{PEAK_CAVEAT}"
    )
    return wall / count


def noop_commands(root: Path, runs: int) -> None:
    section("no-op plan / status / apply (goals at 100k: <= 1.0x floor, peak <= 250 MB)")
    time.sleep(RACY_SECONDS + 0.1)
    run_timed(nebula_build("plan"), root)  # the full path, which leaves the snapshot
    if not (root / ".nebula-build" / "noop").exists():
        raise SystemExit("the warm-up plan left no snapshot")
    times: dict[str, list[float]] = {name: [] for name in NOOP_COMMANDS}
    peaks = dict.fromkeys(NOOP_COMMANDS, 0)
    names = list(NOOP_COMMANDS)
    for round_number in range(runs):
        turn = round_number % len(names)
        for name in names[turn:] + names[:turn]:
            elapsed, code, peak, out = run_output(NOOP_COMMANDS[name], root)
            last = out.rstrip("\n").rpartition("\n")[2]
            if code != 0 or NOOP_SAYS[name] not in last:
                raise SystemExit(f"no-op {name} exited {code} saying {last!r}")
            times[name].append(elapsed)
            peaks[name] = max(peaks[name], peak)
    floor = statistics.median(times["floor"])
    for name, values in times.items():
        ratio = "" if name == "floor" else f"   {statistics.median(values) / floor:.2f}x floor"
        print(f"    {name:<7} {spread(values)}   peak {peaks[name]:4d} MB{ratio}{PEAK_CAVEAT}")


def plan_after_edit(root: Path, runs: int) -> None:
    section("full plan after an edit (one image's prompt; no goal, for scale)")
    manifest = root / "images.toml"
    original = manifest.read_text()
    times, peak = [], 0
    try:
        for n in range(runs):
            manifest.write_text(original.replace("number 0 of", f"number 0 (take {n}) of", 1))
            elapsed, code, used = run_timed(nebula_build("plan", "--detailed-exitcode"), root)
            if code != 2:
                raise SystemExit(f"the plan after an edit exited {code}, not 2")
            times.append(elapsed)
            peak = max(peak, used)
    finally:
        manifest.write_text(original)
    print(f"    plan    {spread(times)}   peak {peak:4d} MB{PEAK_CAVEAT}")


def lock_times(root: Path, runs: int) -> tuple[float, float]:
    """(read, rewrite) median seconds per entry of the project's lock, in this process."""
    from nebula_build.state import lockfile
    from nebula_build.state.project import Project

    section("lock read and rewrite (goal: linear; periodic rewrite a few % of an apply)")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        shutil.copyfile(root / "images.toml", copy / "images.toml")
        shutil.copyfile(root / "images.lock", copy / "images.lock")
        project = Project(copy, copy / "images.toml")
        entries = lockfile.read(project)
        cold, warm, rewrite = [], [], []
        for _ in range(runs):
            project.lock_snapshot_path.unlink(missing_ok=True)
            cold.append(timed(lambda: lockfile.read(project)))
            warm.append(timed(lambda: lockfile.read(project)))
            project.lock_path.unlink()  # write() skips a lock whose text is unchanged
            rewrite.append(timed(lambda: lockfile.write(project, entries)))
    count = len(entries)
    print(f"    read, cold (TOML)     {spread(cold)}   {per_entry(cold, count)}")
    print(f"    read, warm (snapshot) {spread(warm)}   {per_entry(warm, count)}")
    print(f"    rewrite               {spread(rewrite)}   {per_entry(rewrite, count)}")
    cost = statistics.median(rewrite)
    writer = lockfile.LockWriter
    interval = max(_default(writer, "min_interval"), cost / _default(writer, "max_share"))
    share = cost / (cost + interval)
    print(f"    periodic rewrite during an apply: at most {share:.1%} of the run (bound)")
    return statistics.median(cold) / count, cost / count


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def per_entry(times: list[float], count: int) -> str:
    return f"{statistics.median(times) / count * 1e6:6.1f} us per entry"


def _default(cls: type, name: str) -> float:
    """A keyword argument's default in `cls.__init__`."""
    import inspect

    return float(inspect.signature(cls).parameters[name].default)


def companions(root: Path, count: int, runs: int) -> None:
    for label, module, function, goal in COMPANIONS:
        section(f"{label} (goal: {goal})")
        companion = importlib.import_module(module)
        unavailable = getattr(companion, "unavailable", lambda: None)()
        if unavailable is not None:
            print(f"    not measured ({unavailable})")
            continue
        print(f"    {spread(getattr(companion, function)(root, count, runs))}")


def bench(count: int, root: Path, runs: int) -> dict[str, float | None]:
    print(f"\n{count:,} images ({root})")
    apply = first_apply(count, root)
    noop_commands(root, runs)
    plan_after_edit(root, runs)
    read, rewrite = lock_times(root, runs)
    companions(root, count, runs)
    return {"apply": apply, "read": read, "rewrite": rewrite}


def ratios(figures: dict[int, dict[str, float | None]]) -> None:
    """The per-image and per-entry costs of the largest size over the smallest."""
    if len(figures) < 2:
        return
    small, large = min(figures), max(figures)
    print(f"\n{large:,} vs {small:,} images, per image / per entry:")
    for name, goal in (("apply", "<= 1.2x"), ("read", "~1.0x, linear"), ("rewrite", "~1.0x")):
        before, after = figures[small][name], figures[large][name]
        shown = "not measured" if before is None or after is None else f"{after / before:.2f}x"
        print(f"  {name:<8} {shown}   (goal: {goal})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--100k", dest="large", action="store_true", help="add 100,000 images")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build projects here, keep and reuse them")
    args = parser.parse_args()
    sizes = sorted({*args.sizes, *([100_000] if args.large else [])})
    pyc = "without" if sys.flags.dont_write_bytecode else "with"
    print(f"issue 16 figures, whole processes, {pyc} .pyc files written; min / median / max")
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        figures = {count: bench(count, base / f"scale-{count}", args.runs) for count in sizes}
    ratios(figures)


if __name__ == "__main__":
    main()
