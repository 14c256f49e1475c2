"""Two checkouts side by side, interleaved, over the figures of docs/performance.md.

For each size it takes a project of 64x64 preview images that the baseline applied
(bench/_common.py's write_manifest; `--keep DIR` keeps and reuses it), gives each side
its own copy, and checks that the candidate's first plan of it says "No changes" (the
image keys are stable). Then, each figure round after round, the baseline and the
candidate in turn (A B, then B A, …), each with its own tree on PYTHONPATH:

- noop: no-op `plan`, `status` and `apply` (the snapshot of engine/noop.py), with the
  floor (tomllib parse + a stat per output) in the same rounds
- actions: no-op `plan` as a GitHub Actions step runs it (`GITHUB_ACTIONS=true`,
  `GITHUB_STEP_SUMMARY` a temp file, checked to say "No changes" after each run),
  with the plain no-op `plan` in the same rounds
- cold: `plan` with the no-op snapshot removed (plan_scale.py's "full plan")
- edit: `plan` after one image's prompt changed (scale.py's "full plan after an edit")
- lock: the lock read in a fresh process, cold (the TOML) and warm (the sealed
  snapshot), and its rewrite (scale.py's lock section)
- load: the manifest read, parsed and validated (`core.manifest.load`), then resolved,
  in a fresh process
- watch: bench/watch_latency.py's save of a one-prompt edit → its new output, each
  side's copy kept between runs (so only its first run applies anything)

Whole processes are timed with GNU time (wall, peak, user + system CPU); in-process
figures are timed by the child. Figures are min / median / max of `--runs`.

Usage: python bench/compare.py --baseline DIR [--candidate DIR] [--sizes 10000 100000]
       [--runs 5] [--keep DIR] [--only noop,actions,cold,edit,lock,load,watch] [--edits 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import FLOOR, RACY_SECONDS, TIME, nebula_build, write_manifest
from samples import Samples, spread

HERE = Path(__file__).resolve().parents[1]
PHASES = ("noop", "actions", "cold", "edit", "lock", "load", "watch")
NOOP_SAYS = {"plan": "No changes", "status": "up to date", "apply": "No changes"}

#: run in a fresh process per side: the lock of argv[1]'s project, read and rewritten
LOCK_TIMES = """
import json, shutil, sys, tempfile, time
from pathlib import Path
from nebula_build.state import lockfile
from nebula_build.state.project import Project
root = Path(sys.argv[1])
with tempfile.TemporaryDirectory(prefix="bench-lock-") as scratch:
    copy = Path(scratch)
    for name in ("images.toml", "images.lock"):
        shutil.copyfile(root / name, copy / name)
    project = Project(copy, copy / "images.toml")
    started = time.perf_counter()
    entries = lockfile.read(project)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    lockfile.read(project)
    warm = time.perf_counter() - started
    project.lock_path.unlink()
    started = time.perf_counter()
    lockfile.write(project, entries)
    rewrite = time.perf_counter() - started
print(json.dumps({"cold": cold, "warm": warm, "rewrite": rewrite, "entries": len(entries)}))
"""

#: run in a fresh process per side: argv[1] loaded, then resolved
LOAD_TIMES = """
import json, sys, time
from pathlib import Path
from nebula_build.core.manifest import load
from nebula_build.core.resolve import resolve
from nebula_build.plugin.manager import load_registry
registry = load_registry()
started = time.perf_counter()
manifest = load(Path(sys.argv[1]))
loaded = time.perf_counter() - started
started = time.perf_counter()
resolve(manifest, registry, lambda path: None)
resolved = time.perf_counter() - started
print(json.dumps({"load": loaded, "resolve": resolved, "images": len(manifest.model.images)}))
"""


@dataclass(frozen=True)
class Side:
    label: str
    code: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.code)}


@dataclass(frozen=True)
class Run:
    wall: float
    code: int
    peak_mb: int
    cpu: float
    out: str


@dataclass
class Figure:
    """One figure's samples, by side label."""

    name: str
    goal: str
    unit: str = "ms"
    samples: Samples = field(default_factory=Samples)

    def add(self, label: str, value: float) -> None:
        self.samples.add(label, value)


