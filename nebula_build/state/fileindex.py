"""Digests of files on disk, re-hashed only when their stat changes.

Like git's index: `.nebula-build/files.json` remembers (size, mtime, ctime,
inode, digest) per path, so a no-op plan of 10k outputs costs 10k `stat` calls,
not 10k file reads. ctime is there because nothing can set it back: a file
rewritten with its old size and `touch -d` to its old mtime is still re-hashed.

A process that asks to (`retain`: watch) keeps the index in memory between
loads, while neither file changed on disk, and saves a round's few changed rows
by appending them to `.nebula-build/files-journal` (folded into files.json once
it grows past a quarter of the index), so a round's index costs O(changed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import cast

from nebula_build.fsutil import atomic_stream, read_regular, sha256_bytes, sha256_file

_Signature = tuple[int, int, int, int]
_FIELDS = 4
#: an index far larger than 100k files' rows is not ours
_LIMIT = 512 << 20
JOURNAL_NAME = "files-journal"
#: journal rows kept before they are folded into the index, at least
_JOURNAL_ROWS = 1000
#: rows per piece when the index is written out
_PIECE = 5000

#: (size, mtime, ctime, inode, digest): a list as read from JSON, a tuple once
#: recorded here (a third smaller; both are written the same)
_Row = Sequence[object]
_Rows = dict[str, _Row]
#: (the index's signature, its journal's) → its rows and how many journal rows it has
_held: dict[Path, tuple[tuple[_Signature | None, _Signature | None], _Rows, int]] = {}
_retained: set[Path] = set()


def retain(index_path: Path) -> None:
    """Keep the index at `index_path` in memory between loads in this process."""
    _retained.add(index_path)


def _file_signature(path: Path) -> _Signature | None:
    try:
        return _signature(os.stat(path))  # noqa: PTH116
    except OSError:
        return None


def _replayed(rows: _Rows, journal: bytes) -> int:
    """Fold the journal's lines into `rows`; returns how many there were. A line cut
    short by a crash is skipped: its file is only hashed again."""
    count = 0
    for line in journal.splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not (isinstance(row, list) and row and isinstance(row[0], str)):
            continue
        count += 1
        if len(row) == 1:
            rows.pop(row[0], None)
        elif _is_row(row[1:]):
            rows[row[0]] = row[1:]
    return count


def _is_row(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == _FIELDS + 1
        and all(type(v) is int for v in value[:_FIELDS])
        and isinstance(value[_FIELDS], str)
    )


def _signature(stat: os.stat_result) -> _Signature:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def _signature_of(row: _Row) -> _Signature:
    """The (size, mtime, ctime, inode) a row starts with: integers (`_is_row`)."""
    return cast(_Signature, tuple(row[:_FIELDS]))


#: what `FileIndex.digest` gives for a link out of the project: no sha256 equals it
LEADS_OUT = "a link out of the project"


class FileIndex:
    """Digest of project files by relative path, backed by a stat cache."""

    def __init__(self, root: Path, index_path: Path) -> None:
        self.root = root
        self._root = str(root)
        self.index_path = index_path
        self._rows: _Rows | None = None
        #: the row each file had when this process last looked at it: its signature
        #: (the first four fields), kept as the row itself rather than a copy of them
        self._seen: _Rows = {}
        self._dirty = False
        #: paths whose rows changed since the last save, where a save may append them to
        #: the journal (a retained index); None: the next save writes the whole index
        self._changed: set[str] | None = None
        self.journal_path = index_path.with_name(JOURNAL_NAME)
        self._journal_rows = 0

    @property
    def _entries(self) -> _Rows:
        """The index's rows, read on first use: at 100k files they take ~80 MB, which
        a plan then finds free again once the manifest it parsed first is let go."""
        if self._rows is None:
            self._rows = self._loaded()
        return self._rows

    def _loaded(self) -> _Rows:
        self._changed = set() if self.index_path in _retained else None
        signatures = self._signatures()
        held = _held.get(self.index_path)
        if held is not None and held[0] == signatures and None not in signatures[:1]:
            self._journal_rows = held[2]
            return dict(held[1])
        rows = self._load()
        if self.index_path in _retained and self._signatures() == signatures:
            _held[self.index_path] = (signatures, dict(rows), self._journal_rows)
        return rows

    def _signatures(self) -> tuple[_Signature | None, _Signature | None]:
        return _file_signature(self.index_path), _file_signature(self.journal_path)

    def _load(self) -> _Rows:
        raw = read_regular(self.index_path, limit=_LIMIT)
        try:
            loaded = json.loads(raw) if raw is not None else None
        except (ValueError, RecursionError):
            loaded = None
        # only well-formed rows: it may have come with a checkout
        rows = {k: v for k, v in loaded.items() if _is_row(v)} if isinstance(loaded, dict) else {}
        journal = read_regular(self.journal_path, limit=_LIMIT)
        if journal:
            self._journal_rows = _replayed(rows, journal)
        return rows

    def digest(self, relative: str) -> str | None:
        """The file's sha256, or None if it does not exist (or is not a file); LEADS_OUT,
        which equals no digest, for a link out of the project: a pull request's link
        must not have a plan hash a file outside it, nor tell whether that file holds a
        digest the lock names (it is a file that is not nebula-build's)."""
        # Plain strings and os.lstat: this runs once per image on every plan.
        path = os.path.join(self._root, relative)  # noqa: PTH118
        try:
            stat = os.lstat(path)
            if S_ISLNK(stat.st_mode):
                if not _inside(os.path.realpath(path), self._root):
                    return LEADS_OUT
                stat = os.stat(path)  # noqa: PTH116
        except OSError:
            return None
        if not S_ISREG(stat.st_mode):
            return None
        signature = _signature(stat)
        known = self._entries.get(relative)
        if known is not None and tuple(known[:_FIELDS]) == signature:
            self._seen[relative] = known
            return str(known[_FIELDS])
        digest = sha256_file(Path(path))
        self._seen[relative] = self._entries[relative] = (*signature, digest)
        self._changed_row(relative)
        return digest

    def record(self, relative: str, data: bytes | None = None, digest: str | None = None) -> None:
        """Remember a file nebula-build just wrote (or moved) without reading it back."""
        path = os.path.join(self._root, relative)  # noqa: PTH118 (once per file written)
        try:
            stat = os.stat(path)  # noqa: PTH116
        except OSError:
            self.forget(relative)
            return
        digest = digest or (sha256_bytes(data) if data is not None else None)
        if digest is None:
            digest = sha256_file(Path(path))
        self._seen[relative] = self._entries[relative] = (*_signature(stat), digest)
        self._changed_row(relative)

    def _changed_row(self, relative: str) -> None:
        self._dirty = True
        if self._changed is not None:
            self._changed.add(relative)

    def seen(self) -> dict[str, tuple[int, int, int, int]]:
        """(size, mtime, ctime, inode) of every file this process has looked at, as it
        was then: what a no-op plan depended on, without a second stat."""
        return {path: _signature_of(row) for path, row in self._seen.items()}

    def changed_since_seen(self, relative: str) -> bool | None:
        """Whether the file is not as this process last looked at it or wrote it (gone,
        or another stat); None where it never did."""
        row = self._seen.get(relative)
        if row is None:
            return None
        try:
            stat = os.stat(os.path.join(self._root, relative))  # noqa: PTH116, PTH118
        except OSError:
            return True
        return _signature(stat) != _signature_of(row)

    def forget(self, relative: str) -> None:
        self._seen.pop(relative, None)
        if self._entries.pop(relative, None) is not None:
            self._changed_row(relative)

    def save(self) -> None:
        """Persist the index if it changed; losing it only costs re-hashing. A retained
        index whose files are as it left them appends its changed rows to the journal."""
        if not self._dirty:
            return
        retained = self.index_path in _retained
        held = _held.get(self.index_path)
        changed = self._changed
        rows = self._journal_rows + len(changed or ())
        try:
            if (
                retained
                and changed is not None
                and held is not None
                and held[0][0] is not None  # else the first save writes the index
                and held[0] == self._signatures()
                and rows <= max(_JOURNAL_ROWS, len(self._entries) // 4)
            ):
                self._append(sorted(changed))
                self._journal_rows = rows
            else:
                with atomic_stream(self.index_path, durable=False) as handle:
                    handle.writelines(_index_pieces(self._entries))
                self.journal_path.unlink(missing_ok=True)
                self._journal_rows = 0
        except OSError:
            _held.pop(self.index_path, None)
            return
        self._dirty = False
        self._changed = set() if retained else None
        if retained:
            _held[self.index_path] = (self._signatures(), dict(self._entries), self._journal_rows)

    def _torn(self) -> bool:
        """Whether the journal ends inside a line (a killed run's): the next rows then
        start on a line of their own, not glued to it."""
        try:
            fd = os.open(self.journal_path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            size = os.fstat(fd).st_size
            return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        finally:
            os.close(fd)

    def _append(self, paths: list[str]) -> None:
        lines = ("\n" if self._torn() else "") + "".join(
            json.dumps([path, *row] if (row := self._entries.get(path)) is not None else [path])
            + "\n"
            for path in paths
        )
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(self.journal_path, flags, 0o644), "ab") as journal:
            journal.write(lines.encode())


def _index_pieces(rows: _Rows) -> Iterator[bytes]:
    """`json.dumps(rows)`, encoded, a few thousand rows at a time: at 100k files the
    whole text and its bytes would be ~30 MB at the end of an apply, its peak."""
    names = list(rows)
    yield b"{"
    for start in range(0, len(names), _PIECE):
        chunk = {name: rows[name] for name in names[start : start + _PIECE]}
        yield (", " if start else "").encode() + json.dumps(chunk)[1:-1].encode()
    yield b"}"


def _inside(real: str, root: str) -> bool:
    """Whether the real path `real` is in the folder `root` (itself real)."""
    return real.startswith(root.rstrip(os.sep) + os.sep)
