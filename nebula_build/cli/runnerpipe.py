"""Under GitHub Actions, what a plugin's subprocess or C code writes to file descriptors
1 and 2 passes through a pipe on its way to the job's log: a thread reads it, takes
out the backends' secrets and neutralises every workflow command (`::add-mask::`,
`::stop-commands::`) as `RunnerLog` does for what Python writes, then writes it to
the real stderr. Our own annotations go to stdout through the copy `command_stdout`
holds, never through descriptor 1, so they are obeyed.

Only under GitHub Actions, on POSIX: elsewhere nothing of this runs.
"""

from __future__ import annotations

import _thread
import codecs
import contextlib
import fcntl
import os
import select
import struct
import sys
import termios
import threading
from collections.abc import Iterator

from nebula_build.cli.stray import held_stdout, ordered_secrets
from nebula_build.ui.runnerlog import neutralised

#: the longest line held for its end; past it, it is passed on in parts (its start has
#: been neutralised: the runner reads a command only at a line's start)
_LONGEST_LINE = 1 << 16
#: what the pipe holds before a writer waits (Linux's default is 64 KiB): C code that
#: writes while it holds the GIL waits for a reader that needs the GIL
_PIPE_SIZE = 1 << 20


class _Reader:
    """The thread that reads the pipe and writes what it read, made safe, to `real`."""

    def __init__(self, read: int, real: int) -> None:
        self._read = read
        self._real = real
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._unfinished = ""
        #: every secret declared while it reads: a writer left running past the command
        #: that named them (a plugin's subprocess) is still redacted
        self._secrets: frozenset[str] = frozenset()
        self._wake, self._woken = os.pipe()  # (read end, write end): a drain is asked for
        self._drained = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runner log", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:  # no thread left to start
            os.close(self._wake)
            os.close(self._woken)
            raise

    def drain(self) -> None:
        """Return once what was written to the pipe so far is in the log, the end of an
        unfinished line included (on a line of its own); not what a writer left running
        writes meanwhile. It waits as long as the log takes to read it, as a write to a
        pipe would; Ctrl-C or SIGTERM cuts that short: the command has ended, and stops as
        asked, with its own exit code."""
        self._drained.clear()
        if not self._thread.is_alive():  # no writer was left: all of it is out
            return
        with contextlib.suppress(OSError):  # the reader ended meanwhile
            os.write(self._woken, b".")
        with contextlib.suppress(KeyboardInterrupt):
            while not self._drained.wait(0.005):  # set when drained, or as the reader ends
                if not self._thread.is_alive():
                    return

    def close(self) -> None:
        """No drain is asked for any more (a writer left may still write: it is read)."""
        os.close(self._woken)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        try:
            while self._read_once(poller):
                pass
        finally:
            self._finish()
            for fd in (self._read, self._real, self._wake):  # `close` closes `_woken`
                os.close(fd)
            self._drained.set()  # for good: no writer is left

    def _read_once(self, poller: select.poll) -> bool:
        """Pass on what the pipe holds; False at its end (no writer left)."""
        ready = {fd for fd, _ in poller.poll()}
        if self._wake in ready:  # asked to drain: what the pipe holds now was written before
            if not os.read(self._wake, 1 << 10):  # closed: no drain is asked for any more
                poller.unregister(self._wake)
                return True
            self._known_secrets()  # asked while the command's are known: kept for later
            if not self._pass_on_bytes(_bytes_held(self._read)):
                return False
            self._finish()
            self._drained.set()
        elif self._read in ready:
            return self._pass_on_bytes(1)
        return True

    def _pass_on_bytes(self, count: int) -> bool:
        """Pass on at least `count` bytes of the pipe (at most what it holds, when it holds
        more); False at its end."""
        while count > 0:
            data = os.read(self._read, max(count, 1 << 16))
            if not data:
                return False
            count -= len(data)
            self._pass_on(self._decoder.decode(data))
        return True

    def _pass_on(self, text: str) -> None:
        whole = self._unfinished + text
        end = max(whole.rfind("\n"), whole.rfind("\r")) + 1
        if len(whole) - end > _LONGEST_LINE:  # "##[" cut in two would not be seen
            end = max(end, self._before_secrets(whole, len(whole) - 2))
        self._unfinished = whole[end:]
        if end:
            self._write(whole[:end])

    def _finish(self) -> None:
        whole = self._unfinished + self._decoder.decode(b"", final=True)
        self._unfinished = ""
        if whole:
            self._write(whole + "\n")

    def _known_secrets(self) -> tuple[str, ...]:
        secrets = ordered_secrets(self._secrets)
        if len(secrets) != len(self._secrets):
            self._secrets = frozenset(secrets)
        return secrets

    def _before_secrets(self, text: str, end: int) -> int:
        """`end`, or before it where a secret runs across it."""
        secrets = self._known_secrets()
        if not secrets:
            return end
        from nebula_build.text import unfinished_secret

        return unfinished_secret(text, secrets, end=end)

    def _write(self, lines: str) -> None:
        secrets = self._known_secrets()
        if secrets:
            from nebula_build.text import redact

            lines = redact(lines, secrets)
        data = neutralised(lines).encode("utf-8", "surrogateescape")
        with contextlib.suppress(OSError):  # the log gone: as a closed stderr would
            while data:
                data = data[os.write(self._real, data) :]


