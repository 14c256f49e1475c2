"""Small filesystem helpers: digests and atomic writes of the tool's own files.

Project files (outputs, inputs, anything a manifest or lock names) go through
`state.guard` instead."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_MARKER = ".nebula-tmp-"
#: what follows TEMP_MARKER: the writing process's id, then a random part
_TEMP_OWNER = re.compile(r"([0-9]{1,10})-[0-9a-f]{8}")
#: where the file system has no locks: a temp file this old is a killed run's even
#: where its process id is in use again
TEMP_FILE_LIFETIME_S = 3600.0
#: an empty, unlocked temp file this young may be a write between creating its file
#: and locking it
TEMP_FILE_GRACE_S = 10.0
#: the temp files this process is writing now, by name (unique by their random part)
_writing: set[str] = set()
_CHUNK = 1 << 20
#: opening a file that arrived with a checkout to read it: never through a symbolic
#: link, never waiting on a FIFO, and not passed on to a child process
SAFE_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a part.

    The temp file lives in the same folder (same filesystem, so the rename is
    atomic) and carries TEMP_MARKER, so a run killed mid-write leaves something
    `state.guard.remove_temp_files` recognises.
    """
    with atomic_stream(path, durable=durable) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_stream(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """`atomic_write` for a file written in pieces (a big lock need never be one string
    in memory): what is written to the handle replaces `path` when the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing_temp(path.name) as name:
        temp = path.with_name(name)
        try:
            with temp.open("xb") as handle:
                hold_temp(handle.fileno())
                yield handle
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
                temp.replace(path)  # while still open: the lock lasts until the rename
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def writing_temp(name: str) -> Iterator[str]:
    """A temp file's name for writing `name`, in the same folder: it carries
    TEMP_MARKER and this process's id, so a run killed mid-write leaves something
    `state.guard.remove_temp_files` recognises. The writer locks the file once it
    has made it (`hold_temp`) and renames it before closing it: no other run's tidy
    takes it meanwhile (`left_by_a_dead_run`)."""
    temp = f".{name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}"
    _writing.add(temp)
    try:
        yield temp
    finally:
        _writing.discard(temp)


def hold_temp(fd: int) -> None:
    """Say that the temp file open on `fd` is being written: an flock, which the
    kernel drops when the file is closed, however its process ends. Shared with
    every process that sees the folder, whatever its process ids (two containers
    are both pid 1). It waits for a tidy looking at the file that moment (which
    leaves an empty one alone, `left_by_a_dead_run`); where the file system has no
    locks, process ids decide."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)


def left_by_a_dead_run(path: Path) -> bool:
    """Whether the temp file at `path` is no running write's, so a tidy may delete
    it: a plain file no process holds (`hold_temp`), or a link (never followed).
    An empty one less than TEMP_FILE_GRACE_S old may be a write between making
    its file and locking it: left unless the process its name gives has ended."""
    name = path.name
    if name in _writing:
        return False
    try:
        fd = os.open(path, SAFE_READ_FLAGS)
    except OSError as exc:
        return exc.errno == errno.ELOOP  # a link: no write of ours makes one
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:  # no locks here
            return _owner_ended(name, info.st_mtime)
    finally:
        os.close(fd)
    if info.st_size > 0 or time.time() - info.st_mtime >= TEMP_FILE_GRACE_S:
        return True
    owner = _owner_of(name)
    return owner is not None and owner != os.getpid() and not _running(owner)


def _owner_of(name: str) -> int | None:
    owner = _TEMP_OWNER.fullmatch(name.rpartition(TEMP_MARKER)[2])
    return None if owner is None else int(owner[1])


def _owner_ended(name: str, modified: float) -> bool:
    """Without locks: whether the process a temp file's name gives has ended. Left
    while it runs and for TEMP_FILE_LIFETIME_S at most (its id may be some other
    program's by now); a name that does not say its process is a killed run's, and
    so is a file with this process's id that this process is not writing."""
    owner = _owner_of(name)
    if owner is None or time.time() - modified > TEMP_FILE_LIFETIME_S:
        return True
    return owner <= 0 or owner == os.getpid() or not _running(owner)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # another account's process
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


def read_regular(path: Path, *, limit: int) -> bytes | None:
    """The bytes of the tool's own file at `path`, or None when it is missing or not a
    plain file of a sane size (a link, a FIFO, a device, something huge): state
    that arrived with a checkout is read only if it can be read safely."""
    try:
        fd = os.open(path, SAFE_READ_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            # As much as the file holds, not `limit`: a read allocates what it asks for
            # (a 1 GiB limit would ask for 1 GiB on every read of a small file).
            wanted = min(limit, info.st_size) + 1
            data = handle.read(wanted)
            if len(data) == wanted <= limit:  # it grew since fstat
                data += handle.read(limit + 1 - wanted)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None
