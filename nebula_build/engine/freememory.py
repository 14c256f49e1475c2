"""Hand the memory a load freed back to the system before a long run.

Loading and planning a large manifest frees most of what the parse and the
resolution built, but glibc's malloc keeps the freed pages: what lives on pins
the top of its heap. The work that follows cannot use them either: its many small
objects (lock entries, file rows) come from Python's own allocator, which maps
memory of its own. A first apply of 100,000 images held ~100 MB that way, on top
of everything it needed.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


def release_freed_memory() -> None:
    """Return the free pages of the C heap to the system (glibc's `malloc_trim`);
    elsewhere, nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: only a run that has work to do pays for it

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
