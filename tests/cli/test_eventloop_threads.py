"""How a command's event loop ends with threads still running in its executor: one of
ours (a file being written) is waited for before the command returns, and so before
its caller lets go of the project lock; one running a plugin's code alone is not."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from nebula_build.cli import eventloop


def _started_in_the_executor(work: Callable[[], object]) -> Coroutine[Any, Any, None]:
    async def main() -> None:
        asyncio.get_running_loop().run_in_executor(None, work)
        await asyncio.sleep(0.05)
        raise RuntimeError("the round failed")

    return main()


def test_a_failed_command_waits_for_a_write_of_its_own(monkeypatch):
    """Only Ctrl-C should leave our writes running past the command (main_exit waits
    for them); a failure returned at once, the project lock released under them."""
    written = threading.Event()

    def write() -> None:
        time.sleep(0.3)
        written.set()

    monkeypatch.setattr(eventloop, "still_ours", lambda thread: not written.is_set())
    with pytest.raises(RuntimeError):
        eventloop.run(_started_in_the_executor(write))
    assert written.is_set()


def test_a_plugins_thread_does_not_hold_a_command_that_ended(monkeypatch):
    released = threading.Event()
    monkeypatch.setattr(eventloop, "still_ours", lambda thread: False)
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        eventloop.run(_started_in_the_executor(lambda: released.wait(30)))
    assert time.monotonic() - started < 5
    released.set()
