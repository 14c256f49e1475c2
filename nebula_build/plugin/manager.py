"""The plugin manager and a typed façade over its hooks.

The manager is built by `load_registry()` on demand, never at import time.
The rest of the code sees only `BackendRegistry`, never raw hook results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

import pluggy

from nebula_build.errors import PluginError, UnknownBackendError
from nebula_build.plugin import hookspecs
from nebula_build.plugin.backend import Backend

ENTRY_POINT_GROUP = "nebula_build"


def make_plugin_manager(
    *, load_entry_points: bool = True, extra_plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, installed plugins and `extra_plugins`."""
    from nebula_build.backends import diffusers, nebula, preview

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for builtin in (nebula, preview, diffusers):
        pm.register(builtin, name=builtin.__name__)
    for plugin in extra_plugins:
        pm.register(plugin)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party plugin must not look like our bug
            raise PluginError(f"could not load a {ENTRY_POINT_GROUP!r} plugin: {exc}") from exc
    return pm


@dataclass(frozen=True)
class BackendRegistry:
    """Backend classes by name, each with the distribution that provided it."""

    backends: dict[str, type[Backend]]
    sources: dict[str, str]

    def get(self, name: str, where: str = "") -> type[Backend]:
        try:
            return self.backends[name]
        except KeyError:
            raise UnknownBackendError(name, list(self.backends), where) from None

    def names(self) -> list[str]:
        return sorted(self.backends)


def _distribution_of(pm: pluggy.PluginManager, plugin: object) -> str:
    for loaded, dist in pm.list_plugin_distinfo():
        if loaded is plugin:
            return f"{dist.project_name} {dist.version}"
    if isinstance(plugin, ModuleType) and plugin.__name__.startswith("nebula_build."):
        return "nebula-build (built in)"
    return pm.get_name(plugin) or repr(plugin)


def registry_from(pm: pluggy.PluginManager) -> BackendRegistry:
    """Collect every plugin's backends; duplicate or nameless ones are errors."""
    backends: dict[str, type[Backend]] = {}
    sources: dict[str, str] = {}
    for impl in pm.hook.nebula_build_register_backends.get_hookimpls():
        source = _distribution_of(pm, impl.plugin)
        provided = impl.function()
        if not isinstance(provided, list | tuple):
            raise PluginError(f"{source}: nebula_build_register_backends must return a list")
        for cls in provided:
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise PluginError(f"{source}: {cls!r} is not a nebula_build.Backend subclass")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"{source}: backend {cls.__qualname__} has no name")
            if name in backends:
                raise PluginError(
                    f"backend {name!r} is provided twice: by {sources[name]} and by {source}; "
                    "uninstall one of them"
                )
            backends[name] = cls
            sources[name] = source
    return BackendRegistry(backends, sources)


def load_registry(*, extra_plugins: Iterable[object] = ()) -> BackendRegistry:
    """The registry of every backend available in this environment."""
    return registry_from(make_plugin_manager(extra_plugins=extra_plugins))