def _bytes_held(pipe: int) -> int:
    """How many bytes `pipe` holds, unread."""
    held = fcntl.ioctl(pipe, termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", held)[0])


_lock = _thread.allocate_lock()
_reader: _Reader | None = None
_users = 0
_saved: tuple[int, int] = (-1, -1)  # the real descriptors 1 and 2, while piped


@contextlib.contextmanager
def descriptors_through_runner_log() -> Iterator[None]:
    """While the block runs, descriptors 1 and 2 write to the log through `_Reader`,
    where the command writes to the process's stdout through a copy of it (see
    `command_stdout`): descriptor 1 points at stderr then."""
    global _users  # noqa: PLW0603 - descriptors are one per process, and so is this
    with _lock:
        _users += 1
        if _users == 1:
            _pipe_descriptors()
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if not _users:
                _unpipe_descriptors()


def drain() -> None:
    """Wait until what was written to descriptors 1 and 2 so far is in the log (while
    the secrets to take out of it are known)."""
    reader = _reader
    if reader is not None:
        reader.drain()


def _pipe_descriptors() -> None:
    global _reader, _saved  # noqa: PLW0603
    if os.name != "posix" or not held_stdout():  # an embedder's streams are its own
        return
    _flush_python_stderr()
    opened: list[int] = []
    try:
        for fd in (1, 2, 2):  # the reader writes to a copy of its own
            opened.append(os.dup(fd))
        read, write = os.pipe()
        opened += (read, write)
        reader = _Reader(read, opened[2])
    except (OSError, RuntimeError):  # a descriptor closed, none left, or no thread
        for fd in opened:
            os.close(fd)
        return
    _enlarge(write)
    os.dup2(write, 2)
    os.dup2(write, 1)  # it pointed at stderr: the command's stdout is a copy
    os.close(write)
    _saved = (opened[0], opened[1])
    _reader = reader


def _enlarge(pipe: int) -> None:
    """Let `pipe` hold `_PIPE_SIZE` bytes, where the system allows it (Linux)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # past what the system allows: as it was
            fcntl.fcntl(pipe, set_size, _PIPE_SIZE)


def _unpipe_descriptors() -> None:
    global _reader, _saved
    reader, (real_out, real_err) = _reader, _saved
    if reader is None:
        return
    _flush_python_stderr()
    with contextlib.suppress(OSError):
        os.dup2(real_out, 1)
        os.dup2(real_err, 2)
    for saved in (real_out, real_err):
        os.close(saved)
    _reader, _saved = None, (-1, -1)
    reader.drain()  # the writers left are those a plugin left running
    reader.close()


def _flush_python_stderr() -> None:
    """What Python holds for descriptor 2 goes where it was written."""
    with contextlib.suppress(Exception):
        if sys.__stderr__ is not None:
            sys.__stderr__.flush()
