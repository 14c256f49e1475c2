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
