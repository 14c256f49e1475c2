"""`.nebula-build/lock`: one apply at a time per project.

An flock on the file does the locking, so the kernel releases it when the
holder dies however it dies; the pid written inside is only for messages
("held by pid 123") and to notice a holder that died without cleaning up.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from nebula_build.errors import ProjectLockedError, UserError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _locked(fd: int) -> bool:
    """Whether this process now holds the flock of `fd` (False: another one does)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


#: the state folder's own `.gitignore`: git leaves the whole folder out, as it does
#: ruff's and pytest's caches, in a project written by hand as in one `init` made
_IGNORE_ALL = b"# Written by nebula-build: its cache and state stay out of version control.\n*\n"


def _keep_out_of_git(folder_fd: int) -> None:
    """Write the state folder's `.gitignore` where it has none. An existing one is
    never opened (a link a pull request committed there goes nowhere)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(".gitignore", flags, 0o644, dir_fd=folder_fd)
    except OSError:  # there already, or a read-only folder: nothing to do
        return
    try:
        os.write(fd, _IGNORE_ALL)
    finally:
        os.close(fd)


class ProjectLock:
    """Exclusive lock on a project; a context manager."""

    def __init__(
        self,
        path: Path,
        *,
        timeout: float = 0.0,
        command: str = "apply",
        on_takeover: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.command = command
        self.on_takeover = on_takeover
        self._fd: int | None = None

    def _holder(self, fd: int) -> str:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip()

    def _refusal(self, holder: str) -> str:
        """Why this command cannot run now, and what to do about it."""
        if holder.endswith("(watch)"):
            # watch holds the project until it stops: waiting for it never ends
            instead = (
                ", or click the draw in its page if it serves one (watch --serve)"
                if self.command == "pick"
                else ""
            )
            wait = "" if self.timeout else ", or pass --lock-timeout SECONDS to wait until it stops"
            pid = holder.removesuffix(" (watch)")
            return (
                f"nebula-build watch is running in this project ({pid}) and applies each "
                f"save itself: stop it first (Ctrl-C where it runs){instead}{wait}"
            )
        if self.timeout:
            hint = f"gave up after {self.timeout:g}s"
        else:
            hint = "wait for it, or pass --lock-timeout SECONDS to wait"
        return f"another nebula-build is running in this project: {holder}; {hint}"

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        fd = self._open()
        while not _locked(fd) or not self._is_at_path(fd):
            if self._is_at_path(fd):  # held by another process
                if time.monotonic() >= deadline:
                    holder = self._holder(fd) or "another process"
                    os.close(fd)
                    raise ProjectLockedError(self._refusal(holder)) from None
                time.sleep(0.05)
            else:  # removed or replaced since it was opened: the one there now counts
                os.close(fd)
                fd = self._open()
        self._claim(fd)

    def lost(self) -> bool:
        """Whether the lock file is no longer the one this process locked (removed or
        replaced, by `rm -rf .nebula-build` say): another command could lock the
        project then, and run alongside."""
        return self._fd is not None and not self._is_at_path(self._fd)

    def try_regain(self) -> str | None:
        """Lock the project again once `lost`, without waiting: None once locked, else
        who locked it meanwhile. The file lost stays open until then (its flock, on a
        file no other process can open any more, stops no one): a lock file that
        cannot be made raises, and the lock is still `lost` at the next look."""
        fd = self._open()
        if not _locked(fd):
            holder = self._holder(fd) or "another process"
            os.close(fd)
            return holder
        if not self._is_at_path(fd):  # replaced again meanwhile: the next look locks it
            os.close(fd)
            return "another process"
        if self._fd is not None:
            os.close(self._fd)
        self._claim(fd)
        return None

    def _open(self) -> int:
        """The lock file, opened inside its folder: never through a link to a folder
        elsewhere (`.nebula-build` replaced while watch runs)."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if folder.is_symlink():
                raise UserError(
                    f"{folder} is a symbolic link; nebula-build keeps its state in plain "
                    f"folders and files inside the project: remove {folder.name} (it is rebuilt)"
                )
            folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                _keep_out_of_git(folder_fd)
                flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                fd = os.open(self.path.name, flags, 0o644, dir_fd=folder_fd)
            finally:
                os.close(folder_fd)
        except OSError as exc:
            raise UserError(
                f"cannot open the project lock {self.path}: {exc.strerror}; "
                "remove it if it is not a plain file"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"the project lock {self.path} is not a plain file; remove it")
        return fd

    def _is_at_path(self, fd: int) -> bool:
        try:
            on_disk = os.lstat(self.path)
        except OSError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _claim(self, fd: int) -> None:
        """Write this process into the lock file just locked."""
        previous = self._holder(fd)
        if previous and self.on_takeover is not None:
            pid = previous.split()[1] if previous.startswith("pid ") else ""
            if pid.isdigit() and not _pid_alive(int(pid)):
                self.on_takeover(
                    f"took over the project lock left by {previous}, which is no longer running"
                )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} ({self.command})\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
