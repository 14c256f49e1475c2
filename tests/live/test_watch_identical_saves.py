"""Watch and saves that change nothing: an autosave, `touch`, the same bytes written
again, a file deleted and made again alike start no round; a real edit after them
still does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import pytest

from tests.conftest import fake_manifest, generation_log
from tests.engine.test_noop import png
from tests.live.scripted import running_watch
from tests.live.test_watch_hand_edits import _until
from tests.live.watching import watching

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 128

[images.hero]
prompt = "a lighthouse at dusk"
seed = 42
output = "images/hero.png"

[images.product]
rows = "data/products.csv"
id = "sku"
prompt = "photo of {name}"
output = "images/{sku}.png"
"""

CSV = "sku,name\nT-1,Green tea\n"


@pytest.mark.slow
def test_saves_with_the_same_bytes_print_no_round_and_an_edit_still_does(project):
    root = project({"images.toml": SITE, "data/products.csv": CSV})
    manifest, data = root / "images.toml", root / "data/products.csv"
    with watching(root) as run:
        _until(lambda: run.printed("round 1:"), "round 1")
        manifest.write_text(SITE)  # an autosave
        time.sleep(0.8)
        os.utime(manifest)  # touch
        time.sleep(0.8)
        manifest.unlink()  # deleted and made again alike
        manifest.write_text(SITE)
        time.sleep(0.8)
        data.write_text(CSV)
        time.sleep(1.5)
        assert not run.printed("round 2"), run.out

        manifest.write_text(SITE.replace("seed = 42", "seed = 43"))
        _until(lambda: run.printed("round 2:"), "round 2 after an edit")
        data.write_text(CSV.replace("Green tea", "Black tea"))
        _until(lambda: run.printed("round 3:"), "round 3 after a data edit")
    assert run.returncode == 0, run.err
    rounds = [line for line in run.lines if line.startswith("round ")]
    assert rounds[0].startswith("round 1: 2 done")
    assert rounds[1:] == [line for line in rounds[1:] if "1 done" in line], run.out
    assert len(rounds) == 3, run.out


def test_a_file_deleted_then_made_again_alike_in_two_saves_starts_no_round(
    project, fake_site, tmp_path
):
    """Two change sets apart: the first (no manifest) starts a round, the second
    stops it before it says a word, and nothing is left to do."""
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    text = manifest.read_text()

    async def scenario() -> str:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            manifest.unlink()
            await script.queue.put({manifest})
            await asyncio.sleep(0.3)
            manifest.write_text(text)
            await script.queue.put({manifest})
            with contextlib.suppress(TimeoutError):
                await script.next_round(timeout=2.5)
            assert len(script.rounds) == 1, [(r.number, r.error) for r in script.rounds]

            images["a"]["prompt"] = "one, edited"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            edited = await script.next_round()
            assert (edited.number, edited.changed) == (2, ["a"])
        return out.getvalue()

    printed = asyncio.run(scenario())
    assert "error" not in printed and "up to date" not in printed
    assert generation_log(log) == ["a", "a"]


def test_a_revert_is_compared_with_what_the_last_round_read(project, fake_site, tmp_path):
    """Edited, then reverted once a round has built the edit: the revert holds what an
    earlier round read, but not the last, so it is a change (made from the cache)."""
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    first = manifest.read_text()

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            images["a"]["prompt"] = "two"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            assert (await script.next_round()).changed == ["a"]
            manifest.write_text(first)
            await script.queue.put({manifest})
            assert (await script.next_round()).changed == ["a"]

    asyncio.run(scenario())
    assert generation_log(log) == ["a", "a"]


def test_an_input_saved_again_alike_starts_no_round_and_a_fifo_in_its_place_hangs_nothing(
    project, fake_site, tmp_path
):
    """An input is compared with the digest its spec holds (never read again to know
    it); a FIFO put in its place is told apart without opening it for a blocking read."""
    log = tmp_path / "gen.log"
    cap = {
        "model": "black-forest-labs/FLUX.1-Fill-dev",
        "prompt": "a cap",
        "image": "refs/base.png",
        "mask": "refs/mask.png",
        "output": "cap.png",
    }
    root = project(
        {
            "images.toml": fake_manifest(log, {"cap": cap}),
            "refs/base.png": png((10, 20, 30)),
            "refs/mask.png": png((255, 255, 255)),
        }
    )
    base = root / "refs/base.png"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            base.write_bytes(png((10, 20, 30)))
            os.utime(root / "refs/mask.png")
            await script.queue.put({base, root / "refs/mask.png"})
            with contextlib.suppress(TimeoutError):
                await script.next_round(timeout=2.0)
            assert len(script.rounds) == 1, [(r.number, r.error) for r in script.rounds]

            base.unlink()
            os.mkfifo(base)
            await script.queue.put({base})
            refused = await asyncio.wait_for(script.next_round(), timeout=15)
            assert refused.number == 2 and refused.error, refused

    asyncio.run(scenario())
    assert generation_log(log) == ["cap"]
