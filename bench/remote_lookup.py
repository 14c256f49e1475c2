"""What the remote cache adds to `plan`: 1,000 new images looked up in an S3 remote
that answers 20 ms late.

The remote is moto's S3 server on loopback behind a proxy that holds every chunk the
client sends for `--latency` ms (a far bucket). Half the 1,000 keys are in the remote,
among entries of other projects. Goal: the lookups cost <= 2 s, measured two ways:

- `plan` against `plan --offline` on the same project, interleaved round after round
  (A B A B …): the difference of the medians is what the remote costs a plan;
- `Remote.lookup` of the 1,000 keys alone, in this process.

Each figure is min / median / max of `--runs` rounds.

Usage: python bench/remote_lookup.py [--images 1000] [--latency 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from _common import nebula_build, run_timed, write_manifest

from nebula_build.engine.remotecache import new_record
from nebula_build.state.remote import Remote


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}", timeout=1)
            return server, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("moto's server did not start")


def start_proxy(upstream: int, latency: float) -> int:
    """A TCP proxy that delays every chunk a client sends by `latency` seconds."""
    port = free_port()
    ready = threading.Event()

    async def pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        try:
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pump(reader, up_writer, latency), pump(up_reader, writer, 0))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait()
    return port


def spread(times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return f"{min(ms):7.1f} / {statistics.median(ms):7.1f} / {max(ms):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=20.0, help="ms added per request")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--others", type=int, help="other projects' records in the remote (default: images/2)"
    )
    args = parser.parse_args()

    moto, moto_port = start_moto()
    try:
        proxy_port = start_proxy(moto_port, args.latency / 1000)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        httpx.put(f"http://127.0.0.1:{moto_port}/{bucket}").raise_for_status()
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            AWS_ALLOW_HTTP="true",
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}",
        )
        url = f"s3://{bucket}/team"
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            write_manifest(root, args.images)
            plan = subprocess.run(
                nebula_build("plan", "--json", "--offline"),
                cwd=root,
                capture_output=True,
                check=True,
            )
            keys = [a["generation_key"] for a in json.loads(plan.stdout)["actions"]]
            # Half the project's keys and other projects' records, uploaded directly.
            extra = len(keys) // 2 if args.others is None else args.others
            others = [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(extra)]
            direct = Remote(url, writable=True)
            data = b"not an image: lookups never read it"
            for key in keys[::2] + others:
                record = new_record(
                    key, backend="preview", model="m", data=data, digest="0" * 64, seed=None
                )
                direct.push(record, data)

            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy_port}"
            os.environ["NEBULA_BUILD_CACHE_REMOTE"] = url
            check = subprocess.run(
                nebula_build("plan", "--json"), cwd=root, capture_output=True, check=True
            )
            hits = sum(a["from_remote_cache"] for a in json.loads(check.stdout)["actions"])
            if hits != len(keys[::2]):
                raise SystemExit(f"expected {len(keys[::2])} remote hits, the plan found {hits}")

            offline, online, lookups = [], [], []
            for _ in range(args.runs):
                offline.append(run_timed(nebula_build("plan", "--offline"), root)[0])
                online.append(run_timed(nebula_build("plan"), root)[0])
                started = time.perf_counter()
                found = Remote(url, writable=False).lookup(keys)
                lookups.append(time.perf_counter() - started)
                assert len(found) == hits
    finally:
        moto.terminate()
        moto.wait(10)

    difference = statistics.median(online) - statistics.median(offline)
    print(
        f"{args.images} new images, {hits} in a remote of {hits + extra} records, "
        f"+{args.latency:g} ms per request, "
        f"{args.runs} runs (min / median / max); PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    print(f"  plan --offline        {spread(offline)}")
    print(f"  plan (remote)         {spread(online)}")
    print(f"  Remote.lookup alone   {spread(lookups)}")
    print(f"  remote cost in plan   {difference * 1000:7.1f} ms (median difference; goal <= 2000)")


if __name__ == "__main__":
    main()