def run(args: list[str], cwd: Path, env: dict[str, str]) -> Run:
    """One child process: wall seconds, exit code, peak MB, CPU seconds, stdout."""
    with (
        tempfile.NamedTemporaryFile("r", prefix="bench-time-") as report,
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out,
    ):
        wrapped = [TIME, "-f", "%M %U %S", "-o", report.name, *args] if TIME else args
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if TIME:
            peak_kb, user, system = report.read().split()[-3:]
            peak, cpu = int(peak_kb) // 1024, float(user) + float(system)
        else:
            peak, cpu = usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime
        out.seek(0)
        return Run(wall, os.waitstatus_to_exitcode(status), peak, cpu, out.read())


def in_child(code: str, argument: Path, side: Side) -> dict[str, float]:
    """The JSON a `python -P -c code argument` child prints, run with `side`'s tree."""
    done = run([sys.executable, "-P", "-c", code, str(argument)], Path("/"), side.env())
    if done.code != 0:
        raise SystemExit(f"{side.label}: child exited {done.code}: {done.out[-2000:]}")
    return dict(json.loads(done.out.strip().splitlines()[-1]))


def turns(sides: list[Side], runs: int) -> Iterator[Side]:
    """The sides, `runs` rounds, the order turned each round."""
    for number in range(runs):
        yield from sides if number % 2 == 0 else sides[::-1]


def last_line(text: str) -> str:
    return text.rstrip("\n").rpartition("\n")[2]


def prepare(count: int, keep: Path, sides: list[Side]) -> dict[str, Path]:
    """Each side's copy of a project of `count` images the baseline applied."""
    applied = keep / f"base-{count}"
    if not (applied / "images.lock").exists():
        write_manifest(applied, count)
        print(f"  applying {count:,} images with {sides[0].label}'s code …", flush=True)
        done = run(nebula_build("apply", "-q"), applied, sides[0].env())
        if done.code != 0:
            raise SystemExit(f"the baseline's apply exited {done.code}: {done.out[-2000:]}")
        print(f"  applied in {done.wall:.1f} s, peak {done.peak_mb} MB", flush=True)
    copies = {}
    for side in sides:
        copy = keep / f"{side.label}-{count}"
        if not copy.exists():
            shutil.copytree(applied, copy, symlinks=True)
        copies[side.label] = copy
    time.sleep(RACY_SECONDS + 0.1)
    for side in sides:  # the full path, which leaves the snapshot; keys must be stable
        done = run(nebula_build("plan", "--detailed-exitcode"), copies[side.label], side.env())
        if done.code != 0 or "No changes" not in last_line(done.out):
            raise SystemExit(
                f"{side.label}'s first plan of the baseline's project exited {done.code}: "
                f"{done.out[-2000:]}"
            )
    return copies


def noop(count: int, copies: dict[str, Path], sides: list[Side], runs: int) -> list[Figure]:
    goal = "<= 1.0x floor at 100k" if count >= 100_000 else "<= 1.2x floor (10k)"
    figures = {name: Figure(f"no-op {name}", goal) for name in NOOP_SAYS}
    cpu = {name: Figure(f"no-op {name} CPU", "—") for name in NOOP_SAYS}
    peaks = {name: Figure(f"no-op {name} peak", "<= 250 MB", "MB") for name in NOOP_SAYS}
    floor = Figure("floor (tomllib + stats)", "—")
    floor_code = [sys.executable, "-c", FLOOR, "images.toml"]
    for number, side in enumerate(turns(sides, runs)):
        root = copies[side.label]
        if number % len(sides) == 0:
            floor.add("floor", run(floor_code, root, side.env()).wall)
        for name, says in NOOP_SAYS.items():
            if not (root / ".nebula-build" / "noop").exists():
                raise SystemExit(f"{side.label}: no no-op snapshot before {name}")
            done = run(
                nebula_build(name, "--detailed-exitcode" if name != "apply" else "-q"),
                root,
                side.env(),
            )
            if done.code != 0 or says not in last_line(done.out):
                raise SystemExit(f"{side.label}: no-op {name} exited {done.code}: {done.out}")
            figures[name].add(side.label, done.wall)
            cpu[name].add(side.label, done.cpu)
            peaks[name].add(side.label, done.peak_mb)
    return [*figures.values(), *cpu.values(), *peaks.values(), floor]


