"""TOML that is not trusted (a pull request's manifest or lock), counted before it is
parsed.

`tomllib` makes Python objects for every value, and a table costs it far more than the
few bytes that ask for one: 64 MiB of `[t1]`, `[t2]`, … took 95 s and 5.8 GB. So before
a text is parsed, `values_over` counts what it can make, with a few passes at C speed:
every `=`, `,` and `{` outside its strings and comments counts one value, every `[` and
`.` (each may open a table: a header, a dotted key) counts `TABLE_WEIGHT`. Where the
marks in the whole text, strings included, are few enough, no closer look is needed.
`TableHeaders` finds the lines that open tables, so a heavy text's tables can be
counted and named before any of them is parsed.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterable

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


#: a key as a table's header writes it: bare, "basic" or 'literal'
_KEY = r"""[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'"""
_HEADER = re.compile(rf"[ \t]*\[\[?[ \t]*((?:{_KEY})(?:[ \t]*\.[ \t]*(?:{_KEY}))*)")
_FIRST_KEY = re.compile(rf"[ \t]*\[\[?[ \t]*({_KEY})")
_INDENTED_HEADER = re.compile(r"\n[ \t]+\[")

#: a header's line (`[images.a.rows]`, its quoted keys gone with the strings): its `.`
#: are the header's, counted as its table
_HEADER_LINE = re.compile(r"^[ \t]*+\[\[?[A-Za-z0-9_\-. \t]*+\]", re.MULTILINE)
#: a `.` joining two keys (`a.b = 1`, `{ a."b".c = 1 }`), its strings gone: a key, then
#: `.` or `=`; a float's or a time's is followed by digits, then `,`, `]`, `}` or a line
#: break. Possessive: a `.` before a million spaces is looked past once.
_KEY_DOT = re.compile(r"\.[ \t]*+[A-Za-z0-9_-]*+[ \t]*+(?=[.=])")


def _lines_only(found: re.Match[str]) -> str:
    """A string or comment blanked out where it spans lines (a multi-line string)."""
    text = found[0]
    return "\n" * text.count("\n") if "\n" in text else text


class TableHeaders:
    """The lines of a TOML text that open tables (`[a.b]`, `[[a.b]]`), found at C speed
    without parsing it: no line of a multi-line string is taken for one, a line of a
    multi-line array that reads as one (`["a"]`) is."""

    def __init__(self, text: str) -> None:
        if '"""' in text or "'''" in text:  # reduced to their line breaks: lines keep their numbers
            text = _STRINGS_AND_COMMENTS.sub(_lines_only, text)
        #: each line, the first too, follows a line break: a search for "\n[" is fast
        self._text = "\n" + text
        indented = _INDENTED_HEADER.search(self._text) is not None
        self._start = r"\n[ \t]*\[" if indented else r"\n\["

    def count(self) -> int:
        """How many there are."""
        if self._start == r"\n\[":
            return self._text.count("\n[")
        return len(re.findall(self._start, self._text))

    def nth(self, index: int) -> int:
        """Where the `index`th (from 0) is (for `where`)."""
        found = itertools.islice(re.finditer(self._start, self._text), index, None)
        return next(found).start()

    def first_not_under(self, known: Iterable[str]) -> int | None:
        """Where the first is whose first key is not one of `known` (for `where`)."""
        keys = set(known)
        alternatives = "|".join(map(re.escape, sorted(keys)))
        unknown = re.compile(rf"{self._start}\[?[ \t]*(?!(?:{alternatives})[ \t]*[.\]])")
        position = 0
        while (found := unknown.search(self._text, position)) is not None:
            first = _FIRST_KEY.match(self._text, found.start() + 1)
            if first is None or unquoted(first[1]) not in keys:  # `["images"]` is known
                return found.start()
            position = found.end()
        return None

    def where(self, position: int) -> tuple[int, int, str]:
        """The line and column (1-based) of the header at `position`, and its keys as
        written (`images.hero`)."""
        start = self._text.index("[", position)
        line = self._text.count("\n", 0, position + 1)
        header = _HEADER.match(self._text, position + 1)
        return line, start - position, header[1] if header else ""


def unquoted(key: str) -> str:
    """A header's key as a table's key: without its quotes (and escapes)."""
    if key[:1] == "'":
        return key[1:-1]
    if key[:1] == '"':
        try:
            return str(tomllib.loads(f"k = {key}")["k"])
        except tomllib.TOMLDecodeError:
            return key
    return key


def marks_over(text: str, marks: tuple[str, ...], limit: int) -> bool:
    """Whether `text` holds more than `limit` of `marks` outside its strings and comments."""
    if sum(text.count(mark) for mark in marks) <= limit:
        return False
    stripped = _STRINGS_AND_COMMENTS.sub("", text)
    return sum(stripped.count(mark) for mark in marks) > limit


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


def dotted_tables(text: str) -> int:
    """At most how many tables the dotted keys of `text` make (one per `.` joining two
    keys, outside strings, comments and headers), each as costly to tomllib as one a
    header opens, and named by none."""
    keys = _HEADER_LINE.sub("", _STRINGS_AND_COMMENTS.sub("", text))
    return len(_KEY_DOT.findall(keys))
