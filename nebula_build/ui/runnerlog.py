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

import re
from typing import TextIO

#: `::` where the runner would read it: at the start of a line, after any spaces
_AFTER_LINE_BREAK = re.compile(r"([\r\n][^\S\r\n]*)::")
_AT_START = re.compile(r"\A([^\S\r\n]*)::")
_LINE_BREAK = re.compile(r"[\r\n]")
#: `##[` becomes `#\u0023[`: shown as it is in text, and in JSON output (where `#`
#: is only ever inside a string) the same string once parsed
_OLD_FORM = "##["
_OLD_FORM_SAFE = "#\\u0023["


class RunnerLog:
    """A text stream that writes to `stream` with no workflow command in it but the
    ones written with `command()`. Everything else is passed to `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._blank = True  # the line being written holds only spaces so far
        self._hashes = 0  # the `#` that end what was written on this line (at most 2)

    def write(self, text: str) -> int:
        self._stream.write(self._neutralised(text))
        return len(text)

    def command(self, line: str) -> None:
        """Write a workflow command of our own, on a line of its own."""
        if not self._blank:
            self._stream.write("\n")
        self._stream.write(line + "\n")
        self._blank, self._hashes = True, 0

    def __getattr__(self, name: str) -> object:  # flush, isatty, fileno…
        return getattr(self._stream, name)

    def _neutralised(self, text: str) -> str:
        if not text:
            return text
        if self._hashes and text.startswith("[" if self._hashes >= 2 else "#["):
            text = "\\u0023" + text  # the `##[` a write before began
        if self._blank:
            text = _AT_START.sub(r"\1: :", text)
        text = _AFTER_LINE_BREAK.sub(r"\1: :", text).replace(_OLD_FORM, _OLD_FORM_SAFE)
        last = _LINE_BREAK.split(text)[-1]
        broken = len(last) != len(text)
        self._blank = (broken or self._blank) and not last.strip()
        trailing = len(last) - len(last.rstrip("#"))
        continued = self._hashes if trailing == len(last) and not broken else 0
        self._hashes = min(2, trailing + continued)
        return text


def write_command(stream: TextIO, line: str) -> None:
    """Write a workflow command the CLI means to send (an annotation)."""
    if isinstance(stream, RunnerLog):
        stream.command(line)
    else:
        stream.write(line + "\n")