def actions(copies: dict[str, Path], sides: list[Side], runs: int) -> list[Figure]:
    """No-op `plan` under GitHub Actions, which writes the job summary, and without."""
    plain, under = Figure("no-op plan", "—"), Figure("no-op plan under Actions", "as no-op plan")
    cpu = Figure("no-op plan under Actions CPU", "—")
    with tempfile.TemporaryDirectory(prefix="bench-summary-") as scratch:
        summary = Path(scratch) / "summary.md"
        on_github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
        for side in turns(sides, runs):
            root = copies[side.label]
            done = run(nebula_build("plan", "--detailed-exitcode"), root, side.env())
            if done.code != 0 or "No changes" not in last_line(done.out):
                raise SystemExit(f"{side.label}: no-op plan exited {done.code}: {done.out}")
            plain.add(side.label, done.wall)
            summary.write_text("")
            args = nebula_build("plan", "--detailed-exitcode")
            done = run(args, root, side.env() | on_github)
            said = summary.read_text(encoding="utf-8")
            answered = "No changes" in last_line(done.out) and "No changes" in said
            if done.code != 0 or not answered:
                raise SystemExit(
                    f"{side.label}: no-op plan under Actions exited {done.code}: {done.out}; "
                    f"job summary: {said!r}"
                )
            under.add(side.label, done.wall)
            cpu.add(side.label, done.cpu)
    return [plain, under, cpu]


def cold(copies: dict[str, Path], sides: list[Side], runs: int) -> list[Figure]:
    wall, cpu = Figure("plan, no snapshot", "—"), Figure("plan, no snapshot CPU", "—")
    peak = Figure("plan, no snapshot peak", "—", "MB")
    for side in turns(sides, runs):
        root = copies[side.label]
        (root / ".nebula-build" / "noop").unlink(missing_ok=True)
        done = run(nebula_build("plan", "--detailed-exitcode"), root, side.env())
        if done.code != 0:
            raise SystemExit(f"{side.label}: cold plan exited {done.code}: {done.out}")
        wall.add(side.label, done.wall)
        cpu.add(side.label, done.cpu)
        peak.add(side.label, done.peak_mb)
    return [wall, cpu, peak]


def edit(copies: dict[str, Path], sides: list[Side], runs: int) -> list[Figure]:
    wall, cpu = Figure("plan after an edit", "—"), Figure("plan after an edit CPU", "—")
    peak = Figure("plan after an edit peak", "—", "MB")
    originals = {label: (root / "images.toml").read_text() for label, root in copies.items()}
    try:
        for number, side in enumerate(turns(sides, runs)):
            manifest = copies[side.label] / "images.toml"
            take = f"number 0 (take {number}) of"
            manifest.write_text(originals[side.label].replace("number 0 of", take, 1))
            done = run(nebula_build("plan", "--detailed-exitcode"), manifest.parent, side.env())
            if done.code != 2:
                raise SystemExit(f"{side.label}: plan after an edit exited {done.code}")
            wall.add(side.label, done.wall)
            cpu.add(side.label, done.cpu)
            peak.add(side.label, done.peak_mb)
    finally:
        for label, text in originals.items():
            (copies[label] / "images.toml").write_text(text)
    return [wall, cpu, peak]


def lock(count: int, copies: dict[str, Path], sides: list[Side], runs: int) -> list[Figure]:
    names = {"cold": "lock read, cold", "warm": "lock read, warm", "rewrite": "lock rewrite"}
    figures = {key: Figure(name, "linear", "us/entry") for key, name in names.items()}
    for side in turns(sides, runs):
        times = in_child(LOCK_TIMES, copies[side.label], side)
        if times["entries"] != count:
            raise SystemExit(f"{side.label}: the lock has {times['entries']} entries")
        for key, figure in figures.items():
            figure.add(side.label, times[key] / count * 1e6)
    return list(figures.values())


def load(copies: dict[str, Path], sides: list[Side], runs: int) -> list[Figure]:
    loaded, resolved = Figure("manifest load", "—"), Figure("manifest resolve", "—")
    for side in turns(sides, runs):
        times = in_child(LOAD_TIMES, copies[side.label] / "images.toml", side)
        loaded.add(side.label, times["load"])
        resolved.add(side.label, times["resolve"])
    return [loaded, resolved]


