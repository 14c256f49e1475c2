"""The one gate to project files: every read, write, rename and delete of a path
named by a manifest, a lock, a journal or a page goes through `Guard`.

A path is accepted only if it is relative, clean (no `..`, no control
characters), resolves inside the project without a symbolic link that leaves
it, and is not the tool's own state (`.nebula-build/`, the manifest, the lock),
version control, or a protected file (an input image, a data file). The checks
are made twice: on the text when a path is declared or read from a lock, and
again at the moment of the operation, walking folder by folder from the project
root with `O_NOFOLLOW` and `dir_fd`-relative calls, so a folder swapped for a
symbolic link after the plan is refused, not followed.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import hashlib
import math
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from nebula_build.errors import TooLargeError, UnsafePathError
from nebula_build.fsutil import TEMP_MARKER, hold_temp, left_by_a_dead_run, writing_temp
from nebula_build.text import file_key, human_size

#: top-level names a project file may never be: the tool's state and version control
RESERVED_FOLDERS = frozenset({".nebula-build", ".git", ".hg", ".svn"})
#: the deepest folder the tool makes under its state (manifests/<name>/cache/outputs/<xx>)
_MAX_STATE_DEPTH = 8
_CONTROL = re.compile("[\x00-\x1f\x7f]")
#: what a terminal shows as something else or as nothing: C1 controls (\x9b starts an
#: escape sequence), zero-width and bidirectional characters (`a-\u202egnp.exe.png`
#: shows as `a-exe.png…`); a path holding one would be shown as another than it is
_UNSHOWN = re.compile("[\x80-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
#: a backup folder's name: the second its run first backed up a file, in UTC (the `Z`),
#: so that its age is the same in every zone and across a change of summer time
_BACKUP_STAMP = "%Y%m%dT%H%M%SZ"
#: the stamp's date and time; without the `Z`, as runs named folders before: local time
_STAMP_TIME = "%Y%m%dT%H%M%S"
#: a folder a run backed files up into: its stamp, then `-2`… or a random suffix where
#: the name was taken
_BACKUP_FOLDER = re.compile(r"(\d{8}T\d{6})(Z?)(?:-[0-9a-f]+)?")
#: `stamp-2` … `stamp-N` are tried before a random suffix
_BACKUP_NAMES = 100
_COPY_CHUNK = 1 << 20
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


#: (size, mtime, ctime, inode): what changes when a file is edited or a folder's
#: entries are added, removed or renamed
Signature = tuple[int, int, int, int]


@dataclass
class Listing:
    """What a folder held when it was read, and its signature from just before."""

    signature: Signature = (0, 0, 0, 0)
    files: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """The same for two listings of the same names, whatever order they came in."""
        names = ["/", *sorted(self.files), "/", *sorted(self.folders)]
        return hashlib.sha256("\0".join(names).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class BackupFolder:
    """A folder a run backed files up into, as it is now: its name, the regular files
    below it and their bytes (a link is neither followed nor counted), and when the run
    made it (from its name; None where the name is no date)."""

    name: str
    files: int
    bytes: int
    made: float | None


def path_problem(relative: object) -> str | None:
    """What is wrong with `relative` as a project path, judged on its text alone.
    Runs for every path of every plan: plain string tests, cheapest first."""
    if not isinstance(relative, str) or not relative:
        return "is not a path"
    if _CONTROL.search(relative):
        return "contains a control character"
    if _UNSHOWN.search(relative):
        return (
            "contains a character a terminal does not show as it is "
            "(a control, an invisible or a bidirectional one)"
        )
    if "\\" in relative:
        return "contains a backslash; write paths with /"
    if relative[0] == "/" or (relative[1:3] == ":/" and relative[0].isalpha()):
        return "is absolute; paths are relative to the project folder"
    parts = relative.split("/")
    if ".." in parts:
        return "leaves the project (`..`)"
    if "" in parts or "." in parts:
        return "is not in its plain form (no empty, `.` or trailing parts)"
    # at any depth: a nested checkout's .git holds its credentials too
    reserved = next((part for part in parts if part.casefold() in RESERVED_FOLDERS), None)
    if reserved is not None:
        return f"is inside {reserved}/, which belongs to the tool or to version control"
    if TEMP_MARKER in relative and any(
        part.startswith(".") and TEMP_MARKER in part for part in parts
    ):  # apply's tidy would delete it as a killed run's
        return f"is named like nebula-build's temporary files (.NAME{TEMP_MARKER}…)"
    return None


#: what Windows does not allow in a file's name: git for Windows refuses to check out
#: a commit with such a file ("invalid path"), so a file written is never named so
_NOT_ON_WINDOWS = re.compile(r'[<>:"|?*]')
#: the names Windows keeps for devices, with any extension (`con.png` is the console)
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{port}{n}" for port in ("com", "lpt") for n in (*range(1, 10), "¹", "²", "³")}
)


def unportable(relative: str) -> str | None:
    """What makes `relative` a path that a checkout on Windows cannot write, or None."""
    found = _NOT_ON_WINDOWS.search(relative)
    if found is not None:
        return f"contains {found[0]}, which Windows does not allow in a file's name"
    for part in relative.split("/"):
        if part.endswith((".", " ")):
            end = "a dot" if part.endswith(".") else "a space"
            return f"has a name that ends with {end} ({part!r}), which Windows drops"
        if part.split(".", 1)[0].rstrip(" ").casefold() in _WINDOWS_DEVICES:
            return f"has a name Windows keeps for a device ({part!r}: CON, NUL, COM1, …)"
    return None


def _utf8(name: str) -> bool:
    """Whether a name read from the disk is text (not bytes Python carried through)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Guard:
    """Checked access to the files of one project."""

    def __init__(self, root: Path, *, reserved: Collection[str] = ()) -> None:
        self.root = Path(os.path.realpath(root))
        self._given_root = Path(root).absolute()  # links kept: the state is walked from here
        self._reserved = {name.casefold() for name in reserved}
        self._protected: dict[str, str] = {}  # file, as `file_key` keys it → what it is
        #: the copies `backup` made, in the order it made them
        self.backups: list[Path] = []
        #: the folders `backup` made under its root, oldest first
        self._backup_folders: list[str] = []

    def protect(self, relatives: Iterable[str], *, what: str = "an input image") -> None:
        """Files that are read but never written or deleted (input images, data files),
        in any case: on macOS and Windows `Data/p.csv` is `data/p.csv`."""
        self._protected.update(dict.fromkeys(map(file_key, relatives), what))

    # --- the checks -------------------------------------------------------------

    def problem(self, relative: object, *, writing: bool = True) -> str | None:
        """What is wrong with `relative`, on its text: None when it may be used."""
        problem = path_problem(relative)
        if problem is not None:
            return problem
        assert isinstance(relative, str)
        if relative.casefold() in self._reserved:
            return "is the tool's own file"
        if writing and self._protected and (key := file_key(relative)) in self._protected:
            return f"is {self._protected[key]}"
        return None

    def check(self, relative: object, *, what: str, writing: bool = True) -> str:
        problem = self.problem(relative, writing=writing)
        if problem is not None:
            raise UnsafePathError(f"{what} {relative!r} {problem}")
        assert isinstance(relative, str)
        return relative

    def _real_parts(self, relative: str, *, what: str, follow_last: bool) -> list[str]:
        """The path's parts after following the symbolic links inside the project;
        refused if one leads out of it or into the tool's state."""
        path = self.root / relative
        folder = os.path.realpath(path.parent if not follow_last else path)
        try:
            inside = PurePosixPath(folder).relative_to(self.root)
        except ValueError:
            raise UnsafePathError(
                f"{what} {relative!r} leaves the project through a symbolic link; "
                "nebula-build only touches files inside the project"
            ) from None
        parts = [*inside.parts] if follow_last else [*inside.parts, path.name]
        real = "/".join(parts)
        if real != relative:
            self.check(real, what=f"{what} {relative!r}, which leads to", writing=not follow_last)
        return parts

    def input_problem(self, relative: str, *, limit: int | None = None) -> str | None:
        """What is wrong with reading `relative` (checked before its digest is taken,
        so plan and apply say the same); None when it is fine or simply missing. With
        `limit`, a file of more bytes is refused from its size, before it is read."""
        problem = self.problem(relative, writing=False)
        if problem is not None:
            return problem
        real = os.path.realpath(self.root / relative)
        try:
            inside = PurePosixPath(real).relative_to(self.root).as_posix()
        except ValueError:
            return "leaves the project through a symbolic link"
        if inside != relative and self.problem(inside, writing=False) is not None:
            return f"leads to {inside}, {self.problem(inside, writing=False)}"
        try:
            info = Path(real).stat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file"
        if limit is not None and info.st_size > limit:
            return f"is {_beyond(info.st_size, limit)} an input may have"
        return None

    def real_folder(self, folder: str) -> str | None:
        """`folder` ("" for the project's) with the symbolic links in it followed, as a
        project path ("" for the project's); None where one leads out of the project."""
        real = os.path.realpath(self.root / folder)
        try:
            inside = PurePosixPath(real).relative_to(self.root).as_posix()
        except ValueError:
            return None
        return "" if inside == "." else inside

    def folder_problem(
        self, relative: str, seen: dict[str, str | None] | None = None
    ) -> str | None:
        """What is wrong with the folder of output `relative` (said after the path): it
        leaves the project, or leads to a file the tool may not write, through a
        symbolic link; None when it is fine. Checked before anything is paid for, by
        plan as by apply. `seen` keeps each folder's real path between calls: one lstat
        per folder not seen yet (a realpath where it is a link)."""
        folder, _, name = relative.rpartition("/")
        real = self._real_folder_of(folder, {} if seen is None else seen)
        if real is None:
            return (
                "leaves the project through a symbolic link; nebula-build only touches "
                "files inside the project"
            )
        if real == folder:
            return None
        target = f"{real}/{name}" if real else name
        problem = self.problem(target)
        if problem is None:
            return None
        return f"leads to {target!r} through a symbolic link, and that path {problem}"

    def _real_folder_of(self, folder: str, seen: dict[str, str | None]) -> str | None:
        """`folder` ("" for the project's) as `real_folder` gives it, from the real path
        of its parent (in `seen`, or found the same way) and an lstat of its own."""
        if not folder:
            return ""
        if folder in seen:
            return seen[folder]
        parent, _, name = folder.rpartition("/")
        real_parent = self._real_folder_of(parent, seen)
        real: str | None = None
        if real_parent is not None:
            real = f"{real_parent}/{name}" if real_parent else name
            try:
                linked = stat.S_ISLNK(os.lstat(f"{self.root}/{real}").st_mode)
            except OSError:
                linked = False  # missing: apply makes it, a plain folder
            if linked:
                real = self.real_folder(real)
        seen[folder] = real
        return real

    # --- walking folders without following links -----------------------------

    @contextlib.contextmanager
    def _folder(self, parts: list[str], *, what: str, create: bool) -> Iterator[int]:
        """A descriptor of the folder `parts` names, opened one level at a time."""
        fd = os.open(self.root, _DIRECTORY_FLAGS)
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                    child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePathError(
                            f"{what}: {part} is not a plain folder (a symbolic link or a "
                            "file appeared there); nebula-build only touches files inside "
                            "the project"
                        ) from None
                    raise
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    # --- operations ---------------------------------------------------------------

    def write(
        self,
        relative: str,
        data: bytes,
        *,
        durable: bool = True,
        unchanged: Callable[[], None] | None = None,
    ) -> None:
        """Replace `relative` with `data` atomically (readers see old or new, never a part).
        `unchanged` runs once the new bytes are on disk, just before the rename, and
        raises to leave the file as it is (a hand edit since the plan looked at it): the
        window between that check and the rename is a stat and a rename wide."""
        relative = self.check(relative, what="output")
        parts = self._real_parts(relative, what="output", follow_last=False)
        name = parts.pop()
        with (
            self._folder(parts, what=relative, create=True) as folder,
            writing_temp(name) as temp,
        ):
            fd = os.open(temp, _CREATE_FLAGS, 0o644, dir_fd=folder)
            try:
                with os.fdopen(fd, "wb") as handle:
                    hold_temp(fd)
                    handle.write(data)
                    handle.flush()
                    if durable:
                        os.fsync(fd)
                    if unchanged is not None:
                        unchanged()
                    # while still open: the lock lasts until the rename
                    os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=folder)
                raise

    def read(self, relative: str, *, what: str = "input", limit: int | None = None) -> bytes:
        """The bytes of a regular file (never a FIFO or a device, never through a
        link that leaves the project). Raises FileNotFoundError if it is missing, and
        TooLargeError past `limit`: from its size, before it is read, or once a byte
        past it is read (it grew meanwhile)."""
        with self._opened(relative, what=what) as (handle, info):
            if limit is None:
                return handle.read()
            if info.st_size > limit:
                raise TooLargeError(
                    f"{what} {relative!r} is {info.st_size} bytes, over the {limit} limit",
                    info.st_size,
                )
            # what the file holds, not the limit: a read allocates what it asks for
            wanted = info.st_size + 1
            data = handle.read(wanted)
            if len(data) == wanted <= limit:  # it grew since fstat
                data += handle.read(limit + 1 - wanted)
            if len(data) > limit:
                raise TooLargeError(f"{what} {relative!r} grew over the {limit} limit")
            return data

    @contextlib.contextmanager
    def _opened(self, relative: str, *, what: str) -> Iterator[tuple[BinaryIO, os.stat_result]]:
        """A regular file opened for reading, with its stat (as `read` checks it)."""
        relative = self.check(relative, what=what, writing=False)
        parts = self._real_parts(relative, what=what, follow_last=True)
        name = parts.pop()
        with self._folder(parts, what=relative, create=False) as folder:
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=folder)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafePathError(f"{what} {relative!r} changed while being read") from None
                raise
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafePathError(f"{what} {relative!r} is not a regular file")
            yield handle, info

    def listing(self, folder: str, below: Sequence[str] = (), *, limit: int) -> Listing:
        """The regular files and plain subfolders of project folder `folder` ("" for
        the root), then of its subfolder `below` (names a walk found), with the
        folder's stat signature taken before reading it. `folder` may be reached
        through a link inside the project, as an input may; `below` never through a
        link. FileNotFoundError if it is missing, UnsafePathError past `limit`
        files and folders, or where a link stands in `below`."""
        parts: list[str] = []
        if folder:
            folder = self.check(folder, what="folder", writing=False)
            parts = self._real_parts(folder, what="folder", follow_last=True)
        shown = "/".join(filter(None, (folder, *below))) or "."
        found = Listing()
        with self._folder([*parts, *below], what=shown, create=False) as fd:
            info = os.fstat(fd)  # before reading: an entry added later changes it
            found.signature = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
            with os.scandir(fd) as entries:
                for entry in entries:
                    if not entry.name.isprintable() or not _utf8(entry.name):
                        continue  # a name no manifest can write, nor a prompt take
                    if entry.is_file(follow_symlinks=False):
                        found.files.append(entry.name)
                    elif entry.is_dir(follow_symlinks=False):
                        found.folders.append(entry.name)
                    else:
                        continue  # a link, a FIFO, a socket: never read
                    if len(found.files) + len(found.folders) > limit:
                        raise UnsafePathError(
                            f"folder {shown!r} holds more than {limit:,} files and folders"
                        )
        return found

    def remove(self, relative: str) -> None:
        """Delete `relative` (a link is removed, never followed); missing is fine."""
        relative = self.check(relative, what="file to delete")
        parts = self._real_parts(relative, what="file to delete", follow_last=False)
        name = parts.pop()
        try:
            with self._folder(parts, what=relative, create=False) as folder:
                os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            return

    def move(self, old: str, new: str) -> None:
        """Rename `old` to `new`, both checked, without following links."""
        old = self.check(old, what="file to move")
        new = self.check(new, what="output")
        old_parts = self._real_parts(old, what="file to move", follow_last=False)
        new_parts = self._real_parts(new, what="output", follow_last=False)
        old_name, new_name = old_parts.pop(), new_parts.pop()
        with (
            self._folder(old_parts, what=old, create=False) as source,
            self._folder(new_parts, what=new, create=True) as target,
        ):
            os.replace(old_name, new_name, src_dir_fd=source, dst_dir_fd=target)

    def prune_empty(self, relative_folder: str) -> None:
        """Remove `relative_folder` and its parents while they are empty."""
        parts = [p for p in relative_folder.split("/") if p]
        while parts and path_problem("/".join(parts)) is None:
            name = parts.pop()
            try:
                with self._folder(parts, what=relative_folder, create=False) as folder:
                    os.rmdir(name, dir_fd=folder)
            except OSError:
                return

    def backup(self, relative: str, backup_root: Path) -> None:
        """Copy `relative`, if it is a regular file, into a folder of `backup_root` that
        this guard made, named by the second it was made (`20250102T030405`, or
        `20250102T030405-2`… where that name is taken: by a run in the same second, or
        by a checkout). A copy never replaces another: a path backed up twice goes
        into a second folder. The copy is streamed, whatever the file's size, keeps
        its permissions, and is on disk before this returns; every folder is walked
        from the project root, never through a link."""
        with contextlib.ExitStack() as stack:
            try:
                source, info = stack.enter_context(self._opened(relative, what="file to back up"))
            except (FileNotFoundError, NotADirectoryError, UnsafePathError):
                return  # missing, not a regular file, or behind a link out: nothing to keep
            copied = self._copy_to_a_backup_folder(
                source, relative, self._project_parts(backup_root), stat.S_IMODE(info.st_mode)
            )
        self.backups.append(backup_root / copied / relative)

    def backup_folders(self, backup_root: Path) -> list[BackupFolder]:
        """The folders under `backup_root` named as a run names its own, oldest first;
        [] where there is none. Walked from the project root without following a link:
        a link named as a run's folder is not one, and `backup_root` behind a link is
        refused (UnsafePathError)."""
        parts = self._project_parts(backup_root)
        try:
            with self._folder(parts, what="/".join(parts), create=False) as fd:
                folders = [_backup_folder(fd, name) for name in _backup_names(fd)]
        except FileNotFoundError:
            return []
        # by when they were made: a name in local time and one in UTC do not sort so
        return sorted(folders, key=_oldest_first)

    def backup_copies(
        self, backup_root: Path, relative: str, *, limit: int, newest: int
    ) -> Iterator[tuple[str, bytes]]:
        """(run folder, bytes) of each copy of project file `relative` in the `newest`
        run folders under `backup_root`, newest first: a regular file of at most
        `limit` bytes (a larger one is skipped), walked to from the project root
        without following a link at any level; none where `relative` is no clean
        project path (a lock's, say)."""
        if self.problem(relative, writing=False) is not None:
            return
        root = self._project_parts(backup_root)
        try:
            with self._folder(root, what="/".join(root), create=False) as fd:
                names = _backup_names(fd)
        except (FileNotFoundError, UnsafePathError):
            return
        dated = sorted((BackupFolder(n, 0, 0, _made(n)) for n in names), key=_oldest_first)
        for folder in reversed(dated[-newest:]):
            data = self._own_file([*root, folder.name, *relative.split("/")], limit)
            if data is not None:
                yield folder.name, data

    def _own_file(self, parts: list[str], limit: int) -> bytes | None:
        """The bytes of the regular file `parts` names below the root, reached without
        following a link; None where it is not one, or holds more than `limit` bytes."""
        try:
            with self._folder(parts[:-1], what="/".join(parts), create=False) as folder:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=folder)
                with os.fdopen(fd, "rb") as handle:
                    info = os.fstat(handle.fileno())
                    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                        return None
                    data = handle.read(info.st_size + 1)  # what it holds, not the limit
        except (OSError, UnsafePathError):
            return None
        return data if len(data) <= limit else None

    def remove_backup_folder(self, backup_root: Path, name: str) -> None:
        """Delete the run's folder `name` under `backup_root` and all it holds, walked
        from the project root: a link anywhere in it is removed, never followed, and a
        folder swapped for a link meanwhile is refused, so nothing outside it is
        touched. Raises OSError where something could not be removed."""
        if not _BACKUP_FOLDER.fullmatch(name):
            raise UnsafePathError(f"{name!r} is not the name of a backup folder")
        parts = self._project_parts(backup_root)
        with self._folder(parts, what="/".join(parts), create=False) as fd:
            # the descriptor-relative rmtree: it opens each folder without following a
            # link and checks it is the one it listed
            shutil.rmtree(name, dir_fd=fd)

    def _project_parts(self, folder: Path) -> list[str]:
        """The parts of `folder` (a folder of the project's state) below the project root."""
        absolute = Path(folder).absolute()
        for root in (self.root, self._given_root):
            with contextlib.suppress(ValueError):
                return [*absolute.relative_to(root).parts]
        raise UnsafePathError(f"backup folder {str(folder)!r} is not inside the project")

    def _copy_to_a_backup_folder(
        self, source: BinaryIO, relative: str, backup_root: list[str], mode: int
    ) -> str:
        """Copy `source` to `relative` in the first folder this guard made under
        `backup_root` that has no such file yet, or in a new one; returns its name."""
        shown = "/".join(backup_root)
        for name in self._backup_folders:
            with contextlib.suppress(FileExistsError):
                self._copy_into([*backup_root, name], relative, source, mode, shown=shown)
                return name
        with self._folder(backup_root, what=shown, create=True) as fd:
            name = _new_folder(fd, time.strftime(_BACKUP_STAMP, time.gmtime()))
        self._backup_folders.append(name)
        self._copy_into([*backup_root, name], relative, source, mode, shown=shown)
        return name

    def _copy_into(
        self, folder: list[str], relative: str, source: BinaryIO, mode: int, *, shown: str
    ) -> None:
        """Copy `source` to `folder/relative`, a new file (FileExistsError if one is
        there), made with the source's permissions and flushed to disk."""
        *below, name = relative.split("/")
        with self._folder([*folder, *below], what=shown, create=True) as fd:
            out = os.open(name, _CREATE_FLAGS, (mode & 0o666) | 0o600, dir_fd=fd)
            try:
                with os.fdopen(out, "wb") as target:
                    source.seek(0)
                    shutil.copyfileobj(source, target, _COPY_CHUNK)
                    target.flush()
                    os.fsync(target.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd)
                raise


