"""Throughput and CPU cost of `nebula-build apply` on the nebula backend, against a plain
httpx + base64 script sending the same requests to the same loopback API, in the same run.

1. Whole-process efficiency at concurrency 32: 512 images of 512x512, server latency
   200 ms; ideal = images x latency / concurrency; efficiency = ideal / wall, wall being
   the whole process (start-up included) for both. Goal: ours within 5 % of the script.
2. Client CPU per 1024x1024 PNG (latency 0, concurrency 4): CPU of a run of 64 images
   minus CPU of a run of none, / 64; the same for the script. Goal: <= 12 ms.
3. (--sweep) 64 images of 512x512 at concurrency 1, 4, 8 and 16, as before.

Every measurement alternates ours and the script (A B A B ...), --runs times each
(default 5), and reports min / median / max. With --baseline DIR (another checkout, e.g.
`git worktree add /tmp/perf-base HEAD`), that checkout's nebula-build runs too, in the
same rotation (base, ours, script, base, ours, script ...), so a change is measured
against what it changes under the same machine load. Start-up is compiled from source
unless .pyc files exist; the header says which (PYTHONDONTWRITEBYTECODE is honoured).

Usage: python bench/apply_throughput.py [--runs N] [--sweep] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nebula_build.testing import NebulaTestServer

KEY = "ak_bench"
LATENCY = 0.2
MODEL = "black-forest-labs/FLUX.1-schnell"
REPO = Path(__file__).resolve().parents[1]

# What a user writes without the tool: the provider's snippet, made concurrent. It decodes
# the base64 answer and writes the file; it checks nothing.
PLAIN_SCRIPT = """
MODEL = "black-forest-labs/FLUX.1-schnell"
import asyncio, base64, json, sys
from pathlib import Path
import httpx

base, key, count, size, concurrency, out = sys.argv[1:7]
count, size, concurrency, out = int(count), int(size), int(concurrency), Path(out)
out.mkdir(parents=True, exist_ok=True)

async def one(client, gate, n):
    async with gate:
        response = await client.post(
            f"{base}/images/generation",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": MODEL, "prompt": f"image {n}", "width": size, "height": size},
        )
        response.raise_for_status()
        data = base64.b64decode(json.loads(response.content)["data"][0]["b64_json"])
        (out / f"i{n:03}.png").write_bytes(data)

async def main():
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(one(client, gate, n) for n in range(count)))

