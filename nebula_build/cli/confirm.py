"""Asking before money is spent: `apply` on a terminal, for generations on a paid backend.

Asked wherever someone can answer (stdin is a terminal) and only when the run
would pay: never under `--yes`, `--locked` or `--json`, never off a terminal (CI,
a pipe), never in `watch` (which runs again on every save: asking each time would
block the loop, and starting it is the consent). The question goes to stderr, or
to the terminal itself when stderr is redirected (`apply 2>log` still asks);
anything but y or yes, end of input included, is no.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TextIO

from nebula_build.engine.cost import Estimate

#: seconds between looks for a signal while waiting for the answer
_POLL = 0.1


def reviewing(*, yes: bool, locked: bool, json_output: bool) -> bool:
    """Whether someone at a terminal sees the plan, and is asked before it pays: then
    it pays for no generation it did not count (a cache entry found bad at apply)."""
    return not (yes or locked or json_output) and _terminal(sys.stdin)


def wanted(*, yes: bool, locked: bool, json_output: bool, estimate: Estimate) -> bool:
    """Whether to ask before this run."""
    return bool(estimate.paid_generations) and reviewing(
        yes=yes, locked=locked, json_output=json_output
    )


def ask(question: str, *, answers: TextIO, out: TextIO, err: TextIO) -> bool:
    """Whether the user said yes. The read blocks the event loop, so Ctrl-C is made to
    raise KeyboardInterrupt meanwhile (asyncio's handler would only cancel the round's
    task, which is not running while it waits here)."""
    try:
        previous: object = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: signals are not ours to handle
        previous = None
    shown = err if _terminal(err) else _controlling_terminal() or err
    try:
        out.flush()  # the plan above it first, even through a pipe to tee
        shown.write(question)  # once Ctrl-C stops the wait: it may come the moment this shows
        shown.flush()
        _wait_for_input(answers)
        line = answers.readline()
    finally:
        if callable(previous) or isinstance(previous, int):
            signal.signal(signal.SIGINT, previous)
    if not line:
        shown.write("\n")
    if shown is not err:
        shown.close()
    return line.strip().lower() in ("y", "yes")


def _controlling_terminal() -> TextIO | None:
    try:
        return Path("/dev/tty").open("w", encoding="utf-8")
    except OSError:
        return None


def _wait_for_input(stream: TextIO) -> None:
    """Wait until `stream` has input, waking up often: a signal delivered to another
    thread (one of the event loop's workers) does not interrupt a blocking read in this
    one, so Ctrl-C would otherwise wait for the Enter key."""
    import select

    try:
        while not select.select([stream], [], [], _POLL)[0]:
            pass
    except (OSError, ValueError):  # a stream select cannot wait on: just read it
        return


def _terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False
