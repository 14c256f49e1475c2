"""The two-checkout experiment: one checkout applies and fills the remote cache, a
second one (the manifest and the lock, as a clone gives them) applies after it.

The Nebula API is the loopback test server, answering each generation after
`--latency` seconds (a hosted model takes seconds); the remote is moto's S3 server
on loopback. Goal: the second checkout pays 0 generations and its outputs are
byte-identical; its wall time is printed beside the first's.
Each figure is min / median / max of `--runs` rounds, each round on fresh checkouts
and a fresh bucket.

Usage: python bench/two_checkouts.py [--images 50] [--latency 2] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from _common import nebula_build
from remote_lookup import start_moto

from nebula_build.testing import NebulaTestServer

KEY = "ak_bench_two_checkouts"


def manifest(count: int) -> str:
    lines = [
        "version = 1",
        "[defaults]",
        'backend = "nebula"',
        'model = "black-forest-labs/FLUX.1-schnell"',
        "width = 256",
        "height = 256",
        "[backends.nebula]",
        "concurrency = 16",
    ]
    for n in range(count):
        lines += [f"[images.i{n:04}]", f'prompt = "image {n}"', f'output = "img/i{n:04}.png"']
    return "\n".join(lines) + "\n"


def apply(root: Path) -> float:
    started = time.perf_counter()
    subprocess.run(nebula_build("apply", "-q"), cwd=root, check=True, capture_output=True)
    return time.perf_counter() - started


def spread(times: list[float]) -> str:
    return f"{min(times):6.2f} / {statistics.median(times):6.2f} / {max(times):6.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per generation")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    moto, port = start_moto()
    first_times, second_times, paid = [], [], []
    try:
        # answers as the real API does: its images are to be shared
        with NebulaTestServer(
            api_key=KEY, latency=args.latency, marks_placeholders=False
        ) as server:
            os.environ.update(
                NEBULA_BASE_URL=server.base_url,
                NEBULA_API_KEY=KEY,
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_REGION="us-east-1",
                AWS_ALLOW_HTTP="true",
                AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            )
            for _ in range(args.runs):
                bucket = f"two-{uuid.uuid4().hex[:8]}"
                httpx.put(f"http://127.0.0.1:{port}/{bucket}").raise_for_status()
                os.environ["NEBULA_BUILD_CACHE_REMOTE"] = f"s3://{bucket}/site"
                with tempfile.TemporaryDirectory() as folder:
                    first, second = Path(folder, "first"), Path(folder, "second")
                    first.mkdir()
                    second.mkdir()
                    (first / "images.toml").write_text(manifest(args.images))
                    server.reset_counters()
                    first_times.append(apply(first))
                    for name in ("images.toml", "images.lock"):
                        shutil.copy(first / name, second / name)
                    server.reset_counters()
                    second_times.append(apply(second))
                    paid.append(len(server.generations))
                    for n in range(args.images):
                        name = f"img/i{n:04}.png"
                        if (first / name).read_bytes() != (second / name).read_bytes():
                            raise SystemExit(f"{name} differs between the checkouts")
    finally:
        moto.terminate()
        moto.wait(10)
    print(
        f"{args.images} images, {args.latency:g} s per generation, {args.runs} runs "
        f"(min / median / max); PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    print(f"  first checkout (generates, uploads)    {spread(first_times)}")
    print(f"  second checkout (restores)             {spread(second_times)}")
    print(f"  generations paid by the second: {max(paid)} (goal 0); outputs byte-identical")


if __name__ == "__main__":
    main()
