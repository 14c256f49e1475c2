"""The data files that `rows` read (a catalogue, a folder of posts), through the guard.

Each file is read once, bounded, as a regular file inside the project (never the
tool's own state, never through a link that leads out). The reader remembers
what it read, for the caches that must notice when it changes: the digest of the
very bytes parsed (the spec cache) and each file's and folder's stat signature
taken *before* reading it (the no-op plan), so an edit made while a plan reads
shows in the next one.
"""

from __future__ import annotations

import fnmatch

from nebula_build.errors import UnsafePathError
from nebula_build.fsutil import sha256_bytes
from nebula_build.state.guard import Guard

#: files in one folder of posts: more than any site has, far fewer than fill memory
MAX_FOLDER_FILES = 200_000
Signature = tuple[int, int, int, int]


class DataReader:
    """Reads data files for the core (`core.rowimages.DataFiles`) and keeps track."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        #: sha256 of the bytes read, by project path
        self.digests: dict[str, str] = {}
        #: (size, mtime, ctime, inode) of each file and folder, taken before reading it
        self.signatures: dict[str, Signature] = {}

    def read(self, path: str, *, limit: int) -> bytes:
        problem = self.guard.input_problem(path)
        if problem is not None:
            raise UnsafePathError(f"data file {path!r} {problem}")
        self._observe(path)
        data = self.guard.read(path, what="data file", limit=limit)
        self.digests[path] = sha256_bytes(data)
        return data

    def matching(self, folder: str, pattern: str) -> list[str]:
        folder = "" if folder == "." else folder  # the project's own folder
        self._observe(folder or ".")
        names = self.guard.files_in(folder, limit=MAX_FOLDER_FILES)
        prefix = f"{folder}/" if folder else ""
        return sorted(prefix + name for name in names if fnmatch.fnmatchcase(name, pattern))

    def _observe(self, path: str) -> None:
        try:
            stat = (self.guard.root / path).stat()
        except OSError:
            return
        self.signatures[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
