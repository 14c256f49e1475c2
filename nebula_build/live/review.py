"""The review loop's way in: a pick the gallery server receives (on one of its
threads) is handed to the watcher's event loop, which runs it between rounds (the
watcher holds the project lock, and two rounds never run at once), and its outcome
comes back as the status and line the page shows."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

from nebula_build.errors import NebulaBuildError
from nebula_build.live.watch import Watcher

#: how long a click waits for the round in progress to finish and the pick to be made
PICK_TIMEOUT_SECONDS = 120.0


def picker(
    watcher: Watcher, *, timeout: float = PICK_TIMEOUT_SECONDS
) -> Callable[[str, int, str], tuple[int, str]]:
    """`pick(name, index, key) -> (status, line)` for the gallery server's threads: `key`
    is the generation key of the draw the page showed."""

    def pick(name: str, index: int, key: str) -> tuple[int, str]:
        loop = watcher.loop
        if loop is None or loop.is_closed():
            return 503, "watch is not running a round loop yet: try again in a moment"
        try:
            future = asyncio.run_coroutine_threadsafe(watcher.pick(name, index, shown=key), loop)
        except RuntimeError:  # the loop closed in between
            return 503, "watch has stopped"
        try:
            return 200, future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return 503, "watch is busy with a round: try again when it finishes"
        except concurrent.futures.CancelledError:
            return 503, "watch has stopped"
        except NebulaBuildError as exc:
            return 409, str(exc)

    return pick
