"""`rows.columns` and `rows.defaults` through the CLI: named columns and optional ones, in
every format and every place a placeholder works, the errors, and what a plan remakes."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.manifests import PREVIEW

HEAD = (
    PREVIEW
    + """
[assets]
manifest = "assets.json"
"""
)


def value(item: object) -> str:
    """A TOML value; inline tables with their keys quoted (headers have spaces)."""
    if isinstance(item, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {value(v)}" for k, v in item.items()) + " }"
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, list):
        return "[" + ", ".join(value(v) for v in item) + "]"
    return json.dumps(item)


def manifest(images: dict[str, dict[str, object]]) -> str:
    lines = [HEAD]
    for name, fields in images.items():
        lines += [f"[images.{name}]", *(f"{k} = {value(v)}" for k, v in fields.items()), ""]
    return "\n".join(lines)


def locked(root: Path) -> dict[str, dict[str, object]]:
    """Each image's generation parameters, as the lock records them."""
    lock = tomllib.loads((root / "images.lock").read_text())
    return {name: entry["params"] for name, entry in lock["images"].items()}


def plan_actions(run_cli) -> dict[str, str]:
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return {a["image"]: a["action"] for a in json.loads(out)["actions"]}


# The same products in each format: headers a spreadsheet writes, not placeholder names.
PRODUCTS = [
    {"SKU Code": "T-1", "Product Name": "Green tea", "unit-price": "4.5", "Year": "2024"},
    {"SKU Code": "T-2", "Product Name": "Black tea", "unit-price": "3", "Year": "2025"},
    {"SKU Code": "B-1", "Product Name": "Sourdough", "unit-price": "6", "Year": "2026"},
]
HEADERS = list(PRODUCTS[0])


def products_in(fmt: str) -> tuple[dict[str, object], dict[str, str]]:
    """`rows` and the data files of the products in one format."""
    if fmt == "csv":
        lines = [",".join(HEADERS), *(",".join(p.values()) for p in PRODUCTS)]
        return {"file": "data/products.csv"}, {"data/products.csv": "\n".join(lines) + "\n"}
    if fmt == "json":
        return {"file": "data/products.json"}, {"data/products.json": json.dumps(PRODUCTS)}
    if fmt == "jsonl":
        text = "\n".join(json.dumps(p) for p in PRODUCTS) + "\n"
        return {"file": "data/products.jsonl"}, {"data/products.jsonl": text}
    posts = {
        f"posts/{p['SKU Code'].lower()}.md": "---\n"
        + "".join(f"{k}: {json.dumps(v)}\n" for k, v in p.items())
        + "---\nText.\n"
        for p in PRODUCTS
    }
    return {"files": "posts/*.md"}, posts


