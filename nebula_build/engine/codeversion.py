"""Which code this is, for the caches that must miss when it changes: the version, and
each module file's size and modification time, so that a checkout, a pull or an edit
that keeps the version (an editable install, `pip install git+…`) is new code too."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from nebula_build import __version__

_PACKAGE = Path(__file__).resolve().parents[1]


@functools.cache
def code_version() -> str:
    """`__version__`, then a digest of the package's modules as they are on disk (some
    150 stats, once a process)."""
    described = hashlib.sha256()
    folders = [str(_PACKAGE)]
    while folders:
        folder = folders.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        folders.append(entry.path)
                elif entry.name.endswith(".py"):
                    found = entry.stat()
                    described.update(
                        f"{entry.path}\0{found.st_size}\0{found.st_mtime_ns}\n".encode()
                    )
            except OSError:
                continue
    return f"{__version__}+{described.hexdigest()[:16]}"
