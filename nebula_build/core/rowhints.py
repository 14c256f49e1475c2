"""What the errors of a declaration with `rows` suggest doing, written as the user
would write it in images.toml.

A row that lacks a value its image uses has three ways out (set the value, give
it a default, leave such rows out); a header `where` or a template cannot read
(`Scene Name`) needs a name from `rows.columns`; a name typed for a header
(`scene_name`, `SKU`) is matched with it however its spaces, case and
underscores differ. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

from nebula_build.core import where as filters
from nebula_build.core.manifest import RowsDecl, shown
from nebula_build.errors import did_you_mean
from nebula_build.text import escaped

#: the headers compared with a name typed for one: a file may have a million
_COMPARED = 1000


def ways_out(
    rows: str | RowsDecl,
    *,
    field: str,
    name: str,
    where: str | None,
    posts: bool,
    is_id: bool,
) -> str:
    """What to do about a row whose image uses `name` (the column `field`) and that
    lacks it or has it empty: set it, give it a default (never for the `id`, which
    takes none), or leave such rows out (where `where` can read the name)."""
    field_shown = field if field.isidentifier() else f"'{shown(field)}'"
    where_set = "in this post's front matter" if posts else "in this row"
    ways = [f"set {field_shown} {where_set}"]
    if not is_id:
        default = rows_with(rows, "defaults", f'{name} = "…"')
        ways.append(f"give it a default ({default})")
    if filters.reads_name(name):
        condition = name if where is None else f"{name} and ({_cut(where)})"
        ways.append(
            f"leave such {'posts' if posts else 'rows'} out (where = {toml_text(condition)})"
        )
    return "; " + _either(ways)


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rows_with(rows: str | RowsDecl, key: str, entry: str) -> str:
    """`rows` as written with `key = { entry }` added: `rows = { …, columns = { … } }`,
    or for a plain path `rows = { file = "data/p.csv", columns = { … } }`, since a
    string takes no columns or defaults."""
    first = "…" if isinstance(rows, RowsDecl) else f"file = {toml_text(_cut(rows))}"
    return f"rows = {{ {first}, {key} = {{ {entry} }} }}"


def toml_text(text: str) -> str:
    """`text` as a TOML string the user can paste, which reads back as `text`: in double
    quotes, in single ones where it holds a double quote and no single one, else
    escaped, as it is where a terminal would not show it as it is (`"a\\u202e"`)."""
    if escaped(text) != text:
        return json.dumps(text).replace("\x7f", "\\u007f")
    if '"' not in text and "\\" not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return json.dumps(text, ensure_ascii=False)


def _either(ways: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b, or c'."""
    if len(ways) < 3:
        return " or ".join(ways)
    return f"{', '.join(ways[:-1])}, or {ways[-1]}"


def spelled_alike(name: str, columns: Iterable[str]) -> str | None:
    """The column `name` means where it differs only in case, spaces, underscores or
    hyphens (`scene_name`, `SceneName` for `Scene Name`); else the closest, if close."""
    names = list(columns)[:_COMPARED]
    wanted = _squashed(name)
    alike = next((column for column in names if _squashed(column) == wanted), None)
    return alike if alike is not None else did_you_mean(name, names)


def _squashed(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).casefold()


def placeholder_name(column: str) -> str:
    """A placeholder name for a header such as "Product Name": product_name."""
    name = re.sub(r"\W+", "_", column.strip().lower(), flags=re.ASCII).strip("_")
    return name if name.isidentifier() else f"column_{name}".rstrip("_")


def where_spelling(typed: str, sources: Mapping[str, str], rows: str | RowsDecl) -> str:
    """For a name `where` reads that the rows lack: the name it likely means, as
    "did you mean 'x'? ", or for a header `where` cannot read as one name (`Scene
    Name`) the name `columns` gives it, or the `columns` entry that would make
    `typed` read it; "" where nothing is close."""
    close = spelled_alike(typed, sources)
    if close is None:
        return ""
    if not filters.reads_name(close):
        header = sources[close]
        named = _name_for(header, sources)
        if named is None:
            made = rows_with(rows, "columns", f"{typed} = {toml_text(header)}")
            return f"'{shown(header)}' needs a name `where` can read: {made} makes it {typed}; "
        close = named
    return f"did you mean {close!r}? "


def where_headers(where: str, sources: Mapping[str, str], rows: str | RowsDecl) -> str:
    """For a `where` that does not parse: a header it writes as it is spelt, which
    `where` cannot read as one name (`Scene Name == 'x'`, `unit-price > 0`), and the
    name to write instead; "" where it writes none."""
    headers = sorted(
        {h for h in list(sources.values())[:_COMPARED] if not filters.reads_name(h)},
        key=len,
        reverse=True,
    )
    header = next((h for h in headers if h in where), None)
    if header is None:
        return ""
    named = _name_for(header, sources)
    if named is not None:
        return f"; write {named} for the column '{shown(header)}' (the name `columns` gives it)"
    name = placeholder_name(header)
    made = rows_with(rows, "columns", f"{name} = {toml_text(header)}")
    return (
        f"; `where` reads a column by a name of letters, digits and _: {made} makes "
        f"'{shown(header)}' {name}"
    )


def _name_for(header: str, sources: Mapping[str, str]) -> str | None:
    """The name `columns` gives a header, that `where` can read."""
    return next(
        (name for name, column in sources.items() if column == header and filters.reads_name(name)),
        None,
    )
