"""The files the other manifests in a project's folder record in their locks.

Several manifests may share a folder (`images.toml` and `other.toml`, each with its own
lock). A lock is untrusted (a pull request's): an entry copied from `other.lock` into
`images.lock` names a file nebula-build really wrote, record and all, so only the
other lock can say that file is not this manifest's to remove or move away. Read only
where a plan would remove or move a file, each lock once per process until it changes
(watch plans every round), and of each only the lines that name files, as nebula-build
writes them: a 10,000-entry lock is about 4 MiB of TOML, 1.5 s to parse whole, 0.2 s
so. A lock is read `_CHUNK` at a time: one as large as a lock may be (1 GiB) costs the
memory of its lines that name files, not of its size. A lock that cannot be read so
protects nothing, and the plan says so once (`unread_beside`).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nebula_build.fsutil import SAFE_READ_FLAGS
from nebula_build.state import conflicts
from nebula_build.state.lockfile import MAX_LOCK_BYTES
from nebula_build.state.project import Project, lock_name
from nebula_build.text import file_key, printable

#: how much of a lock is read at once: a lock of 100,000 images with their history is
#: about 246 MiB, and may be 1 GiB (`MAX_LOCK_BYTES`)
_CHUNK = 16 << 20
#: of the folder's locks' lines, the most looked at in one plan (each about 0.13 µs: a
#: 100k-entry lock has about a million, 3.4 million with three earlier generations each,
#: and 1 GiB as nebula-build writes a lock about 21 million), and of those that name
#: files, the most read: bytes (a 100k-entry lock's are about 5 MiB), and lines, `[`,
#: `{`, `,` and `=` (each a value to parse, at up to 5 µs: whole, 256 MiB of
#: `x = [[],[],…]` takes minutes and gigabytes)
_LINES_LIMIT = 24_000_000
_NAMING_LIMIT = 64 << 20
_MARKS_LIMIT = 2_000_000
#: a line of a lock that names files, as nebula-build writes it (each value on one
#: line): a table's header (not an array's: `[[images.a.history]]` names none), its
#: `output`, `variants`, `files` or `manifest`, and git's conflict markers; a longer
#: line is no line of nebula-build's (a path is at most 1024 characters)
_NAMING = (
    rb"(?:\[(?!\[)|(?:output|variants|files|manifest)[ \t]{0,32}=|<{7}|\|{7}|={7}|>{7})"
    rb"[^\n]{0,65536}+(?=\n|\Z)"
)
#: with the newline before it: a search for a newline runs three times as fast as one
#: for the start of a line
_NEXT_NAMING = re.compile(rb"\n" + _NAMING)
#: the most a line `_NAMING` matches may hold, its newline included: the end of a chunk
#: past this since its last newline is in no such line
_LONGEST_NAMING = 1 + 8 + 32 + 1 + 65536
#: why a lock past its size is not read (`other.lock is not read: {why}`)
_TOO_LARGE = f"it has more than a lock may have ({MAX_LOCK_BYTES >> 20:,} MiB)"

__all__ = ["Recorded", "RecordedBeside", "UnreadNote", "recorded_elsewhere", "unread_beside"]


class UnreadNote(str):
    """`other.lock is not read: …`: a note a long-running caller (watch, which plans
    every round) says once, not at every plan that asks the lock again."""

    __slots__ = ()


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
#: `file_key` who records each file, and the note that says it was not read)
_read: dict[Path, tuple[_Signature, dict[str, Recorded], UnreadNote | None]] = {}
#: the locks asked about since `unread_beside` last said which could not be read: by
#: path, the note that says so
_unread: dict[Path, UnreadNote] = {}


def recorded_elsewhere(project: Project) -> RecordedBeside:
    """Who else records a file: the lock of another manifest in the folder (both sides
    of one a merge left conflict markers in), or of a project in a folder below, the
    file's or one above it (`sub/images.toml`); or None. The locks are read at the
    first question, so a plan that removes and moves nothing reads none."""
    found: dict[str, Recorded] | None = None
    below: dict[str, dict[str, Recorded] | None] = {}  # by folder: what its locks record
    budget = _Budget()  # one for every folder below: a thousand cost no more than one

    def recorded(path: str) -> Recorded | None:
        nonlocal found
        if found is None:
            found = _recorded_beside(project)
        return found.get(file_key(path)) or _recorded_below(project, path, below, budget)

    return recorded


def _recorded_below(
    project: Project, path: str, below: dict[str, dict[str, Recorded] | None], budget: _Budget
) -> Recorded | None:
    """Who records `path` among the locks of the projects in its folders below the
    root, nearest first: their paths are relative to their own folder. A folder that
    is a link (None in `below`) is not looked into, nor past it."""
    parts = path.split("/")[:-1]
    folders = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    for folder in folders:
        if folder not in below:
            linked = (project.root / folder).is_symlink()
            below[folder] = (
                None if linked else _recorded_in_folder(project.root / folder, folder, budget)
            )
        if below[folder] is None:
            return None
    for folder in reversed(folders):
        recorded = below[folder]
        if recorded and (owner := recorded.get(file_key(path[len(folder) + 1 :]))) is not None:
            return owner
    return None


def _recorded_in_folder(folder: Path, shown: str, budget: _Budget) -> dict[str, Recorded]:
    """What the locks of the manifests in `folder` (`shown` from the root) record, by
    `file_key` of their paths (relative to `folder`); a lock that cannot be read
    protects nothing, and `unread_beside` says so."""
    found: dict[str, Recorded] = {}
    for manifest, lock in _lock_names(folder):
        recorded, unread = _recorded_in(folder / lock, manifest, _read, budget, shown=shown)
        if unread is not None:
            _unread[folder / lock] = unread
        for key, owner in recorded.items():
            found.setdefault(key, Recorded(f"{shown}/{owner.lock}", owner.owner))
    return found


def unread_beside(project: Project) -> list[UnreadNote]:
    """A note for each lock in the folder, or in a folder below, that was asked about
    since the last call and could not be read, so protects nothing (`other.lock is not
    read: …`)."""
    ours = [path for path in _unread if path.is_relative_to(project.root)]
    return [_unread.pop(path) for path in ours]


def _recorded_beside(project: Project) -> dict[str, Recorded]:
    """Each file (as `text.file_key` keys it) the other manifests' locks record. A lock,
    or a table of it, that cannot be read is left out: it protects nothing (the
    plan says so: `unread_beside`), and its own manifest's commands say what is wrong
    with it; so is one read past what is left of the `_Budget` (thousands of locks
    cost no more than one)."""
    global _read
    found: dict[str, Recorded] = {}
    held, _read = _read, {}  # only this folder's locks, as they are now, stay held
    budget = _Budget()
    for manifest, lock in _sibling_lock_names(project):
        path = project.root / lock
        recorded, unread = _recorded_in(path, manifest, held, budget)
        if unread is not None:
            _unread[path] = unread
        for key, owner in recorded.items():
            found.setdefault(key, owner)
    return found


def _unread_note(lock: str, manifest: str, unread: _Unread) -> UnreadNote:
    """`other.lock is not read: …`, as a terminal shows it (a checkout names the files)."""
    advice = (
        ""
        if isinstance(unread, _PastBudget)
        else f"; `nebula-build -f {shlex.quote(_not_an_option(manifest))} plan` says what is "
        "wrong with it"
    )
    return UnreadNote(
        printable(
            f"{lock} is not read: {unread.why}, so nothing keeps this plan from removing or "
            f"moving {manifest}'s files{advice}"
        )
    )


def _not_an_option(name: str) -> str:
    return f"./{name}" if name.startswith("-") else name


@dataclass
class _Budget:
    """What is left to read of the folder's locks, for one plan."""

    lines: int = field(default_factory=lambda: _LINES_LIMIT)
    naming: int = field(default_factory=lambda: _NAMING_LIMIT)
    marks: int = field(default_factory=lambda: _MARKS_LIMIT)


