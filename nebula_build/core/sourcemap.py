"""Find where a dotted key is written in TOML source, for error messages.

tomllib reports positions only for syntax errors; validation errors come with a
key path (`images.logo.width`). This scan maps key paths to line and column.
It runs only when there is an error to show; where a few problems of a large manifest
are shown, it reads only the lines that can hold them (`key_positions`' `within`).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Iterator

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<key>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_\-\"'. ]+?)\s*=")
#: about how many characters of a text are split into lines at once
PIECE = 1 << 20
#: the characters of bare keys and the dots between them
_BARE_KEYS = string.ascii_letters + string.digits + "_-."
Position = tuple[int, int]


def _split_key(raw: str) -> tuple[str, ...]:
    if '"' not in raw and "'" not in raw:  # a bare key, as most are: no loop in Python
        return tuple(map(str.strip, raw.split(".")))
    parts, current, quote = [], "", ""
    for char in raw:
        if quote:
            if char == quote:
                quote = ""
            else:
                current += char
        elif char in "\"'":
            quote = char
        elif char == ".":
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return tuple(parts)


def _add_with_prefixes(
    positions: dict[tuple[str, ...], Position], path: tuple[str, ...], position: Position
) -> None:
    """`[images.hero]` also defines `images`: the first place a prefix appears wins."""
    for end in range(1, len(path) + 1):
        positions.setdefault(path[:end], position)


def key_positions(
    text: str, within: Collection[tuple[str, ...]] | None = None
) -> dict[tuple[str, ...], Position]:
    """Every table header and key assignment, by full key path, 1-based. With `within`,
    those of its paths and their prefixes alone (see `_Within`)."""
    if within is None:
        return _every_position(text)
    return _Within(within).scan(text)


class _Within:
    """Where some key paths and their prefixes are written, reading only what can say:
    a line that assigns a key in a table none of them is under, or a key starting with a
    name none of them has, is skipped unparsed (the ten thousand problems shown of a
    manifest of a million keys: 5 µs a line), and a header of bare keys is split, not
    matched, and then dropped unless it opens one of their tables or places one of them
    (100,000 images missing a prompt, the first of them placed: 100,000 headers)."""

    def __init__(self, within: Collection[tuple[str, ...]]) -> None:
        self.names = {part for path in within for part in path}
        self.tables = {path[:end] for path in within for end in range(len(path))}
        self.positions: dict[tuple[str, ...], Position] = {}
        self.unplaced = {path for path in (*self.tables, *within) if path}
        #: the last key of each path not placed yet, and how many end with it
        self.ends = Counter(path[-1] for path in self.unplaced)

    def scan(self, text: str) -> dict[tuple[str, ...], Position]:
        table: tuple[str, ...] = ()
        in_scope = True  # whether the keys of `table` can be among those looked for
        for number, line in enumerate(_lines(text), start=1):
            if not in_scope and "[" not in line:
                continue  # neither a header nor a key looked for
            start = line.lstrip()
            if start[:1] == "[":
                path = _header_path(line, start)
                if path is not None:
                    table, in_scope = path, path in self.tables
                    if in_scope or not self.ends.keys().isdisjoint(path):
                        self.place(path, (number, line.index("[") + 1))
                        if not self.unplaced:
                            break  # the first place of each is found: no later one counts
                continue
            if not in_scope or (
                start[:1] not in ('"', "'") and _first_name(start) not in self.names
            ):
                continue
            assign = _ASSIGN.match(line)
            if assign:
                path = table + _split_key(assign["key"])
                self.place(path, (number, len(assign["indent"]) + 1))
                if not self.unplaced:
                    break
        return self.positions

    def place(self, path: tuple[str, ...], position: Position) -> None:
        """The first place each prefix of `path` looked for appears wins."""
        for end in range(1, len(path) + 1):
            prefix = path[:end]
            if prefix in self.unplaced:
                self.unplaced.remove(prefix)
                self.positions[prefix] = position
                self.ends[prefix[-1]] -= 1
                if not self.ends[prefix[-1]]:
                    del self.ends[prefix[-1]]


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` as TOML (and tomllib's line numbers) count them, parted by
    "\n" alone (a "\r" before it is left on its line), a PIECE of text at a time:
    1,190,000 lines are 80 MB of strings held at once. Not `str.splitlines`, which
    also parts them at the U+2028, U+2029 and U+0085 a prompt may hold."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + PIECE)
        end = len(text) if end < 0 else end + 1
        piece = text[start:end]
        lines = piece.split("\n")
        if piece.endswith("\n"):
            lines.pop()  # no line begins after the last line break
        yield from lines
        start = end


def _header_path(line: str, start: str) -> tuple[str, ...] | None:
    """The key path of the table a header line opens (`start`: the line, left-stripped),
    or None where it is none."""
    written = start.rstrip()
    inner = written[1:-1]
    if written[-1:] == "]" and inner[:1] != "[" and inner and not inner.strip(_BARE_KEYS):
        return tuple(inner.split("."))  # as most are: `[images.hero]`
    header = _HEADER.match(line)
    return _split_key(header["key"]) if header else None


def _every_position(text: str) -> dict[tuple[str, ...], Position]:
    """Every table header and key assignment of `text`, by full key path."""
    positions: dict[tuple[str, ...], Position] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(_lines(text), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header["key"])
            _add_with_prefixes(positions, table, (number, line.index("[") + 1))
            continue
        assign = _ASSIGN.match(line)
        if assign:
            path = table + _split_key(assign["key"])
            _add_with_prefixes(positions, path, (number, len(assign["indent"]) + 1))
    return positions


def _first_name(assignment: str) -> str:
    """The first part of the bare key a line assigns (`a` of `a.b = 1`)."""
    return assignment.split("=", 1)[0].split(".", 1)[0].strip()


def key_at(text: str, line: int) -> tuple[str, ...]:
    """The key path of the assignment written on `line`, or on the nearest line above
    it (a multi-line value); the table's path if there is none."""
    return written_at(text, line)[0]


