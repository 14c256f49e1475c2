"""`nebula-build watch` in a process of its own, its output read line by line as it
prints, for tests that change files while it runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Watching:
    lines: list[str] = field(default_factory=list)
    #: set once watch stopped (Ctrl-C)
    returncode: int | None = None
    err: str = ""

    def printed(self, start: str) -> bool:
        return any(line.startswith(start) for line in list(self.lines))

    @property
    def out(self) -> str:
        return "".join(self.lines)


@contextmanager
def watching(root: Path, *options: str, flags: Sequence[str] = ()) -> Iterator[Watching]:
    """Watch `root` while the block runs (`options` before the command: `-f FILE`;
    `flags` after it: `--max-generations 1`); then Ctrl-C it and wait for its end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", *options, "watch", *flags],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = Watching()
    errors: list[str] = []
    # each stream has its own reader (stderr too, or a full pipe would stall watch):
    # `communicate` beside them would take some of their lines
    readers = [
        threading.Thread(target=lambda: run.lines.extend(process.stdout or ()), daemon=True),
        threading.Thread(target=lambda: errors.extend(process.stderr or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        yield run
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for reader in readers:
                reader.join(timeout=5)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
            run.err = "".join(errors)
            run.returncode = process.returncode