class _Unread(Exception):
    """Why a lock is not read (`other.lock is not read: {why}`)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _PastBudget(_Unread):
    """A lock read past what is left of the `_Budget`: nothing wrong with it alone."""

    def __init__(self) -> None:
        super().__init__(
            f"with the other locks in the folder it is more than one plan reads "
            f"({_LINES_LIMIT:,} lines, {_NAMING_LIMIT >> 20} MiB of lines that name files or "
            f"{_MARKS_LIMIT:,} values)"
        )


def _recorded_in(
    path: Path,
    manifest: str,
    held: Mapping[Path, tuple[_Signature, dict[str, Recorded], UnreadNote | None]],
    budget: _Budget,
    *,
    shown: str = "",
) -> tuple[dict[str, Recorded], UnreadNote | None]:
    """The files the lock at `path` (`manifest`'s) records, and the note that says why
    it could not be read (None where it was); read again only where it changed since
    `held` (its size, times and inode)."""
    before = _signature(path)
    if before is not None and path in held and held[path][0] == before:
        _read[path] = held[path]
        return held[path][1], held[path][2]
    found: dict[str, Recorded] = {}
    unread = None
    try:
        for data in _sides(_naming_lines(_chunks(path), budget)):
            for file, owner in _files(data):
                found.setdefault(file_key(file), Recorded(path.name, owner))
    except _Unread as exc:
        folder = f"{shown}/" if shown else ""
        unread = _unread_note(f"{folder}{path.name}", f"{folder}{manifest}", exc)
    if before is not None and _signature(path) == before:
        _read[path] = (before, found, unread)
    return found, unread


def _signature(path: Path) -> _Signature | None:
    try:
        info = path.stat(follow_symlinks=False)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def _chunks(path: Path) -> Iterator[bytes]:
    """The bytes of the lock at `path`, `_CHUNK` at a time (none where it is gone);
    `_Unread` where it is not a plain file (a FIFO would block), cannot be read, or
    holds more than a lock may."""
    try:
        fd = os.open(path, SAFE_READ_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _Unread(f"it could not be opened ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb", buffering=0) as handle:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _Unread("it is not a plain file")
            if info.st_size > MAX_LOCK_BYTES:  # refused from its size, as its manifest does
                raise _Unread(_TOO_LARGE)
            read = 0
            while chunk := handle.read(_CHUNK):
                read += len(chunk)
                if read > MAX_LOCK_BYTES:  # it grew since fstat
                    raise _Unread(_TOO_LARGE)
                yield chunk
        except OSError as exc:
            raise _Unread(f"it could not be read ({exc.strerror or exc})") from None


def _naming_lines(chunks: Iterable[bytes], budget: _Budget) -> str:
    """The lines of a lock that name files (`_NAMING`), as they come in `chunks`;
    `_Unread` where they are more than `budget` has left (a lock's lines count against
    it, read or not), or not UTF-8."""
    taken = _Taken(budget)
    rest = b"\n"  # the line a chunk ends in, from its newline: the file's first starts so
    for chunk in chunks:
        budget.lines -= chunk.count(b"\n")
        if budget.lines < 0:
            raise _PastBudget
        first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
        if first < 0:  # the line goes on
            rest = rest + chunk if rest and len(rest) + len(chunk) <= _LONGEST_NAMING else b""
            continue
        if rest and len(rest) + first <= _LONGEST_NAMING:
            rest += chunk[:first]
            taken.take(rest, len(rest))
        taken.take(chunk, last, start=first)
        rest = chunk[last:] if len(chunk) - last <= _LONGEST_NAMING else b""
    taken.take(rest, len(rest))
    return taken.text()


class _Taken:
    """The lines that name files taken from a lock so far, within what `budget` has left."""

    def __init__(self, budget: _Budget) -> None:
        self._budget = budget
        self._lines: list[bytes] = []
        self._size = self._marks = 0

    def take(self, text: bytes, end: int, start: int = 0) -> None:
        """Take the lines of `text` from the newline at `start` up to `end` that name
        files; `_Unread` past the budget."""
        for found in _NEXT_NAMING.finditer(text, start, end):
            line = found[0]
            self._size += len(line)
            self._marks += 1 + sum(line.count(mark) for mark in (b"[", b"{", b",", b"="))
            if self._size > self._budget.naming or self._marks > self._budget.marks:
                raise _PastBudget
            self._lines.append(line)

    def text(self) -> str:
        """What was taken, as text, its cost taken from the budget; `_Unread` where it is
        not UTF-8."""
        budget = self._budget
        budget.naming, budget.marks = budget.naming - self._size, budget.marks - self._marks
        try:
            return b"".join(self._lines).decode("utf-8")
        except UnicodeDecodeError:
            raise _Unread("its lines that name files are not UTF-8") from None


def _sides(text: str) -> list[dict[str, Any]]:
    """The lock's tables; each side's, where a merge left conflict markers in it;
    `_Unread` where its lines that name files are not TOML."""
    try:
        return [tomllib.loads(text)]
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        pass
    try:
        split = conflicts.sides(text)
        if split is not None:
            return [tomllib.loads(side.text) for side in split]
    except (conflicts.MarkerError, tomllib.TOMLDecodeError, RecursionError, ValueError):
        pass
    raise _Unread("it is not laid out as nebula-build writes a lock")


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


def _sibling_lock_names(project: Project) -> list[tuple[str, str]]:
    """The names of the other manifests in the folder and of their locks, sorted by
    lock."""
    own = project.lock_path.name
    return [(manifest, lock) for manifest, lock in _lock_names(project.root) if lock != own]


def _lock_names(folder: Path) -> list[tuple[str, str]]:
    """The names of the manifests in `folder` and of their locks, sorted by lock: a
    file that is not a link, named as `Project.lock_path` names a manifest's lock."""
    try:
        with os.scandir(folder) as found:
            files = {entry.name for entry in found if entry.is_file(follow_symlinks=False)}
    except OSError:
        return []
    manifests = [name for name in files if name.endswith(".toml")]
    return sorted(
        ((manifest, lock) for manifest in manifests if (lock := lock_name(manifest)) in files),
        key=lambda names: names[1],
    )
