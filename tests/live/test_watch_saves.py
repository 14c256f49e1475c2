"""Watch and the way editors save: a save written in pieces is one round, which
never says an error the last piece fixes nor removes what the save keeps."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tests.conftest import fake_manifest, generation_log
from tests.live.scripted import running_watch


def _truncate_then_write(manifest: Path, text: str) -> list[Path | str]:
    """VS Code: truncate, then write (a large file may land in two writes, the first
    a manifest that parses with image b missing)."""
    return ["", text[: text.index("[images.b]")], text]


def _rename_away_then_write(manifest: Path, text: str) -> list[Path | str]:
    """Vim (backupcopy=no): the manifest is renamed to its backup, written anew, and
    the backup removed; for a moment there is no manifest."""
    return [manifest.with_name("images.toml~"), text]


@pytest.mark.parametrize("save", [_truncate_then_write, _rename_away_then_write])
def test_a_save_written_in_pieces_is_one_round_that_removes_nothing(
    project, fake_site, tmp_path, save
):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            images["a"]["prompt"] = "one, edited"
            for piece in save(manifest, fake_manifest(log, images)):
                if isinstance(piece, Path):
                    manifest.replace(piece)
                else:
                    manifest.write_text(piece)
                await script.queue.put({manifest})
                await asyncio.sleep(0.05)
            manifest.with_name("images.toml~").unlink(missing_ok=True)
            while not any(r.changed for r in script.rounds[1:]):
                await script.next_round()
            with contextlib.suppress(TimeoutError):
                await script.next_round(timeout=1.5)
            done = [(r.number, r.error, r.changed) for r in script.rounds[1:]]
            # a piece seen after a round read the whole save: a round with nothing to do
            assert done in ([(2, None, ["a"])], [(2, None, ["a"]), (3, None, [])])
            assert (root / "b.png").exists()
        assert "error" not in out.getvalue() and "deleted" not in out.getvalue()

    asyncio.run(scenario())
    generated = generation_log(log)
    assert sorted(generated[:2]) == ["a", "b"] and generated[2:] == ["a"]  # b never again


@pytest.mark.parametrize("broken", [False, True])
def test_a_file_rewritten_without_pause_still_has_its_removal_and_its_error(
    project, fake_site, tmp_path, broken
):
    """A script or an autosave that writes the manifest again every half second never
    leaves a second of quiet: what it dropped is removed, and its error said, anyway."""
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> str:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            del images["b"]
            text = fake_manifest(log, images) + ("[images.c\n" if broken else "")
            for _ in range(16):  # 8 s
                manifest.write_text(text)
                await script.queue.put({manifest})
                await asyncio.sleep(0.5)
                if (not broken and not (root / "b.png").exists()) or "error" in out.getvalue():
                    break
        return out.getvalue()

    printed = asyncio.run(scenario())
    if broken:
        assert printed.count("invalid TOML") == 1
        assert (root / "b.png").exists()
    else:
        assert not (root / "b.png").exists() and "error" not in printed


def test_a_paid_image_is_not_generated_for_a_value_a_save_cut_short(
    project, fake_site, tmp_path, monkeypatch
):
    """The first piece of a save can parse with a value cut short (`seed = 4` of
    `seed = 42`): on a paid backend, that image is never paid for."""
    import nebula_fake

    monkeypatch.setattr(nebula_fake.FakeBackend, "paid", True)
    log = tmp_path / "gen.log"
    images: dict[str, dict[str, object]] = {"a": {"prompt": "one", "output": "a.png", "seed": 7}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round()
            images["a"]["seed"] = 42
            text = fake_manifest(log, images)
            for piece in (text[: text.index("seed = 42") + len("seed = 4")], text):
                manifest.write_text(piece)
                await script.queue.put({manifest})
                await asyncio.sleep(0.05)
            assert (await script.next_round()).changed == ["a"]
            with contextlib.suppress(TimeoutError):
                await script.next_round(timeout=1)
        assert "error" not in out.getvalue()

    asyncio.run(scenario())
    assert generation_log(log) == ["a", "a"]  # seed 7, then 42: never 4
    lock = (root / "images.lock").read_text()
    assert "seed = 42," in lock and "seed = 4," not in lock
