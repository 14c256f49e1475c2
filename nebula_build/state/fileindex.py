"""Digests of files on disk, re-hashed only when their stat changes.

Like git's index: `.nebula-build/files.json` remembers (size, mtime, ctime,
inode, digest) per path, so a no-op plan of 10k outputs costs 10k `stat` calls,
not 10k file reads. ctime is there because nothing can set it back: a file
rewritten with its old size and `touch -d` to its old mtime is still re-hashed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from stat import S_ISREG

from nebula_build.fsutil import atomic_write, read_regular, sha256_bytes, sha256_file

_Signature = tuple[int, int, int, int]
_FIELDS = 4
#: an index far larger than 100k files' rows is not ours
_LIMIT = 512 << 20


def _is_row(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == _FIELDS + 1
        and all(type(v) is int for v in value[:_FIELDS])
        and isinstance(value[_FIELDS], str)
    )


def _signature(stat: os.stat_result) -> _Signature:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def _read(index_path: Path) -> dict[str, list[object]]:
    raw = read_regular(index_path, limit=_LIMIT)
    try:
        loaded = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {k: v for k, v in loaded.items() if _is_row(v)}  # it may have come with a checkout


class FileIndex:
    """Digest of project files by relative path, backed by a stat cache."""

    def __init__(self, root: Path, index_path: Path) -> None:
        self.root = root
        self._root = str(root)
        self.index_path = index_path
        self._rows: dict[str, list[object]] | None = None
        #: the signature each file had when this process last looked at it
        self._seen: dict[str, _Signature] = {}
        self._dirty = False

    @property
    def _entries(self) -> dict[str, list[object]]:
        """The index's rows, read on first use: at 100k files they take ~80 MB, which
        a plan then finds free again once the manifest it parsed first is let go."""
        if self._rows is None:
            self._rows = _read(self.index_path)
        return self._rows

    def digest(self, relative: str) -> str | None:
        """The file's sha256, or None if it does not exist (or is not a file)."""
        # Plain strings and os.stat: this runs once per image on every plan.
        path = os.path.join(self._root, relative)  # noqa: PTH118
        try:
            stat = os.stat(path)  # noqa: PTH116
        except OSError:
            return None
        if not S_ISREG(stat.st_mode):
            return None
        signature = _signature(stat)
        known = self._entries.get(relative)
        if known is not None and (recorded := tuple(known[:_FIELDS])) == signature:
            # equal to `signature`, and holding the row's numbers rather than copies of them
            self._seen[relative] = recorded
            return str(known[_FIELDS])
        self._seen[relative] = signature
        digest = sha256_file(Path(path))
        self._entries[relative] = [*signature, digest]
        self._dirty = True
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
        signature = self._seen[relative] = _signature(stat)
        self._entries[relative] = [*signature, digest]
        self._dirty = True

    def seen(self) -> dict[str, tuple[int, int, int, int]]:
        """(size, mtime, ctime, inode) of every file this process has looked at, as it
        was then: what a no-op plan depended on, without a second stat."""
        return dict(self._seen)

    def forget(self, relative: str) -> None:
        self._seen.pop(relative, None)
        if self._entries.pop(relative, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Persist the index if it changed; losing it only costs re-hashing."""
        if not self._dirty:
            return
        try:
            atomic_write(self.index_path, json.dumps(self._entries).encode(), durable=False)
        except OSError:
            return
        self._dirty = False
