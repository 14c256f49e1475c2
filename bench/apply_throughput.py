"""Throughput of the nebula backend against the loopback API with 200 ms latency.

64 images of 512x512 at concurrency 1, 4, 8 and 16: wall time, the ideal
(images x latency / concurrency) and efficiency (ideal / wall). Baseline: the
same 64 requests sent one after another with plain httpx, the way the
provider's example snippet does it. Also the client's CPU cost per image
(decode, verify, write, lock) for 1024x1024 PNGs.
Goal: efficiency >= 0.85 at concurrency 8; CPU per 1024x1024 image < 30 ms.

Usage: python bench/apply_throughput.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from nebula_build.testing import NebulaTestServer

KEY = "ak_bench"
LATENCY = 0.2
COUNT = 64


def manifest(root: Path, count: int, size: int, concurrency: int) -> None:
    root.mkdir(parents=True)
    lines = [
        "version = 1",
        "[defaults]",
        'backend = "nebula"',
        'model = "black-forest-labs/FLUX.1-schnell"',
        f"width = {size}",
        f"height = {size}",
        "[backends.nebula]",
        f"concurrency = {concurrency}",
    ]
    for n in range(count):
        lines += [f"[images.i{n:03}]", f'prompt = "image {n}"', f'output = "out/i{n:03}.png"']
    (root / "images.toml").write_text("\n".join(lines) + "\n")


def apply(root: Path, server: NebulaTestServer) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `nebula-build apply` process."""
    env = {**os.environ, "NEBULA_BASE_URL": server.base_url, "NEBULA_API_KEY": KEY}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "apply", "-q"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"apply failed: {process.stderr.read().decode()[-500:]}")
    process.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def baseline(server: NebulaTestServer, size: int) -> float:
    body = {"model": "black-forest-labs/FLUX.1-schnell", "width": size, "height": size}
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for n in range(COUNT):
            response = client.post(
                f"{server.base_url}/images/generation",
                headers={"Authorization": f"Bearer {KEY}"},
                json={**body, "prompt": f"image {n}"},
            )
            response.raise_for_status()
            json.loads(response.content)
    return time.perf_counter() - started


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as scratch,
        NebulaTestServer(api_key=KEY, latency=LATENCY) as server,
    ):
        base = Path(scratch)
        server.image(512, 512, 0)  # the server renders once; it must not be the bottleneck
        wall = baseline(server, 512)
        ideal = COUNT * LATENCY
        print(f"{COUNT} images of 512x512, server latency {LATENCY * 1000:.0f} ms")
        print(
            f"  plain httpx loop      wall {wall:5.2f} s  ideal {ideal:5.2f} s  "
            f"efficiency {ideal / wall:4.2f}"
        )
        for concurrency in (1, 4, 8, 16):
            root = base / f"c{concurrency}"
            manifest(root, COUNT, 512, concurrency)
            server.reset_counters()
            wall, _ = apply(root, server)
            ideal = COUNT * LATENCY / concurrency
            requests = server.generations
            span = max(r.finished for r in requests) - min(r.started for r in requests)
            print(
                f"  concurrency {concurrency:>2}     wall {wall:5.2f} s  ideal {ideal:5.2f} s  "
                f"efficiency {ideal / wall:4.2f}  (first request to last answer {span:4.2f} s:"
                f" {ideal / span:4.2f})  peak in flight {server.peak_in_flight}"
            )

        server.latency = 0.0
        server.image(1024, 1024, 0)
        empty = base / "empty"
        manifest(empty, 0, 1024, 4)
        _, startup_cpu = apply(empty, server)
        root = base / "cpu"
        manifest(root, 32, 1024, 4)
        _, cpu = apply(root, server)
        per_image = (cpu - startup_cpu) / 32
        print(
            f"client CPU per 1024x1024 PNG (decode, verify, write, lock): "
            f"{per_image * 1000:.1f} ms (process start-up {startup_cpu * 1000:.0f} ms excluded)"
        )


if __name__ == "__main__":
    main()
