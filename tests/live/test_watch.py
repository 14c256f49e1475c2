"""Watch mode: scripted change sets through the injectable source, plus real ones."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nebula_build.state.lockfile import loads
from tests.cli.test_trust_sibling_locks import (
    UNREAD,
    WHAT_IS_WRONG,
    A,
    beside_a_copied_entry,
)
from tests.cli.test_trust_sibling_locks import manifest as sibling_manifest
from tests.conftest import backend_opens, fake_manifest, generation_log
from tests.live.scripted import running_watch


def test_rounds_follow_edits_and_survive_a_broken_manifest(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            first = await script.next_round()
            assert sorted(first.changed) == ["a", "b"]

            images["a"]["prompt"] = "one, edited"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            second = await script.next_round()
            assert second.changed == ["a"]

            manifest.write_text(fake_manifest(log, images) + "[images.c\n")  # half-typed
            await script.queue.put({manifest})
            assert (await script.next_round()).error
            await script.queue.put({manifest})  # saved again alike: no round
            with contextlib.suppress(TimeoutError):
                await script.next_round(timeout=1.5)
            assert len(script.rounds) == 3
            manifest.write_text(fake_manifest(log, images) + "[images.c\n# more\n")
            await script.queue.put({manifest})  # saved again, still broken
            assert (await script.next_round()).error
            assert out.getvalue().count("invalid TOML") == 1  # said once, not per save
            assert "round 3: error: images.toml:" in out.getvalue()  # numbered like the others

            images["c"] = {"prompt": "three", "output": "c.png"}
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            assert (await script.next_round()).changed == ["c"]
        assert backend_opens(log) == 1  # the backend stayed open across rounds

    asyncio.run(scenario())
    assert sorted(generation_log(log)) == ["a", "a", "b", "c"]
    assert set(loads((root / "images.lock").read_text())) == {"a", "b", "c"}


def test_a_change_mid_round_cancels_only_the_work_it_made_obsolete(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {
        "slow": {"prompt": "first idea", "output": "slow.png"},
        "keep": {"prompt": "stays", "output": "keep.png"},
    }
    root = project({"images.toml": fake_manifest(log, images, delay=1.5)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await asyncio.sleep(0.4)  # both images are generating now
            images["slow"]["prompt"] = "second idea"
            manifest.write_text(fake_manifest(log, images, delay=1.5))
            await script.queue.put({manifest})
            first = await script.next_round()
            assert first.cancelled == ["slow"] and first.changed == ["keep"]
            second = await script.next_round()
            assert second.changed == ["slow"]

    asyncio.run(scenario())
    lock = loads((root / "images.lock").read_text())
    assert lock["slow"].params["prompt"] == "second idea"
    assert lock["keep"].params["prompt"] == "stays"
    assert not (root / ".nebula-build/journal").exists()


@pytest.mark.slow
def test_real_filesystem_saves_start_rounds_and_outputs_do_not(project, tmp_path):
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\n'
            '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\n'
            'output = "a.png"\n'
        }
    )
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round()
            with pytest.raises(TimeoutError):  # its own output must not start a round
                await script.next_round(timeout=1.0)
            # an editor's atomic save: write a temp file, rename it over the manifest
            temp = root / ".images.toml.swp"
            temp.write_text(manifest.read_text().replace('"x"', '"y"'))
            saved = time.monotonic()
            temp.replace(manifest)
            report = await script.next_round(timeout=5)
            assert report.changed == ["a"]
            assert time.monotonic() - saved < 2

    asyncio.run(scenario())


def test_watch_once_runs_a_single_round(project, run_cli):
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\n'
            '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\n'
            'output = "a.png"\n'
        }
    )
    code, out, err = run_cli("watch", "--once")
    assert code == 0, err
    assert "round 1: 1 done (1 generated)" in out
    assert (root / "a.png").exists()
    assert "round 1: up to date (1 image)" in run_cli("watch", "--once").out


def test_watch_target_builds_only_that_image(project, run_cli):
    images = "".join(
        f'[images.{name}]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "{name}.png"\n'
        for name in ("a", "b")
    )
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\n' + images
        }
    )
    code, out, err = run_cli("watch", "--once", "--target", "b")
    assert code == 0, err
    assert "round 1: 1 done (1 generated)" in out
    assert (root / "b.png").exists() and not (root / "a.png").exists()


@pytest.mark.slow
def test_ctrl_c_stops_within_a_second_and_leaves_the_lock_consistent(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(8)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.5, concurrency=2)})
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while len(generation_log(log)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert time.monotonic() - sent < 1.5
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    locked = set(loads((root / "images.lock").read_text()))
    assert locked == {p.stem for p in root.glob("*.png")}
    assert not (root / ".nebula-build/journal").exists()
    assert not [p for p in root.rglob("*") if ".nebula-tmp-" in p.name]


@pytest.mark.slow
def test_ctrl_c_mid_round_says_how_many_images_finished_and_were_kept(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(10)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.3, concurrency=4)})
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while len(generation_log(log)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    said = re.fullmatch(
        r"stopped with (\d+) of 10 images finished \(what they made is kept\)",
        out.splitlines()[-1],
    )
    assert said is not None, out + err
    locked = set(loads((root / "images.lock").read_text()))
    shown = re.findall(r"^\[(\d+)/10\] created (i\d)", out, re.M)
    assert int(said.group(1)) == len(locked) == len(shown) < 10, out
    assert {image for _, image in shown} == locked


def test_files_a_plugin_declares_are_watched(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "x", "output": "a.png"}}
    root = project(
        {
            "images.toml": fake_manifest(log, images).replace(
                "[backends.fake]", '[backends.fake]\nwatch = "styles/lora.txt"'
            ),
            "styles/lora.txt": "v1",
        }
    )

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            assert root / "styles/lora.txt" in watcher.watched_paths()

    asyncio.run(scenario())


def test_an_input_edited_while_the_first_round_works_starts_the_next(project, fake_site, tmp_path):
    from PIL import Image

    def png(color: tuple[int, int, int]) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), color).save(buffer, "PNG")
        return buffer.getvalue()

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
            "images.toml": fake_manifest(log, {"cap": cap}, delay=1.0),
            "refs/base.png": png((10, 20, 30)),
            "refs/mask.png": png((255, 255, 255)),
        }
    )

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await asyncio.sleep(0.5)  # round 1 is generating
            assert root / "refs/base.png" in watcher.watched_paths()
            (root / "refs/base.png").write_bytes(png((200, 0, 0)))
            await script.next_round()
            second = await script.next_round(timeout=10)
            assert second.changed == ["cap"]

    asyncio.run(scenario())
    assert generation_log(log) == ["cap", "cap"]


def test_a_palette_file_is_watched_and_its_edit_reprocesses_without_generating(
    project, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "x", "output": "a.png", "palette": "palettes/two.hex"}}
    root = project(
        {"images.toml": fake_manifest(log, images), "palettes/two.hex": "000000\nFFFFFF\n"}
    )

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            assert root / "palettes/two.hex" in watcher.watched_paths()
            (root / "palettes/two.hex").write_text("FF0000\n00FF00\n")
            await script.queue.put({root / "palettes/two.hex"})
            await script.next_round()

    asyncio.run(scenario())
    assert generation_log(log) == ["a"]  # one generation: the edit re-processed the cache
    from PIL import Image

    with Image.open(root / "a.png") as image:
        colours = {rgb[:3] for _, rgb in image.convert("RGBA").getcolors(1 << 16)}
    assert colours <= {(255, 0, 0), (0, 255, 0)}


def test_a_save_mid_round_leaves_candidate_draws_in_flight_alone(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
    root = project({"images.toml": fake_manifest(log, images, delay=1.5)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            images["a"]["candidates"] = 3  # two more draws of a: each a paid generation
            manifest.write_text(fake_manifest(log, images, delay=1.5))
            await script.queue.put({manifest})
            await asyncio.sleep(0.4)  # a#1 and a#2 are generating now
            images["b"]["prompt"] = "two, edited"  # nothing to do with a
            manifest.write_text(fake_manifest(log, images, delay=1.5))
            await script.queue.put({manifest})
            drawn = await script.next_round()
            assert drawn.cancelled == [], out.getvalue()
            assert (await script.next_round()).changed == ["b"]

    asyncio.run(scenario())
    assert sorted(generation_log(log)) == ["a", "a", "a", "b", "b"]  # no draw paid twice


def test_a_save_mid_round_leaves_a_picked_draw_being_made_alone(
    project, fake_site, run_cli, tmp_path
):
    log = tmp_path / "gen.log"
    images = {
        "a": {"prompt": "one", "candidates": 2, "output": "a.png"},
        "b": {"prompt": "two", "output": "b.png"},
    }
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    assert run_cli("apply").code == 0
    assert run_cli("pick", "a", "1").code == 0
    shutil.rmtree(root / ".nebula-build/cache")  # a checkout without the cache
    (root / "a.png").unlink()
    manifest.write_text(fake_manifest(log, images, delay=1.5))

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await asyncio.sleep(0.4)  # draw 1 of a, the picked one, is generating
            images["b"]["prompt"] = "two, edited"
            manifest.write_text(fake_manifest(log, images, delay=1.5))
            await script.queue.put({manifest})
            first = await script.next_round()
            assert first.cancelled == [] and first.changed == ["a"], out.getvalue()
            assert (await script.next_round()).changed == ["b"]

    asyncio.run(scenario())
    assert generation_log(log).count("a") == 3  # its two draws, then the picked one once
    assert loads((root / "images.lock").read_text())["a"].params["draw"] == 1


def test_a_round_says_a_pick_the_edit_replaced(project, fake_site, run_cli, tmp_path):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "candidates": 2, "output": "a.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    assert run_cli("apply").code == 0
    assert run_cli("pick", "a", "1").code == 0

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            assert (await script.next_round()).picks_dropped == {}
            images["a"]["prompt"] = "one, edited"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            edited = await script.next_round()
            note = (
                "draw 1 was picked before this change: draw 0 of the new draws is the output "
                "until you pick another; undoing the change brings draw 1 back"
            )
            assert edited.picks_dropped == {"a": note}
            assert f"round 2: note: a: {note}\n" in out.getvalue(), out.getvalue()

    asyncio.run(scenario())


def test_a_lock_beside_that_cannot_be_read_is_said_once_per_watch(project, run_cli):
    """Each round's plan asks the locks beside again. Before: the note came again at
    every round that wrote or removed a file; the gallery's plans dropped theirs."""
    root = beside_a_copied_entry(project, run_cli)
    other = root / "other.lock"
    other.write_text(other.read_text().replace("[images.b]", "[images.b"))  # not TOML
    manifest = root / "images.toml"

    async def scenario() -> str:
        async with running_watch(root) as (script, out, _):
            assert (await script.next_round()).changed == ["zz"]  # other.toml's b: unread
            for prompt in ("a lamp", "a lamp at dusk"):
                manifest.write_text(sibling_manifest(A.replace("a lighthouse", prompt)))
                await script.queue.put({manifest})
                assert (await script.next_round()).changed == ["a"]
            return out.getvalue()

    said = asyncio.run(scenario())
    note = UNREAD.format("it is not laid out as nebula-build writes a lock") + WHAT_IS_WRONG
    assert said.count("note: other.lock") == 1 and note + "\n" in said, said
