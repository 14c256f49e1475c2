"""Watch edit rounds plan again what an earlier round left undone (failed, refused,
superseded, blocked): an edit round never reports "up to date" while `plan` would
show changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nebula_build.engine.planning import plan_for
from nebula_build.engine.prepare import current_lock, prepare
from nebula_build.errors import RequestRejectedError, UserError
from nebula_build.live.watch import SETTLE_S, Round
from nebula_build.plugin.manager import load_registry
from nebula_build.state.project import Project
from tests.conftest import fake_manifest, generation_log
from tests.live.scripted import Script, running_watch


def pending(root: Path) -> list[str]:
    """What `plan` would do now, as "kind:image" (and the files it would write)."""
    project = Project(root, root / "images.toml")
    plan = plan_for(prepare(project, load_registry()), current_lock(project, lambda _: None))
    return [f"{a.kind.value}:{a.image}" for a in plan.changes] + [
        f"file:{f.label}" for f in plan.files if f.is_change
    ]


def _images(names: str) -> dict[str, dict[str, object]]:
    return {name: {"prompt": name, "output": f"out/{name}.png"} for name in names}


async def _save(script: Script, manifest: Path, text: str) -> Round:
    manifest.write_text(text)
    await script.queue.put({manifest})
    return await script.next_round(timeout=30)


def _failing_once(monkeypatch: pytest.MonkeyPatch, names: set[str]) -> None:
    import nebula_fake

    original = nebula_fake.FakeBackend.generate

    async def generate(self, request):  # type: ignore[no-untyped-def]
        if request.image_name in names:
            names.discard(request.image_name)
            raise RequestRejectedError("transient", backend="fake", image=request.image_name)
        return await original(self, request)

    monkeypatch.setattr(nebula_fake.FakeBackend, "generate", generate)


def test_an_image_that_failed_is_made_by_the_next_edit_round(
    project, fake_site, tmp_path, monkeypatch
):
    log = tmp_path / "gen.log"
    images = _images("abcd")
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    _failing_once(monkeypatch, {"b"})

    async def scenario() -> None:
        async with running_watch(root) as (script, out, _):
            first = await script.next_round(timeout=30)
            assert set(first.failed) == {"b"}
            images["c"]["prompt"] = "c2"
            second = await _save(script, manifest, fake_manifest(log, images))
            assert sorted(second.changed) == ["b", "c"]
            assert pending(root) == []

    asyncio.run(scenario())


def test_a_comment_after_a_failure_retries_it_and_is_not_up_to_date(
    project, fake_site, tmp_path, monkeypatch
):
    log = tmp_path / "gen.log"
    images = _images("abcd")
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    _failing_once(monkeypatch, {"b"})

    async def scenario() -> None:
        async with running_watch(root) as (script, out, _):
            await script.next_round(timeout=30)
            text = fake_manifest(log, images).replace("[images.c]\n", "[images.c]\n# note\n")
            second = await _save(script, manifest, text)
            assert second.changed == ["b"]
            assert "up to date" not in out.getvalue()
            assert pending(root) == []

    asyncio.run(scenario())


def test_an_edit_in_a_refused_round_is_made_by_the_next_one(
    project, fake_site, tmp_path, monkeypatch
):
    import nebula_fake

    log = tmp_path / "gen.log"
    images = _images("abcd")
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    refuse = {"once": False}

    def preflight(cls, settings, root):  # type: ignore[no-untyped-def]
        if refuse["once"]:
            refuse["once"] = False
            raise UserError("balance too low: top up")

    monkeypatch.setattr(nebula_fake.FakeBackend, "preflight", classmethod(preflight), raising=False)

    async def scenario() -> None:
        async with running_watch(root) as (script, out, _):
            await script.next_round(timeout=30)
            refuse["once"] = True
            images["a"]["prompt"] = "a2"
            refused = await _save(script, manifest, fake_manifest(log, images))
            assert refused.error is not None and "balance too low" in refused.error
            made = len(generation_log(log))
            images["c"]["prompt"] = "c2"
            third = await _save(script, manifest, fake_manifest(log, images))
            assert sorted(third.changed) == ["a", "c"]
            assert sorted(generation_log(log)[made:]) == ["a", "c"]
            text = fake_manifest(log, images).replace("[images.d]\n", "[images.d]\n# x\n")
            await _save(script, manifest, text)
            assert out.getvalue().strip().splitlines()[-1].startswith("round 4: up to date")
            assert pending(root) == []

    asyncio.run(scenario())


def test_swapping_two_outputs_ends_with_nothing_left_to_do(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = _images("abcd")
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, _):
            await script.next_round(timeout=30)
            images["a"]["output"], images["d"]["output"] = "out/d.png", "out/a.png"
            await _save(script, manifest, fake_manifest(log, images))
            assert sorted(pending(root)) == ["conflict:a", "conflict:d"]  # each in the other's way
            images["d"]["output"] = "out/d.webp"  # d makes way: a's move waits for the next round
            await _save(script, manifest, fake_manifest(log, images))
            images["c"]["prompt"] = "c2"
            await _save(script, manifest, fake_manifest(log, images))
            assert pending(root) == []

    asyncio.run(scenario())


def test_an_edit_superseded_then_undone_is_made(project, fake_site, tmp_path, monkeypatch):
    import nebula_fake

    log = tmp_path / "gen.log"
    images = _images("ab")
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    original = nebula_fake.FakeBackend.generate

    async def slow(self, request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(2)
        return await original(self, request)

    async def scenario() -> None:
        async with running_watch(root) as (script, out, _):
            await script.next_round(timeout=30)
            monkeypatch.setattr(nebula_fake.FakeBackend, "generate", slow)
            images["a"]["prompt"], images["b"]["prompt"] = "a-v2", "b-v2"
            wanted = fake_manifest(log, images)
            manifest.write_text(wanted)
            await script.queue.put({manifest})
            await asyncio.sleep(0.7)  # a-v2 and b-v2 are being made
            images["b"]["prompt"] = "b-v3"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})  # b-v2 is obsolete: cancelled once it settles
            await asyncio.sleep(SETTLE_S + 0.2)
            manifest.write_text(wanted)  # undone while a-v2 is still being made
            await script.queue.put({manifest})
            second = await script.next_round(timeout=30)
            assert second.cancelled == ["b"]
            third = await script.next_round(timeout=30)  # the text of the second, again
            assert third.changed == ["b"]
            assert pending(root) == []

    asyncio.run(scenario())


def test_the_gallery_gets_every_image_after_an_edit_round_with_nothing_to_do(
    project, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    images = _images("abcd")
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, _):
            await script.next_round(timeout=30)
            text = fake_manifest(log, images).replace("[images.c]\n", "[images.c]\n# x\n")
            nothing = await _save(script, manifest, text)
            assert "up to date" in out.getvalue()
            assert nothing.plan is not None
            assert sorted(action.image for action in nothing.plan.actions) == list("abcd")

    asyncio.run(scenario())


def test_an_output_deleted_before_its_new_folder_is_watched_is_made_again(
    project, fake_site, tmp_path
):

    log = tmp_path / "gen.log"
    images = {name: {"prompt": name, "output": f"out/sub/{name}.png"} for name in "ab"}
    root = project({"images.toml": fake_manifest(log, images)})

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round(timeout=30)
            (root / "out/sub/a.png").unlink()  # before the watch re-arms with out/sub
            restored = await script.next_round(timeout=15)  # once it has: a round of its own
            assert restored.changed == ["a"]
            assert (root / "out/sub/a.png").exists()

    asyncio.run(scenario())
