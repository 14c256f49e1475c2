"""Watch and a save that lands while a round reads the files it starts watching: the
round read the older bytes, so the save is a change, never taken for the content the
round read."""

from __future__ import annotations

import asyncio

from nebula_build.live.watch import Watcher
from tests.live.scripted import running_watch

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64

[images.product]
rows = "data/products.csv"
id = "sku"
prompt = "photo of {name}"
output = "images/{sku}.png"
"""

CSV = "sku,name\nT-1,Green tea\n"


def test_a_data_file_saved_after_the_round_read_it_starts_a_round(project, monkeypatch):
    """The first round reads the data file, then (a large project takes its time to
    resolve) the file is saved before the round starts watching it: a round follows."""
    root = project({"images.toml": SITE, "data/products.csv": CSV})
    data = root / "data/products.csv"
    loaded = Watcher.loaded

    def saved_meanwhile(self: Watcher, prepared) -> None:
        if data.read_text() == CSV:
            data.write_text(CSV + "T-2,Black tea\n")
        loaded(self, prepared)

    monkeypatch.setattr(Watcher, "loaded", saved_meanwhile)

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            first = await script.next_round()
            assert first.changed == ["product[T-1]"], out.getvalue()
            await script.queue.put({data})  # the save's event
            second = await script.next_round(timeout=5)
            assert second.changed == ["product[T-2]"], out.getvalue()

    asyncio.run(scenario())


def test_a_data_file_fixed_as_a_round_fails_on_it_starts_a_round(project, monkeypatch):
    """A round fails on the data file, and the fix is saved before watch starts
    watching that file: a round follows and builds it."""
    root = project({"images.toml": SITE, "data/products.csv": "name\nGreen tea\n"})
    data = root / "data/products.csv"
    watch_declared = Watcher._watch_declared_data

    def fixed_meanwhile(self: Watcher) -> None:
        data.write_text(CSV)
        watch_declared(self)

    monkeypatch.setattr(Watcher, "_watch_declared_data", fixed_meanwhile)

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            failed = await script.next_round()
            assert failed.error is not None, out.getvalue()
            await script.queue.put({data})  # the fix's event
            fixed = await script.next_round(timeout=5)
            assert (fixed.error, fixed.changed) == (None, ["product[T-1]"]), out.getvalue()

    asyncio.run(scenario())
