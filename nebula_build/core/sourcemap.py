"""Find where a dotted key is written in TOML source, for error messages.

tomllib reports positions only for syntax errors; validation errors come with a
key path (`images.logo.width`). This scan maps key paths to line and column.
It runs only when there is an error to show, so it favours clarity over speed.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<key>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_\-\"'. ]+?)\s*=")
Position = tuple[int, int]


def _split_key(raw: str) -> tuple[str, ...]:
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


def key_positions(text: str) -> dict[tuple[str, ...], Position]:
    """Every table header and key assignment, by full key path, 1-based."""
    positions: dict[tuple[str, ...], Position] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
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
