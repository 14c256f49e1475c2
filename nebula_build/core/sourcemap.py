"""Find where a dotted key is written in TOML source, for error messages.

tomllib reports positions only for syntax errors; validation errors come with a
key path (`images.logo.width`). This scan maps key paths to line and column.
It runs only when there is an error to show, so it favours clarity over speed.
"""

from __future__ import annotations

import re
from collections.abc import Collection

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<key>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_\-\"'. ]+?)\s*=")
Position = tuple[int, int]


def _split_key(raw: str) -> tuple[str, ...]:
    if '"' not in raw and "'" not in raw:  # a bare key, as most are: no loop in Python
        return tuple(part.strip() for part in raw.split("."))
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
    at least those of its paths and their prefixes: a line that assigns a key in a
    table none of them is under, or a key starting with a name none of them has, is
    skipped unparsed (the ten thousand problems shown of a manifest of a million keys:
    5 µs a line)."""
    names = tables = None
    if within is not None:
        names = {part for path in within for part in path}
        tables = {path[:end] for path in within for end in range(len(path))}
    positions: dict[tuple[str, ...], Position] = {}
    table: tuple[str, ...] = ()
    in_scope = True  # whether the keys of `table` can be among `within`
    for number, line in enumerate(text.splitlines(), start=1):
        if names is not None and _skipped(line, names, in_scope):
            continue
        header = _HEADER.match(line)
        if header:
            table = _split_key(header["key"])
            in_scope = tables is None or table in tables
            _add_with_prefixes(positions, table, (number, line.index("[") + 1))
            continue
        assign = _ASSIGN.match(line)
        if assign:
            path = table + _split_key(assign["key"])
            _add_with_prefixes(positions, path, (number, len(assign["indent"]) + 1))
    return positions


def _skipped(line: str, names: set[str], in_scope: bool) -> bool:
    """Whether `line` can set none of the positions asked for: it is not a table's
    header, and it assigns a key of a table out of scope, or a bare key whose first part
    (`a` of `a.b = 1`) is none of `names`."""
    start = line.lstrip()
    if start[:1] == "[":
        return False
    if not in_scope:
        return True
    return (
        start[:1] not in ('"', "'") and start.split("=", 1)[0].split(".", 1)[0].strip() not in names
    )


def key_at(text: str, line: int) -> tuple[str, ...]:
    """The key path of the assignment written on `line`, or on the nearest line above
    it (a multi-line value); the table's path if there is none."""
    path: tuple[str, ...] = ()
    table: tuple[str, ...] = ()
    for number, source in enumerate(text.splitlines(), start=1):
        if number > line:
            break
        header = _HEADER.match(source)
        if header:
            table = path = _split_key(header["key"])
            continue
        assign = _ASSIGN.match(source)
        if assign:
            path = table + _split_key(assign["key"])
    return path


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
