"""The files the other manifests in a project's folder record in their locks.

Several manifests may share a folder (`images.toml` and `other.toml`, each with its own
lock). A lock is untrusted (a pull request's): an entry copied from `other.lock` into
`images.lock` names a file nebula-build really wrote, record and all, so only the
other lock can say that file is not this manifest's to remove or move away. Read only
where a plan would remove or move a file, each lock once per process until it changes
(watch plans every round), and of each only the lines that name files, as nebula-build
writes them: a 10,000-entry lock is about 4 MiB of TOML, 1.5 s to parse whole, 0.2 s
so.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebula_build.fsutil import read_regular
from nebula_build.state import conflicts
from nebula_build.state.project import Project, lock_name
from nebula_build.text import file_key, printable

#: a lock larger than this (a 100k-entry one is about 60 MiB) is not read for this
_LOCK_LIMIT = 256 << 20
#: of the folder's locks' lines, the most looked at in one plan (a 100k-entry lock has
#: about a million), and of those that name files, the most read: bytes (a 100k-entry
#: lock's are about 5 MiB), and lines, `[`, `{`, `,` and `=` (each a value to parse, at
#: up to 5 µs: whole, 256 MiB of `x = [[],[],…]` takes minutes and gigabytes)
_LINES_LIMIT = 8_000_000
_NAMING_LIMIT = 64 << 20
_MARKS_LIMIT = 2_000_000
#: a line of a lock that names files, as nebula-build writes it (each value on one
#: line): a table's header (not an array's: `[[images.a.history]]` names none), its
#: `output`, `variants`, `files` or `manifest`, and git's conflict markers; a longer
#: line is no line of nebula-build's (a path is at most 1024 characters)
_NAMING = (
    rb"(?:\[(?!\[)|(?:output|variants|files|manifest)[ \t]*=|<{7}|\|{7}|={7}|>{7})"
    rb"[^\n]{0,65536}+(?=\n|\Z)"
)
_FIRST_NAMING = re.compile(_NAMING)
#: with the newline before it: a search for a newline runs three times as fast as one
#: for the start of a line
_NEXT_NAMING = re.compile(rb"\n" + _NAMING)

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

_Signature = tuple[int, int, int, int]
#: what the locks of the folder last asked about record, by path: (its stat, by
#: `file_key` who records each file)
_read: dict[Path, tuple[_Signature, dict[str, Recorded]]] = {}


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
    own manifest's commands say what is wrong with it; so is one read past what is
    left of the `_Budget` (thousands of locks cost no more than one)."""
    global _read
    found: dict[str, Recorded] = {}
    held, _read = _read, {}  # only this folder's locks, as they are now, stay held
    budget = _Budget()
    for lock in _sibling_lock_names(project):
        for key, recorded in _recorded_in(project.root / lock, held, budget).items():
            found.setdefault(key, recorded)
    return found


@dataclass
class _Budget:
    """What is left to read of the folder's locks, for one plan."""

    lines: int = _LINES_LIMIT
    naming: int = _NAMING_LIMIT
    marks: int = _MARKS_LIMIT


def _recorded_in(
    path: Path, held: Mapping[Path, tuple[_Signature, dict[str, Recorded]]], budget: _Budget
) -> dict[str, Recorded]:
    """The files the lock at `path` records, read again only where it changed since
    `held` (its size, times and inode)."""
    before = _signature(path)
    if before is not None and path in held and held[path][0] == before:
        _read[path] = held[path]
        return held[path][1]
    text = _naming_lines(read_regular(path, limit=_LOCK_LIMIT) or b"", budget)
    found: dict[str, Recorded] = {}
    for data in _sides(text or ""):
        for file, owner in _files(data):
            found.setdefault(file_key(file), Recorded(path.name, owner))
    if before is not None and _signature(path) == before:
        _read[path] = (before, found)
    return found


def _signature(path: Path) -> _Signature | None:
    try:
        info = path.stat(follow_symlinks=False)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def _naming_lines(raw: bytes, budget: _Budget) -> str | None:
    """The lines of a lock that name files (`_NAMING`), or None where they are more
    than `budget` has left (their lines count against it, read or not), or not UTF-8."""
    budget.lines -= raw.count(b"\n")
    if budget.lines < 0:
        return None
    first = _FIRST_NAMING.match(raw)
    lines = [] if first is None else [first[0]]
    size = marks = 0
    for found in _NEXT_NAMING.finditer(raw):
        line = found[0]
        size += len(line)
        marks += 1 + sum(line.count(mark) for mark in (b"[", b"{", b",", b"="))
        if size > budget.naming or marks > budget.marks:
            return None
        lines.append(line)
    budget.naming, budget.marks = budget.naming - size, budget.marks - marks
    try:
        return b"".join(lines).decode("utf-8")
    except UnicodeDecodeError:
        return None


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
