"""Git's conflict markers: the two sides of a merge (or rebase, or pull) that left them.

A conflict is `<<<<<<< ours`, the lines of one side, optionally `||||||| base` and the
base's lines (diff3 and zdiff3 styles), `=======`, the lines of the other side, and
`>>>>>>> theirs`, each marker at the start of a line. The base is dropped: it is what
both sides changed.
"""

from __future__ import annotations

import re

from nebula_build.text import printable

OPEN, BASE, SEPARATOR, CLOSE = "<<<<<<<", "|||||||", "=======", ">>>>>>>"
_MARKERS = (OPEN, BASE, SEPARATOR, CLOSE)


class MarkerError(ValueError):
    """Markers that do not make whole conflicts: nested, unbalanced or out of order."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _marker(line: str) -> str | None:
    """The marker `line` starts with (followed by a space or the end of the line)."""
    head = line[:7]
    if head not in _MARKERS:
        return None
    rest = line[7:].rstrip("\r\n")
    if head == SEPARATOR:
        return head if not rest else None
    return head if not rest or rest[0] == " " else None


def first_marker(text: str) -> tuple[int, str] | None:
    """(line number, the marker's line as shown) of the first conflict marker in
    `text`, or None where it has none."""
    if not any(marker in text for marker in _MARKERS):
        return None
    for number, line in enumerate(text.splitlines(), 1):
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
    separated = False
    fence = ""  # the open code block's fence
    for number, line in enumerate(text.split("\n"), 1):
        if markdown and fence:
            fence = "" if _closes(line, fence) else fence
            continue
        if markdown and (opening := _FENCE.match(line)) is not None:
            fence = opening[1]
            continue
        marker = _marker(line)
        if marker == OPEN:
            opened, separated = (number, printable(line.strip(), 80)), False
        elif marker == SEPARATOR and opened is not None:
            separated = True
        elif marker == CLOSE and separated:
            return opened
    return None


def _closes(line: str, fence: str) -> bool:
    """Whether `line` closes the code block `fence` opened: as many of its character or
    more, alone on the line."""
    closing = line.strip()
    return len(closing) >= len(fence) and closing == fence[0] * len(closing)


def sides(text: str) -> tuple[str, str] | None:
    """(the text with "ours", the text with "theirs") of a file with git's conflict
    markers; None where it has none. Raises MarkerError for markers that are not
    whole conflicts."""
    ours: list[str] = []
    theirs: list[str] = []
    inside: str | None = None  # the last marker of the conflict being read
    opened = 0
    found = False
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        marker = _marker(line)
        if marker is None:
            if inside is None or inside == OPEN:
                ours.append(line)
            if inside is None or inside == SEPARATOR:
                theirs.append(line)
            continue
        found = True
        if marker == OPEN:
            if inside is not None:
                raise MarkerError(
                    number, f"a conflict opens inside the one opened on line {opened}"
                )
            opened = number
        elif marker == BASE and inside != OPEN:
            raise MarkerError(number, f"`{BASE}` outside a conflict's first side")
        elif marker == SEPARATOR and inside not in (OPEN, BASE):
            raise MarkerError(number, f"`{SEPARATOR}` outside a conflict")
        elif marker == CLOSE and inside != SEPARATOR:
            raise MarkerError(number, f"`{CLOSE}` without `{SEPARATOR}` before it")
        inside = None if marker == CLOSE else marker
    if inside is not None:
        raise MarkerError(opened, f"the conflict opened here has no `{CLOSE}`")
    return ("".join(ours), "".join(theirs)) if found else None
