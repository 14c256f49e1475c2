"""`rows.columns` and `rows.defaults`: the names a declaration reads its rows by.

`columns = { name = "Product Name" }` gives a column whose header is not a
placeholder name one that is; `defaults = { subtitle = "" }` gives the rows that
lack a column, or have it empty, a value. A declaration sees each row through its
`Columns`, in its templates, `id` and `where` alike: every name it may use (the
data's columns, the columns only a default gives, the names `columns` gives), each
read from one column of the data. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from nebula_build.core.expand import ExpansionError
from nebula_build.core.manifest import RowsDecl, shown
from nebula_build.core.rowhints import spelled_alike
from nebula_build.core.table import Row, Table, Value, normal
from nebula_build.errors import did_you_mean

_ABSENT = object()
#: "did you mean" compares a typo with each name: only where there are few
_SUGGEST_AMONG = 1000


@dataclass(frozen=True, slots=True)
class Columns:
    """How a declaration sees a table's columns."""

    #: every name the declaration may use → the column of the data it reads, in order:
    #: the table's columns, the columns only a default gives, the names `columns` gives
    sources: dict[str, str]
    #: a column → the value a row takes where it lacks the column or has it empty
    defaults: dict[str, Value]
    #: a column with a default → the key of `defaults` that gives it (a name, or itself)
    default_keys: dict[str, str]
    #: the columns of the data itself
    data_columns: frozenset[str]
    #: the file or pattern the rows come from, for messages
    path: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.sources)

    def source(self, name: str) -> str:
        """The column of the data that `name` reads."""
        return self.sources.get(name, name)

    def optional(self, name: str) -> bool:
        """Whether `name` has a default: it may be empty, where the default is."""
        return self.source(name) in self.defaults

    def described(self, name: str) -> str:
        """A column as a message names it: 'sku', or 'Product Name' (as name)."""
        column = self.source(name)
        return repr(column) if column == name else f"{column!r} (as {name!r})"

    def reader(self, names: Collection[str]) -> Callable[[Row], Mapping[str, Value]]:
        """The values of a row under `names`, defaults filled in; a name the row lacks
        (and no default gives) is left out. The row's own values when there is nothing
        to rename or fill in: no copy per row."""
        pairs = [(name, self.source(name)) for name in names]
        if all(name == column and column not in self.defaults for name, column in pairs):
            return lambda row: row.values
        defaults = self.defaults

        def view(row: Row) -> Mapping[str, Value]:
            values: dict[str, Value] = {}
            for name, column in pairs:
                value = row.values.get(column, _ABSENT)
                if column in defaults and _blank(value):
                    value = defaults[column]
                if value is not _ABSENT:
                    values[name] = value  # type: ignore[assignment]
            return values

        return view

    def check_defaults(self, read: Collection[str], id_name: str) -> None:
        """ExpansionError for a default the declaration cannot use: one for the `id`,
        or one for a column the data lacks that nothing reads (a misspelt name)."""
        id_column = self.source(id_name)
        if id_column in self.defaults:
            raise ExpansionError(
                "rows",
                f"{self.described(id_name)} is the `id`, which names each row's image: a "
                "default would give every row without one the same name",
                at=("defaults", self.default_keys[id_column]),
            )
        # A column the data lacks is read only under its own name (`columns` names
        # only columns the data has): no scan of every column per default.
        reading = set(read)
        for column, key in self.default_keys.items():
            if column in self.data_columns:
                continue  # a column rows have: the default fills in the ones that lack it
            if column not in reading:
                close = _close(column, sorted(self.data_columns))
                hint = f" (did you mean {close!r}?)" if close else ""
                raise ExpansionError(
                    "rows",
                    f"{self.path} has no column '{shown(column)}'{hint}, and no template, `id` "
                    "or `where` reads it",
                    at=("defaults", key),
                )

    def check_misspelt_default(self, unknown: str, reader: str, read: Collection[str]) -> None:
        """ExpansionError where the template `reader` reads an unknown name `unknown`
        close to the key of a default that nothing reads: one of the two is misspelt
        (`defaults = { subtilte = "" }` with `{subtitle}` in the prompt, or the other
        way round), and the error names both."""
        for column, key in self.default_keys.items():
            if column in self.data_columns or column in read:
                continue
            if did_you_mean(column, [unknown]) == unknown:
                raise ExpansionError(
                    "rows",
                    f"{self.path} has no column '{shown(column)}' and nothing reads it, while "
                    f"{reader} reads {{{shown(unknown)}}}, which nothing gives: one of the two "
                    "is misspelt",
                    at=("defaults", key),
                )