asyncio.run(main())
"""


def manifest(root: Path, count: int, size: int, concurrency: int) -> None:
    root.mkdir(parents=True)
    lines = [
        "version = 1",
        "[defaults]",
        'backend = "nebula"',
        f'model = "{MODEL}"',
        f"width = {size}",
        f"height = {size}",
        "[backends.nebula]",
        f"concurrency = {concurrency}",
    ]
    for n in range(count):
        lines += [f"[images.i{n:03}]", f'prompt = "image {n}"', f'output = "out/i{n:03}.png"']
    (root / "images.toml").write_text("\n".join(lines) + "\n")


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process, start-up included."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    assert process.stderr is not None
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[2:4]} failed: {process.stderr.read().decode()[-500:]}")
    process.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def _env(server: NebulaTestServer, repo: Path) -> dict[str, str]:
    env = {**os.environ, "NEBULA_BASE_URL": server.base_url, "NEBULA_API_KEY": KEY}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


class Bench:
    def __init__(self, server: NebulaTestServer, scratch: Path, baseline: Path | None) -> None:
        self.server = server
        self.scratch = scratch
        self.env = _env(server, REPO)
        #: the environment that runs the baseline checkout's nebula-build, if any
        self.baseline_env = _env(server, baseline) if baseline is not None else None
        self._runs = 0

    def _folder(self, label: str) -> Path:
        self._runs += 1
        return self.scratch / f"{self._runs:03}-{label}"

    def ours(self, count: int, size: int, concurrency: int) -> tuple[float, float]:
        root = self._folder("ours")
        manifest(root, count, size, concurrency)
        command = [sys.executable, "-m", "nebula_build", "apply", "-q"]
        return measure(command, root, self.env)

    def base(self, count: int, size: int, concurrency: int) -> tuple[float, float]:
        assert self.baseline_env is not None
        root = self._folder("base")
        manifest(root, count, size, concurrency)
        command = [sys.executable, "-m", "nebula_build", "apply", "-q"]
        return measure(command, root, self.baseline_env)

    def plain(self, count: int, size: int, concurrency: int) -> tuple[float, float]:
        root = self._folder("plain")
        root.mkdir()
        command = [sys.executable, "-c", PLAIN_SCRIPT, self.server.base_url, KEY]
        command += [str(count), str(size), str(concurrency), str(root / "out")]
        return measure(command, root, self.env)


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    low, mid, high = (
        f"{value * scale:.{digits}f}"
        for value in (min(values), statistics.median(values), max(values))
    )
    return f"min {low}  median {mid}  max {high}"


def interleaved(runs: int, *sides: Callable[[], float]) -> list[list[float]]:
    """A B A B … (A B C A B C … with three): drift in the machine's speed falls on all
    alike."""
    results: list[list[float]] = [[] for _ in sides]
    for _ in range(runs):
        for side, values in zip(sides, results, strict=True):
            values.append(side())
    return results


def pyc_state() -> str:
    ours = any((REPO / "nebula_build").rglob("*.pyc"))
    writes = not (os.environ.get("PYTHONDONTWRITEBYTECODE") or sys.dont_write_bytecode)
    import httpx

    theirs = any(Path(httpx.__file__).parent.rglob("*.pyc"))
    return (
        f".pyc of nebula_build present: {'yes' if ours else 'no'}; of site-packages (httpx): "
        f"{'yes' if theirs else 'no'}; PYTHONDONTWRITEBYTECODE "
        f"{'unset: pyc written on first run' if writes else 'set: no pyc written'}"
    )


def efficiency(bench: Bench, runs: int) -> None:
    count, concurrency = 512, 32
    ideal = count * LATENCY / concurrency
    bench.server.image(512, 512, 0)  # the server renders once: it must not be the bottleneck
    sides: dict[str, Callable[[], float]] = {}
    if bench.baseline_env is not None:
        sides["baseline apply"] = lambda: bench.base(count, 512, concurrency)[0]
    sides["nebula-build apply"] = lambda: bench.ours(count, 512, concurrency)[0]
    sides["plain httpx script"] = lambda: bench.plain(count, 512, concurrency)[0]
    walls = dict(zip(sides, interleaved(runs, *sides.values()), strict=True))
    print(
        f"\n{count} images of 512x512, latency {LATENCY * 1000:.0f} ms, concurrency {concurrency}"
    )
    print(f"(ideal {ideal:.2f} s; whole process wall, start-up included)")
    medians = {}
    for name in ("plain httpx script", "baseline apply", "nebula-build apply"):
        if name not in walls:
            continue
        effs = [ideal / wall for wall in walls[name]]
        medians[name] = statistics.median(effs)
        print(f"  {name:<18}  wall s  {spread(walls[name])}   efficiency {spread(effs)}")
    plain = medians["plain httpx script"]
    if "baseline apply" in medians:
        print(f"  baseline median efficiency / plain: {medians['baseline apply'] / plain:.3f}")
    ratio = medians["nebula-build apply"] / plain
    verdict = "met" if ratio >= 0.95 else "NOT met"
    print(f"  median efficiency ours / plain: {ratio:.3f}  (goal >= 0.95: {verdict})")


def cpu(bench: Bench, runs: int) -> None:
    count, concurrency = 64, 4
    bench.server.latency = 0.0
    bench.server.image(1024, 1024, 0)

    def per_image(run: Callable[[int, int, int], tuple[float, float]]) -> float:
        _, startup = run(0, 1024, concurrency)
        _, total = run(count, 1024, concurrency)
        return (total - startup) / count

    sides: dict[str, Callable[[], float]] = {}
    if bench.baseline_env is not None:
        sides["baseline apply"] = lambda: per_image(bench.base)
    sides["nebula-build apply"] = lambda: per_image(bench.ours)
    sides["plain httpx script"] = lambda: per_image(bench.plain)
    costs = dict(zip(sides, interleaved(runs, *sides.values()), strict=True))
    print(f"\nclient CPU per 1024x1024 PNG ({count} images, concurrency {concurrency}, latency 0;")
    print(" each run's start-up, measured with no image, excluded)")
    for name in ("plain httpx script", "baseline apply", "nebula-build apply"):
        if name in costs:
            print(f"  {name:<18}  ms  {spread(costs[name], 1000, 1)}")
    verdict = "met" if statistics.median(costs["nebula-build apply"]) <= 0.012 else "NOT met"
    print(f"  goal <= 12 ms: {verdict}")
    bench.server.latency = LATENCY


def sweep(bench: Bench) -> None:
    count = 64
    bench.server.image(512, 512, 0)
    print(f"\n{count} images of 512x512, server latency {LATENCY * 1000:.0f} ms")
    for concurrency in (1, 4, 8, 16):
        ideal = count * LATENCY / concurrency
        plain_wall, _ = bench.plain(count, 512, concurrency)
        bench.server.reset_counters()
        wall, _ = bench.ours(count, 512, concurrency)
        requests = bench.server.generations
        span = max(r.finished for r in requests) - min(r.started for r in requests)
        print(
            f"  concurrency {concurrency:>2}  ours wall {wall:5.2f} s  "
            f"efficiency {ideal / wall:4.2f}"
            f"  (first request to last answer {ideal / span:4.2f})  plain script "
            f"{ideal / plain_wall:4.2f}  peak in flight {bench.server.peak_in_flight}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument("--sweep", action="store_true", help="also the concurrency sweep")
    parser.add_argument("--only", choices=("efficiency", "cpu"), help="run one measurement")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="another checkout of nebula-build to run in the same rotation (before/after)",
    )
    args = parser.parse_args()
    print(pyc_state())
    if args.baseline is not None:
        print(
            f"baseline: {args.baseline} (.pyc present: "
            f"{'yes' if any((args.baseline / 'nebula_build').rglob('*.pyc')) else 'no'})"
        )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with (
        tempfile.TemporaryDirectory() as scratch,
        NebulaTestServer(api_key=KEY, latency=LATENCY) as server,
    ):
        bench = Bench(server, Path(scratch), args.baseline)
        if args.only in (None, "efficiency"):
            efficiency(bench, args.runs)
        if args.only in (None, "cpu"):
            cpu(bench, args.runs)
        if args.sweep:
            sweep(bench)


if __name__ == "__main__":
    main()
