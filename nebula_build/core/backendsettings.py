"""A backend's settings (`[backends.NAME]`) validated within the bound of problems that
are described: past it, the problems are counted, not listed.

A pull request's manifest may give a backend a million unknown keys. Validated whole,
pydantic made an error for each, all held at once: 1,190,000 of them took 340 MB
(beside the manifest's own 200 MB), and listing them 12 µs each. The unknown keys past
those described are validated a slice at a time instead, only to count their errors,
and the settings without them are validated for the errors described.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from nebula_build.errors import NebulaBuildError
from nebula_build.plugin.backend import BackendSettings
from nebula_build.plugin.manager import BackendPlugin

#: unknown keys validated at once to count their errors: about 15 MB of pydantic's
SLICE = 50_000


@dataclass(frozen=True)
class Refused:
    """Settings that do not validate: the first errors (pydantic's), and how many more
    there are."""

    errors: list[Any]
    unseen: int


def parse_settings(
    plugin: BackendPlugin, raw: Mapping[str, Any], room: int
) -> BackendSettings | Refused:
    """`raw` validated by `plugin`, or its first `room` errors and a count of the rest."""
    fields = plugin.cls.settings_model.model_fields
    unknown = [key for key in raw if key not in fields]
    if len(unknown) > room:
        known = {key: value for key, value in raw.items() if key in fields}
        counted = _counted(plugin, raw, known, unknown, room)
        if counted is not None:
            return counted
    try:
        return plugin.parse_settings(raw)
    except ValidationError as exc:
        return _listed(plugin, raw, exc, room)


def _counted(
    plugin: BackendPlugin,
    raw: Mapping[str, Any],
    known: dict[str, Any],
    unknown: list[str],
    room: int,
) -> Refused | None:
    """The errors of `raw` (its `known` settings and `unknown` keys), those of the
    unknown keys past the first `room` counted a slice at a time; None where an unknown
    key is not exactly one error (a plugin that parses its settings itself may take
    some), to be listed as they come."""
    base = _error_count(plugin, known)
    if base is None:
        return None
    for start in range(room, len(unknown), SLICE):
        keys = unknown[start : start + SLICE]
        if _error_count(plugin, known | {key: raw[key] for key in keys}) != base + len(keys):
            return None
    described = {key: raw[key] for key in unknown[:room]}
    kept = {key: value for key, value in raw.items() if key in known or key in described}
    try:
        plugin.parse_settings(kept)
    except ValidationError as exc:
        if exc.error_count() != base + len(described):
            return None
        errors = exc.errors()[:room]
        return Refused(errors, base + len(unknown) - len(errors))
    except NebulaBuildError:
        return None
    return Refused([], len(unknown)) if base == 0 and not described else None


def _error_count(plugin: BackendPlugin, raw: Mapping[str, Any]) -> int | None:
    """How many errors validating `raw` makes (None: the plugin failed otherwise)."""
    try:
        plugin.parse_settings(raw)
    except ValidationError as exc:
        return exc.error_count()
    except NebulaBuildError:
        return None
    return 0


def _listed(
    plugin: BackendPlugin, raw: Mapping[str, Any], exc: ValidationError, room: int
) -> Refused:
    """The first `room` errors of `exc` (all of `raw`'s), and how many more there are.
    Past `room`, its unknown keys are taken out and the rest validated again: pydantic
    takes 12 µs an error to list them. (Where that does not take out exactly their
    errors, a plugin's own parsing, all are listed.)"""
    total = exc.error_count()
    if total > room:
        fields = plugin.cls.settings_model.model_fields
        gone = set([key for key in raw if key not in fields][room:])
        if gone:
            try:
                plugin.parse_settings({k: v for k, v in raw.items() if k not in gone})
            except ValidationError as pruned:
                if pruned.error_count() == total - len(gone):
                    exc = pruned
            except NebulaBuildError:
                pass  # the plugin's parsing: its errors are listed as they came
            else:
                if total == len(gone):
                    return Refused([], total)
    errors = exc.errors()[:room]
    return Refused(errors, total - len(errors))