def _blank(value: object) -> bool:
    """Missing or empty, as a default fills it in: nothing, only spaces, or a list
    whose items all are (`[]`, `[null]`, `[""]`: what a template would show as
    nothing)."""
    if value is _ABSENT or value is None:
        return True
    if isinstance(value, tuple):
        return all(_blank(item) for item in value)
    return isinstance(value, str) and not value.strip()


def columns_of(rows: str | RowsDecl, table: Table) -> Columns:
    """How a declaration's `rows` sees `table`; ExpansionError naming the key of
    `columns` or `defaults` at fault."""
    names = (rows.columns if isinstance(rows, RowsDecl) else None) or {}
    given = (rows.defaults if isinstance(rows, RowsDecl) else None) or {}
    data_columns = frozenset(table.columns)
    for name, column in names.items():
        _check_name(table, data_columns, name, column)
    defaults: dict[str, Value] = {}
    default_keys: dict[str, str] = {}
    for key, value in given.items():
        column = names.get(key, key)  # a name from `columns` means its column
        if column in default_keys:
            raise ExpansionError(
                "rows",
                f"'{shown(column)}' has a default already (defaults.{default_keys[column]})",
                at=("defaults", key),
            )
        defaults[column] = normal(value)
        default_keys[column] = key
    sources = {column: column for column in (*table.columns, *defaults)}
    sources.update(names)
    return Columns(sources, defaults, default_keys, data_columns, table.path)


def _check_name(table: Table, data_columns: Collection[str], name: str, column: str) -> None:
    """ExpansionError for a name `columns` cannot give: one that would hide another
    column, or one for a column the data lacks (even with a default: a misspelt
    header would fill in the default for every row)."""
    if name in data_columns and column != name:
        raise ExpansionError(
            "rows",
            f"{table.path} has a column {name!r} too: give '{shown(column)}' another name "
            f"(or use {{{name}}} for the column {name!r})",
            at=("columns", name),
        )
    if column not in data_columns:
        raise ExpansionError("rows", no_column(table, column), at=("columns", name))


def no_column(
    table: Table, name: str, known: Iterable[str] | None = None, *, hint: str | None = None
) -> str:
    """Why `name` is refused: the data has no such column (`known`: the names a
    declaration may use, when it gives some; `hint`: what to say in place of "did you
    mean", ending in "; ")."""
    names = list(table.columns if known is None else known)
    if hint is None:
        close = spelled_alike(name, names)
        hint = f"did you mean {close!r}? " if close else ""
    return f"{table.path} has no column '{shown(name)}' ({hint}columns: {listed(names)})"


def _close(name: str, names: Collection[str]) -> str | None:
    """The name `name` is likely a typo of, among a few (a file may have a million)."""
    return did_you_mean(name, names) if len(names) <= _SUGGEST_AMONG else None


#: the columns an error lists: enough to recognise the file by
_LISTED = 12


def listed(columns: Iterable[str]) -> str:
    """The first columns, and how many there are in all when there are more."""
    names = [shown(name, 40) for name in columns]
    if len(names) <= _LISTED:
        return ", ".join(names) or "none"
    return ", ".join(names[:_LISTED]) + f", … ({len(names):,} in all)"
