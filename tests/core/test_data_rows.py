"""The pure parts of images from data: the `where` language and the data file parsers."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nebula_build.core import where
from nebula_build.core.frontmatter import excerpt, parse_post, plain
from nebula_build.core.table import NESTED, DataError, parse, text_of

ROW = {"category": "tea", "price": "4.5", "stock": 0, "tags": ("green", "hot"), "flag": "false"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("category == 'tea'", True),
        ('category != "tea"', False),
        ("price < 5", True),
        ("price >= 4.5 and price <= 4.5", True),
        ("price > 10 or category in ['tea', 'coffee']", True),
        ("category not in ['tea']", False),
        ("'green' in tags", True),
        ("'te' in category", True),
        ("not stock", True),
        ("flag", False),
        ("missing == 'x'", False),
        ("missing != 'x'", True),
        ("missing < 3", False),
        ("not (price < 5 and category == 'tea')", False),
        ("stock == 0", True),
        ("category == true", False),
    ],
)
def test_where_expressions(expression, expected):
    assert where.matches(where.parse(expression), ROW) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("category = 'tea'", "cannot read"),
        ("(price < 5", "expected ')'"),
        ("price <", "expected a column"),
        ("__import__('os').system('x')", "cannot read"),
        ("price.real", "cannot read"),
        ("[1, price]", "a list holds only"),
        ("x" * 1001, "at most 1000"),
        ("(" * 40 + "x" + ")" * 40, "nested more than"),
        ("not " * 40 + "x", "nested more than"),
    ],
)
def test_where_refuses_what_it_does_not_speak(expression, message):
    with pytest.raises(where.WhereError, match=message.replace("(", r"\(").replace(")", r"\)")):
        where.parse(expression)


def test_ordering_text_with_a_number_names_the_column():
    with pytest.raises(where.WhereError) as caught:
        where.matches(where.parse("category > 3"), ROW)
    assert caught.value.column == "category"


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_where_error(text):
    try:
        node = where.parse(text)
    except where.WhereError:
        return
    with contextlib.suppress(where.WhereError):
        where.matches(node, ROW)


@given(st.binary(max_size=200), st.sampled_from(["a.csv", "a.json", "a.jsonl"]))
def test_any_bytes_parse_or_are_a_data_error(data, name):
    try:
        table = parse(name, data)
    except DataError:
        return
    for row in table.rows:
        for column in table.columns:
            table.position(row, column)


@given(st.binary(max_size=200))
def test_any_post_parses_or_is_a_data_error(data):
    with contextlib.suppress(DataError):
        parse_post("p.md", b"---\n" + data)


def test_csv_rows_know_their_lines_and_columns():
    table = parse("p.csv", b'id,text\n1,"two\nlines"\n\n2,"a, b"\n')
    assert [row.values for row in table.rows] == [
        {"id": "1", "text": "two\nlines"},
        {"id": "2", "text": "a, b"},
    ]
    assert [table.position(row, "text") for row in table.rows] == [(2, 3), (5, 3)]


def test_json_values_are_plain_and_nested_tables_are_not_text():
    data = {"rows": [{"id": 1, "on": True, "x": None, "n": {"a": 1}, "l": [1, "b"], "f": 2.5}]}
    table = parse("p.json", json.dumps(data).encode(), at="rows")
    row = table.rows[0].values
    assert [text_of(row[k]) for k in ("id", "on", "x", "l", "f")] == [
        "1",
        "true",
        None,
        "1, b",
        "2.5",
    ]
    assert row["n"] is NESTED
    with pytest.raises(ValueError, match="a table, a set or binary data"):
        text_of(row["n"])
    with pytest.raises(DataError, match="NaN is not JSON"):
        parse("p.json", b'[{"a": NaN}]')
    with pytest.raises(DataError, match=r"has no 'rows\.list'"):
        parse("p.json", b'{"rows": {}}', at="rows.list")


def test_a_yaml_front_matter_cannot_build_objects():
    with pytest.raises(DataError, match="does not parse"):
        parse_post("p.md", b"---\nx: !!python/object/apply:os.system ['true']\n---\n")


def test_excerpt_is_the_first_paragraph_as_plain_text():
    text = "# Title\n\n![cover](c.png)\n\nThe **first** [post](u) here.\nMore.\n\nSecond.\n"
    assert excerpt(text.split("\n")) == "The first post here. More."
    assert len(excerpt(["word " * 500])) == 500


#: how excerpts were made before `plain`, which must make the same (an excerpt in a
#: prompt is part of the image's key)
_REGEX_MARKUP = re.compile(r"[*_`]|!?\[([^\]]*)\]\([^)]*\)")


@given(st.text(alphabet="[]()!*_` ab", max_size=24))
def test_plain_text_is_what_the_regular_expression_made(text):
    assert plain(text) == _REGEX_MARKUP.sub(lambda m: m[1] or "", text)


def _field_column(record: str, index: int) -> int | None:
    """How a CSV field's column was found before positions were kept (one walk each)."""
    quoted, field_index = False, 0
    for position, char in enumerate(record):
        if field_index == index:
            return position + 1
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            field_index += 1
    return len(record) + 1 if field_index == index else None


@given(st.lists(st.text(alphabet='a,"', max_size=12), min_size=1, max_size=4))
def test_a_csv_field_is_located_where_it_always_was(lines):
    from nebula_build.core.table import _Places

    places = _Places("\n".join(lines))
    for line, record in enumerate(lines, 1):
        for index in range(record.count(",") + 2):
            assert places.csv_field(line, index) == _field_column(record, index)


