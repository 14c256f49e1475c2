"""How a thread that ends in an exception is said while a command runs: one line naming
the plugin whose code it ran where that can be told, without secrets (the traceback too
under NEBULA_BUILD_DEBUG=1), never Python's traceback amid the progress lines."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from nebula_build.cli.stray import without_secrets

if TYPE_CHECKING:
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
        if os.environ.get("NEBULA_BUILD_DEBUG"):
            import traceback

            raised = traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
            write(without_secrets("".join(raised)))

    threading.excepthook = hook

    def restore() -> None:
        threading.excepthook = previous

    return restore


def _said(args: threading.ExceptHookArgs, registry: BackendRegistry) -> str:
    from nebula_build.errors import first_line

    said = first_line(args.exc_value) if args.exc_value is not None else ""
    failure = f"{args.exc_type.__name__}: {said}"
    plugin = _plugin_of(args.exc_traceback, registry)
    if plugin is None:
        name = args.thread.name if args.thread is not None else "a thread"
        return f"thread {name!r} failed: {failure} (NEBULA_BUILD_DEBUG=1 shows the traceback)"
    return (
        f"a thread of backend {plugin.name!r} from {plugin.source} failed: {failure} "
        "(a bug in that plugin: report it to its authors; NEBULA_BUILD_DEBUG=1 shows the "
        "traceback)"
    )


def _plugin_of(traceback: TracebackType | None, registry: BackendRegistry) -> BackendPlugin | None:
    """The installed plugin whose package holds the first code the thread ran that is
    not Python's threading (its target, or its own `run`); None where none does."""
    packages = {
        plugin.cls.__module__.partition(".")[0]: plugin
        for plugin in registry.plugins.values()
        if not plugin.builtin
    }
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module != "threading":
            return packages.get(module.partition(".")[0])
        traceback = traceback.tb_next
    return None
