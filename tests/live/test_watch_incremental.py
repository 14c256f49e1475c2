"""Watch on a large project: an edit resolves, plans and makes only its images."""

from __future__ import annotations

import asyncio

import pytest

from nebula_build.core import resolve as resolve_module
from nebula_build.core.manifest import load
from nebula_build.core.resolve import resolve
from nebula_build.errors import ManifestError
from nebula_build.live.watch import filesystem_changes
from nebula_build.plugin.manager import load_registry
from tests.conftest import fake_manifest, generation_log
from tests.live.scripted import running_watch

COUNT = 1200


def _images() -> dict[str, dict[str, object]]:
    return {
        f"s{n:04}": {"prompt": f"sprite {n}", "seed": n, "output": f"out/{n // 100}/s{n:04}.png"}
        for n in range(COUNT)
    }


def test_an_edit_in_a_large_project_remakes_only_its_image(
    project, fake_site, tmp_path, monkeypatch
):
    log = tmp_path / "gen.log"
    images = _images()
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    resolved: list[str] = []
    original = resolve_module._Resolver.resolve

    def counting(self, name, decl):  # type: ignore[no-untyped-def]
        resolved.append(name)
        return original(self, name, decl)

    monkeypatch.setattr(resolve_module._Resolver, "resolve", counting)

    def save(name: str, prompt: str) -> None:
        images[name]["prompt"] = prompt
        manifest.write_text(fake_manifest(log, images))

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            first = await script.next_round(timeout=120)
            assert len(first.changed) == COUNT and len(resolved) == COUNT

            resolved.clear()
            made = len(generation_log(log))
            save("s0600", "sprite 600, at dusk")
            await script.queue.put({manifest})
            second = await script.next_round()
            assert second.changed == ["s0600"] and resolved == ["s0600"]
            assert generation_log(log)[made:] == ["s0600"]
            assert second.prepared is not None and second.prepared.changed_only == {"s0600"}

            # deleted by hand: a round of its own plans that image alone, restores it
            resolved.clear()
            (root / "out/3/s0300.png").unlink()
            await script.queue.put({root / "out/3/s0300.png"})
            restored = await script.next_round()
            assert restored.changed == ["s0300"] and resolved == []
            assert restored.prepared is not None and restored.prepared.changed_only == {"s0300"}
            assert (root / "out/3/s0300.png").exists()
            save("s0900", "sprite 900, in the rain")
            await script.queue.put({manifest})
            third = await script.next_round()
            assert third.changed == ["s0900"] and resolved == ["s0900"]
            assert generation_log(log)[made:] == ["s0600", "s0900"]

            # a broken edit says what the whole path says; the next good one recovers
            manifest.write_text(fake_manifest(log, images).replace('"sprite 5"', '"sprite 5'))
            await script.queue.put({manifest})
            broken = await script.next_round()
            with pytest.raises(ManifestError) as whole:
                load(manifest)
            assert broken.error == str(whole.value)
            resolved.clear()
            save("s0005", "sprite 5, fixed")
            await script.queue.put({manifest})
            fixed = await script.next_round()
            assert fixed.changed == ["s0005"] and resolved == ["s0005"]

            # a comment: its image is planned alone, and found up to date
            manifest.write_text(
                fake_manifest(log, images).replace("[images.s0010]\n", "[images.s0010]\n# hi\n")
            )
            await script.queue.put({manifest})
            noted = await script.next_round()
            assert noted.changed == [] and noted.prepared.changed_only == {"s0010"}
            assert out.getvalue().splitlines()[-1].endswith(f"up to date ({COUNT} images)")

            # a rename and a removal (and the comment gone): still only what changed
            resolved.clear()
            images["s1300"] = images.pop("s0007")
            del images["s0008"]
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            renamed = await script.next_round()
            assert sorted(renamed.changed) == ["s0007", "s0008", "s1300"]  # s0007's file stays
            assert sorted(resolved) == ["s0010", "s1300"]
            assert not (root / "out/0/s0008.png").exists()

            state = watcher._loaded
        monkeypatch.setattr(resolve_module._Resolver, "resolve", original)
        assert state is not None
        assert state.resolved == resolve(load(manifest), load_registry(), lambda path: None)

    asyncio.run(scenario())
    assert generation_log(log)[COUNT:] == ["s0600", "s0900", "s0005"]  # s1300: s0007's