def _backup_names(parent: int) -> list[str]:
    """The folders in `parent` named as a run names its own (a link so named is none)."""
    with os.scandir(parent) as entries:
        return [
            entry.name
            for entry in entries
            if _BACKUP_FOLDER.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
        ]


def _backup_folder(parent: int, name: str) -> BackupFolder:
    """The run's folder `name` in `parent`, its regular files counted without following
    a link."""
    files = size = 0
    with contextlib.suppress(OSError):  # gone meanwhile: nothing in it
        for _, _, names, fd in os.fwalk(name, dir_fd=parent, follow_symlinks=False):
            for file in names:
                with contextlib.suppress(OSError):
                    info = os.stat(file, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        files, size = files + 1, size + info.st_size
    return BackupFolder(name, files, size, _made(name))


def _made(name: str) -> float | None:
    """When the run that named its folder `name` made it: in UTC where the stamp ends
    in `Z`, else in local time, as runs named them before."""
    match = _BACKUP_FOLDER.fullmatch(name)
    if match is None:
        return None
    try:
        when = time.strptime(match[1], _STAMP_TIME)
        return float(calendar.timegm(when)) if match[2] else time.mktime(when)
    except (ValueError, OverflowError):
        return None


def _oldest_first(folder: BackupFolder) -> tuple[float, str]:
    """Sorts folders by when they were made (one with no date last), then by name."""
    return (math.inf if folder.made is None else folder.made, folder.name)


def _new_folder(parent: int, stamp: str) -> str:
    """Make a folder in `parent` named `stamp`, or `stamp-2`, `stamp-3`… where the name
    is taken (never one that is there: it may be a link a checkout brought); its name."""
    for count in range(1, _BACKUP_NAMES + 1):
        name = stamp if count == 1 else f"{stamp}-{count}"
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent)
            return name
    name = f"{stamp}-{secrets.token_hex(4)}"  # a checkout took every plain name
    os.mkdir(name, dir_fd=parent)
    return name


