"""A `Watcher` run in the test's own event loop, its changes scripted by the test
(or read from the real files), and a record of the rounds it finished."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from nebula_build.live.watch import Round, Watcher, filesystem_changes
from nebula_build.plugin.manager import load_registry
from nebula_build.state.project import Project
from nebula_build.ui.style import Style


class Script:
    """A change source the test drives, and a record of finished rounds."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[set[Path]] = asyncio.Queue()
        self.rounds: list[Round] = []
        self.round_done = asyncio.Event()

    async def changes(self):
        while True:
            yield await self.queue.get()

    def on_round(self, report: Round) -> None:
        self.rounds.append(report)
        self.round_done.set()

    async def next_round(self, timeout: float = 10) -> Round:
        await asyncio.wait_for(self.round_done.wait(), timeout)
        self.round_done.clear()
        return self.rounds[-1]


def make_watcher(root: Path, script: Script, out: io.StringIO) -> Watcher:
    project = Project(root, root / "images.toml")
    return Watcher(project, load_registry(), out=out, style=Style(False), on_round=script.on_round)


@asynccontextmanager
async def running_watch(
    root: Path, *, files: bool = False
) -> AsyncIterator[tuple[Script, io.StringIO, Watcher]]:
    """Watch `root` while the block runs, on the changes the test puts in the script's
    queue (or, with `files`, on the real files' changes); then stop it, and check it
    was still running: a watch that ended by itself is a failure."""
    script, out = Script(), io.StringIO()
    watcher = make_watcher(root, script, out)
    changes = filesystem_changes(watcher) if files else script.changes()
    task = asyncio.create_task(watcher.run(changes))
    try:
        yield script, out, watcher
    except BaseException:
        task.cancel()
        with suppress(BaseException):
            await task
        raise
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
