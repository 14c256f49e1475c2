"""JSON that is not trusted (a server's answer, a saved plan), parsed within bounds.

`json.loads` makes a Python object for every value, and a list or a dict costs far
more than the two bytes of `[]` that ask for it: 64 MiB of `[],[],…` takes gigabytes
and tens of seconds, on the event loop. So before anything is parsed, `parse_json`
counts the values the text can make (every array, object and comma outside its
strings; each value is the first of its array or object, or follows a comma) with a
few passes at C speed, and refuses an answer with more than its kind ever holds. The
depth is checked after parsing, without a step per value of memory.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 32
#: the bytes `values_over` keeps: a string's quote and the marks that start a value
_MARKS = b'"[{,'
_NOT_MARKS = bytes(byte for byte in range(256) if byte not in _MARKS)


def parse_json(data: bytes, *, values: int) -> Any:
    """The JSON value of `data`; ValueError saying what is wrong if it is not JSON, is
    nested deeper than MAX_JSON_DEPTH, or is made of more than `values` values (arrays,
    objects, and what commas separate) outside its strings."""
    # json.loads would take UTF-16 and UTF-32 too, whose bytes the count misreads (a
    # character can hold a byte 0x22): JSON between systems is UTF-8 (RFC 8259)
    if json.detect_encoding(data) not in ("utf-8", "utf-8-sig"):
        raise ValueError("not JSON in UTF-8")
    if values_over(data, values):
        raise ValueError(f"made of more than {values:,} JSON values")
    too_deep = f"nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(too_deep) from None
    except ValueError:
        raise ValueError("not JSON") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise ValueError(too_deep)
    return value


def values_over(data: bytes, limit: int) -> bool:
    """Whether `data` starts more than `limit` values outside its strings. Where it
    has fewer marks than that, strings included, no closer look is needed (an image's
    base64 has none); else the marks in strings are set aside, at C speed and in
    memory of the order of `data`, then counted in at most `limit` steps."""
    if data.count(b"[") + data.count(b"{") + data.count(b",") <= limit:
        return False
    # Escaped backslashes, then escaped quotes, go (pairs from the left, as JSON reads
    # them); then all but quotes and marks; then quotes that meet (an empty string, or
    # two strings with no mark between): quotes are left between runs of marks, so each
    # step below counts at least one mark outside a string. A backslash outside a
    # string is not JSON, and json.loads stops there: what comes before is read right.
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = data.translate(None, _NOT_MARKS).replace(b'""', b"")
    del data
    count, start = 0, 0
    while True:
        opening = marks.find(b'"', start)
        count += (len(marks) if opening < 0 else opening) - start
        if count > limit:
            return True
        closing = marks.find(b'"', opening + 1) if opening >= 0 else -1
        if closing < 0:  # the end, or a string left open (not JSON)
            return False
        start = closing + 1


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in `value` nest deeper than `limit`: one iterator per
    level held, never one entry per value."""
    if not isinstance(value, dict | list):
        return False
    levels = [iter(value.values() if isinstance(value, dict) else value)]
    while levels:
        for child in levels[-1]:
            if isinstance(child, dict | list):
                if len(levels) >= limit:
                    return True
                levels.append(iter(child.values() if isinstance(child, dict) else child))
                break
        else:
            levels.pop()
    return False
