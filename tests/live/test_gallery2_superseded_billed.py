"""A watch round's line names the requests a newer edit cut off in flight only where
their backend is paid: a free backend's superseded round says nothing of billing."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import fake_manifest
from tests.live.scripted import running_watch


@pytest.mark.parametrize("paid", [False, True], ids=["free", "paid"])
def test_a_superseded_round_says_billing_only_for_a_paid_backend(
    paid, project, fake_site, tmp_path, monkeypatch
):
    import nebula_fake

    log = tmp_path / "gen.log"
    images = {name: {"prompt": name, "output": f"out/{name}.png"} for name in "ab"}
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    original = nebula_fake.FakeBackend.generate

    async def slow(self, request):  # type: ignore[no-untyped-def]
        if request.prompt == "b":
            await asyncio.sleep(30)
        return await original(self, request)

    monkeypatch.setattr(nebula_fake.FakeBackend, "generate", slow)
    monkeypatch.setattr(nebula_fake.FakeBackend, "paid", paid, raising=False)

    async def scenario() -> str:
        async with running_watch(root) as (script, out, _):
            await asyncio.sleep(1.0)  # a is made, b is in flight
            images["b"]["prompt"] = "b-v2"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            first = await script.next_round(timeout=30)
            assert first.cancelled == ["b"]
            assert (await script.next_round(timeout=30)).changed == ["b"]
            return out.getvalue()

    out = asyncio.run(scenario())
    line = next(line for line in out.splitlines() if line.startswith("round 1: "))
    assert ", 1 superseded in " in line, out
    billed = "; the request in flight may have been billed: 1 to fake (b)"
    assert line.endswith(billed) if paid else "billed" not in out, out
    assert out.count("billed") == paid
