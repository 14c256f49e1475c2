"""How code a plugin left running fails while a command runs (a thread that ends in an
exception; a task or callback left to the event loop that raises): one line naming the
plugin whose code it ran where that can be told, without secrets (the traceback too
under NEBULA_BUILD_DEBUG=1), never Python's traceback amid the progress lines."""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from nebula_build.cli.stray import without_secrets
from nebula_build.errors import first_line, typed_line

if TYPE_CHECKING:
    import asyncio

    from nebula_build.plugin.manager import BackendPlugin, BackendRegistry


def say_in_one_line(
    warn: Callable[[str], None], write: Callable[[str], object], registry: BackendRegistry
) -> Callable[[], None]:
    """From now on, a thread's uncaught exception is a warning (`warn`), naming the
    backend of `registry` whose code the thread ran; its traceback (`write`) only under
    NEBULA_BUILD_DEBUG=1. Returns what puts the hook before back."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:  # as Python's own hook: a thread's quiet end
            return
        warn(without_secrets(_said(args, registry)))
        _traceback_when_debugging(write, args.exc_value)

    threading.excepthook = hook

    def restore() -> None:
        threading.excepthook = previous

    return restore


def loop_failures_in_one_line(
    warn: Callable[[str], None], write: Callable[[str], object], registry: BackendRegistry
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event loop's exception handler: a task or callback left to the loop that
    raised (see cli/eventloop.py: a SystemExit too) is a warning (`warn`) naming the
    backend of `registry` whose code raised; its traceback (`write`) only under
    NEBULA_BUILD_DEBUG=1. Each exception is said once: asyncio tells of a task's again
    when the task is collected."""
    said: collections.deque[BaseException] = collections.deque(maxlen=64)
    told = 0

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal told
        failure = context.get("exception")
        if isinstance(failure, BaseException):
            if any(failure is before for before in said):
                return
            said.append(failure)
        told += 1
        if told > MOST_LOOP_FAILURES:
            if told == MOST_LOOP_FAILURES + 1:
                warn("more work left to the event loop failed: not said (a plugin's bug)")
            return
        try:
            if not isinstance(failure, BaseException):
                warn(without_secrets(f"event loop: {context.get('message')}"))
                return
            warn(without_secrets(_said_of_loop(failure, registry)))
            _traceback_when_debugging(write, failure)
        except (Exception, SystemExit):  # a plugin's exception can fail as it is looked at
            warn("work left to the event loop failed (what failed could not be read)")

    return handler


#: the failures of work left to the event loop said in one command (a plugin's callback
#: that reschedules itself failed 1,000 times in a tenth of a second)
MOST_LOOP_FAILURES = 20


def _traceback_when_debugging(
    write: Callable[[str], object], failure: BaseException | None
) -> None:
    if failure is not None and os.environ.get("NEBULA_BUILD_DEBUG"):
        import traceback

        write(without_secrets("".join(traceback.format_exception(failure))))


def _said_of_loop(failure: BaseException, registry: BackendRegistry) -> str:
    said = typed_line(failure)
    went_on = "; the command went on" if isinstance(failure, SystemExit) else ""
    plugin = _plugin_of(failure.__traceback__, registry, _is_loop_machinery)
    if plugin is None:
        return (
            f"work left to the event loop failed: {said}{went_on} "
            "(NEBULA_BUILD_DEBUG=1 shows the traceback)"
        )
    return (
        f"a task or callback of backend {plugin.name!r} from {plugin.source} failed: "
        f"{said}{went_on} (a bug in that plugin: report it to its authors; "
        "NEBULA_BUILD_DEBUG=1 shows the traceback)"
    )


def _said(args: threading.ExceptHookArgs, registry: BackendRegistry) -> str:
    said = first_line(args.exc_value) if args.exc_value is not None else ""
    failure = f"{args.exc_type.__name__}: {said}"
    plugin = _plugin_of(args.exc_traceback, registry, lambda module: module == "threading")
    if plugin is None:
        name = args.thread.name if args.thread is not None else "a thread"
        return f"thread {name!r} failed: {failure} (NEBULA_BUILD_DEBUG=1 shows the traceback)"
    return (
        f"a thread of backend {plugin.name!r} from {plugin.source} failed: {failure} "
        "(a bug in that plugin: report it to its authors; NEBULA_BUILD_DEBUG=1 shows the "
        "traceback)"
    )


def _is_loop_machinery(module: str) -> bool:
    """Whether `module` runs the event loop (asyncio's, and ours that runs it), not a
    task's or callback's own code."""
    return (
        module == "asyncio" or module.startswith("asyncio.") or module == __package__ + ".eventloop"
    )


def _plugin_of(
    traceback: TracebackType | None, registry: BackendRegistry, machinery: Callable[[str], bool]
) -> BackendPlugin | None:
    """The installed plugin whose package holds the first code in `traceback` that is
    not `machinery` (Python's threading: a thread's target, or its own `run`; the event
    loop: a task's coroutine, a callback); None where none does."""
    packages = {
        plugin.cls.__module__.partition(".")[0]: plugin
        for plugin in registry.plugins.values()
        if not plugin.builtin
    }
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and not machinery(module):
            return packages.get(module.partition(".")[0])
        traceback = traceback.tb_next
    return None