def watch(
    count: int, copies: dict[str, Path], sides: list[Side], runs: int, edits: int
) -> list[Figure]:
    """Each run's median of `edits` saves, and every save pooled."""
    medians = Figure("watch save → output (run medians)", "median <= 300 ms")
    pooled = Figure("watch save → output (every save)", "median <= 300 ms")
    rounds = Figure("watch whole round (every save)", "—")
    script = (
        f"import sys, json, pathlib; sys.path.insert(0, {str(HERE / 'bench')!r}); "
        "import watch_latency as w; "
        "lat, rounds = w.measure(int(sys.argv[1]), int(sys.argv[2]), 64, "
        "pathlib.Path(sys.argv[3])); "
        "print(json.dumps([lat, rounds]))"
    )
    for side in turns(sides, runs):
        root = copies[side.label].with_name(f"{side.label}-watch-{count}")
        if not root.exists():
            shutil.copytree(copies[side.label], root, symlinks=True)
        args = [sys.executable, "-P", "-c", script, str(count), str(edits), str(root)]
        done = run(args, Path("/"), side.env())
        if done.code != 0:
            raise SystemExit(f"{side.label}: watch exited {done.code}: {done.out[-2000:]}")
        latencies, whole = json.loads(done.out.strip().splitlines()[-1])
        medians.add(side.label, statistics.median(latencies))
        for value in latencies:
            pooled.add(side.label, value)
        for value in whole:
            rounds.add(side.label, value)
    return [medians, pooled, rounds]


def shown(values: list[float], unit: str) -> str:
    scale = 1000 if unit == "ms" else 1
    low, mid, high = (value * scale for value in spread(values))
    digits = 0 if unit == "MB" else 1
    return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f} {unit}"


def report(title: str, figures: list[Figure], sides: list[Side]) -> None:
    base, candidate = (side.label for side in sides)
    print(
        f"\n| {title} | goal | {base} min / median / max | {candidate} min / median / max "
        "| median ratio | ranges |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for figure in figures:
        if "floor" in figure.samples:
            values = figure.samples["floor"]
            print(f"| {figure.name} | {figure.goal} | {shown(values, figure.unit)} | | | |")
            continue
        a, b = figure.samples.get(base), figure.samples.get(candidate)
        if not a or not b:
            continue
        ratio = statistics.median(b) / statistics.median(a) if statistics.median(a) else 0.0
        apart = "apart" if max(a) < min(b) or max(b) < min(a) else "overlap"
        print(
            f"| {figure.name} | {figure.goal} | {shown(a, figure.unit)} | "
            f"{shown(b, figure.unit)} | {ratio:.2f}x | {apart} |"
        )
    floors = [figure.samples["floor"] for figure in figures if "floor" in figure.samples]
    for figure in figures if floors else ():
        if (
            figure.unit == "ms"
            and not figure.name.endswith("CPU")
            and "floor" not in figure.samples
        ):
            floor = statistics.median(floors[0])
            ratios = ", ".join(
                f"{label} {statistics.median(values) / floor:.2f}x"
                for label, values in figure.samples.items()
            )
            print(f"  {figure.name} / floor (medians): {ratios}")
    sys.stdout.flush()


def measure(
    phase: str, count: int, copies: dict[str, Path], sides: list[Side], args: argparse.Namespace
) -> list[Figure]:
    """One phase's figures, both sides interleaved."""
    if phase == "noop":
        return noop(count, copies, sides, args.runs)
    if phase == "actions":
        return actions(copies, sides, args.runs)
    if phase == "cold":
        return cold(copies, sides, args.runs)
    if phase == "edit":
        return edit(copies, sides, args.runs)
    if phase == "lock":
        return lock(count, copies, sides, args.runs)
    if phase == "load":
        return load(copies, sides, args.runs)
    return watch(count, copies, sides, args.runs, args.edits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, default=HERE)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="build the projects here, keep and reuse them")
    parser.add_argument("--only", default=",".join(PHASES), help=",".join(PHASES))
    args = parser.parse_args()
    sides = [Side("baseline", args.baseline.resolve()), Side("candidate", args.candidate.resolve())]
    phases = args.only.split(",")
    pyc = "without" if sys.flags.dont_write_bytecode else "with"
    print(
        f"{sides[0].code} against {sides[1].code}, {pyc} .pyc files written; "
        f"load average {os.getloadavg()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        keep = args.keep or Path(scratch)
        keep.mkdir(parents=True, exist_ok=True)
        for count in args.sizes:
            copies = prepare(count, keep, sides)
            for phase in PHASES:
                if phase in phases:
                    before = os.getloadavg()
                    figures = measure(phase, count, copies, sides, args)
                    title = (
                        f"{count:,} images: {phase} (load {before[0]:.1f} → "
                        f"{os.getloadavg()[0]:.1f})"
                    )
                    report(title, figures, sides)
                    if phase in ("edit",):  # the restored manifest needs its snapshot again
                        prepare(count, keep, sides)


if __name__ == "__main__":
    main()
