"""The job log of a GitHub Actions runner, which obeys workflow commands in it.

The runner reads every line a step prints: one that starts with `::` (after
spaces) is a command (`::warning`, `::add-mask::`, `::stop-commands::`), and so
is `##[` anywhere in a line (the old form). A prompt, a file name or a server's
answer is text from a pull request or a stranger, so under GitHub Actions the
CLI writes through `RunnerLog`, which neutralises every such line, whoever made
it; only the annotations the CLI means to send go through `command()`. The
runner ends a line at `\\n` or `\\r`.

Standard library only: the no-op fast path writes through it too.
"""

from __future__ import annotations

import atexit
import re
import sys
from typing import TextIO, cast

#: `::` where the runner would read it: at the start of a line, after any spaces
_COMMAND_START = re.compile(r"(\A|[\r\n])([^\S\r\n]*)::")
#: `##[` becomes `#\u0023[`: shown as it is in text, and in JSON output (where `#`
#: is only ever inside a string) the same string once parsed
_OLD_FORM = "##["
_OLD_FORM_SAFE = "#\\u0023["


def neutralised(lines: str, *, mid_line: bool = False) -> str:
    """Whole lines (`lines` starts where a line starts, or with the rest of one a
    terminal was shown the start of: `mid_line`) with no workflow command."""
    pattern = _COMMAND_AFTER_A_BREAK if mid_line else _COMMAND_START
    return pattern.sub(r"\1\2: :", lines).replace(_OLD_FORM, _OLD_FORM_SAFE)


_COMMAND_AFTER_A_BREAK = re.compile(r"([\r\n])([^\S\r\n]*)::")


def _shown_early(unfinished: str, mid_line: bool) -> str:
    """How much of an unfinished line a terminal may be shown before its end: none of
    what could still begin a command (spaces and a `:` at its start) or end in one
    (`#` and `##` before a `[`)."""
    if not mid_line and unfinished.lstrip()[:1] in ("", ":"):  # any space the runner trims
        return ""
    return unfinished.rstrip("#")


class RunnerLog:
    """A text stream that writes to `stream` with no workflow command in it but the
    ones written with `command()`. It passes on whole lines only, so a command split
    across writes is seen whole; the end of an unfinished line waits for its line
    break, `finish()`, or a `flush()` to a terminal (which is not the runner's log).
    Everything else is passed to `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._unfinished = ""
        #: a terminal was shown the start of the line `_unfinished` goes on with
        self._mid_line = False

    def write(self, text: str) -> int:
        whole = self._unfinished + text
        end = max(whole.rfind("\n"), whole.rfind("\r")) + 1
        self._unfinished = whole[end:]
        if end:
            self._stream.write(neutralised(whole[:end], mid_line=self._mid_line))
            self._mid_line = False
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._unfinished and self._stream.isatty():  # a prompt, a progress line
            shown = _shown_early(self._unfinished, self._mid_line)
            if shown:
                self._stream.write(neutralised(shown, mid_line=self._mid_line))
                self._unfinished = self._unfinished[len(shown) :]
                self._mid_line = True
        self._stream.flush()

    def finish(self) -> None:
        """Write the unfinished line, as a line of its own."""
        if self._unfinished:
            self._stream.write(neutralised(self._unfinished, mid_line=self._mid_line) + "\n")
            self._unfinished = ""
        self._mid_line = False
        self._stream.flush()

    def command(self, line: str) -> None:
        """Write a workflow command of our own, on a line of its own."""
        self.finish()
        self._stream.write(line + "\n")

    def __getattr__(self, name: str) -> object:  # isatty, fileno, encoding…
        return getattr(self._stream, name)


def write_command(stream: TextIO, line: str) -> None:
    """Write a workflow command the CLI means to send (an annotation)."""
    if isinstance(stream, RunnerLog):
        stream.command(line)
    else:
        stream.write(line + "\n")


def guarded(stream: TextIO) -> TextIO:
    """`stream` through a RunnerLog (once), finished when the process exits."""
    if isinstance(stream, RunnerLog):
        return cast(TextIO, stream)
    log = RunnerLog(stream)
    atexit.register(log.finish)
    return cast(TextIO, log)


def guard_process_streams() -> None:
    """Route sys.stdout and sys.stderr through RunnerLog: what Python itself prints
    (a traceback, a warning, a library's log) is neutralised too. A stream closed when
    the process started (`>&-`: None) stays None, for the CLI to write nowhere."""
    if sys.stdout is not None:
        sys.stdout = guarded(sys.stdout)
    if sys.stderr is not None:
        sys.stderr = guarded(sys.stderr)
