"""Edit-to-image latency of `nebula-build watch` on the preview backend.

Builds a project of N images (as bench/_common.py's write_manifest does), starts
`watch`, waits for its first round, then saves a one-prompt edit to images.toml
`--edits` times (always the image in the middle of the manifest) and times each
save until the new output file is complete (atomically renamed into place).
Goal: median <= 300 ms, at 100,000 images too. For reference, watchfiles' own
event latency here is ~72 ms with default settings.

The first round applies every image (minutes at 100k): `--root DIR` keeps the
project there, so a later run starts from its lock and only waits for a no-op
round.

Each edit's whole round (as watch reports it: through the lock, the file index
and the draws recorded, after the output is in place) is printed too: the next
edit waits for it.

`--steps` times, in this process, what an edit costs before any file is
written: the whole parse + resolution of the edited manifest against the
chunked parse + resolution of the edited image alone (`core.chunks`,
`core.incremental`), without building the project.

Usage: python bench/watch_latency.py [--images 1] [--edits 20] [--size 64] [--root DIR]
       python bench/watch_latency.py --steps --images 100000 [--edits 20]
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HEADER = """version = 1
max_images = {cap}

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = {size}
height = {size}

[backends.preview]
concurrency = 4
"""

IMAGE = '\n[images.sprite-{n:05}]\nprompt = "{prompt}"\nseed = {n}\noutput = "{output}"\n'


def _prompt(n: int, take: int) -> str:
    return f"a tiny sprite number {n} of a fox" + (f", take {take}" if take else "")


def _output(n: int) -> str:
    return f"out/{n // 1000:02}/sprite-{n:05}.png"


def manifest_text(images: int, size: int, edited: int, take: int) -> str:
    parts = [HEADER.format(cap=max(images, 1), size=size)]
    for n in range(images):
        prompt = _prompt(n, take if n == edited else 0)
        parts.append(IMAGE.format(n=n, prompt=prompt, output=_output(n)))
    return "".join(parts)


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def wait_for_change(path: Path, before: str | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while digest(path) == before:
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never changed: is watch running?")
        time.sleep(0.002)


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def _wait_for_round(lines: queue.Queue[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit("watch's first round never finished")
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if line.startswith(("round ", "error")):
            return line


def measure(
    images: int, edits: int, size: int, root: Path | None = None
) -> tuple[list[float], list[float]]:
    """Seconds from each of `edits` saves of one prompt to its new output file, and
    seconds of each of those rounds as watch reports them, with `watch` running over
    a project of `images` images of `size`² (preview backend). With `root`, the
    project is kept there (a second call starts from its lock)."""
    if root is None:
        with tempfile.TemporaryDirectory() as scratch:
            return measure(images, edits, size, Path(scratch))
    root.mkdir(parents=True, exist_ok=True)
    edited = images // 2
    manifest, output = root / "images.toml", root / _output(edited)
    manifest.write_text(manifest_text(images, size, edited, 0))
    watch = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(watch.stdout, lines), daemon=True).start()
    latencies, rounds = [], []
    try:
        first = _wait_for_round(lines, timeout=max(60, images * 0.05))
        if _ERROR.match(first):
            raise SystemExit(f"watch: {first.strip()}")
        time.sleep(0.5)  # let the first round settle
        for take in range(1, edits + 1):
            before = digest(output)
            text = manifest_text(images, size, edited, take)
            saved = time.perf_counter()
            manifest.write_text(text)
            wait_for_change(output, before, timeout=max(30, images / 1000))
            latencies.append(time.perf_counter() - saved)
            # the round has finished (lock written)
            line = _wait_for_round(lines, timeout=max(30, images / 1000))
            if (took := _ROUND_TIME.search(line)) is not None:
                rounds.append(float(took.group(1)))
            time.sleep(0.2)
    finally:
        watch.terminate()
        watch.wait()
    return latencies, rounds


_ROUND_TIME = re.compile(r" in (\d+\.\d+)s$")
#: a round that failed: "round 2: error: …" (before, a bare "error: …")
_ERROR = re.compile(r"(round \d+: )?error")


def edit_latency(root: Path, images: int, runs: int) -> list[float]:
    """bench/scale.py's section: one-prompt edits (at least 20) in the project of
    `images` 64x64 images that bench/_common.py's write_manifest built at `root`."""
    return measure(images, max(runs, 20), 64, root)[0]


def measure_steps(images: int, edits: int, whole_edits: int = 3) -> tuple[list[float], list[float]]:
    """(seconds of the whole parse + resolve of the first `whole_edits` edits, seconds
    of the chunked ones of each of `edits`) for one-prompt edits of a manifest of
    `images` images."""
    from nebula_build.core.chunks import parsed, reparse
    from nebula_build.core.incremental import Edit, resolve_edit
    from nebula_build.core.manifest import parse
    from nebula_build.core.resolve import resolve
    from nebula_build.plugin.manager import load_registry

    registry, path, edited = load_registry(), Path("images.toml"), images // 2
    text = manifest_text(images, 64, edited, 0)
    manifest = parse(text, path, "images.toml")
    last, resolved = parsed(manifest), resolve(manifest, registry, _no_file)
    owners: dict[str, str] | None = None
    takers: dict[str, frozenset[str]] | None = None
    whole, chunked = [], []
    for take in range(1, edits + 1):
        text = manifest_text(images, 64, edited, take)
        if take <= whole_edits:
            started = time.perf_counter()
            resolve(parse(text, path, "images.toml"), registry, _no_file)
            whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        again = reparse(last, text, path, "images.toml")
        assert again is not None and again.changed == {f"sprite-{edited:05}"}
        change = Edit(again.changed, again.added, again.removed)
        rebuilt = resolve_edit(
            resolved,
            last.manifest.model.images,
            again.parsed.manifest,
            change,
            registry=registry,
            digest_of=_no_file,
            owners=owners,
            takers=takers,
        )
        chunked.append(time.perf_counter() - started)
        assert rebuilt is not None and rebuilt.resolved_again == (f"sprite-{edited:05}",)
        last, resolved = again.parsed, rebuilt.resolved
        owners, takers = rebuilt.owners, rebuilt.takers
    return whole, chunked


def _no_file(path: str) -> None:
    return None


def _figures(seconds: list[float]) -> str:
    ms = sorted(x * 1000 for x in seconds)
    return f"median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--steps", action="store_true")
    args = parser.parse_args()
    if args.steps:
        whole, chunked = measure_steps(args.images, args.edits)
        print(
            f"{args.images:,} images, {args.edits} one-prompt edits, parse + resolve: "
            f"whole ({len(whole)} edits) {_figures(whole)}; chunked {_figures(chunked)}"
        )
        return
    latencies, rounds = measure(args.images, args.edits, args.size, args.root)
    print(
        f"{args.images:,} images, {args.edits} edits, {args.size}x{args.size} preview: "
        f"{_figures(latencies)} (goal: median <= 300 ms)"
        + (f"; whole rounds {_figures(rounds)}" if rounds else "")
    )


if __name__ == "__main__":
    main()