def test_an_edit_to_defaults_resolves_everything_again(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = dict(list(_images().items())[:30])
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round(timeout=60)
            manifest.write_text(fake_manifest(log, images).replace("width = 64", "width = 128"))
            await script.queue.put({manifest})
            second = await script.next_round(timeout=60)
            assert len(second.changed) == 30
            assert second.prepared is not None and second.prepared.changed_only is None

    asyncio.run(scenario())


def test_an_output_deleted_by_hand_is_restored_by_a_round_of_its_own(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = dict(list(_images().items())[:3])
    root = project({"images.toml": fake_manifest(log, images)})
    deleted = root / "out/0/s0001.png"

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round(timeout=30)
            await asyncio.sleep(2.5)  # the folder the round made is watched within a second
            made = len(generation_log(log))
            deleted.unlink()
            report = await script.next_round(timeout=10)
            assert report.changed == ["s0001"] and deleted.exists()
            assert report.prepared is not None and report.prepared.changed_only == {"s0001"}
            assert len(generation_log(log)) == made  # from the cache
            assert "restored s0001" in out.getvalue()
            with pytest.raises(TimeoutError):  # the restored file is ours: no round for it
                await script.next_round(timeout=1.5)

    asyncio.run(scenario())


@pytest.mark.parametrize("away", ["renamed", "trashed", "replaced"])
def test_a_folder_of_outputs_renamed_or_trashed_is_made_again(project, fake_site, tmp_path, away):
    """Replaced: renamed away and made anew at once (a mount point unmounted is the
    same to the watch: the folder it armed is no longer at that path)."""
    log = tmp_path / "gen.log"
    images = {name: {"prompt": name, "output": f"out/{name}.png"} for name in "ab"}
    root = project({"images.toml": fake_manifest(log, images)})
    folder = root / "out"

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round(timeout=30)
            await asyncio.sleep(2.5)  # the folder the round made is watched within a second
            if away == "renamed":
                folder.rename(root / "out-old")
            elif away == "trashed":  # a file manager's trash: moved out of the project whole
                folder.rename(tmp_path / "trash")
            else:
                folder.rename(root / "out-old")
                folder.mkdir()
            report = await script.next_round(timeout=10)
            assert sorted(report.changed) == ["a", "b"]
            assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]
            assert len(generation_log(log)) == 2  # from the cache

    asyncio.run(scenario())


def test_a_folder_of_outputs_and_data_renamed_and_back_reads_the_data_again(
    project, fake_site, tmp_path
):
    """Outputs beside the data file they are made from: the folder renamed away says
    the data is missing, and renamed back is read again (nothing is generated)."""
    log = tmp_path / "gen.log"
    images = {
        "product": {
            "rows": "assets/products.csv",
            "id": "sku",
            "prompt": "{name}, product photo",
            "output": "assets/{sku}.png",
        }
    }
    root = project(
        {
            "images.toml": fake_manifest(log, images),
            "assets/products.csv": "sku,name\ntea,green tea\ncake,lemon cake\n",
        }
    )
    folder = root / "assets"

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round(timeout=30)
            await asyncio.sleep(2.5)  # the folder the round wrote into is watched within a second
            folder.rename(root / "assets-old")
            assert (
                "file not found: assets/products.csv" in (await script.next_round(timeout=10)).error
            )
            (root / "assets-old").rename(folder)
            report = await script.next_round(timeout=10)
            assert report.error is None and report.changed == []
            assert sorted(p.name for p in folder.iterdir()) == [
                "cake.png",
                "products.csv",
                "tea.png",
            ]

    asyncio.run(scenario())
    assert len(generation_log(log)) == 2


def test_a_save_made_before_the_files_are_watched_is_heard(project, fake_site, tmp_path):
    """Watch arms its watches beside its first round: a save in between (the page
    says "up to date", the user saves at once) had no event and was never applied."""
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            await script.next_round(timeout=30)  # the first round read the manifest
            images["a"]["prompt"] = "one, edited"
            manifest.write_text(fake_manifest(log, images))  # no watch armed yet
            changes = filesystem_changes(watcher)
            heard = await asyncio.wait_for(anext(changes), timeout=5)
            assert heard == {manifest}
            with pytest.raises(TimeoutError):  # heard once: the next look finds it as read
                await asyncio.wait_for(anext(changes), timeout=1.5)
            await changes.aclose()

    asyncio.run(scenario())