def remove_temp_files(folder: Path, *, recursive: bool = False, skip: Collection[str] = ()) -> int:
    """Delete temp files a killed run left in `folder` (and below, if `recursive`, but
    not in its subfolders named in `skip`, nor deeper than the tool ever writes);
    links are never followed. Returns how many."""
    removed = 0
    pending = [(folder, 0)]
    while pending:
        current, depth = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and TEMP_MARKER in entry.name:
                with contextlib.suppress(OSError):
                    if _dead_runs_temp_file(entry):
                        Path(entry.path).unlink()
                        removed += 1
            elif (
                recursive
                and depth < _MAX_STATE_DEPTH
                and entry.name not in skip
                and entry.is_dir(follow_symlinks=False)
            ):
                pending.append((Path(entry.path), depth + 1))
    return removed


def _dead_runs_temp_file(entry: os.DirEntry[str]) -> bool:
    """Whether a temp file's entry (no folder, never followed) is a killed run's,
    not one another process or thread is writing now."""
    if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
        return False
    return left_by_a_dead_run(Path(entry.path))


def _beyond(size: int, limit: int) -> str:
    """'2.0 GiB, over the 256.0 MiB', in bytes where the two read alike that way."""
    said, said_limit = human_size(size), human_size(limit)
    if said == said_limit:
        said, said_limit = f"{size:,} bytes", f"{limit:,} bytes"
    return f"{said}, over the {said_limit}"
