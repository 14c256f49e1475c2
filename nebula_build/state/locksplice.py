"""Rewriting images.lock in O(changed): the changed tables spliced into its bytes.

The lock is one table per image, sorted by name, each starting with a line
`[images.NAME]` after a blank line, and no value holds a raw newline (strings
are escaped). So the bytes from `\\n[images.NAME]\\n` to the next `\\n[images.`
are that image's table (its history tables start `\\n[[images.`), and a lock the
tool wrote can take new tables in place of old ones without formatting the rest:
the result is byte for byte what formatting every entry would give.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence

_TABLE = b"\n[images."


def splice(
    text: bytes,
    names: Sequence[str],
    changed: Mapping[str, str | None],
    marker: Callable[[str], bytes],
) -> bytes:
    """`text` (a lock the tool wrote, whose images are `names`, sorted) with the table
    of each image in `changed` replaced by its new text (None: removed; an image not
    in `names`: inserted in order). `marker(name)` is the table's first line,
    `\\n[images.KEY]\\n`."""
    out: list[bytes] = []
    cursor = 0
    for name in sorted(changed):
        table = changed[name]
        start = text.find(marker(name), cursor)
        if start >= 0:
            end = text.find(_TABLE, start + 1)
            end = len(text) if end < 0 else end
        else:  # a new image: before the first one that sorts after it
            index = bisect_right(names, name)
            start = end = len(text) if index == len(names) else text.find(marker(names[index]))
            if start < cursor:
                raise ValueError(f"the lock's tables are not in order at {name!r}")
        out.append(text[cursor:start])
        if table is not None:
            out.append(table.encode())
        cursor = end
    out.append(text[cursor:])
    return b"".join(out)
