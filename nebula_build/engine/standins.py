"""Placeholders a stand-in for the API made (`text.made_by_stand_in`: the loopback
server of `python -m nebula_build.testing`, for a dry run of the paid path).

They carry the real images' keys, so nothing but their provenance tells them apart.
They are never shared through the remote cache, and they are taken for the images
they stand for only by a run that may reach a stand-in itself: one whose backend
says its generations now would be marked so too (`Backend.made_with`; nebula's
does where NEBULA_BASE_URL is on loopback). Anywhere else (the real apply after a
dry run in the same checkout) the plan makes each one again, and no cache entry of
one counts as the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property

from nebula_build.core.resolve import Resolved
from nebula_build.errors import PluginError
from nebula_build.text import made_by_stand_in, shell_option

#: the most images whose names a note's command lists (`--replace` each)
NAMED_IN_COMMAND = 5


def kept_note(images: Sequence[str]) -> str:
    """The note on placeholders a run keeps, with the command that makes them for real:
    "… (`nebula-build apply --replace hero` makes it for real); …"."""
    options = [shell_option("--replace", name) for name in images[:NAMED_IN_COMMAND]]
    how = "`nebula-build apply " + " ".join(options)
    if len(images) > NAMED_IN_COMMAND:
        how += " …`, a --replace for each,"
    else:
        how += "`"
    from nebula_build.core.plan import PLACEHOLDER_NOTE  # a `validate` has no plan to load

    it = "it" if len(images) == 1 else "them"
    return f"{PLACEHOLDER_NOTE} ({how} makes {it} for real); an apply elsewhere makes {it} again"


def says_stand_in(resolved: Resolved, backend: str, model: str) -> bool:
    """Whether `backend` says a stand-in for its service answers `model` now (its
    `made_with` marks a placeholder); a plugin whose `made_with` fails says no (the
    plan notes that failure where it compares settings)."""
    plugin = resolved.backends[backend]
    try:
        return made_by_stand_in(plugin.made_with(resolved.settings[backend], model))
    except PluginError:
        return False


class StandIns:
    """Which placeholders this run may take for the images they stand for."""

    def __init__(self, resolved: Resolved) -> None:
        self._resolved = resolved

    @cached_property
    def accepted(self) -> bool:
        """Whether a backend of the project would make placeholders now: asked once,
        and only when a placeholder turns up."""
        used = {(spec.backend, spec.model) for spec in self._resolved.specs.values()}
        return any(
            says_stand_in(self._resolved, backend, model)
            for backend, model in sorted(used)
            if backend in self._resolved.backends
        )

    def refused(self, made_with: Mapping[str, str]) -> bool:
        """Whether `made_with` marks a placeholder this run may not take for an image."""
        return made_by_stand_in(made_with) and not self.accepted
