"""The plugin contract.

A plugin is a module (or object) registered under the `nebula_build` entry-point
group. It implements any of the hooks below with `@nebula_build.hookimpl`.
The built-in backends register through the very same hook.

Example, in a third-party package's `pyproject.toml`::

    [project.entry-points.nebula_build]
    mybackend = "mypackage.plugin"

and in `mypackage/plugin.py`::

    from nebula_build import Backend, hookimpl

    class MyBackend(Backend):
        name = "mybackend"
        ...

    @hookimpl
    def nebula_build_register_backends():
        return [MyBackend]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from nebula_build.plugin.backend import Backend

PROJECT = "nebula_build"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def nebula_build_register_backends() -> list[type[Backend]]:  # type: ignore[empty-body]
    """Return the backend classes this plugin provides.

    Each class subclasses `nebula_build.Backend` and has a unique `name`: the
    value users write as `backend = "<name>"` in images.toml. Two plugins
    providing the same name is an error that names both distributions.
    """
