"""Where print() goes while a command runs: to the command's stderr, so that stdout
carries the command's own output alone (apply --json, plan --markdown).

sys.stdout belongs to the whole process, and an embedder may run commands in
several threads at once, which end in any order: one stand-in serves them all,
and the process's stdout is given back when the last of them ends.

Below Python, a subprocess or C code writes to file descriptor 1 itself: while a
command writes its output to the process's stdout, descriptor 1 is pointed at
stderr, and the command writes through a copy of the real one (`command_stdout`).
"""

from __future__ import annotations

import _thread
import codecs
import collections
import contextlib
import dataclasses
import functools
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast


class _WithoutSecrets:
    """A stand-in for a process stream: what is written to it goes to `_target` without
    the backends' secrets. A secret written in pieces (`print(token[:5], end="")`, then
    the rest) is redacted whole: the end of what was written that a secret could begin
    with is held until what follows says, the end of its line, or the command's end.
    Bytes written to its `buffer` are taken the same way, in the same order."""

    def __init__(self) -> None:
        self._held = ""
        self._writing = _thread.RLock()  # plugins write from threads of their own
        self.buffer = _BytesWithoutSecrets(self)

    @property
    def _target(self) -> TextIO:
        raise NotImplementedError

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            return self._target.write(text)  # the target's own complaint
        with self._writing:
            shown, self._held = _shown_and_held(self._held + text)
            if shown:
                self._target.write(shown)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target.flush()

    def finish(self) -> None:
        """Write what was held (the command ends: nothing follows that it could begin)."""
        with self._writing:
            self.buffer.finish()
            held, self._held = self._held, ""
            if held:
                self._target.write(without_secrets(held))

    def __getattr__(self, name: str) -> object:  # isatty, fileno, encoding…
        return getattr(self._target, name)


