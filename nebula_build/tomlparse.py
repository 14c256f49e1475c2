"""TOML that is not trusted (a pull request's manifest or lock), counted before it is
parsed.

`tomllib` makes Python objects for every value, and a table costs it far more than the
few bytes that ask for one: 64 MiB of `[t1]`, `[t2]`, … took 95 s and 5.8 GB. So before
a text is parsed, `values_over` counts what it can make, with a few passes at C speed:
every `=`, `,` and `{` outside its strings and comments counts one value, every `[` and
`.` (each may open a table: a header, a dotted key) counts `TABLE_WEIGHT`. Where the
marks in the whole text, strings included, are few enough, no closer look is needed.
"""

from __future__ import annotations

import re

#: what a `[` or a `.` counts: a table costs tomllib ~850 bytes, an array's value ~70
TABLE_WEIGHT = 8
_VALUE_MARKS = ("=", ",", "{")
_TABLE_MARKS = ("[", ".")
#: strings (multi-line first) and comments, as tomllib reads them: what they hold is
#: no value. A text that is not TOML may be read otherwise here, but tomllib stops
#: where it goes wrong, before any value that reading would hide. A string left open
#: runs to the end of its line (of the text, for triple quotes), where tomllib stops:
#: were its closing quote required, every quote of a line of `"\"\"\…` would begin a
#: string looked for to the end of the line (80 kB of them took a minute).
_STRINGS_AND_COMMENTS = re.compile(
    r'"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*(?:"{3,5}|\\?\Z)'
    r"|'''[^']*(?:'(?!'')[^']*)*(?:'{3,5}|\Z)"
    r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"?'
    r"|'[^'\n]*'?"
    r"|#[^\n]*",
    re.DOTALL,
)


def weight(text: str) -> int:
    """The count `values_over` compares, of every mark in `text`, strings included."""
    values = sum(text.count(mark) for mark in _VALUE_MARKS)
    return values + TABLE_WEIGHT * sum(text.count(mark) for mark in _TABLE_MARKS)


def values_over(text: str, limit: int) -> bool:
    """Whether `text` asks for more than `limit` values (`weight`) outside its strings
    and comments."""
    if weight(text) <= limit:
        return False
    return weight(_STRINGS_AND_COMMENTS.sub("", text)) > limit