@given(
    st.lists(st.text(alphabet=" \t'a:=\"b", max_size=8), max_size=5),
    st.text(alphabet=" 'a:=\"b", min_size=1, max_size=3),
)
def test_a_posts_field_is_located_where_it_always_was(front, column):
    from nebula_build.core.frontmatter import Post
    from nebula_build.core.table import Row

    setting = re.compile(rf"^\s*[\"']?{re.escape(column)}[\"']?\s*[:=]")
    before = next((i for i, line in enumerate(front) if setting.match(line)), None)
    found = Post(Row({}, 1, "p.md"), tuple(front)).setting_line(column)
    plain = column == column.strip() and not set(column) & set("\"':=")
    assert found == (before if plain else None)


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl", "a.json"])
def test_a_file_of_too_many_rows_is_refused(name, monkeypatch):
    from nebula_build.core import table

    monkeypatch.setattr(table, "MAX_ROWS", 3)
    rows = [{"id": str(n)} for n in range(4)]
    data = {
        "a.csv": "id\n" + "".join(f"{n}\n" for n in range(4)),
        "a.jsonl": "".join(json.dumps(row) + "\n" for row in rows),
        "a.json": json.dumps(rows),
    }[name]
    with pytest.raises(DataError, match="more than 200,000 rows"):
        parse(name, data.encode())


def test_a_manifest_without_rows_imports_none_of_this(tmp_path):
    import subprocess
    import sys

    (tmp_path / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\n[images.a]\nprompt = "x"\noutput = "a.png"\n'
    )
    modules = ("rowimages", "table", "frontmatter", "where")
    code = (
        "import sys; from nebula_build.cli import main; rc = main(['plan']); "
        f"print([m for m in {modules!r} if 'nebula_build.core.' + m in sys.modules]); "
        "print('yaml' in sys.modules); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-2:] == ["[]", "False"]


def _columns(table_text: str, **rows: object):
    from nebula_build.core.manifest import RowsDecl
    from nebula_build.core.rowcolumns import columns_of

    table = parse("data/t.csv", table_text.encode())
    return table, columns_of(RowsDecl.model_validate({"file": "data/t.csv", **rows}), table)


def test_a_row_is_read_as_is_when_nothing_is_named_or_defaulted():
    table, columns = _columns("sku,name\na,A\n", defaults={"other": "x"})
    row = table.rows[0]
    assert columns.reader(["sku", "name"])(row) is row.values  # no copy per row
    assert columns.reader(["sku", "other"])(row) == {"sku": "a", "other": "x"}


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("Tea", "Tea"), ("", "none"), ("   ", "none"), ("0", "0"), ("false", "false")],
)
def test_a_default_fills_in_only_a_missing_or_blank_value(cell, expected):
    table, columns = _columns(
        f"sku,Product Name\na,{cell}\n",
        columns={"name": "Product Name"},
        defaults={"name": "none"},
    )
    view = columns.reader(["sku", "name"])(table.rows[0])
    assert view == {"sku": "a", "name": expected}
    assert columns.described("name") == "'Product Name' (as 'name')"


def test_a_list_default_and_a_missing_json_value():
    from nebula_build.core.manifest import RowsDecl
    from nebula_build.core.rowcolumns import columns_of

    table = parse("data/t.json", b'[{"id": "a", "tags": null}, {"id": "b", "tags": []}]')
    rows = RowsDecl.model_validate({"file": "data/t.json", "defaults": {"tags": ["x", 1]}})
    read = columns_of(rows, table).reader(["tags"])
    assert [text_of(read(row)["tags"]) for row in table.rows] == ["x, 1", "x, 1"]


def test_rows_times_a_matrix_are_counted_before_any_image_is_made():
    from nebula_build.core.manifest import ImageDecl
    from nebula_build.core.rowimages import expand_rows

    table = parse("d.csv", b"sku,name\nA,x\nB,y\nC,z\n")
    decl = ImageDecl.model_validate(
        {
            "rows": "d.csv",
            "id": "sku",
            "limit": 2,
            "matrix": {f"k{i}": list(range(10)) for i in range(9)},
            "prompt": "{name} {k0}",
            "output": "o/{sku}-{index}.png",
        }
    )
    made = expand_rows("p", decl, table, budget=100_000)
    assert (made.count, made.rows, made.images) == (2 * 10**9, 2, [])  # limit counts rows
    small = decl.model_copy(update={"matrix": {"k0": [1, 2], "k1": ["a"]}})
    names = [image.name for image in expand_rows("p", small, table, budget=4).images]
    assert names == ["p[A,1,a]", "p[A,2,a]", "p[B,1,a]", "p[B,2,a]"]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("p[*,a]", {"p[A,a]", "p[B,a]"}),
        ("p[B,*]", {"p[B,a]", "p[B,b]"}),
        ("p[*,*]", {"p[A,a]", "p[A,b]", "p[B,a]", "p[B,b]"}),
        ("p[*]", {"p[A,a]", "p[A,b]", "p[B,a]", "p[B,b]"}),
        ("q[*,a]", None),  # another declaration's names are never matched by prefix
        ("p[*,a,b]", None),  # as many parts as the names have
    ],
)
def test_a_star_stands_for_one_value(requested, expected):
    from nebula_build.core.selection import select
    from nebula_build.errors import UserError

    known = ["p[A,a]", "p[A,b]", "p[B,a]", "p[B,b]", "pq[A,a]", "q"]
    if expected is None:
        with pytest.raises(UserError, match="unknown image"):
            select([requested], known)
    else:
        assert select([requested], known) == expected
