"""The files the other manifests in a project's folder record in their locks.

Several manifests may share a folder (`images.toml` and `other.toml`, each with its own
lock). A lock is untrusted (a pull request's): an entry copied from `other.lock` into
`images.lock` names a file nebula-build really wrote, record and all, so only the
other lock can say that file is not this manifest's to remove or move away. Read only
where a plan would remove or move a file, each lock once.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nebula_build.fsutil import read_regular
from nebula_build.state import conflicts
from nebula_build.state.project import Project, lock_name
from nebula_build.text import file_key, printable

#: a lock larger than this (a 100k-entry one is about 60 MiB) is not read for this
_LOCK_LIMIT = 256 << 20

__all__ = ["Recorded", "RecordedBeside", "recorded_elsewhere"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """Who else records a file: a lock beside this one, as one of its manifest's
    images, atlases or its asset manifest."""

    lock: str
    #: "b", "atlas boats", "the asset manifest"
    owner: str

    def says(self, it: str = "it") -> str:
        """ "other.lock records it as b's"."""
        return f"{self.lock} records {it} as {self.owner}'s"


#: who else records a file (a project path), or None
RecordedBeside = Callable[[str], "Recorded | None"]


def recorded_elsewhere(project: Project) -> RecordedBeside:
    """Who else records a file: the lock of another manifest in the folder (both sides
    of one a merge left conflict markers in), or None. The locks are read at the first
    question, so a plan that removes and moves nothing reads none."""
    found: dict[str, Recorded] | None = None

    def recorded(path: str) -> Recorded | None:
        nonlocal found
        if found is None:
            found = _recorded_beside(project)
        return found.get(file_key(path))

    return recorded


def _recorded_beside(project: Project) -> dict[str, Recorded]:
    """Each file (as `text.file_key` keys it) the other manifests' locks record. A lock,
    or a table of it, that cannot be read is left out: it protects nothing, and its
    own manifest's commands say what is wrong with it."""
    found: dict[str, Recorded] = {}
    for lock in _sibling_lock_names(project):
        raw = read_regular(project.root / lock, limit=_LOCK_LIMIT)
        try:
            text = None if raw is None else raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        for data in _sides(text or ""):
            for path, owner in _files(data):
                found.setdefault(file_key(path), Recorded(lock, owner))
    return found


def _sides(text: str) -> list[dict[str, Any]]:
    """The lock's tables; each side's, where a merge left conflict markers in it."""
    try:
        return [tomllib.loads(text)]
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        pass
    try:
        split = conflicts.sides(text)
        return [] if split is None else [tomllib.loads(side.text) for side in split]
    except (conflicts.MarkerError, tomllib.TOMLDecodeError, RecursionError, ValueError):
        return []


def _files(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Each file a lock's tables record, with whose it is."""
    images, atlases, assets = (data.get(key) for key in ("images", "atlases", "assets"))
    for name, entry in _tables(images):
        owner = printable(name, 80)
        yield from ((path, owner) for path in _strings([entry.get("output")]))
        yield from ((path, owner) for path in _strings(_keys(entry.get("variants"))))
    for name, record in _tables(atlases):
        owner = f"atlas {printable(name, 80)}"
        yield from ((path, owner) for path in _strings(_keys(record.get("files"))))
    if isinstance(assets, Mapping):
        yield from ((path, "the asset manifest") for path in _strings([assets.get("manifest")]))


def _tables(value: object) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(value, Mapping):
        yield from ((k, v) for k, v in value.items() if isinstance(v, Mapping))


def _keys(value: object) -> list[object]:
    return list(value) if isinstance(value, Mapping) else []


def _strings(values: list[object]) -> Iterator[str]:
    return (value for value in values if isinstance(value, str))


def _sibling_lock_names(project: Project) -> list[str]:
    """The names of the locks of the other manifests in the folder, sorted: a file
    that is not a link, named as `Project.lock_path` names a manifest's lock."""
    try:
        with os.scandir(project.root) as found:
            files = {entry.name for entry in found if entry.is_file(follow_symlinks=False)}
    except OSError:
        return []
    manifests = [name for name in files if name.endswith(".toml")]
    own = project.lock_path.name
    return sorted(
        lock for manifest in manifests if (lock := lock_name(manifest)) in files and lock != own
    )
