"""Where print() goes while a command runs: to the command's stderr, so that stdout
carries the command's own output alone (apply --json, plan --markdown).

sys.stdout belongs to the whole process, and an embedder may run commands in
several threads at once, which end in any order: one stand-in serves them all,
and the process's stdout is given back when the last of them ends.
"""

from __future__ import annotations

import _thread
import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO, cast


class StrayOutput:
    """Stands in for sys.stdout while commands run: what is written to it goes to the
    stderr of the command that started last."""

    def __init__(self, stdout: TextIO) -> None:
        self.stdout = stdout
        self.errs: list[TextIO] = []

    @property
    def _target(self) -> TextIO:
        return self.errs[-1] if self.errs else self.stdout

    def write(self, text: str) -> int:
        return self._target.write(text)

    def writelines(self, lines: list[str]) -> None:
        self._target.writelines(lines)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, name: str) -> object:  # isatty, fileno, encoding…
        return getattr(self._target, name)


_lock = _thread.allocate_lock()  # threading would cost a no-op plan a millisecond
_stand_in: StrayOutput | None = None


@contextlib.contextmanager
def stray_output_to(err: TextIO) -> Iterator[None]:
    """While the block runs, print() from any thread writes to `err`."""
    global _stand_in  # noqa: PLW0603 - sys.stdout is one per process, and so is this
    with _lock:
        if _stand_in is None:
            _stand_in = StrayOutput(sys.stdout)
        _stand_in.errs.append(err)
        sys.stdout = cast(TextIO, _stand_in)
    try:
        yield
    finally:
        with _lock:
            stand_in = _stand_in
            assert stand_in is not None
            mine = max(i for i, stream in enumerate(stand_in.errs) if stream is err)
            del stand_in.errs[mine]
            if not stand_in.errs:
                sys.stdout = stand_in.stdout
                _stand_in = None


def process_stdout() -> TextIO:
    """The process's stdout, even while a command has print() write elsewhere."""
    stand_in = _stand_in
    return stand_in.stdout if stand_in is not None else sys.stdout
