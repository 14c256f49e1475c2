"""How a command runs its event loop: asyncio.run, but

- a command that has stopped (done, failed or interrupted) does not wait for the threads
  of the loop's default executor. A backend that calls a blocking client in
  `asyncio.to_thread` leaves a thread there that no cancellation or timeout stops, and
  asyncio.run would wait for it until the server answered, or for good; its result is
  discarded all the same;
- work a plugin left to the loop (a task it created, a callback it scheduled) cannot
  end the command: a SystemExit it raises would leave the loop with the command half
  done, no lock written and the exception's message (a secret, maybe) as the process's
  last words. It is said through the loop's exception handler and the command goes on.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: what a loop's exception handler is given: the loop, and what failed (asyncio's keys)
ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]

#: the executor threads a command left running as it stopped; the process exits past
#: those that run no code of ours (see `still_ours`)
_abandoned: set[threading.Thread] = set()


class _AbandonedWhenDone(ThreadPoolExecutor):
    """The loop's default executor: once the command has stopped (done, failed or
    interrupted), the loop's shutdown does not wait for its threads. One still running
    is a plugin's call its timeout gave up on, which may never return."""

    done = False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self.done:
            _abandoned.update(self._threads)
        super().shutdown(wait and not self.done, cancel_futures=cancel_futures)


def run(main: Coroutine[Any, Any, T], on_failure: ExceptionHandler | None = None) -> T:
    """Run `main` as asyncio.run does; Ctrl-C still cancels it (its writes finish), but
    once it has stopped the threads left in `asyncio.to_thread` are not waited for.
    `on_failure` is the loop's exception handler while `main` runs and the loop winds
    down: it is also given each SystemExit that a task or callback other than `main`'s
    raised, and `main` goes on."""
    executor = _AbandonedWhenDone(thread_name_prefix="asyncio")
    runner = asyncio.Runner()
    loop = runner.get_loop()
    loop.set_default_executor(executor)
    if on_failure is not None:
        loop.set_exception_handler(on_failure)

    def said(message: str, stray: BaseException | None = None) -> None:
        """Told to `on_failure` itself: a plugin may have replaced the loop's handler."""
        context = (
            {"message": message} if stray is None else {"message": message, "exception": stray}
        )
        if on_failure is None:
            loop.default_exception_handler(context)
        else:
            on_failure(loop, context)

    stopped_by_user = False
    try:
        return _run_past_strays(runner, main, said)
    except KeyboardInterrupt:
        stopped_by_user = True
        raise
    finally:
        if not stopped_by_user:  # a write of ours ends before the caller's project lock
            _wait_for_ours(executor)
        executor.done = True
        try:
            _wind_down(loop, said)
        finally:
            try:
                runner.close()  # runs the loop while the executor shuts down: a timer may fire
            except SystemExit as stray:
                said(_ENDED, stray)
        if on_failure is not None:  # a plugin's task collected from now on is not said
            loop.set_exception_handler(_unsaid)


#: what is said of a SystemExit a task or callback other than the command's raised
_ENDED = "work left to the event loop ended"
#: a callable that says what failed on the loop: a message, and the exception
Say = Callable[..., None]


def _run_past_strays(runner: asyncio.Runner, main: Coroutine[Any, Any, T], said: Say) -> T:
    running: list[asyncio.Task[T]] = []

    async def main_task() -> T:
        task = asyncio.current_task()
        assert task is not None
        running.append(task)
        return await main

    step: Coroutine[Any, Any, T] = main_task()
    while True:
        try:
            return runner.run(step)
        except SystemExit as stray:
            if not running or _raised_by(running[0], stray):
                raise
            said(_ENDED, stray)
        except RuntimeError:  # "Event loop stopped before Future completed"
            if not running or running[0].done():
                raise
            said("a plugin stopped the event loop; the command went on")
        except asyncio.CancelledError:
            # Ctrl-C cancelled main, and a stray one ran before main ended (the runner
            # counts interrupts per call): as asyncio.run says it
            if running and running[0].cancelled():
                raise KeyboardInterrupt from None
            raise
        if running[0].cancelled():  # by Ctrl-C, as the stray one ran
            raise KeyboardInterrupt from None
        if running[0].done():
            return running[0].result()
        step = _awaited(running[0])


def _wind_down(loop: asyncio.AbstractEventLoop, said: Say) -> None:
    """Cancel the tasks left (each once) and close the async generators, as the runner's
    close does, but past a SystemExit from any of them (the runner would stop at the
    first, leaving the rest to be closed as the process ends, when their failures can no
    longer be told without secrets)."""
    cancelled: set[asyncio.Task[Any]] = set()
    for _ in range(_MOST_ROUNDS):
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not left:
            break
        for task in left:
            if task not in cancelled:
                task.cancel()
                cancelled.add(task)
        try:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        except SystemExit as stray:
            said(_ENDED, stray)
            continue
        for task in left:
            if not task.cancelled() and task.exception() is not None:
                said("a task failed as the command ended", task.exception())
    for _ in range(_MOST_ROUNDS):
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            break
        except SystemExit as stray:
            said(_ENDED, stray)


#: the rounds of cancelling that winding down tries (a task may start another as it ends)
_MOST_ROUNDS = 100


def _raised_by(task: asyncio.Task[Any], stray: SystemExit) -> bool:
    return task.done() and not task.cancelled() and task.exception() is stray


def _unsaid(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Once the command has ended: a plugin's failed task collected then is not said (the
    secrets to keep out of what it would say are no longer known). A collection to say
    them while they are would cost a 100,000-image apply a quarter of a second."""


async def _awaited(task: asyncio.Task[T]) -> T:
    return await task


def _wait_for_ours(executor: ThreadPoolExecutor) -> None:
    """Wait for the executor's threads that run our own code (a file being written,
    moved or deleted), never for one that runs a plugin's alone."""
    for thread in list(executor._threads):
        while thread.is_alive() and still_ours(thread):
            thread.join(0.05)


def abandoned_threads() -> list[threading.Thread]:
    """The executor threads a command left running as it stopped."""
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
