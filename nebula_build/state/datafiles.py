"""The data files that `rows` read (a catalogue, a folder of posts), through the guard.

Each file is read once, bounded, as a regular file inside the project (never the
tool's own state, never through a link that leads out). The reader remembers
what it read, for the caches that must notice when it changes: the digest of the
very bytes parsed (the spec cache) and each file's and folder's stat signature
taken *before* reading it (the no-op plan), so an edit made while a plan reads
shows in the next one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from nebula_build.errors import UnsafePathError, UserError
from nebula_build.fsutil import sha256_bytes
from nebula_build.state import globs
from nebula_build.state.guard import RESERVED_FOLDERS, Guard, Listing, Signature
from nebula_build.text import quoted

#: files in one folder of posts, and posts one pattern matches: more than any site
#: has, far fewer than fill memory
MAX_FOLDER_FILES = 200_000
#: the names a typo is compared with in one plan, in all: a data folder holds a few,
#: and "did you mean" takes some 1 ms a name for long names alike (a folder of 10,000
#: of them, empty files a pull request adds for nothing, took 10 s a missing file)
_MAX_NEAR = 1_000
#: folders one pattern walks (`content/**/*.md`), and how deep below where it starts
MAX_GLOB_FOLDERS = 10_000
MAX_GLOB_DEPTH = 32
#: names of files and folders the listings kept for the next pattern hold in all (some
#: 25 MB): past it, a folder is listed again by each pattern that walks it
_MAX_KEPT_NAMES = 400_000

__all__ = ["DataReader", "Signature"]


@dataclass(frozen=True, slots=True)
class _Pending:
    """A folder a walk has still to read: its parts below the pattern's folder, and
    the pattern's states there."""

    below: tuple[str, ...]
    states: globs.States


class DataReader:
    """Reads data files for the core (`core.rowimages.DataFiles`) and keeps track."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        #: sha256 of the bytes read, by project path
        self.digests: dict[str, str] = {}
        #: (size, mtime, ctime, inode) of each file and folder, taken before reading it
        self.signatures: dict[str, Signature] = {}
        #: each folder a pattern of posts walked ("." for the project's own), in order,
        #: with the fingerprint of what it held (`Listing.fingerprint`)
        self.folders: dict[str, str] = {}
        #: the names `near` may still compare a typo with (_MAX_NEAR)
        self.near_left = _MAX_NEAR
        #: folders' listings, by project path: the patterns of a list walk the same
        #: folders (32 patterns over 10,000 folders, each read 32 times, took 23 s)
        self._listings: dict[str, Listing] = {}
        self._kept_names = 0

    def read(self, path: str, *, limit: int) -> bytes:
        problem = self.guard.input_problem(path)
        if problem is not None:
            raise UnsafePathError(f"data file {quoted(path)} {problem}")
        self._observe(path)
        data = self.guard.read(path, what="data file", limit=limit)
        self.digests[path] = sha256_bytes(data)
        return data

    def matching(self, folder: str, pattern: str) -> list[str]:
        """The regular files below project folder `folder` ("." for the project's own)
        that `pattern` (`state.globs`) matches, as project paths, sorted. Each folder
        walked is observed before it is read; links are never followed."""
        base = "" if folder == "." else folder
        parts = globs.checked_parts(pattern)
        found: list[str] = []
        pending = [_Pending((), globs.start(parts))]
        walked = 0
        while pending:
            step = pending.pop()
            walked += 1
            _check_walk(base, step.below, walked)
            listing = self._list(base, step.below)
            if listing is None:
                continue  # removed since its parent was read: the parent's signature shows it
            here = _joined(base, *step.below)
            prefix = f"{here}/" if here else ""
            found += (prefix + n for n in listing.files if globs.names_file(parts, step.states, n))
            if len(found) > MAX_FOLDER_FILES:
                raise UnsafePathError(f"the pattern matches more than {MAX_FOLDER_FILES:,} files")
            for name in sorted(listing.folders, reverse=True):
                states = globs.descend(parts, step.states, name)
                if states:
                    pending.append(_Pending((*step.below, name), states))
        return sorted(found)

    def near(self, path: str, *, folder: bool = False) -> str | None:
        """The file (a `folder`) beside missing `path` whose name is closest to its name
        (a typo), if one is close; None, unlooked for, past _MAX_NEAR names compared in
        all."""
        parent, _, name = path.rpartition("/")
        if self.near_left <= 0:
            return None
        try:
            listing = self.guard.listing(parent, limit=self.near_left)
        except (OSError, UserError):
            return None
        names = listing.folders if folder else listing.files
        if folder:  # never one a pattern may not name
            names = [name for name in names if name.casefold() not in RESERVED_FOLDERS]
        self.near_left -= len(names)
        close = difflib.get_close_matches(name, names, n=1)
        return _joined(parent, close[0]) if close else None

    def _list(self, base: str, below: tuple[str, ...]) -> Listing | None:
        """The listing of a folder a walk reaches, recorded, read once; None where a
        subfolder went missing since its parent was read (a missing `base` raises)."""
        path = _joined(base, *below) or "."
        known = self._listings.get(path)
        if known is not None:
            return known
        try:
            listing = self.guard.listing(base, below, limit=MAX_FOLDER_FILES)
        except FileNotFoundError:
            if not below:
                raise
            return None
        self.signatures[path] = listing.signature
        self.folders[path] = listing.fingerprint()
        names = len(listing.files) + len(listing.folders)
        if self._kept_names + names <= _MAX_KEPT_NAMES:
            self._listings[path] = listing
            self._kept_names += names
        return listing

    def _observe(self, path: str) -> None:
        try:
            stat = (self.guard.root / path).stat()
        except OSError:
            return
        self.signatures[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def _joined(*parts: str) -> str:
    """The project path of `parts` ("" for the project's own folder)."""
    return "/".join(part for part in parts if part)


def _check_walk(base: str, below: tuple[str, ...], walked: int) -> None:
    """A walk stays bounded, whatever folders a pull request adds."""
    if walked > MAX_GLOB_FOLDERS:
        raise UnsafePathError(
            f"the pattern walks more than {MAX_GLOB_FOLDERS:,} folders; start it in the "
            "posts' own folder (content/posts/**/*.md rather than **/*.md)"
        )
    if len(below) > MAX_GLOB_DEPTH:
        raise UnsafePathError(
            f"the pattern reaches a folder more than {MAX_GLOB_DEPTH} deep "
            f"({_joined(base, *below)}); name the folders it looks in"
        )