def written_at(text: str, line: int) -> tuple[tuple[str, ...], Position]:
    """`key_at`'s key path, and where it is written: the line and column of the
    assignment (or the table's header) it names."""
    path: tuple[str, ...] = ()
    table: tuple[str, ...] = ()
    position: Position = (1, 1)
    for number, source in enumerate(_lines(text), start=1):
        if number > line:
            break
        header = _HEADER.match(source)
        assign = None if header else _ASSIGN.match(source)
        if header:
            table = path = _split_key(header["key"])
        elif assign:
            path = table + _split_key(assign["key"])
        else:
            continue
        position = (number, len(source) - len(source.lstrip(" \t")) + 1)
    return path, position


def nesting_beyond(text: str, limit: int) -> Position | None:
    """Where arrays and inline tables are first nested more than `limit` deep, or None.

    A scan of the characters that skips strings and comments; it runs only after
    tomllib gave up on a value nested too deep, to say where that value is.
    """
    depth, number, start, index, end = 0, 1, 0, 0, len(text)
    in_value = False  # after the `=` of a key at the top level of a line
    while index < end:
        char = text[index]
        if char == "\n":
            number, start = number + 1, index + 1
            in_value = in_value and depth > 0
        elif char == "#":
            index = text.find("\n", index)
            index = end if index < 0 else index
            continue
        elif char in "\"'":
            quote = char * 3 if text.startswith(char * 3, index) else char
            after = _string_end(text, index + len(quote), quote)
            if (newlines := text.count("\n", index, after)) > 0:
                number, start = number + newlines, text.rfind("\n", index, after) + 1
            index = after
            continue
        elif char == "=":
            in_value = True
        elif char in "[{" and in_value:
            depth += 1
            if depth > limit:
                return number, index - start + 1
        elif char in "]}" and depth:
            depth -= 1
        index += 1
    return None


def _string_end(text: str, index: int, quote: str) -> int:
    """The index just past the string that opened before `index`."""
    while index < len(text):
        if quote[0] == '"' and text[index] == "\\":
            index += 2
        elif text.startswith(quote, index):
            return index + len(quote)
        else:
            index += 1
    return index
