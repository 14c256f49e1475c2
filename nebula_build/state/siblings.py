"""The files the other manifests in a project's folder record in their locks.

Several manifests may share a folder (`images.toml` and `other.toml`, each with its own
lock). A lock is untrusted (a pull request's): an entry copied from `other.lock` into
`images.lock` names a file nebula-build really wrote, record and all, so only the
other lock can say that file is not this manifest's to remove or move away. Read only
where a plan would remove or move a file, each lock once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping

from nebula_build.errors import LockfileError
from nebula_build.fsutil import read_regular
from nebula_build.state.lockfile import LockEntry, loads_merged
from nebula_build.state.project import Project, lock_name
from nebula_build.text import file_key, printable

#: a lock larger than this (a 100k-entry one is about 60 MiB) is not read for this
_LOCK_LIMIT = 256 << 20

__all__ = ["recorded_beside", "recorded_elsewhere"]


def recorded_elsewhere(project: Project) -> Callable[[str], str | None]:
    """Who else records a file (`recorded_beside`), or None; the locks are read at the
    first question, so a plan that removes and moves nothing reads none."""
    found: dict[str, str] | None = None

    def recorded(path: str) -> str | None:
        nonlocal found
        if found is None:
            found = recorded_beside(project)
        return found.get(file_key(path))

    return recorded


def recorded_beside(project: Project) -> dict[str, str]:
    """Each file (as `text.file_key` keys it) that the lock of another manifest in the
    project's folder records, both sides of a merge's conflict, with who records it:
    "other.lock records it as b's". A lock that cannot be read is left out: it
    protects nothing, as it would protect nothing from its own manifest's plan."""
    found: dict[str, str] = {}
    for lock, entries in _sibling_locks(project):
        for name, entry in entries:
            for path in entry.files():
                found.setdefault(file_key(path), f"{lock} records it as {printable(name, 80)}'s")
    return found


def _sibling_locks(project: Project) -> Iterator[tuple[str, Iterator[tuple[str, LockEntry]]]]:
    """Each other manifest's lock beside this one's (`X.lock` where `X.toml` is), with
    its entries."""
    for name in _sibling_lock_names(project):
        raw = read_regular(project.root / name, limit=_LOCK_LIMIT)
        if raw is None:
            continue
        try:
            entries, merged = loads_merged(raw.decode("utf-8"), name)
        except (LockfileError, UnicodeDecodeError):
            continue
        theirs: Mapping[str, tuple[LockEntry, LockEntry]] = merged.contested if merged else {}
        yield name, _with_sides(entries, theirs)


def _with_sides(
    entries: Mapping[str, LockEntry], contested: Mapping[str, tuple[LockEntry, LockEntry]]
) -> Iterator[tuple[str, LockEntry]]:
    yield from entries.items()
    for name, (ours, theirs) in contested.items():
        yield name, ours
        yield name, theirs


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