class _BytesWithoutSecrets:
    """The `buffer` of a stand-in: bytes written to it are decoded and written to the
    stand-in, a secret in them redacted too (a byte that is no text shown as �)."""

    def __init__(self, text: _WithoutSecrets) -> None:
        self._text = text
        self._decoder: codecs.IncrementalDecoder | None = None

    def write(self, data: bytes) -> int:
        with self._text._writing:
            if self._decoder is None:
                self._decoder = codecs.getincrementaldecoder(_encoding(self._text))("replace")
            self._text.write(self._decoder.decode(bytes(data)))
        return len(data)

    def writelines(self, lines: list[bytes]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._text.flush()

    def finish(self) -> None:
        """Pass on the end of a character cut short, as �."""
        with self._text._writing:
            if self._decoder is not None:
                self._text.write(self._decoder.decode(b"", final=True))

    def __getattr__(self, name: str) -> object:  # raw, fileno, mode…
        target = self._text._target
        return getattr(getattr(target, "buffer", target), name)


def _encoding(stream: object) -> str:
    encoding = getattr(stream, "encoding", None)
    return encoding if isinstance(encoding, str) else "utf-8"


def _shown_and_held(text: str) -> tuple[str, str]:
    """What of `text` to write now, without secrets, and what to hold: the end a secret
    could begin with (see `text.unfinished_secret`)."""
    secrets = ordered_secrets()
    if not secrets:
        return text, ""
    from nebula_build.text import redact, unfinished_secret

    cut = unfinished_secret(text, secrets)
    return redact(text[:cut], secrets), text[cut:]


def ordered_secrets(also: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The value of every secret variable a backend has named (see `declared_secrets`),
    and `also`, in one order (redaction caches the forms of each by it): none where no
    backend was loaded, and a no-op plan, which loads none, imports nothing for it."""
    if "nebula_build.plugin.redaction" not in sys.modules:
        return _in_order(also)
    from nebula_build.plugin.redaction import declared_secrets

    declared = declared_secrets()
    return _in_order(declared | also if also else declared)


@functools.lru_cache(maxsize=4)
def _in_order(secrets: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(secrets))


class StrayOutput(_WithoutSecrets):
    """Stands in for sys.stdout while commands run: what is written to it goes to the
    stderr of the command that started last."""

    def __init__(self, stdout: TextIO) -> None:
        super().__init__()
        self.stdout = stdout
        self.errs: list[TextIO] = []

    @property
    def _target(self) -> TextIO:
        if self.errs:
            return self.errs[-1]
        if self is _stand_in:
            return self.stdout
        # Kept past its commands (a logger made while one ran): `self.stdout` may be the
        # closed copy of descriptor 1, so write where print() would now.
        now = sys.stdout
        return now if now is not self else sys.__stdout__ or self.stdout


class StrayErrors(_WithoutSecrets):
    """Stands in for sys.stderr while commands run: it is what a plugin writes there
    itself."""

    def __init__(self, stderr: TextIO) -> None:
        super().__init__()
        self.stderr = stderr

    @property
    def _target(self) -> TextIO:
        return self.stderr


def without_secrets(text: str) -> str:
    """`text` without the value of any secret variable a backend has named (see
    `declared_secrets`): none has where no backend was loaded."""
    secrets = ordered_secrets() if isinstance(text, str) else ()
    if not secrets:
        return text
    from nebula_build.text import redact

    return redact(text, secrets)


_lock = _thread.allocate_lock()  # threading would cost a no-op plan a millisecond
#: the streams that stood in for sys.stdout or sys.stderr, kept a while once replaced:
#: print() in another thread may be writing to one through a reference it does not own
#: (CPython's print borrows sys.stdout), and freeing it under that write crashes
_retired: collections.deque[object] = collections.deque(maxlen=12)
_stand_in: StrayOutput | None = None
_errors: StrayErrors | None = None


@contextlib.contextmanager
def stray_output_to(err: TextIO) -> Iterator[None]:
    """While the block runs, print() from any thread writes to `err`, and what is written
    to sys.stdout or sys.stderr is without the backends' secrets."""
    global _stand_in, _errors  # noqa: PLW0603 - sys.stdout is one per process, and so is this
    with _lock:
        if _stand_in is None:
            _stand_in = StrayOutput(sys.stdout)
            _errors = StrayErrors(sys.stderr)
        _stand_in.errs.append(err)
        sys.stdout = cast(TextIO, _stand_in)
        sys.stderr = cast(TextIO, _errors)
    try:
        yield
    finally:
        _drain_descriptors()
        with _lock:
            stand_in, errors = _stand_in, _errors
            assert stand_in is not None and errors is not None
            for stream in (stand_in, errors):  # while its secrets are known
                with contextlib.suppress(Exception):
                    stream.finish()
            mine = max(i for i, stream in enumerate(stand_in.errs) if stream is err)
            del stand_in.errs[mine]
            if not stand_in.errs:
                sys.stdout, sys.stderr = stand_in.stdout, errors.stderr
                _stand_in = _errors = None
                _retired.extend((stand_in, errors))
                _forget_secrets()


def _drain_descriptors() -> None:
    """Under GitHub Actions, what was written below Python reaches the log while the
    secrets to take out of it are known (see `runnerpipe`)."""
    runnerpipe = sys.modules.get("nebula_build.cli.runnerpipe")
    if runnerpipe is not None:
        runnerpipe.drain()


def _forget_secrets() -> None:
    """No command runs: the next one's backends name their own secrets."""
    if "nebula_build.plugin.redaction" in sys.modules:
        from nebula_build.plugin.redaction import forget_secrets

        forget_secrets()


def process_stdout() -> TextIO:
    """The process's stdout, even while a command has print() write elsewhere."""
    stand_in = _stand_in
    return stand_in.stdout if stand_in is not None else sys.stdout


@dataclasses.dataclass
class _MovedStdout:
    """The real stdout while descriptor 1 points at stderr: a copy of its descriptor, a
    stream on it that stands in for the process's stdout (the commands' output, argparse's
    --help), the stream it stands in for, and how many commands write through it."""

    fd: int
    stream: TextIO
    original: TextIO
    users: int = 1


_moved: _MovedStdout | None = None


@contextlib.contextmanager
def command_stdout(out: TextIO | None) -> Iterator[TextIO]:
    """The stream for a command's own output: `out` if given, else the process's stdout,
    with descriptor 1 pointed at stderr until the last command writing there ends."""
    global _moved  # noqa: PLW0603 - descriptor 1 is one per process, and so is this
    if out is not None:
        yield out
        return
    with _lock:
        if _moved is not None:
            _moved.users += 1
        else:
            _moved = _moved_stdout(process_stdout())
            if _moved is not None:
                _set_process_stdout(_moved.stream)
        moved = _moved
    if moved is None:  # not on descriptor 1 (an embedder's stream), or no stderr to point at
        stdout = process_stdout()
        if stdout is None:  # closed when the process started (`>&-`): nowhere to go
            with Path(os.devnull).open("w", encoding="utf-8") as nowhere:
                yield nowhere
            return
        yield stdout
        return
    try:
        yield moved.stream
    finally:
        with _lock:
            moved.users -= 1
            if not moved.users:
                _moved = None
                _set_process_stdout(moved.original)
                _retired.append(moved.stream)
                _put_back(moved)


def _set_process_stdout(stream: TextIO) -> None:
    """Make `stream` the process's stdout: sys.stdout, or what print() goes back to."""
    if _stand_in is not None:
        _stand_in.stdout = stream
    else:
        sys.stdout = stream


def held_stdout() -> tuple[int, ...]:
    """The descriptor of the real stdout while a command holds it, for the SIGHUP handler."""
    moved = _moved
    return () if moved is None else (moved.fd,)


def _moved_stdout(stdout: TextIO) -> _MovedStdout | None:
    """Point descriptor 1 at stderr, and give the real stdout a stream of its own."""
    try:
        if stdout.fileno() != 1:
            return None
        stdout.flush()
        real = os.dup(1)
    except (AttributeError, OSError, ValueError):  # no descriptor, closed, or io's own
        return None
    raw = io.FileIO(real, "w")  # closes `real` when closed
    # buffered as stdout is: `python -u` or PYTHONUNBUFFERED (CI's live log) writes at once
    unbuffered = not isinstance(getattr(stdout, "buffer", None), io.BufferedWriter)
    stream = io.TextIOWrapper(
        cast(io.BufferedWriter, raw) if unbuffered else io.BufferedWriter(raw),
        encoding=getattr(stdout, "encoding", None) or "utf-8",
        errors=getattr(stdout, "errors", None) or "strict",
        line_buffering=bool(getattr(stdout, "line_buffering", False)),
        write_through=unbuffered or bool(getattr(stdout, "write_through", False)),
    )
    try:
        os.dup2(2, 1)
    except OSError:  # stderr closed: leave descriptor 1 alone
        stream.close()
        return None
    return _MovedStdout(real, stream, stdout)


def _put_back(moved: _MovedStdout) -> None:
    """Descriptor 1 is stdout again. The copy is left to close when its last writer lets
    go of it: a plugin's thread still running (a hook past its timeout) may be writing to
    it now, and closing a stream under a write crashes the interpreter. A reader gone
    (`| head`) loses what was unwritten, as a closed pipe would have anyway, without a
    complaint at exit: the copy writes to os.devnull from then on."""
    try:
        moved.stream.flush()
        reader_gone = False
    except (OSError, ValueError):
        reader_gone = True
    with contextlib.suppress(OSError):
        os.dup2(moved.fd, 1)
    if reader_gone:
        _to_devnull(moved.fd)


def _to_devnull(fd: int) -> None:
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd, inheritable=False)
        finally:
            os.close(devnull)
