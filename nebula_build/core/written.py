"""The files a manifest writes, checked against each other and against what it reads.

A file written inside another (`o/a.png` and `o/a.png/b.png`) cannot be: one of
them fails only once it is paid for. A file the manifest reads (an input image or
palette, a data file of `rows`, a post a `rows` pattern matches now or would
match once written) is never written over: an asset manifest written at
`posts/0.md` would be the next round's post, a new image every apply, forever.
Both are found on the text of the paths, before anything is generated, in time
linear in the files written (a manifest may write 100,000 of them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from nebula_build.state import globs
from nebula_build.text import file_key

__all__ = ["Read", "as_one_file", "inside_another", "read_too"]


@dataclass(frozen=True, slots=True)
class Read:
    """A file, or a pattern of posts, that the manifest reads."""

    #: who reads it, as a message says it ("images.fill's image", "images.cover's rows")
    reader: str
    #: the file, or the folder the pattern of posts starts in ("." for the project's)
    path: str
    #: the parts of the pattern below `path` (None: one file)
    pattern: tuple[str, ...] | None = None


def as_one_file(read: Read) -> Read:
    """`read` with its path and pattern as `text.file_key` keys them, to compare with
    written paths keyed so (on macOS and Windows `Posts/0.md` is a post of `posts/*.md`)."""
    pattern = None if read.pattern is None else tuple(map(file_key, read.pattern))
    return Read(read.reader, file_key(read.path), pattern)


def inside_another(written: Collection[str]) -> Iterator[tuple[str, str]]:
    """(file, the written file it would be inside) for a file written where another is
    written: once per file that would be a folder."""
    seen: set[str] = set()  # folders climbed already, and those above them
    for path in written:
        folder = path.rpartition("/")[0]
        while folder and folder not in seen:
            seen.add(folder)
            if folder in written:
                yield path, folder
            folder = folder.rpartition("/")[0]


def read_too(written: Collection[str], reads: Iterable[Read]) -> Iterator[tuple[str, Read]]:
    """(file, what reads it) for each written file the manifest also reads."""
    for read in reads:
        if read.pattern is None:
            if read.path in written:
                yield read.path, read
        else:
            yield from ((path, read) for path in _matching(written, read.path, read.pattern))


def _matching(written: Collection[str], folder: str, parts: tuple[str, ...]) -> Iterator[str]:
    """The written files the pattern `parts` below `folder` matches (`state.globs`:
    a file written there would be a post the next time the rows are read)."""
    prefix = "" if folder == "." else folder + "/"
    last = len(parts) - 1
    states_below: dict[str, globs.States] = {}  # most files share a few folders
    for path in written:
        if not path.startswith(prefix):
            continue
        below, _, name = path[len(prefix) :].rpartition("/")
        states = states_below.get(below)
        if states is None:
            states = globs.states_at(parts, below.split("/") if below else ())
            states_below[below] = states
        if last in states and globs.names_file(parts, states, name):
            yield path
