"""The hooks a plugin may implement, with `@nebula_build.plugin.hookimpl`.

A plugin is a module (or object) named by an entry point in the `nebula_build`
group. The built-in backends are plugins too: the manager loads them by dotted
name and registers them exactly like a third party's. A function whose name
starts with `nebula_build_` but matches no hook below is an error that names the
plugin's distribution, so a misspelt hook never goes unnoticed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from nebula_build.plugin.backend import Backend

PROJECT = "nebula_build"
#: every hook's name starts with this, and so must every function meant as one
HOOK_PREFIX = f"{PROJECT}_"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def nebula_build_register_backends() -> list[type[Backend]]:  # type: ignore[empty-body]
    """Return the backend classes this plugin provides.

    Each class subclasses `nebula_build.plugin.Backend` and has a unique `name`:
    the value users write as `backend = "<name>"` in images.toml. Two plugins
    providing the same name is an error that names both distributions.
    """
