"""How a command runs its event loop: asyncio.run, but an interrupted command does not
wait for the threads of the loop's default executor. A backend that calls a blocking
client in `asyncio.to_thread` leaves a thread there that no cancellation stops, and
asyncio.run would wait for it until the server answered or the request timed out; its
result is discarded all the same."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: the executor threads an interrupted command left running; the process exits past
#: those that run no code of ours (see `still_ours`)
_abandoned: set[threading.Thread] = set()


class _AbandonedWhenInterrupted(ThreadPoolExecutor):
    """The loop's default executor: the loop's shutdown waits for its threads unless
    the command was interrupted."""

    interrupted = False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self.interrupted:
            _abandoned.update(self._threads)
        super().shutdown(wait and not self.interrupted, cancel_futures=cancel_futures)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` as asyncio.run does; Ctrl-C still cancels it (its writes finish), but
    once it has stopped the threads left in `asyncio.to_thread` are not waited for."""
    executor = _AbandonedWhenInterrupted(thread_name_prefix="asyncio")
    with asyncio.Runner() as runner:
        runner.get_loop().set_default_executor(executor)
        try:
            return runner.run(main)
        except KeyboardInterrupt:
            executor.interrupted = True
            raise


def abandoned_threads() -> list[threading.Thread]:
    """The executor threads an interrupted command left running."""
    return [thread for thread in _abandoned if thread.is_alive()]


def still_ours(thread: threading.Thread) -> bool:
    """Whether `thread` is running nebula-build's own code (a file being written or
    deleted: it finishes before the process exits), not only a plugin's."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith("nebula_build."):
            return True
        frame = frame.f_back
    return False
