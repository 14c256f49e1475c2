"""How fast the offline gallery of a large project opens in headless Chromium.

Writes the page with `nebula-build gallery` (timed), then opens it from file://
in a fresh page each run and times (1) navigation until the first page of cards
is in the DOM with its images decoded and painted, (2) a text filter that finds
the project's last image (on the last page). Goal: under 2 s to open at 100k.

Usage: python bench/gallery_open.py [--images 10000] [--runs 5] [--root DIR]
Without --root it builds (or reuses) /tmp/nebula-gallery-<N> with 64x64 preview
images; the first apply takes about 33 s per 10k images on 2 cores.
Needs Debian's chromium and playwright (pip install -e '.[browser]').
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import nebula_build, write_manifest

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

#: true once the first page's cards are built and the images on screen decoded
FIRST_CARDS = """() => {
  const cards = document.querySelectorAll("#cards .card");
  const onScreen = [...document.images].filter(
    (i) => i.getBoundingClientRect().top < innerHeight);
  return cards.length > 0 && onScreen.every((i) => i.complete && i.naturalWidth > 0);
}"""

#: time from a filter's input to the frame after the cards it finds are built
FILTER = """async (query) => {
  const started = performance.now();
  const filter = document.getElementById("filter");
  filter.value = query;
  filter.dispatchEvent(new Event("input"));
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const found = document.querySelectorAll("#cards .card").length;
  return [performance.now() - started, found];
}"""


def build(root: Path, count: int) -> None:
    """A project of `count` 64x64 preview images, applied (kept when already there)."""
    if (root / "images.lock").is_file():
        return
    write_manifest(root, count)
    manifest = root / "images.toml"
    manifest.write_text(f"max_images = {max(count, 10000)}\n" + manifest.read_text())
    subprocess.run(nebula_build("apply"), cwd=root, check=True, stdout=subprocess.DEVNULL)


def _last_image(root: Path) -> str:
    names = [
        line[len("[images.") : -1]
        for line in (root / "images.toml").read_text().splitlines()
        if line.startswith("[images.")
    ]
    return names[-1]


def measure(root: Path, runs: int, *, write: bool = True) -> dict[str, list[float]]:
    """Seconds per run: "write" (`nebula-build gallery`; without `write`, the page
    there is opened as it is), "open" (navigation to the first painted cards),
    "filter" (a text filter over every card); and "page_mb", the page's size."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {"write": [], "open": [], "filter": [], "page_mb": []}
    page_path = root / ".nebula-build/gallery/index.html"
    query = _last_image(root)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=ARGS)
        for _ in range(runs):
            if write or not page_path.is_file():
                started = time.perf_counter()
                subprocess.run(
                    nebula_build("gallery"), cwd=root, check=True, stdout=subprocess.DEVNULL
                )
                figures["write"].append(time.perf_counter() - started)
            figures["page_mb"].append(page_path.stat().st_size / 1e6)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            started = time.perf_counter()
            page.goto(page_path.as_uri(), wait_until="commit")
            page.wait_for_function(FIRST_CARDS, timeout=60_000, polling="raf")
            page.evaluate("() => new Promise((done) => requestAnimationFrame(done))")
            figures["open"].append(time.perf_counter() - started)
            took, found = page.evaluate(FILTER, query)
            if found < 1:
                raise SystemExit(f"the filter {query!r} found no card")
            figures["filter"].append(took / 1000)
            context.close()
        browser.close()
    return figures


def unavailable() -> str | None:
    """Why the page cannot be opened here, if it cannot (bench/scale.py says so)."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed: pip install -e '.[browser]'"
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        return "no chromium (apt-get install chromium)"
    return None


def page_open(root: Path, images: int, runs: int) -> list[float]:
    """bench/scale.py's section: seconds from navigation to the first painted cards."""
    return measure(root, runs)["open"]


def _row(name: str, values: list[float], unit: str, goal: str) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{name:<28} {low:8.3f} {mid:8.3f} {high:8.3f} {unit:<3} {goal}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--root", type=Path, help="a project already applied")
    parser.add_argument(
        "--open-only", action="store_true", help="open the page there, without writing it again"
    )
    args = parser.parse_args()
    root = args.root or Path(f"/tmp/nebula-gallery-{args.images}")
    if args.root is None:
        build(root, args.images)
    figures = measure(root, args.runs, write=not args.open_only)
    print(f"gallery of {root} ({args.runs} runs)        min   median      max")
    if figures["write"]:
        print(_row("nebula-build gallery", figures["write"], "s", ""))
    print(_row("page size", figures["page_mb"], "MB", ""))
    print(_row("open to first cards", figures["open"], "s", "goal < 2 s at 100k"))
    print(_row("filter to the last image", figures["filter"], "s", ""))


if __name__ == "__main__":
    main()
