"""Git's conflict markers: the two sides of a merge (or rebase, or pull) that left them.

A conflict is `<<<<<<< ours`, the lines of one side, optionally `||||||| base` and the
base's lines (diff3 and zdiff3 styles), `=======`, the lines of the other side, and
`>>>>>>> theirs`, each marker at the start of a line (longer where the file's
`conflict-marker-size` attribute says so, the same length in one conflict). The base is
dropped: it is what both sides changed. Lines end at `\n` alone, as git and TOML read
them (not at U+2028 or U+0085, which a prompt may hold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nebula_build.text import printable

OPEN, BASE, SEPARATOR, CLOSE = "<<<<<<<", "|||||||", "=======", ">>>>>>>"
_MARKERS = (OPEN, BASE, SEPARATOR, CLOSE)


class MarkerError(ValueError):
    """Markers that do not make whole conflicts: nested, unbalanced or out of order."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _marker(line: str) -> tuple[str, int] | None:
    """The marker `line` starts with and its length (7, or more), followed by a space or
    the end of the line (`=======` alone)."""
    head = line[:7]
    if head not in _MARKERS:
        return None
    size = len(line) - len(line.lstrip(head[0]))
    rest = line[size:].rstrip("\r\n")
    if head == SEPARATOR:
        return (head, size) if not rest else None
    return (head, size) if not rest or rest[0] == " " else None


def _lines(text: str) -> list[str]:
    """The lines of `text`, each with its `\n`."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def first_marker(text: str) -> tuple[int, str] | None:
    """(line number, the marker's line as shown) of the first conflict marker in
    `text`, or None where it has none."""
    if not any(marker in text for marker in _MARKERS):
        return None
    for number, line in enumerate(text.split("\n"), 1):
        if _marker(line) is not None:
            return number, printable(line.strip(), 80)
    return None


def marker_on(text: str, number: int) -> str | None:
    """The conflict marker line `number` of `text` starts with, as shown, or None."""
    start = 0
    for _ in range(number - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return None
    line = text[start:].partition("\n")[0]
    return printable(line.strip(), 80) if _marker(line) is not None else None


#: a Markdown code fence's opening line: its backticks or tildes
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def opened_conflict(text: str, *, markdown: bool = False) -> tuple[int, str] | None:
    """(line number, the marker's line as shown) of the first `<<<<<<<` that a
    `=======` and then a `>>>>>>>` follow, or None: a data file or a post may hold a
    line of `=======` (a Markdown heading's underline), never a whole conflict. With
    `markdown`, lines in fenced code blocks are the post's content (a post about git
    may show a conflict). Costs a substring search where there is none."""
    if OPEN not in text:
        return None
    opened: tuple[int, str] | None = None
    separated, size = False, 0
    fence = ""  # the open code block's fence
    for number, line in enumerate(text.split("\n"), 1):
        if markdown and fence:
            fence = "" if _closes(line, fence) else fence
            continue
        if markdown and (opening := _FENCE.match(line)) is not None:
            fence = opening[1]
            continue
        found = _marker(line)
        if found is None:
            continue
        if found[0] == OPEN:
            opened, separated, size = (number, printable(line.strip(), 80)), False, found[1]
        elif opened is not None and found[1] == size:
            if found[0] == SEPARATOR:
                separated = True
            elif found[0] == CLOSE and separated:
                return opened
    return None


def _closes(line: str, fence: str) -> bool:
    """Whether `line` closes the code block `fence` opened: as many of its character or
    more, alone on the line."""
    closing = line.strip()
    return len(closing) >= len(fence) and closing == fence[0] * len(closing)


@dataclass(frozen=True)
class Side:
    """One side's text, and the line of the file each of its lines is."""

    text: str
    lines: list[int]

    def line(self, number: int) -> int:
        """The line of the file the side's line `number` is (past its end: after it)."""
        if 0 < number <= len(self.lines):
            return self.lines[number - 1]
        return (self.lines[-1] if self.lines else 0) + number - len(self.lines)


def sides(text: str) -> tuple[Side, Side] | None:
    """("ours", "theirs") of a file with git's conflict markers; None where it has
    none. Raises MarkerError for markers that are not whole conflicts."""
    ours: list[str] = []
    theirs: list[str] = []
    ours_lines: list[int] = []
    theirs_lines: list[int] = []
    inside: str | None = None  # the last marker of the conflict being read
    opened = size = 0
    found = False
    for number, line in enumerate(_lines(text), 1):
        seen = _marker(line)
        if seen is not None and inside is not None and seen[1] != size:
            seen = None  # a marker of another length inside a conflict is a line of it
        if seen is None:
            if inside is None or inside == OPEN:
                ours.append(line)
                ours_lines.append(number)
            if inside is None or inside == SEPARATOR:
                theirs.append(line)
                theirs_lines.append(number)
            continue
        marker, length = seen
        found = True
        if marker == OPEN:
            if inside is not None:
                raise MarkerError(
                    number, f"a conflict opens inside the one opened on line {opened}"
                )
            opened, size = number, length
        elif marker == BASE and inside != OPEN:
            raise MarkerError(number, f"`{BASE}` outside a conflict's first side")
        elif marker == SEPARATOR and inside not in (OPEN, BASE):
            raise MarkerError(number, f"`{SEPARATOR}` outside a conflict")
        elif marker == CLOSE and inside != SEPARATOR:
            raise MarkerError(number, f"`{CLOSE}` without `{SEPARATOR}` before it")
        inside = None if marker == CLOSE else marker
    if inside is not None:
        raise MarkerError(opened, f"the conflict opened here has no `{CLOSE}`")
    if not found:
        return None
    return Side("".join(ours), ours_lines), Side("".join(theirs), theirs_lines)


def side_texts(text: str) -> tuple[str, str] | None:
    """The texts of ("ours", "theirs") of a file git left whole conflicts in; None where
    it has none, or markers that do not make whole conflicts."""
    if OPEN not in text:
        return None
    try:
        split = sides(text)
    except MarkerError:
        return None
    return None if split is None else (split[0].text, split[1].text)
