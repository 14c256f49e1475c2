"""A data file's rows: CSV with a header, JSON (an array of objects, or one at a
dotted path), JSON Lines, and Markdown front matter (`frontmatter.py`).

Pure: the bytes come in, rows come out, each with the line it starts on so that a
problem names the file, the line and the column. Positions inside a row are found
only when there is a problem to report (`Table.position`). A data file may come
from a pull request: nothing here evaluates it, and every value is a plain
scalar, a list of them, or `NESTED`.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nebula_build.core.encoding import not_utf8, saved_as_wide, without_utf8_bom
from nebula_build.errors import did_you_mean
from nebula_build.jsonparse import values_over
from nebula_build.state.conflicts import opened_conflict
from nebula_build.text import plural

#: suffixes of the files `rows = "…"` reads, by format
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: characters in one CSV field (csv's own default limit is 131,072)
MAX_FIELD = 1 << 17
#: rows in one data file: twice the most images a manifest may make, so a filter has
#: room, and few enough that a file of tiny rows cannot fill the memory
MAX_ROWS = 200_000
#: columns in one CSV file: a header of a million names took a gigabyte to read
MAX_COLUMNS = 10_000
_TOO_MANY = f"has more than {MAX_ROWS:,} rows, more than nebula-build reads from one file"
#: JSON values (arrays, objects, and what commas separate, outside strings) in one JSON
#: or JSON Lines file, counted before it is parsed: 200,000 rows of 19 columns. Each
#: costs tens of bytes once parsed, and 32 MiB of `[],[],…` (11 million) had taken 7.6 s
#: and 900 MB before its rows were counted
MAX_JSON_VALUES = 4_000_000
_TOO_MANY_VALUES = (
    f"is made of more than {MAX_JSON_VALUES:,} JSON values (arrays, objects, and what "
    "commas separate), more than nebula-build reads from one file"
)


class DataError(ValueError):
    """A problem in a data file, at a line (and column) where one is known."""

    def __init__(
        self, path: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column


class _Nested:
    """A value that is a table (a JSON object inside a row): no text stands for it."""

    def __repr__(self) -> str:
        return "NESTED"


NESTED = _Nested()
Value = str | int | float | bool | tuple[Any, ...] | _Nested | None


@dataclass(frozen=True, slots=True)
class Row:
    """One row: its values by column, and where it is written."""

    values: dict[str, Value]
    #: the line it starts on; in a JSON array, its index there (`Table.position`
    #: finds the line when a problem needs it)
    at: int
    #: the file it is in (each post is its own file)
    path: str


@dataclass
class Table:
    """The rows of a data file (or of a folder of posts) and the columns they have."""

    path: str
    columns: tuple[str, ...]
    rows: list[Row]
    #: (line, column) of a cell of a row, computed when a problem is reported
    locate: Callable[[Row, str | None], tuple[int, int | None]] = field(
        default=lambda row, column: (row.at, None)
    )

    def position(self, row: Row, column: str | None = None) -> tuple[int, int | None]:
        """(line, character column) of `column` in `row`, or of the row itself."""
        return self.locate(row, column)


def normal(value: Any) -> Value:
    """A parsed value as a row holds it: dates as ISO text, lists as tuples. A list
    holding a list or a table is `NESTED`, however deep it goes (never walked)."""
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            scalar = _scalar(item)
            if scalar is NESTED:
                return NESTED
            items.append(scalar)
        return tuple(items)
    return _scalar(value)


class _NotFinite(str):
    """An infinite or NaN float as text ("inf"): compared as text by `where`, refused
    where a template would write it."""

    __slots__ = ()


def _scalar(value: Any) -> Value:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NotFinite(value)
    if hasattr(value, "isoformat"):  # a date or time from YAML or TOML front matter
        return str(value.isoformat())
    return NESTED


def text_of(value: Value, limit: int | None = None) -> str | None:
    """The text a `{placeholder}` becomes; None for a missing value, ValueError for a
    table, or for a list whose text would be longer than `limit` (checked before the
    text is made)."""
    if value is None:
        return None
    if isinstance(value, _Nested):
        raise ValueError("is a table, a set or binary data, not text")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        texts = [t for item in value if (t := text_of(item)) is not None]
        if limit is not None and sum(len(t) + 2 for t in texts) > limit + 2:
            raise ValueError(f"is a list longer than {limit:,} characters as text")
        return ", ".join(texts)
    if isinstance(value, int) and value.bit_length() > _MAX_INTEGER_BITS:
        raise ValueError("is an integer too long to write as text (over 4,200 digits)")
    if isinstance(value, _NotFinite):
        raise ValueError(
            f"is {value}, not a number a prompt can say (1e400 and beyond read as "
            "infinite): put it in quotes in the data to use it as text"
        )
    return str(value)


#: Python writes no integer of more than 4,300 digits as text (10**4300 has 14,284 bits)
_MAX_INTEGER_BITS = 14_000


def decode(path: str, data: bytes, *, markdown: bool = False) -> str:
    """UTF-8 text (a byte-order mark dropped); DataError at the line of a bad byte, or of
    a merge conflict git left in it (in `markdown`, outside its fenced code blocks)."""
    # a spreadsheet's "Unicode text" is UTF-16, and the NULs of its ASCII are UTF-8 too
    if (wide := saved_as_wide(data)) is not None:
        raise DataError(path, wide, 1)
    body = without_utf8_bom(data)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column, said = not_utf8(body, exc.start)
        raise DataError(path, said, line, column) from None
    conflict = opened_conflict(text, markdown=markdown)
    if conflict is not None:
        line, marker = conflict
        raise DataError(
            path, f"unresolved merge conflict ({marker}); resolve it, then run again", line
        )
    return text


def suffix_format(path: str) -> str | None:
    """The format of a data file by its suffix (csv, json, jsonl), None if not one."""
    name = path.rsplit("/", 1)[-1]
    return FORMATS.get(name[name.rfind(".") :].lower()) if "." in name else None


def parse(path: str, data: bytes, *, at: str | None = None) -> Table:
    """The rows of the data file `path` (its suffix says the format)."""
    kind = suffix_format(path)
    if kind is None:
        raise DataError(
            path, f"is not a data file nebula-build reads ({', '.join(FORMATS)}, or front matter)"
        )
    if at is not None and kind != "json":
        raise DataError(path, "`at` picks an array inside a JSON file; this is not one")
    if kind == "json":
        return rows_at(json_document(path, data), at)
    text = decode(path, data)
    if kind in ("csv", "tsv"):
        return _csv(path, text, "\t" if kind == "tsv" else ",")
    _check_values(path, data)
    return _jsonl(path, text)


@dataclass(frozen=True, slots=True)
class Document:
    """A JSON data file, parsed: `rows_at` picks the array of each `at` in it."""

    path: str
    text: str
    value: Any


def json_document(path: str, data: bytes) -> Document:
    """The JSON data file `path`, parsed."""
    text = decode(path, data)
    _check_values(path, data)
    return Document(path, text, _load_json(path, text))


def _check_values(path: str, data: bytes) -> None:
    """DataError for JSON that would make more than MAX_JSON_VALUES values parsed."""
    if values_over(data, MAX_JSON_VALUES):
        raise DataError(path, _TOO_MANY_VALUES)


# --- CSV -------------------------------------------------------------------------


def _csv_problem(exc: csv.Error) -> str:
    """What csv found wrong, with what to do about the quotes a hand edit breaks."""
    said = str(exc)
    if said == "unexpected end of data":
        return (
            'a value opened with " on this line never closes: end it with " (a " inside a '
            'quoted value is written "")'
        )
    if said.startswith("',' expected after"):
        return (
            "the quotes on this line do not enclose whole values: a value is quoted whole "
            '("a, b"), and a " inside it is written ""'
        )
    return said


def _csv(path: str, text: str, delimiter: str = ",") -> Table:
    """The rows of a CSV file; one whose header and first record a ';' or a tab splits
    alike (as spreadsheets save CSV in much of Europe) is read so."""
    csv.field_size_limit(MAX_FIELD)
    # `a, b` as spreadsheets and people write it: the spaces after a comma, and at a
    # value's end, are not the value's (headers are read alike)
    reader = csv.reader(
        io.StringIO(text, newline=""), strict=True, skipinitialspace=True, delimiter=delimiter
    )
    try:
        header = next(reader, None)
        while header == []:  # blank lines before the header are skipped like any
            header = next(reader, None)
    except csv.Error as exc:
        problem = _csv_problem(exc)
        raise DataError(path, f"the header does not parse: {problem}", reader.line_num) from None
    header_line = max(reader.line_num, 1)
    if not header:
        raise DataError(path, "is empty: the first line must name the columns", 1)
    header = [name.strip() for name in header]
    if len(header) > MAX_COLUMNS:
        raise DataError(
            path,
            f"the header names {len(header):,} columns, more than {MAX_COLUMNS:,}",
            header_line,
        )
    separator = _other_separator(header) if delimiter == "," else None
    if separator is not None and _splits_alike(text, separator):
        return _csv(path, text, separator)
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if name and name in seen:
            column = _Places(text, delimiter=delimiter).csv_field(header_line, index)
            raise DataError(
                path, f"column {name!r} is named twice in the header", header_line, column
            )
        seen[name] = index
    rows: list[Row] = []
    width = len(header)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            raise DataError(path, f"does not parse as CSV: {_csv_problem(exc)}", start) from None
        if fields is None:
            break
        if len(fields) <= width and not any(field.strip() for field in fields):
            continue  # a blank line, or a spreadsheet's row of empty cells (`,,,,`)
        if len(rows) >= MAX_ROWS:
            raise DataError(path, _TOO_MANY, start)
        if len(fields) != width:
            raise DataError(
                path,
                f"this row has {plural(len(fields), 'field')} but the header names {width} columns "
                f'(a {_NAMES[delimiter]} inside a value needs "quotes")',
                start,
            )
        rows.append(Row(dict(zip(header, map(str.rstrip, fields), strict=True)), start, path))
    columns = tuple(name for name in header if name)

    places = _Places(text, delimiter=delimiter)

    def locate(row: Row, column: str | None) -> tuple[int, int | None]:
        index = seen.get(column) if column is not None else None
        return row.at, None if index is None else places.csv_field(row.at, index)

    return Table(path, columns, rows, locate)


#: what a spreadsheet separates fields by where it does not use commas
_OTHER_SEPARATORS = (";", "\t")
#: each separator as a message names it
_NAMES = {",": "comma", ";": "';'", "\t": "tab"}


def _other_separator(header: list[str]) -> str | None:
    """The separator that splits a header read as one column, if one does."""
    if len(header) != 1:
        return None
    return next((sep for sep in _OTHER_SEPARATORS if sep in header[0]), None)


def _splits_alike(text: str, separator: str) -> bool:
    """Whether `separator` splits the first record as it splits the header, or at all
    (or there is no record): else a column named with a ';' is one like any."""
    records = (
        fields
        for fields in csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        if fields
    )
    try:
        header, first = next(records, []), next(records, None)
    except csv.Error:
        return False
    return first is None or len(first) == len(header) or len(first) > 1


# --- JSON and JSON Lines ----------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} appears twice in one object")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _load_json(path: str, text: str, line_offset: int = 0) -> Any:
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        line, column = exc.lineno + line_offset, exc.colno
        raise DataError(path, f"invalid JSON: {exc.msg}", line, column) from None
    except _DuplicateKey as exc:
        at, character = _second_key(text, exc.key)
        raise DataError(path, f"invalid JSON: {exc}", at + line_offset, character) from None
    except (ValueError, RecursionError) as exc:
        message = "nested too deep" if isinstance(exc, RecursionError) else _said(exc)
        raise DataError(path, f"invalid JSON: {message}", line_offset + 1 or None) from None
    lone = _SURROGATE.search(text)  # not a pair: an emoji written escaped is one character
    if lone is not None and not _encodable(value):
        at, character = _line_column(text, lone.start())
        raise DataError(
            path,
            f"invalid JSON: {lone[0]} is half of a UTF-16 pair, which no text holds alone",
            at + line_offset,
            character,
        )
    return value


#: JSON's escape of half a UTF-16 pair: a data file whose strings hold one alone is
#: refused (no file or request can carry it)
_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


#: Python's refusal of a number past `sys.get_int_max_str_digits()`
_TOO_MANY_DIGITS = re.compile(r"integer string conversion: value has (\d+) digits")


def _said(refusal: ValueError) -> str:
    """A parse's ValueError in words, not Python's advice to raise its digit limit."""
    if digits := _TOO_MANY_DIGITS.search(str(refusal)):
        return f"a number of {int(digits[1]):,} digits"
    return str(refusal)


def rows_at(document: Document, at: str | None = None) -> Table:
    """The rows of a JSON data file: its top-level array, or the one at `at`."""
    path, text, data = document.path, document.text, document.value
    steps: list[str | int] = []
    for step in at.split(".") if at else ():
        if not isinstance(data, dict) or step not in data:
            there = data if isinstance(data, dict) else {}
            close = did_you_mean(step, [key for key in there if isinstance(key, str)][:1000])
            hint = f"; did you mean {'.'.join(map(str, [*steps, close]))!r}?" if close else ""
            raise DataError(
                path, f"has no {'.'.join(map(str, [*steps, step]))!r} (from `at`){hint}"
            )
        steps.append(step)
        data = data[step]
    if isinstance(data, list) and len(data) > MAX_ROWS:
        raise DataError(path, _TOO_MANY)
    if not isinstance(data, list):
        where = f"{at!r}" if at else "the file"
        hint = "" if at else "; set `at` to the dotted path of the array inside it"
        raise DataError(path, f"{where} is not an array of objects{hint}")
    rows: list[Row] = []
    columns: dict[str, None] = {}
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            line, column = _line_column(text, _offset(text, [*steps, index]))
            raise DataError(path, f"item {index} is not an object", line, column)
        columns.update(dict.fromkeys(item))
        rows.append(Row({k: normal(v) for k, v in item.items()}, index, path))

    places = _Places(text, steps)

    def locate(row: Row, column: str | None) -> tuple[int, int | None]:
        offset = None if column is None else places.key(row.at, column)
        if offset is None:
            offset = places.item(row.at)
        return places.line_column(offset)

    return Table(path, tuple(columns), rows, locate)


def _jsonl(path: str, text: str) -> Table:
    rows: list[Row] = []
    columns: dict[str, None] = {}
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if len(rows) >= MAX_ROWS:
            raise DataError(path, _TOO_MANY, number)
        item = _load_json(path, line, number - 1)
        if not isinstance(item, dict):
            raise DataError(path, "this line is not a JSON object", number, 1)
        columns.update(dict.fromkeys(item))
        rows.append(Row({k: normal(v) for k, v in item.items()}, number, path))

    places: dict[int, _Places] = {}

    def locate(row: Row, column: str | None) -> tuple[int, int | None]:
        if column is None:
            return row.at, 1
        line = places.get(row.at)
        if line is None:
            line = places[row.at] = _Places(lines[row.at - 1])
        offset = line.key(None, column)
        return row.at, 1 if offset is None else offset + 1

    return Table(path, tuple(columns), rows, locate)


_KEY_OR_BRACE = re.compile(r'("(?:[^"\\]|\\.)*")(\s*:)?|[{}]')


def _second_key(text: str, key: str) -> tuple[int, int | None]:
    """Where an object of (valid) JSON `text` names `key` a second time."""
    objects: list[set[str]] = []
    for match in _KEY_OR_BRACE.finditer(text):
        token = match.group()
        if token == "{":
            objects.append(set())
        elif token == "}":
            if objects:
                objects.pop()
        elif objects and match[2]:  # a key, not a text value
            name = json.loads(match[1])
            if name == key and name in objects[-1]:
                return _line_column(text, match.start())
            objects[-1].add(name)
    return _line_column(text, None)


def _line_column(text: str, offset: int | None) -> tuple[int, int | None]:
    if offset is None:
        return 1, None
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


_DECODER = json.JSONDecoder()


def _offset(text: str, steps: Sequence[str | int]) -> int | None:
    """Where the value at `steps` (keys and indexes) starts in JSON `text`; None where
    there is none. Walks the text once, skipping the values on the way."""
    position = _skip_space(text, 0)
    for step in steps:
        found = _child(text, position, step)
        if found is None:
            return None
        position = found
    return position


class _Places:
    """Where things are in a data file's text, each walk made once and kept: a problem
    is located for each declaration that reads its row, and walking the text again
    for each (from its start, or along a 3 MB line) took minutes for a thousand."""

    def __init__(self, text: str, steps: Sequence[str | int] = (), delimiter: str = ",") -> None:
        self.text = text
        self.delimiter = delimiter
        #: the keys and indexes of the array of rows (JSON's `at`)
        self.steps = steps
        self._newlines: list[int] | None = None
        self._items: list[int] | None = None
        self._keys: dict[int | None, dict[str, int]] = {}
        self._fields: dict[int, list[int]] = {}

    def line_column(self, offset: int | None) -> tuple[int, int | None]:
        """(line, column) of a character of the text."""
        if offset is None:
            return 1, None
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_left(self._newlines, offset)
        return line + 1, offset - (self._newlines[line - 1] + 1 if line else 0) + 1

    def item(self, index: int) -> int | None:
        """Where item `index` of the array of rows starts."""
        if self._items is None:
            start = _offset(self.text, self.steps)
            self._items = [] if start is None else [*_children(self.text, start, "[").values()]
        return self._items[index] if 0 <= index < len(self._items) else None

    def key(self, index: int | None, key: str) -> int | None:
        """Where the value of `key` in item `index` starts (in the text's own object
        where `index` is None: a line of JSON Lines)."""
        keys = self._keys.get(index)
        if keys is None:
            start = _skip_space(self.text, 0) if index is None else self.item(index)
            found = {} if start is None else _children(self.text, start, "{")
            keys = self._keys[index] = {k: v for k, v in found.items() if isinstance(k, str)}
        return keys.get(key)

    def csv_field(self, line: int, index: int) -> int | None:
        """The character column where field `index` of the record at `line` starts."""
        starts = self._fields.get(line)
        if starts is None:
            if self._newlines is None:
                self._newlines = [m.start() for m in re.finditer("\n", self.text)]
            if line > len(self._newlines) + 1:
                return None
            begin = self._newlines[line - 2] + 1 if line > 1 else 0
            end = self._newlines[line - 1] if line <= len(self._newlines) else len(self.text)
            starts = self._fields[line] = _field_starts(self.text[begin:end], self.delimiter)
        return starts[index] + 1 if index < len(starts) else None


def _field_starts(record: str, delimiter: str = ",") -> list[int]:
    """Where each field of a CSV record starts (a delimiter inside quotes separates none)."""
    starts = [0]
    quoted = False
    for match in _QUOTE_OR_DELIMITER[delimiter].finditer(record):
        if match[0] == '"':
            quoted = not quoted
        elif not quoted:
            starts.append(match.end())
    return starts


_QUOTE_OR_DELIMITER = {sep: re.compile(f'["{sep}]') for sep in (",", *_OTHER_SEPARATORS)}


def _children(text: str, position: int, opening: str) -> dict[str | int, int]:
    """Where each item of the array (or the value of each key of the object) that
    starts at `position` starts, by index (or key); {} where none starts there."""
    found: dict[str | int, int] = {}
    if position >= len(text) or text[position] != opening:
        return found
    position = _skip_space(text, position + 1)
    index = 0
    while position < len(text) and text[position] not in "]}":
        name: str | int = index
        if opening == "{":
            name, position = _DECODER.raw_decode(text, position)
            position = _skip_space(text, position)
            position = _skip_space(text, position + 1)  # the colon
        found.setdefault(name, position)
        _, position = _DECODER.raw_decode(text, position)
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)
        index += 1
    return found


def _child(text: str, position: int, step: str | int) -> int | None:
    opening = "[" if isinstance(step, int) else "{"
    if position >= len(text) or text[position] != opening:
        return None
    position = _skip_space(text, position + 1)
    index = 0
    while position < len(text) and text[position] not in "]}":
        if isinstance(step, str):
            key, position = _DECODER.raw_decode(text, position)
            position = _skip_space(text, position)
            position = _skip_space(text, position + 1)  # the colon
            if key == step:
                return position
        elif index == step:
            return position
        _, position = _DECODER.raw_decode(text, position)
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)
        index += 1
    return None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