FORMATS = ["csv", "json", "jsonl", "posts"]
COLUMNS = {"name": "Product Name", "price": "unit-price", "code": "SKU Code", "year": "Year"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_named_columns_work_in_every_placeholder_and_in_id_and_where(project, run_cli, fmt):
    rows, files = products_in(fmt)
    product = {
        "rows": {**rows, "columns": COLUMNS},
        "model": "stabilityai/stable-diffusion-xl-base-1.0",  # takes a negative prompt
        "id": "code",
        "where": "price < 5",
        "prompt": "product photo of {name}",
        "negative_prompt": "{name} on a shelf",
        "alt": "{name} for {price}",
        "seed": "{year} * 2",
        "output": "img/{code}-{year}.png",
    }
    root = project({"images.toml": manifest({"product": product}), **files})
    code, _, err = run_cli("apply")
    assert code == 0, err
    params = locked(root)
    assert sorted(params) == ["product[T-1]", "product[T-2]"]  # where read `price`
    assert params["product[T-1]"]["prompt"] == "product photo of Green tea"
    assert params["product[T-1]"]["negative_prompt"] == "Green tea on a shelf"
    assert params["product[T-2]"]["seed"] == 4050
    assert (root / "img/T-1-2024.png").exists() and (root / "img/T-2-2025.png").exists()
    assets = json.loads((root / "assets.json").read_text())["images"]
    assert assets["product[T-1]"]["alt"] == "Green tea for 4.5"
    assert assets["product[T-1]"]["row"] == "T-1"


def optional_rows(fmt: str) -> tuple[dict[str, object], dict[str, str]]:
    """Three rows: one with a subtitle and stock, one with them empty (or null), one
    without them."""
    if fmt == "csv":
        text = "code,title,subtitle,stock\na,A,Fresh,3\nb,B,,\nc,C,  ,2\n"
        return {"file": "data/items.csv"}, {"data/items.csv": text}
    items = [
        {"code": "a", "title": "A", "subtitle": "Fresh", "stock": 3},
        {"code": "b", "title": "B", "subtitle": None},
        {"code": "c", "title": "C", "subtitle": "", "stock": 2},
    ]
    if fmt == "json":
        return {"file": "data/items.json"}, {"data/items.json": json.dumps(items)}
    if fmt == "jsonl":
        text = "\n".join(json.dumps(item) for item in items)
        return {"file": "data/items.jsonl"}, {"data/items.jsonl": text}
    posts = {
        "posts/a.md": "---\ncode: a\ntitle: A\nsubtitle: Fresh\nstock: 3\n---\n",
        "posts/b.md": "+++\ncode = 'b'\ntitle = 'B'\n+++\n",
        "posts/c.md": "---\ncode: c\ntitle: C\nsubtitle: ''\nstock: 2\n---\n",
    }
    return {"files": "posts/*.md"}, posts


@pytest.mark.parametrize("fmt", FORMATS)
def test_defaults_fill_in_missing_and_empty_values_for_templates_and_where(project, run_cli, fmt):
    rows, files = optional_rows(fmt)
    item = {
        "rows": {**rows, "defaults": {"subtitle": "plain", "stock": 1}},
        "id": "code",
        "where": "stock > 1",  # b has no stock: its default, 1, leaves it out
        "prompt": "{title}, {subtitle}",
        "output": "img/{code}.png",
    }
    root = project({"images.toml": manifest({"item": item}), **files})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert {name: p["prompt"] for name, p in locked(root).items()} == {
        "item[a]": "A, Fresh",
        "item[c]": "C, plain",
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_default_makes_a_column_optional_but_never_a_prompt_blank(project, run_cli, fmt):
    rows, files = optional_rows(fmt)
    item = {
        "rows": {**rows, "defaults": {"subtitle": ""}},
        "id": "code",
        "prompt": "{title}{subtitle}",
        "output": "img/{code}.png",
    }
    root = project({"images.toml": manifest({"item": item}), **files})
    code, _, err = run_cli("apply")
    assert code == 0, err
    prompts = {name: p["prompt"] for name, p in locked(root).items()}
    assert prompts == {"item[a]": "AFresh", "item[b]": "B", "item[c]": "C"}

    item["prompt"] = "{subtitle}"
    (root / "images.toml").write_text(manifest({"item": item}))
    code, _, err = run_cli("plan")
    assert code == 1
    assert "images.item: prompt is empty with this row's values (and defaults)" in err
    if fmt == "posts":  # each its own file
        assert err.count("prompt is empty") == 2
    else:  # b's, and c's named by its line
        assert err.count("prompt is empty") == 1
        assert "(and defaults); the same in 1 other row" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("rows", "fields", "message"),
    [
        (
            {"columns": {"name": "Product Nme"}},
            {},
            "images.toml:13:1: images.product.rows.columns.name: data/products.csv has no "
            "column 'Product Nme' (did you mean 'Product Name'? columns: sku, Product Name,",
        ),
        (
            {"columns": {"Product Name": "name"}},
            {},
            "images.toml:13:1: images.product.rows.columns.Product Name: 'Product Name' is not "
            "a placeholder name (letters, digits and _, not starting with a digit); the "
            'placeholder comes first: columns = { product_name = "Product Name" }\n',
        ),
        (
            {"columns": {"SKU Code": "sku"}},  # the column's own name in the hint
            {},
            "images.toml:13:1: images.product.rows.columns.SKU Code: 'SKU Code' is not a "
            "placeholder name (letters, digits and _, not starting with a digit); the "
            'placeholder comes first: columns = { sku_code = "SKU Code" }\n',
        ),
        (
            {"columns": {"in": "Product Name"}},
            {},
            "images.product.rows.columns.in: 'in' is a word of `where`",
        ),
        (
            {"columns": {"2nd": "Product Name"}},
            {},
            "images.product.rows.columns.2nd: '2nd' is not a placeholder name",
        ),
        (
            {"columns": {"name": ""}},
            {},
            "images.product.rows.columns.name: must not be empty",
        ),
        (
            {"columns": {"sku": "Product Name"}},
            {},
            "images.product.rows.columns.sku: data/products.csv has a column 'sku' too: give "
            "'Product Name' another name (or use {sku} for the column 'sku')",
        ),
        (
            {"columns": {"sub": "Sub Title"}, "defaults": {"sub": ""}},
            {"prompt": "photo {sub}"},
            "images.product.rows.columns.sub: data/products.csv has no column 'Sub Title'",
        ),
        (
            {"defaults": {"price": {"a": 1}}},
            {},
            "images.product.rows.defaults.price: must be text, a number, true or false, or a "
            'list of these (got {"a": 1})',
        ),
        (
            {"defaults": {"price": [1, [2]]}},
            {},
            "images.product.rows.defaults.price: must be text, a number, true or false",
        ),
        (
            {"defaults": {"price": "x" * 10_001}},
            {},
            "images.product.rows.defaults.price: may be at most 10,000 characters as text",
        ),
        (
            {"defaults": {"sku": "none"}},
            {},
            "images.product.rows.defaults.sku: 'sku' is the `id`, which names each row's "
            "image: a default would give every row without one the same name",
        ),
        (
            {"columns": {"code": "sku"}, "defaults": {"code": "none"}},
            {"id": "code"},
            "images.product.rows.defaults.code: 'sku' (as 'code') is the `id`",
        ),
        (
            {"columns": {"price": "unit-price"}, "defaults": {"price": 0, "unit-price": 1}},
            {},
            "images.product.rows.defaults.unit-price: 'unit-price' has a default already "
            "(defaults.price)",
        ),
        (
            {"defaults": {"subtilte": ""}},
            {},
            "images.product.rows.defaults.subtilte: data/products.csv has no column "
            "'subtilte' (did you mean 'subtitle'?), and no template, `id` or `where` reads it",
        ),
        (  # the template's name is not "did you mean" the misspelt default's
            {"defaults": {"moood": "calm"}},
            {"prompt": "photo of {name}, {mood}"},
            "images.product.rows.defaults.moood: data/products.csv has no column 'moood' and "
            "nothing reads it, while prompt reads {mood}, which nothing gives: one of the two "
            "is misspelt",
        ),
        (
            {"defaults": {"mood": "calm"}},
            {"alt": "{name}, {moood}"},
            "images.product.rows.defaults.mood: data/products.csv has no column 'mood' and "
            "nothing reads it, while alt reads {moood}, which nothing gives",
        ),
        (
            {},
            {"prompt": "photo of {Product Name}"},
            "images.toml:15:1: images.product.prompt: {Product Name}: data/products.csv's "
            "column 'Product Name' needs a placeholder name: rows = { …, columns = { "
            'product_name = "Product Name" } }',
        ),
        (
            {"columns": {"name": "Product Name"}},
            {"prompt": "photo of {nmae}"},
            "images.product.prompt: unknown placeholder {nmae} (did you mean {name}? "
            "data/products.csv has: {sku}, {subtitle}, {name})",
        ),
        (
            {"columns": {"price": "unit-price"}},
            {"where": "prise < 5"},
            "images.product.where: data/products.csv has no column 'prise' (did you mean 'price'?",
        ),
        (
            {"columns": {"name": "Product Name"}},
            {},
            "data/products.csv:3:5: images.product: column 'Product Name' (as 'name') is empty "
            "(the image uses it)",
        ),
        (
            {"defaults": {"subtitle": "x"}},
            {"seed": "{subtitle} + 1"},
            "data/products.csv:2: images.product: seed: '{subtitle} + 1' is 'x + 1' here, and "
            "is not an integer expression",
        ),
        (
            {"columns": {f"c{i}": "sku" for i in range(1001)}},
            {},
            "images.product.rows.columns: dictionary should have at most 1000 items",
        ),
    ],
)
def test_a_bad_column_name_or_default_is_one_line_naming_the_key(
    project, run_cli, rows, fields, message
):
    data = "sku,Product Name,unit-price,subtitle\nT-1,Green tea,4,\nT-2,,5,b\n"
    product = {
        "rows": {"file": "data/products.csv", **rows},
        "id": "sku",
        "prompt": "photo of {name}" if "name" in rows.get("columns", {}) else "photo",
        "output": "img/{sku}.png",
        **fields,
    }
    if "defaults" in rows and "prompt" not in fields:
        product["prompt"] = "photo"
    root = project({"images.toml": manifest({"product": product}), "data/products.csv": data})
    code, _, err = run_cli("plan")
    assert code == 1
    assert "Traceback" not in err
    assert message in err, err
    assert not (root / "images.lock").exists()


def test_rows_as_a_section_points_errors_at_the_key_s_own_line(project, run_cli):
    text = HEAD + (
        "\n[images.product]\n"
        'id = "sku"\n'
        'prompt = "photo of {name} at {price}"\n'
        'output = "img/{sku}.png"\n'
        "\n[images.product.rows]\n"
        'file = "data/products.csv"\n'
        "\n[images.product.rows.columns]\n"
        'name = "Product Name"\n'
        'price = "unit-price"\n'
        "\n[images.product.rows.defaults]\n"
        'price = "on request"\n'
    )
    data = "sku,Product Name,unit-price\nT-1,Green tea,4\nT-2,Black tea,\n"
    root = project({"images.toml": text, "data/products.csv": data})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert {n: p["prompt"] for n, p in locked(root).items()} == {
        "product[T-1]": "photo of Green tea at 4",
        "product[T-2]": "photo of Black tea at on request",
    }
    (root / "images.toml").write_text(text.replace('name = "Product Name"', 'name = "Nmae"'))
    err = run_cli("plan").err
    assert "images.toml:21:1: images.product.rows.columns.name: data/products.csv has no" in err
    (root / "images.toml").write_text(text.replace('"on request"', "{ a = 1 }"))
    assert (
        "images.toml:25:1: images.product.rows.defaults.price: must be text" in run_cli("plan").err
    )


def test_a_default_changes_only_the_rows_that_take_it(project, run_cli):
    cover = {
        "rows": {"files": "posts/*.md"},
        "where": "subtitle",  # the way round a missing field before defaults
        "prompt": "{title}: {subtitle}",
        "output": "img/{slug}.png",
    }
    root = project(
        {
            "images.toml": manifest({"cover": cover}),
            "posts/a.md": "---\ntitle: A\nsubtitle: first\n---\n",
            "posts/b.md": "---\ntitle: B\n---\n",
            "posts/c.md": "---\ntitle: C\nsubtitle: ' '\n---\n",
        }
    )
    assert run_cli("apply").code == 0
    assert list(locked(root)) == ["cover[a]"]
    keys = json.loads(run_cli("plan", "--json").out)["actions"][0]["generation_key"]

    del cover["where"]
    cover["rows"] = {"files": "posts/*.md", "defaults": {"subtitle": "untitled"}}
    (root / "images.toml").write_text(manifest({"cover": cover}))
    assert plan_actions(run_cli) == {"cover[a]": "noop", "cover[b]": "create", "cover[c]": "create"}
    assert run_cli("apply").code == 0
    assert locked(root)["cover[b]"]["prompt"] == "B: untitled"

    cover["rows"] = {"files": "posts/*.md", "defaults": {"subtitle": "n/a"}}
    (root / "images.toml").write_text(manifest({"cover": cover}))
    actions = plan_actions(run_cli)
    assert actions == {"cover[a]": "noop", "cover[b]": "regenerate", "cover[c]": "regenerate"}

    # a name for the same column: the same values, the same keys
    cover["rows"] = {"files": "posts/*.md", "columns": {"sub": "subtitle"}}
    cover["rows"]["defaults"] = {"sub": "untitled"}
    cover["prompt"] = "{title}: {sub}"
    (root / "images.toml").write_text(manifest({"cover": cover}))
    assert set(plan_actions(run_cli).values()) == {"noop"}
    plan = json.loads(run_cli("plan", "--json").out)["actions"]
    assert next(a for a in plan if a["image"] == "cover[a]")["generation_key"] == keys


def test_a_manifest_from_a_pull_request_cannot_reach_outside_or_blow_up(project, run_cli):
    """`columns` and `defaults` name columns, never files: nothing outside the rows is
    read, and sizes are bounded before any row is."""
    big = {f"c{i}": "x" * 10_000 for i in range(1000)}  # 10 MB of defaults: allowed, unread
    product = {
        "rows": {
            "file": "data/products.csv",
            "columns": {"secret": "../../etc/passwd", "name": "Product Name"},
            "defaults": big,
        },
        "id": "sku",
        "prompt": "{name}",
        "output": "img/{sku}.png",
    }
    data = "sku,Product Name\nT-1,Green tea\n"
    root = project({"images.toml": manifest({"product": product}), "data/products.csv": data})
    code, _, err = run_cli("plan")
    assert code == 1
    assert "images.product.rows.columns.secret: data/products.csv has no column " in err
    assert "'../../etc/passwd'" in err and "root:" not in err

    del product["rows"]["columns"]["secret"]  # type: ignore[attr-defined]
    (root / "images.toml").write_text(manifest({"product": product}))
    code, _, err = run_cli("plan")
    assert code == 1  # a default for a column the data lacks and nothing reads
    assert "images.product.rows.defaults.c0: data/products.csv has no column 'c0'" in err
    assert len(err.splitlines()) == 1

    product["rows"]["defaults"] = {"name": "x" * 9_000}  # type: ignore[index]
    product["prompt"] = "{name} {name}"  # a default still passes the prompt's own limit
    (root / "images.toml").write_text(manifest({"product": product}))
    (root / "data/products.csv").write_text(data + "T-2,\n")
    code, _, err = run_cli("plan")
    assert code == 1
    assert "data/products.csv:3: images.product: prompt is 18,001 characters with this row" in err


def test_the_docs_example_builds(project, run_cli):
    import re

    docs = (Path(__file__).parents[2] / "docs/data.md").read_text()
    section = docs.split("## Names and defaults", 1)[1]
    snippet = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert snippet is not None
    text = snippet[1]  # as written: it runs as it is
    root = project(
        {
            "images.toml": HEAD + text,
            "data/products.csv": "sku,Product Name,unit-price\nT-1,Green tea,4\nT-2,Black tea,\n",
            "content/posts/a.md": "---\ntitle: A\nmood: bright\n---\n",
        }
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert {n: p["prompt"] for n, p in locked(root).items()} == {
        "product[T-1]": "Green tea, product photo",
        "cover[a]": "A , bright, editorial photo",
    }


def test_a_list_of_only_empty_items_takes_the_default(project, run_cli):
    """`[null]` or `[""]` (a YAML list with one empty entry) shows as nothing: it takes
    the default as `[]` does (before: it became empty text, and `where` dropped it)."""
    rows = [
        {"sku": "A", "tags": []},
        {"sku": "B", "tags": [None]},
        {"sku": "C", "tags": [""]},
        {"sku": "G", "tags": [" ", None]},
        {"sku": "H", "tags": ["tea"]},
    ]
    image = {
        "rows": {"file": "data/t.json", "defaults": {"tags": "generic"}},
        "id": "sku",
        "prompt": "photo {sku}, tags: [{tags}]",
        "output": "img/{sku}.png",
    }
    root = project({"images.toml": manifest({"p": image}), "data/t.json": json.dumps(rows)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    prompts = {name: params["prompt"] for name, params in locked(root).items()}
    assert prompts == {
        "p[A]": "photo A, tags: [generic]",
        "p[B]": "photo B, tags: [generic]",
        "p[C]": "photo C, tags: [generic]",
        "p[G]": "photo G, tags: [generic]",
        "p[H]": "photo H, tags: [tea]",
    }


def test_a_control_character_in_a_column_name_is_escaped_once(project, run_cli):
    image = {
        "rows": {"file": "data/t.json", "defaults": {"a\u0000": "x"}},
        "id": "sku",
        "prompt": "photo {sku}",
        "output": "img/{sku}.png",
    }
    project({"images.toml": manifest({"p": image}), "data/t.json": '[{"sku": "A"}]'})
    code, _, err = run_cli("plan")
    assert code == 1 and "'a\\x00'" in err and "\\\\x00" not in err


def test_a_header_used_where_columns_names_it_points_to_the_name(project, run_cli):
    image = {
        "rows": {"file": "data/t.json", "columns": {"nm": "Product Name"}},
        "id": "sku",
        "prompt": "photo of {Product Name}",
        "output": "img/{sku}.png",
    }
    data = '[{"sku": "A", "Product Name": "Tea"}]'
    project({"images.toml": manifest({"p": image}), "data/t.json": data})
    code, _, err = run_cli("plan")
    assert code == 1
    assert "column 'Product Name' is named {nm} by `columns`: write that" in err


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_placeholder_for_a_header_with_a_space_points_to_the_header(project, run_cli, fmt):
    """Before: `unknown placeholder {name} (data/products.csv has: {Year})`, which named
    neither `Product Name` nor `rows.columns`."""
    rows, files = products_in(fmt)
    source = rows.get("file") or rows["files"]
    image = {"rows": rows, "prompt": "photo of {name}", "output": "img/{slug}.png"}
    if fmt != "posts":
        image |= {"id": "SKU Code", "output": "img/{Year}.png"}
    project({"images.toml": manifest({"product": image}), **files})
    code, _, err = run_cli("plan")
    assert code == 1 and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert "images.product.prompt: unknown placeholder {name} (" in err
    assert (
        f"); {source}'s column 'Product Name' needs a placeholder name: rows = {{ …, columns = "
        '{ name = "Product Name" } } makes it {name}\n'
    ) in err, err


def test_a_placeholder_no_column_is_near_names_the_headers_without_a_name(project, run_cli):
    rows, files = products_in("csv")
    image = {"rows": rows, "id": "SKU Code", "prompt": "{colour}", "output": "img/{Year}.png"}
    project({"images.toml": manifest({"product": image}), **files})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: images.toml:15:1: images.product.prompt: unknown placeholder {colour} "
        "(data/products.csv has: {Year}); data/products.csv also has 'SKU Code', "
        "'Product Name', 'unit-price', which need a placeholder name: rows = { …, columns = "
        '{ sku_code = "SKU Code" } }\n'
    )


def test_a_misspelt_placeholder_is_still_only_a_did_you_mean(project, run_cli):
    rows, files = products_in("csv")
    image = {"rows": rows, "id": "SKU Code", "prompt": "{Yaer}", "output": "img/{Year}.png"}
    project({"images.toml": manifest({"product": image}), **files})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.endswith(
        "unknown placeholder {Yaer} (did you mean {Year}? data/products.csv has: {Year})\n"
    ), err


SCENES = "sku,Scene Name,stock\na,tea field,3\nb,bakery,0\n"


@pytest.mark.parametrize(
    ("where", "said"),
    [
        (  # it had said "unexpected 'Name'"
            "Scene Name == 'bakery'",
            "unexpected 'Name'; `where` reads a column by a name of letters, digits and _: "
            'rows = { file = "data/s.csv", columns = { scene_name = "Scene Name" } } makes '
            "'Scene Name' scene_name",
        ),
        (  # it had said "did you mean 'Scene Name'?", which `where` cannot read
            "scene_name == 'bakery'",
            "data/s.csv has no column 'scene_name' ('Scene Name' needs a name `where` can "
            'read: rows = { file = "data/s.csv", columns = { scene_name = "Scene Name" } } '
            "makes it scene_name; columns: sku, Scene Name, stock)",
        ),
        (
            "SceneName == 'bakery'",
            "data/s.csv has no column 'SceneName' ('Scene Name' needs a name `where` can "
            'read: rows = { file = "data/s.csv", columns = { SceneName = "Scene Name" } } '
            "makes it SceneName; columns: sku, Scene Name, stock)",
        ),
    ],
    ids=["as-written", "snake", "camel"],
)
def test_a_where_naming_a_header_with_a_space_says_how_to_name_it(project, run_cli, where, said):
    image = {
        "rows": "data/s.csv",
        "id": "sku",
        "where": where,
        "prompt": "{sku}",
        "output": "img/{sku}.png",
    }
    root = project({"images.toml": manifest({"product": image}), "data/s.csv": SCENES})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == f"error: images.toml:15:1: images.product.where: {said}\n"
    text = (root / "images.toml").read_text()
    name = "SceneName" if "SceneName" in where else "scene_name"
    fixed = text.replace(
        'rows = "data/s.csv"',
        f'rows = {{ file = "data/s.csv", columns = {{ {name} = "Scene Name" }} }}',
    ).replace(where, f"{name} == 'bakery'")
    (root / "images.toml").write_text(fixed)
    assert plan_actions(run_cli) == {"product[b]": "create"}


def test_a_where_naming_a_named_header_as_written_says_the_name(project, run_cli):
    image = {
        "rows": {"file": "data/s.csv", "columns": {"scene": "Scene Name"}},
        "id": "sku",
        "where": "Scene Name == 'bakery' or scene_name == 'x'",
        "prompt": "{sku}",
        "output": "img/{sku}.png",
    }
    root = project({"images.toml": manifest({"product": image}), "data/s.csv": SCENES})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: images.toml:15:1: images.product.where: unexpected 'Name'; write scene for "
        "the column 'Scene Name' (the name `columns` gives it)\n"
    )
    text = (root / "images.toml").read_text()
    (root / "images.toml").write_text(text.replace("Scene Name == 'bakery' or ", ""))
    code, _, err = run_cli("plan")
    assert code == 1
    assert "has no column 'scene_name' (did you mean 'scene'? columns:" in err, err


def test_an_id_spelt_with_other_spaces_case_or_underscores_names_the_header(project, run_cli):
    """'order_ids' had been offered for `order_id`: difflib's nearest, not 'Order ID'."""
    data = "sku,order_ids,Order ID\na,x,A-1\n"
    image = {"rows": "data/s.csv", "id": "order_id", "prompt": "x", "output": "img/{sku}.png"}
    project({"images.toml": manifest({"product": image}), "data/s.csv": data})
    code, _, err = run_cli("plan")
    assert code == 1
    assert "has no column 'order_id' (did you mean 'Order ID'?" in err, err


def test_an_error_lists_a_dozen_columns_and_how_many(project, run_cli):
    """It had listed 30 of them, each up to 40 characters."""
    header = ",".join(["sku", *(f"Attribute Number {n}" for n in range(40))])
    data = f"{header}\n{','.join(['a'] + ['x'] * 40)}\n"
    image = {"rows": "data/s.csv", "id": "code", "prompt": "x", "output": "img/{sku}.png"}
    project({"images.toml": manifest({"product": image}), "data/s.csv": data})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.endswith(
        "columns: sku, Attribute Number 0, Attribute Number 1, Attribute Number 2, Attribute "
        "Number 3, Attribute Number 4, Attribute Number 5, Attribute Number 6, Attribute "
        "Number 7, Attribute Number 8, Attribute Number 9, Attribute Number 10, … (41 in all))\n"
    ), err
