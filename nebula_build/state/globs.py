"""The patterns of posts (`rows = { files = "content/**/*.md" }`), on their text.

A pattern is a project path whose parts may hold the wildcards `*`, `?` and `[…]`
(matched case-sensitively, never across a `/`); a part that is exactly `**`
stands for any number of folders, none included. The last part names the files.
A wildcard never enters a hidden folder (one whose name starts with `.`) unless
its part starts with `.` too, and nothing enters the tool's state or version
control (`.nebula-build`, `.git`, …) at any depth.

Matching runs as a set of states: state `i` means "parts[i:] are left to match
below this folder", so `**` needs no backtracking and a walk visits a folder
once. `state.datafiles` walks the folders; `live.watch` asks whether a changed
path counts. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Iterable, Sequence

from nebula_build.state.guard import RESERVED_FOLDERS, path_problem
from nebula_build.text import quoted

WILDCARDS = frozenset("*?[")
#: a whole part that stands for any number of folders
ANY_DEPTH = "**"
_EXAMPLE = "content/**/*.md"

Parts = tuple[str, ...]
States = frozenset[int]


class GlobError(ValueError):
    """A pattern that cannot be used; the message names it and what is wrong."""


def split(pattern: str) -> tuple[str, str]:
    """(the folder `pattern` starts in, "" for the project's own; the rest of it, from
    its first part with a wildcard, or its file name). GlobError for a pattern that
    leaves the project, enters the tool's state, or misplaces `**`."""
    parts = checked_parts(pattern)
    first = next((i for i, part in enumerate(parts) if has_wildcard(part)), len(parts) - 1)
    first = min(first, len(parts) - 1)  # the file name is always matched
    return "/".join(parts[:first]), "/".join(parts[first:])


def checked_parts(pattern: str) -> Parts:
    """The parts of `pattern`, checked; GlobError naming what is wrong."""
    problem = path_problem(pattern)
    if problem is not None:
        raise GlobError(f"{quoted(pattern)} {problem}")
    parts = tuple(pattern.split("/"))
    for index, part in enumerate(parts):
        if part.casefold() in RESERVED_FOLDERS:
            raise GlobError(
                f"{quoted(pattern)} names {part}/, which belongs to the tool or to version control"
            )
        # in the file name, `**` is `*` as it always was (`posts/**.md`)
        if ANY_DEPTH in part and part != ANY_DEPTH and index < len(parts) - 1:
            raise GlobError(
                f"{quoted(pattern)}: `**` stands for any number of folders, so it is a whole "
                f"part of the pattern ({_EXAMPLE})"
            )
    if parts[-1] == ANY_DEPTH:
        raise GlobError(
            f"{quoted(pattern)} ends in `**`: its last part names the files ({_EXAMPLE})"
        )
    # `**/**` is `**`: one state, not one per `**` at every folder (337 of them in a
    # pattern took 2 s a walk, 32 such patterns 22 s)
    return parts[:1] + tuple(
        part for before, part in itertools.pairwise(parts) if not part == before == ANY_DEPTH
    )


def has_wildcard(part: str) -> bool:
    return not WILDCARDS.isdisjoint(part)


def start(parts: Parts) -> States:
    """The states at the folder a pattern starts in."""
    return _closure(parts, (0,))


def descend(parts: Parts, states: States, name: str) -> States:
    """The states in subfolder `name` of a folder in `states`: empty when no file
    below it can match (the walk does not enter it)."""
    if name.casefold() in RESERVED_FOLDERS:
        return frozenset()
    hidden = name.startswith(".")
    last = len(parts) - 1
    below: list[int] = []
    for state in states:
        part = parts[state]
        if state == last:
            continue  # the file name's part: no folder matches it
        if part == ANY_DEPTH:
            if not hidden:
                below.append(state)
        elif _part_matches(part, name, hidden):
            below.append(state + 1)
    return _closure(parts, below)


def names_file(parts: Parts, states: States, name: str) -> bool:
    """Whether a file called `name`, in a folder in `states`, matches."""
    last = len(parts) - 1
    return last in states and fnmatch.fnmatchcase(name, parts[last])


def matches(parts: Parts, relative: Sequence[str]) -> bool:
    """Whether the file at `relative` (its parts below the pattern's folder) matches."""
    states = states_at(parts, relative[:-1])
    return bool(relative) and names_file(parts, states, relative[-1])


def may_hold(parts: Parts, relative: Sequence[str]) -> bool:
    """Whether the folder at `relative` (below the pattern's folder) is one a walk
    enters: a file in it, or below it, may match."""
    return bool(states_at(parts, relative))


def states_at(parts: Parts, folders: Sequence[str]) -> States:
    """The states in the folder at `folders` (below the pattern's folder): empty when
    no file in it, or below it, can match."""
    states = start(parts)
    for name in folders:
        states = descend(parts, states, name)
        if not states:
            break
    return states


def _part_matches(part: str, name: str, hidden: bool) -> bool:
    if hidden and not part.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, part)


def _closure(parts: Parts, states: Iterable[int]) -> States:
    """`states`, and for each `**` among them the state after it (`**` matching no
    folder); the last part is never `**`, so the state after one always exists."""
    found: set[int] = set()
    for first in states:
        state = first
        while state not in found:
            found.add(state)
            if parts[state] != ANY_DEPTH:
                break
            state += 1
    return frozenset(found)
