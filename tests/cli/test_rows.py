"""Images from data (`rows`): CSV, JSON, JSON Lines and Markdown front matter, through
the CLI, with generations counted at the Nebula test server."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import nebula_manifest

CSV = """\
sku,name,description,category,price,stock
T-1,Green tea,a cup of green tea,tea,4.5,12
T-2,Black tea,"a pot of black tea, steaming",tea,5,3
B-1,Sourdough,a round loaf,bread,6,0
"""

PRODUCT = {
    "rows": "data/products.csv",
    "id": "sku",
    "prompt": "product photo of {name}: {description}",
    "output": "static/products/{sku}.png",
}


def prompts(server) -> list[str]:
    return sorted(str(r.body["prompt"]) for r in server.generations)


def plan_actions(run_cli) -> dict[str, str]:
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return {a["image"]: a["action"] for a in json.loads(out)["actions"]}


def test_one_edited_row_remakes_exactly_one_image(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"product": PRODUCT}), "data/products.csv": CSV})
    data = root / "data/products.csv"
    assert run_cli("apply").code == 0
    assert prompts(nebula_server) == [
        "product photo of Black tea: a pot of black tea, steaming",
        "product photo of Green tea: a cup of green tea",
        "product photo of Sourdough: a round loaf",
    ]
    assert sorted(p.name for p in (root / "static/products").iterdir()) == [
        "B-1.png",
        "T-1.png",
        "T-2.png",
    ]

    nebula_server.reset_counters()
    data.write_text(CSV.replace("a round loaf", "a crusty round loaf"))
    assert run_cli("apply").code == 0
    assert prompts(nebula_server) == ["product photo of Sourdough: a crusty round loaf"]

    nebula_server.reset_counters()  # a column no template uses: nothing to make
    data.write_text(CSV.replace("a round loaf", "a crusty round loaf").replace(",12", ",99"))
    assert set(plan_actions(run_cli).values()) == {"noop"}
    assert run_cli("apply").code == 0
    assert nebula_server.generations == []

    lines = data.read_text().splitlines()  # the same rows in another order
    data.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    assert run_cli("apply").code == 0
    assert nebula_server.generations == []

    data.write_text(data.read_text() + "C-1,Croissant,a flaky croissant,bread,3,5\n")
    assert run_cli("apply").code == 0
    assert prompts(nebula_server) == ["product photo of Croissant: a flaky croissant"]

    data.write_text("\n".join(line for line in data.read_text().splitlines() if "T-2" not in line))
    assert plan_actions(run_cli)["product[T-2]"] == "delete"
    assert "its row is gone from the data, or filtered out" in run_cli("plan").out
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert nebula_server.generations == []
    assert not (root / "static/products/T-2.png").exists()
    assert "product[T-2]" not in (root / "images.lock").read_text()


def test_rows_sorted_another_way_place_an_atlas_s_frames_anew(project, run_cli):
    """An atlas places its frames in the order its members are listed (a data file's
    rows): sorted anew, the sheet and frame map are built again in that order, and
    nothing is generated."""
    sheet = '\n[atlases.{0}]\nimages = ["product"]\noutput = "{0}.png"\n'
    manifest = nebula_manifest({"product": PRODUCT}).replace('"nebula"', '"preview"')
    manifest += sheet.format("plain") + sheet.format("anim")
    root = project({"images.toml": manifest + 'aseprite = "anim.aseprite.json"\n'})
    (root / "data").mkdir()
    (root / "data/products.csv").write_text(CSV)
    assert run_cli("apply").code == 0
    frames = list(json.loads((root / "plain.json").read_text())["frames"])
    lines = CSV.splitlines()
    (root / "data/products.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    code, out, err = run_cli("plan")
    assert code == 0, err
    for name in ("plain", "anim"):
        assert f"~ atlas {name}  build" in out, out
    assert "its members are listed in another order (its frames are placed in it)" in out
    assert "0 to generate" in out
    assert run_cli("apply").code == 0
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert list(json.loads((root / "plain.json").read_text())["frames"]) == frames[::-1]


def test_json_json_lines_and_front_matter_rows(project, run_cli, nebula_server):
    recipes = {
        "data": {
            "recipes": [
                {"slug": "soup", "title": "Tomato soup", "tags": ["red", "warm"], "serves": 2},
                {"slug": "salad", "title": "Green salad", "tags": ["green"], "serves": 1},
            ]
        }
    }
    images = {
        "recipe": {
            "rows": {"file": "data/recipes.json", "at": "data.recipes"},
            "id": "slug",
            "prompt": "{title} for {serves}, {tags}",
            "output": "img/recipe-{slug}.png",
        },
        "city": {
            "rows": "data/cities.jsonl",
            "id": "code",
            "prompt": "skyline of {name}",
            "output": "img/city-{code}.png",
        },
        "cover": {
            "rows": {"files": "content/posts/*.md", "front_matter": True},
            "prompt": "cover for {title}: {excerpt}",
            "alt": "{title}",
            "output": "img/cover-{slug}.png",
        },
    }
    root = project(
        {
            "images.toml": nebula_manifest(images),
            "data/recipes.json": json.dumps(recipes, indent=2),
            "data/cities.jsonl": (
                '{"code": "osl", "name": "Oslo"}\n\n{"code": "lis", "name": "Lisbon"}\n'
            ),
            "content/posts/hello-world.md": (
                "---\ntitle: Hello world\ndate: 2024-01-05\n---\n# Hello\n\n"
                "The *first* post, with [a link](https://example.org).\n"
                "Still the first paragraph.\n\n"
                "Second paragraph.\n"
            ),
            "content/posts/toml-post.md": '+++\ntitle = "In TOML"\n+++\nBody text.\n',
            "content/posts/notes.txt": "not a post",
        }
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert prompts(nebula_server) == [
        "Green salad for 1, green",
        "Tomato soup for 2, red, warm",
        "cover for Hello world: The first post, with a link. Still the first paragraph.",
        "cover for In TOML: Body text.",
        "skyline of Lisbon",
        "skyline of Oslo",
    ]
    lock = (root / "images.lock").read_text()
    for name in ("recipe[soup]", "city[lis]", "cover[hello-world]", "cover[toml-post]"):
        assert f'"{name}"' in lock


def test_asset_manifest_carries_each_row_id(project, run_cli):
    manifest = nebula_manifest(
        {
            "product": {**PRODUCT, "where": "category == 'tea'"},
            "hero": {"prompt": "x", "output": "hero.png"},
        }
    )
    manifest = manifest.replace('backend = "nebula"', 'backend = "preview"')
    manifest += '\n[assets]\nmanifest = "static/images.json"\n'
    root = project({"images.toml": manifest, "data/products.csv": CSV})
    code, _, err = run_cli("apply")
    assert code == 0, err
    images = json.loads((root / "static/images.json").read_text())["images"]
    assert sorted(images) == ["hero", "product[T-1]", "product[T-2]"]
    assert images["product[T-1]"]["row"] == "T-1"
    assert "row" not in images["hero"]
    from jsonschema import validate

    schema = json.loads(Path(__file__).parents[2].joinpath("schema/assets.schema.json").read_text())
    validate(json.loads((root / "static/images.json").read_text()), schema)


@pytest.mark.parametrize(
    ("where", "limit", "expected"),
    [
        ("category == 'tea'", None, ["T-1", "T-2"]),
        ("price < 5 or sku in ['B-1']", None, ["B-1", "T-1"]),
        ("not (category == 'tea') and stock > 0", None, []),
        ("stock", None, ["T-1", "T-2"]),
        ("'tea' in description and price >= 4.5", 1, ["T-1"]),
        (None, 2, ["T-1", "T-2"]),
    ],
)
def test_where_and_limit_choose_rows(project, run_cli, where, limit, expected):
    product = dict(PRODUCT)
    if where is not None:
        product["where"] = where
    if limit is not None:
        product["limit"] = limit
    project({"images.toml": nebula_manifest({"product": product}), "data/products.csv": CSV})
    assert sorted(name[8:-1] for name in plan_actions(run_cli)) == expected


@pytest.mark.parametrize(
    ("data", "changes", "message"),
    [
        (
            CSV.replace("Black tea", ""),
            {},
            "data/products.csv:3:5: images.product: column 'name' is empty",
        ),
        (
            CSV.replace('"a pot of black tea, steaming"', "a pot, steaming"),
            {},
            "data/products.csv:3: images.product: this row has 7 fields but the header names "
            "6 columns",
        ),
        (
            CSV.replace("B-1,", "T-1,"),
            {},
            "data/products.csv:4:1: images.product: id 'T-1' is also the id of the row at line 2",
        ),
        (CSV, {"id": None}, "images.toml:13:1: images.product.id: is required with rows"),
        (
            CSV,
            {"id": "SKU"},
            "images.product.id: data/products.csv has no column 'SKU' (did you mean 'sku'?",
        ),
        (
            CSV,
            {"prompt": "{nmae}"},
            "images.product.prompt: unknown placeholder {nmae} (did you mean {name}? "
            "data/products.csv has: {sku}",
        ),
        (CSV, {"prompt": "{index}"}, "unknown placeholder {index}"),
        (
            CSV,
            {"where": "category = 'tea'"},
            """images.product.where: cannot read "= 'tea'" (at character 9)""",
        ),
        (
            CSV,
            {"where": "name > 3"},
            "data/products.csv:2:5: images.product: where: column 'name': 'Green tea' is not a "
            "number",
        ),
        (CSV, {"where": "__import__('os')"}, "images.product.where: unexpected '('"),
        (
            CSV,
            {"rows": "../products.csv"},
            "images.product.rows: a data file must stay inside the project",
        ),
        (
            CSV,
            {"rows": "data/missing.csv"},
            "images.product.rows: file not found: data/missing.csv",
        ),
        (
            CSV,
            {"rows": "data/product.csv"},
            "images.product.rows: file not found: data/product.csv "
            "(did you mean data/products.csv?)",
        ),
        (
            CSV,
            {"rows": {"files": "content/posts/*.md"}},
            "images.product.rows: folder not found: content/posts "
            "(where content/posts/*.md starts)",
        ),
        (CSV, {"rows": "data/products.xlsx"}, "is not a data file nebula-build reads"),
        (
            CSV,
            {"matrix": {"size": []}},
            "images.product.matrix: 'size' has no values",
        ),
        (
            "",
            {},
            "data/products.csv:1: images.product: is empty: the first line must name the columns",
        ),
        (b"sku,name\n\xff,x\n", {}, "data/products.csv:2:1: images.product: not UTF-8 text"),
        (
            CSV.encode("utf-16"),  # a spreadsheet's "Unicode text"
            {},
            "data/products.csv:1: images.product: saved as UTF-16; save it as UTF-8",
        ),
        (
            "sku;name;description\nT-1;Tea\n",
            {},
            "data/products.csv:2: images.product: this row has 2 fields but the header names 3 "
            "columns (a ';' inside a value needs \"quotes\")",
        ),
        (
            ",".join(f"c{n}" for n in range(10_001)) + "\n",
            {},
            "data/products.csv:1: images.product: the header names 10,001 columns, more than "
            "10,000",
        ),
        (  # it had said "does not parse as CSV: unexpected end of data"
            CSV.replace("B-1,", '"B-1,'),
            {},
            'data/products.csv:4: images.product: does not parse as CSV: a value opened with " '
            'on this line never closes: end it with " (a " inside a quoted value is written "")',
        ),
        (  # it had said "',' expected after '\"'"
            CSV.replace("T-2,", '"T-2,'),
            {},
            "data/products.csv:3: images.product: does not parse as CSV: the quotes on this "
            'line do not enclose whole values: a value is quoted whole ("a, b"), and a " '
            'inside it is written ""',
        ),
        (
            '"sku,name\n',
            {},
            "data/products.csv:1: images.product: the header does not parse: a value opened "
            'with " on this line never closes',
        ),
        (CSV, {"rows": 3}, "images.product.rows: must be a data file's path, or a table"),
        (
            CSV,
            {"rows": {"file": "data/products.csv", "bogus": 1}},
            "images.product.rows.bogus: unknown key; expected one of: file, files, front_matter",
        ),
        (CSV, {"rows": None}, "images.product.id: applies only with `rows`"),
    ],
)
def test_a_broken_row_or_declaration_is_one_clear_line(project, run_cli, data, changes, message):
    product = {**PRODUCT, **{k: v for k, v in changes.items() if v is not None}}
    for key in [k for k, v in changes.items() if v is None]:
        del product[key]
    files: dict[str, str | bytes] = {"images.toml": nebula_manifest({"product": product})}
    files["data/products.csv"] = data
    root = project(files)
    code, out, err = run_cli("plan")
    assert code == 1
    assert "Traceback" not in err
    assert message in err, err
    assert not (root / "images.lock").exists()


def test_a_one_column_csv_whose_header_has_a_semicolon_is_read(project, run_cli):
    """A header read as one column that ';' splits is a spreadsheet's export only when
    its rows split alike: one column named with a ';' is a column like any other."""
    scenes = {
        "rows": {"file": "data/scenes.csv", "columns": {"scene": "scene (subject; light)"}},
        "id": "scene",
        "prompt": "{scene}",
        "output": "img/{scene}.png",
    }
    files = {
        "images.toml": nebula_manifest({"scenes": scenes}),
        "data/scenes.csv": "scene (subject; light)\nharbour-dawn\nforest; dusk\n",
    }
    project(files)
    assert plan_actions(run_cli) == {
        "scenes[harbour-dawn]": "create",
        "scenes[forest; dusk]": "create",
    }


EXCEL_CSV = (  # as Excel saves "CSV UTF-8" where a comma is the decimal mark
    "\ufeffsku;name;description;category;price;stock\r\n"
    "T-1;Green tea;a cup of green tea;tea;4,5;12\r\n"
    'T-2;Black tea;"a pot of black tea; steaming";tea;5;3\r\n'
)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("data/products.csv", EXCEL_CSV),
        ("data/products.csv", CSV.replace(",", "\t")),
        ("data/products.tsv", "sku\tname\tdescription\nT-1\tGreen tea\ta cup, of tea\n"),
    ],
)
def test_a_csv_separated_by_semicolons_or_tabs_is_read(path, data, project, run_cli):
    """A spreadsheet's CSV in much of Europe separates fields by ';' (a comma is the
    decimal mark), and its "text" by tabs: each is read as it was written."""
    product = {**PRODUCT, "rows": path, "prompt": "{name}: {description}"}
    manifest = nebula_manifest({"product": product}).replace('"nebula"', '"preview"')
    root = project({"images.toml": manifest, path: data.encode()})
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    prompts = {a["image"]: a["prompt"] for a in json.loads(out)["actions"]}
    assert prompts["product[T-1]"].startswith("Green tea: a cup")
    if "T-2" in data:
        assert prompts["product[T-2]"].startswith("Black tea: a pot of black tea")
    (root / path).write_bytes(data.splitlines(keepends=True)[0].encode())  # a header alone
    code, _, err = run_cli("plan")
    assert code == 0 and "note: images.product makes no image" in err, err


def test_json_problems_name_the_line_and_column(project, run_cli):
    product = {**PRODUCT, "rows": "data/products.json"}
    items = [
        {"sku": "a", "name": "A", "description": "d"},
        {"sku": "b", "name": "", "description": "d"},
    ]
    project(
        {
            "images.toml": nebula_manifest({"product": product}),
            "data/products.json": json.dumps(items, indent=2),
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert "data/products.json:9:13: images.product: column 'name' is empty" in err
    (Path("data/products.json")).write_text('[{"sku": "a", "name": "A", "description": "d"},\n 3]')
    assert "data/products.json:2:2: images.product: item 1 is not an object" in run_cli("plan").err
    (Path("data/products.json")).write_text('{"sku": "a"')
    assert "data/products.json:1:12: images.product: invalid JSON" in run_cli("plan").err


@pytest.mark.parametrize(
    ("key", "template", "message"),
    [
        (
            "prompt",
            "{{ .Params.scene }}, editorial photo",
            "images.toml:15:1: images.cover.prompt: {{ .Params.scene }} is another template "
            "language's (Hugo, Jinja, Liquid): here a placeholder is one pair of braces around "
            "a name: write {scene}",
        ),
        (
            "alt",
            "{{ page.title }}",
            "images.cover.alt: {{ page.title }} is another template language's (Hugo, Jinja, "
            "Liquid): here a placeholder is one pair of braces around a name: write {title}",
        ),
        (
            "prompt",
            "{{scene}} at dawn",  # Handlebars: no spaces, but the data has the field
            "images.cover.prompt: {{scene}} is another template language's (Hugo, Jinja, "
            "Liquid): here a placeholder is one pair of braces around a name: write {scene}",
        ),
        (
            "alt",
            "{{.Summary}}",
            "images.cover.alt: {{.Summary}} is another template language's (Hugo, Jinja, "
            "Liquid): here a placeholder is one pair of braces around a name (posts/*.md has: "
            "{title}, {scene}, {slug}, {excerpt}, {path})",
        ),
    ],
)
def test_a_hugo_or_liquid_template_is_one_error_not_the_same_literal_prompt_for_every_post(
    project, run_cli, key, template, message
):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "{scene}",
            "output": "img/{slug}.png",
        }
    }
    images["cover"][key] = template
    project(
        {
            "images.toml": nebula_manifest(images),
            "posts/a.md": "---\ntitle: A\nscene: boats\n---\nx\n",
            "posts/b.md": "---\ntitle: B\nscene: soup\n---\nx\n",
        }
    )
    code, out, err = run_cli("plan")
    assert code == 1, out  # had planned every post with "{ .Params.scene }, editorial photo"
    assert message in err
    assert len(err.splitlines()) == 1


def test_templates_of_literal_braces_are_checked_in_linear_time(project, run_cli):
    """Each `{{` of a prompt of 10,000 `{` was read up to 200 characters on for a `}}`:
    800 such images took 45 s to validate, not 3."""
    braces = "{" * 9_990 + " {kind}"  # `{` 4,995 times, then a placeholder
    images = {
        f"icon{n}": {"prompt": braces, "matrix": {"kind": ["a"]}, "output": f"{n}-{{kind}}.png"}
        for n in range(800)
    }
    project({"images.toml": nebula_manifest(images)})
    started = time.perf_counter()
    code, out, err = run_cli("validate")
    elapsed = time.perf_counter() - started
    assert code == 0, err[:2000]
    assert "800 images, valid" in out
    assert elapsed < 20, elapsed


def test_a_doubled_brace_in_a_matrix_template_is_refused_too(project, run_cli):
    images = {"icon": {"prompt": "{{ kind }} icon", "matrix": {"kind": ["a", "b"]}}}
    images["icon"]["output"] = "img/{kind}.png"
    project({"images.toml": nebula_manifest(images)})
    code, _, err = run_cli("plan")
    assert code == 1
    assert "images.icon.prompt: {{ kind }} is another template language's" in err
    assert err.rstrip().endswith("one pair of braces around a name: write {kind}")


def test_a_post_without_a_title_names_the_post(project, run_cli):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "cover for {title}",
            "output": "img/{slug}.png",
        }
    }
    project(
        {
            "images.toml": nebula_manifest(images),
            "posts/a.md": "---\ntitle: A\n---\nx\n",
            "posts/b.md": "---\nauthor: me\ntitle: ''\n---\nx\n",
            "posts/c.md": "---\ntitle: [unclosed\n---\nx\n",
            "posts/d.md": "---\ntitle: D\n",
            "posts/e.md": '---\ntitle: "unclosed\ndate: 2026-01-02\n---\nx\n',
            "posts/f.md": "---\ntags: [a, b\ntitle: F\n---\nx\n",
        }
    )
    err = run_cli("plan").err
    assert "posts/b.md:3:1: images.cover: column 'title' is empty" in err
    # where the bracket or quote that never closes opened, not the closing fence
    assert (
        "posts/c.md:2:8: images.cover: the YAML front matter does not parse: "
        "did not find expected ',' or ']', while parsing a flow sequence that starts here"
    ) in err
    assert (
        "posts/e.md:2:8: images.cover: the YAML front matter does not parse: "
        "found unexpected end of stream, while scanning a quoted scalar that starts here"
    ) in err
    assert (
        "posts/f.md:3:6: images.cover: the YAML front matter does not parse: "
        "did not find expected ',' or ']', while parsing a flow sequence that starts at 2:7"
    ) in err
    assert "posts/d.md:1: images.cover: the front matter opened by '---' is never closed" in err


@pytest.mark.parametrize(
    ("post", "said"),
    [
        (
            "---\ntitle: A\ndate: 2026-01-02\ntitle: B\n---\nx\n",
            "4:1: {} the YAML front matter sets 'title' twice (first on line 2)",
        ),
        (
            "---\ntitle: A\ncover:\n  alt: a\n  alt: b\n---\n",
            "5:3: {} the YAML front matter sets 'alt' twice (first on line 4)",
        ),
        (  # one key written plain and quoted: the same field
            "---\ntitle: A\n1: a\n'1': b\n---\n",
            "4:1: {} the YAML front matter sets '1' twice (first on line 3)",
        ),
        (
            '+++\ntitle = "A"\ntitle = "B"\ndraft = false\n+++\n',
            "3: {} the TOML front matter sets 'title' twice",
        ),
        (
            '+++\ntitle = "A"\ndraft = false\ntitle = """\nB\n"""\n+++\n',
            "4: {} the TOML front matter sets 'title' twice",
        ),
    ],
    ids=["yaml", "yaml-nested", "yaml-quoted", "toml", "toml-multiline"],
)
def test_a_key_set_twice_in_front_matter_is_one_error_naming_the_post_line_and_key(
    project, run_cli, post, said
):
    """YAML's last value of a key set twice won: the prompt paid for used one title
    while the post showed the other."""
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "cover for {title}",
            "output": "img/{slug}.png",
        }
    }
    project({"images.toml": nebula_manifest(images), "posts/a.md": post})
    code, out, err = run_cli("plan")
    assert code == 1, out
    assert err == f"error: posts/a.md:{said.format('images.cover:')}\n"


def test_yaml_front_matter_keys_are_fields_named_as_written(project, run_cli):
    """YAML 1.1 reads `true:` and `yes:` as the boolean True, and `1:` as 1, which
    Python takes for the same key: a post setting two of them had been refused with
    "sets 'True' twice", and `true:` alone was a field named "True"."""
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "{title}: {true}, {True}, {yes}, {on}",
            "output": "img/{slug}.png",
        }
    }
    post = "---\ntitle: A\n1: one\ntrue: two\nTrue: three\nyes: four\non: five\n---\nx\n"
    project({"images.toml": nebula_manifest(images), "posts/a.md": post})
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert json.loads(out)["actions"][0]["prompt"] == "A: two, three, four, five"


def test_publishing_the_last_draft_says_how_to_keep_where_not_draft(project, run_cli):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "where": "not draft",
            "prompt": "cover for {title}",
            "output": "img/{slug}.png",
        }
    }
    root = project(
        {
            "images.toml": nebula_manifest(images),
            "posts/a.md": "---\ntitle: A\ndate: 2026-01-02\n---\nx\n",
            "posts/b.md": "---\ntitle: B\ndraft: true\n---\nx\n",
        }
    )
    assert run_cli("plan").code == 0
    (root / "posts/b.md").write_text("---\ntitle: B\n---\nx\n")  # published
    code, _, err = run_cli("plan")
    assert code == 1
    # it had said only "did you mean 'date'?"
    assert err == (
        "error: images.toml:15:1: images.cover.where: posts/*.md has no column 'draft' "
        "(did you mean 'date'? columns: title, date, slug, excerpt, path); for a field "
        "only some posts set, give it a default: rows = { …, defaults = { draft = false } }\n"
    )
    text = (root / "images.toml").read_text()
    old = 'files = "posts/*.md"'
    (root / "images.toml").write_text(text.replace(old, f"{old}, defaults = {{ draft = false }}"))
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == ["cover[a]", "cover[b]"]


def test_a_source_many_declarations_read_is_parsed_once(project, run_cli, monkeypatch):
    """Each declaration parsed its rows again: 20 declarations of one 23 MB JSON file
    took 10 s, and a manifest of thousands (each `limit = 1`) would have held CI for
    hours. A file, a JSON file read at several `at`, the posts of several patterns, and
    a file that does not parse are each read once."""
    from nebula_build.core import rowimages

    calls: list[str] = []

    def counted(original):
        def parse(path, *args, **kwargs):
            calls.append(path)
            return original(path, *args, **kwargs)

        return parse

    for name in ("parse", "parse_post", "json_document"):
        monkeypatch.setattr(rowimages, name, counted(getattr(rowimages, name)))
    images = {}
    for n in range(30):
        images[f"p{n}"] = {**PRODUCT, "limit": 1, "output": f"static/{n}/{{sku}}.png"}
        images[f"j{n}"] = {
            **PRODUCT,
            "rows": {"file": "data/export.json", "at": f"part{n % 3}"},
            "output": f"static/j{n}/{{sku}}.png",
        }
        images[f"c{n}"] = {
            "rows": {"files": "posts/" + ["*", "?", "[ab]"][n % 3] + ".md"},
            "prompt": f"cover {n} for {{title}}",
            "output": f"img/{n}/{{slug}}.png",
        }
    row = {"sku": "J-1", "name": "Jam", "description": "a jar of jam"}
    project(
        {
            "images.toml": nebula_manifest(images),
            "data/products.csv": CSV,
            "data/export.json": json.dumps({f"part{n}": [row] for n in range(3)}),
            "posts/a.md": "---\ntitle: A\n---\nx\n",
            "posts/b.md": "---\ntitle: B\n---\nx\n",
        }
    )
    read_once = ["data/export.json", "data/products.csv", "posts/a.md", "posts/b.md"]
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert len(json.loads(out)["actions"]) == 30 * 4
    assert sorted(calls) == read_once
    calls.clear()
    Path("data/products.csv").write_text("sku,name\n")
    Path("data/export.json").write_text('{"part0": [')
    Path("posts/b.md").write_text("---\ntitle: [B\n---\n")
    code, out, _ = run_cli("plan", "--json")
    assert code == 1
    assert sorted(calls) == read_once
    # each declaration still says what is wrong with its rows (in one line for them all)
    problems = _problems(out)
    where = Counter((p["file"], p["line"], p["column"]) for p in problems)
    assert sum(n for (file, _, _), n in where.items() if file == "images.toml") == 1
    said = next(p for p in problems if p["file"] == "images.toml")
    assert said["key"] == "images.p0.prompt" and said["message"].endswith(
        "; the same for 29 other images (p1, p2, p3, p4, p5, …)"
    ), said
    assert where["data/export.json", 1, 12] == 30
    assert where["posts/b.md", 2, 8] == 30  # the `[` that never closes


def test_a_post_of_brackets_is_read_in_linear_time(project, run_cli, nebula_server):
    """Every post's excerpt is made, used or not, and a regular expression looked for
    the `]` of each `[` to the end of the paragraph: 80,000 `[` took 15 s, and a post
    of 4 MB (a few KB in git) would have held CI for hours."""
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "cover for {title}: {excerpt}",
            "output": "img/{slug}.png",
        }
    }
    project(
        {
            "images.toml": nebula_manifest(images),
            "posts/a.md": "---\ntitle: A\n---\n" + "[" * 150_000 + "\n",
            "posts/b.md": "---\ntitle: B\n---\nSee ![a](i.png) [the *docs*](u) **now**.\n",
        }
    )
    started = time.process_time()  # CPU seconds: other jobs' load does not count
    code, _, err = run_cli("plan")
    assert code == 0, err
    assert time.process_time() - started < 10
    assert run_cli("apply").code == 0
    assert prompts(nebula_server) == [
        "cover for A: " + "[" * 499 + "…",
        "cover for B: See a the *docs* now.",
    ]


def test_a_number_too_long_in_front_matter_is_one_line(project, run_cli):
    """Python reads no integer of more than 4,300 digits (a traceback), a sexagesimal
    float (YAML 1.1's 1:30.5) can overflow (another), and a sexagesimal integer's
    value costs time with the square of its length: 4 MB of `59:` took minutes."""
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "cover for {title}",
            "output": "img/{slug}.png",
        }
    }
    sexagesimal = ":".join(["59"] * 100_000)
    project(
        {
            "images.toml": nebula_manifest(images),
            "posts/a.md": f"---\ntitle: A\nviews: {'1' * 5000}\n---\nx\n",
            "posts/b.md": f'+++\ntitle = "B"\nviews = {"1" * 5000}\n+++\nx\n',
            "posts/c.md": f"---\ntitle: C\nlength: {sexagesimal}\n---\nx\n",
            "posts/d.md": f"---\ntitle: D\nlength: {sexagesimal[:899]}.5\n---\nx\n",
            "posts/e.md": f"---\ntitle: E\nviews: {'1' * 4300}\n---\nx\n",
            "posts/f.md": f"---\ntitle: 0x{'f' * 4000}\n---\nx\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1 and "Traceback" not in err
    does_not_parse = "images.cover: the YAML front matter does not parse:"
    assert f"posts/a.md:3:8: {does_not_parse} a number of 5,000 characters, more than 4,300" in err
    assert "posts/b.md:1: images.cover: the TOML front matter does not parse: an integer" in err
    assert f"posts/c.md:3:9: {does_not_parse} a number of 299,999 characters" in err
    assert f"posts/d.md:3:9: {does_not_parse} a number too large" in err
    assert "posts/e.md" not in err
    too_long = "column 'title' is an integer too long to write as text (over 4,200 digits)"
    assert f"posts/f.md:2:1: images.cover: {too_long}" in err


def test_a_toml_front_matter_error_points_at_its_line_and_column(project, run_cli):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "cover for {title}",
            "output": "img/{slug}.png",
        }
    }
    project(
        {
            "images.toml": nebula_manifest(images),
            "posts/a.md": '+++\ntitle = "A"\ndate = 2026-13-45\n+++\nx\n',
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    # line 3 of the file (the fence is line 1), where tomllib stopped
    assert "posts/a.md:3:12: images.cover: the TOML front matter does not parse: " in err
    assert "(at line" not in err


@pytest.mark.parametrize(
    ("post", "opened_by"),
    [
        ('{\n  "title": "Hugo",\n  "scene": "a kite"\n}\n\nThe text.\n', "{"),  # Hugo's
        ('{"title": "One line", "scene": "a kite"}\nThe text.\n', "{"),
        ('---json\n{\n  "title": "Eleventy"\n}\n---\nThe text.\n', "---json"),
        ("---js\n{ title: 'Eleventy' }\n---\nThe text.\n", "---js"),
    ],
)
def test_front_matter_in_another_language_is_one_line_not_the_posts_text(
    project, run_cli, post, opened_by
):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "{excerpt}, editorial photo",
            "output": "img/{slug}.png",
        }
    }
    root = project({"images.toml": nebula_manifest(images), "posts/a.md": post})
    code, out, err = run_cli("plan")
    # it had been the post's text: the JSON was the excerpt, so the prompt to pay for
    assert code == 1, out
    assert err == (
        f"error: posts/a.md:1: images.cover: the front matter opened by {opened_by!r} is "
        "not YAML or TOML, the two nebula-build reads: write it as YAML between '---' "
        "lines or as TOML between '+++' lines\n"
    )
    assert not (root / "images.lock").exists()


@pytest.mark.parametrize(
    "text",
    [
        '{{< figure src="a.png" >}}\nThe text.\n',  # a shortcode, no front matter
        "{% include note.html %}\nThe text.\n",
        "{/* an MDX comment */}\nThe text.\n",
        "---\ntitle: A\n---\nThe text.\n\n{\n",
        "----\n\nThe text.\n",
    ],
)
def test_a_post_that_only_starts_like_other_front_matter_is_read_as_before(project, run_cli, text):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "cover: {excerpt}",
            "output": "img/{slug}.png",
        }
    }
    project({"images.toml": nebula_manifest(images), "posts/a.md": text})
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert json.loads(out)["actions"][0]["prompt"].endswith("The text.")


@pytest.mark.parametrize(
    "post",
    [
        "---yaml\nscene: a kite\n---\nThe text.\n",  # Eleventy's, gray-matter's
        "---YML\r\nscene: a kite\r\n---\r\nThe text.\r\n",
        "--- yaml\nscene: a kite\n---\nThe text.\n",
        '---toml\nscene = "a kite"\n---\nThe text.\n',
        '+++\nscene = """a kite\n...\n"""\n+++\nThe text.\n',  # `...` ends YAML only
    ],
)
def test_front_matter_that_names_yaml_or_toml_is_read(project, run_cli, post):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "{scene}, editorial photo",
            "output": "img/{slug}.png",
        }
    }
    project({"images.toml": nebula_manifest(images), "posts/a.md": post})
    code, out, err = run_cli("plan", "--json")
    # it had been "the front matter opened by '---yaml' is not YAML or TOML"
    assert code == 0, err
    assert json.loads(out)["actions"][0]["prompt"].startswith("a kite")


def test_front_matter_named_after_a_space_is_one_line_not_the_posts_text(project, run_cli):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "{excerpt}, editorial photo",
            "output": "img/{slug}.png",
        }
    }
    post = '--- json\n{"title": "Eleventy", "scene": "a kite"}\n---\nThe text.\n'
    project({"images.toml": nebula_manifest(images), "posts/a.md": post})
    code, out, err = run_cli("plan")
    # it had been the post's text: the JSON was the excerpt, so the prompt to pay for
    assert code == 1, out
    assert err.startswith("error: posts/a.md:1: images.cover: the front matter opened by")
    assert "opened by '--- json' is not YAML or TOML" in err and err.count("\n") == 1


def test_posts_saved_with_windows_line_endings_change_no_image(project, run_cli, nebula_server):
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "cover for {title}: {excerpt}",
            "output": "img/{slug}.png",
        }
    }
    posts = {
        "posts/toml.md": '+++\ntitle = "In TOML"\ntags = ["a"]\n+++\nBody of the TOML post.\n',
        "posts/yaml.md": "---\ntitle: In YAML\n---\nBody of the YAML post.\n\nMore.\n",
    }
    root = project({"images.toml": nebula_manifest(images), **posts})
    assert run_cli("apply").code == 0
    nebula_server.reset_counters()
    for name, text in posts.items():  # a checkout on Windows (git's autocrlf)
        (root / name).write_bytes(text.replace("\n", "\r\n").encode())
    code, _, err = run_cli("plan", "--json")
    assert code == 0, err
    assert set(plan_actions(run_cli).values()) == {"noop"}
    assert run_cli("apply").code == 0
    assert nebula_server.generations == []


def _excerpt_prompts(project, run_cli, server, posts: dict[str, str]) -> list[str]:
    """The prompts `apply` sends for covers prompted by each post's excerpt alone."""
    images = {
        "cover": {
            "rows": {"files": "posts/*.md"},
            "prompt": "{excerpt}",
            "output": "img/{slug}.png",
        }
    }
    project({"images.toml": nebula_manifest(images), **posts})
    code, _, err = run_cli("apply")
    assert code == 0, err
    return prompts(server)


def test_an_excerpt_leaves_out_hugo_and_jekyll_tags_and_ends_at_a_summary_divider(
    project, run_cli, nebula_server
):
    posts = {
        "posts/hugo.md": (
            '---\ntitle: H\n---\n{{< figure src="harbour.jpg" >}}\n\n'
            "Boats in a harbour at sunset.\n"
        ),
        "posts/notice.md": "---\ntitle: N\n---\n{{% notice %}}\nA notice.\n{{% /notice %}}\n",
        "posts/jekyll.md": "---\ntitle: J\n---\n{% include figure.html %}\nA jekyll post.\n",
        "posts/more.md": "---\ntitle: M\n---\nGulls over the pier.\n<!--more-->\nThe rest.\n",
    }
    assert _excerpt_prompts(project, run_cli, nebula_server, posts) == [
        "A jekyll post.",
        "A notice.",
        "Boats in a harbour at sunset.",
        "Gulls over the pier.",
    ]


def test_an_excerpt_leaves_out_a_shortcode_or_comment_over_several_lines(
    project, run_cli, nebula_server
):
    posts = {
        "posts/figure.md": (
            '---\ntitle: F\n---\n{{< figure src="harbour.jpg"\n'
            '    alt="A harbour" >}}\n\nBoats in a harbour at sunset.\n'
        ),
        "posts/comment.md": (
            "---\ntitle: C\n---\n<!--\ndraft: add a photo\n-->\nGulls over the pier.\n"
        ),
        "posts/liquid.md": (
            "---\ntitle: L\n---\nA jekyll post.\n{% include figure.html\n"
            '   src="x.png" %}\nThe rest.\n'
        ),
    }
    assert _excerpt_prompts(project, run_cli, nebula_server, posts) == [
        "A jekyll post.",
        "Boats in a harbour at sunset.",
        "Gulls over the pier.",
    ]


def test_a_data_file_is_read_only_inside_the_project(project, run_cli, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(CSV)
    root = project({"images.toml": nebula_manifest({"product": PRODUCT})})
    (root / "data").mkdir()
    (root / "data/products.csv").symlink_to(outside)
    code, _, err = run_cli("plan")
    assert code == 1
    assert "images.product.rows: cannot read data/products.csv" in err
    assert "symbolic link" in err
    product = {**PRODUCT, "rows": ".nebula-build/specs.json"}
    (root / "images.toml").write_text(nebula_manifest({"product": product}))
    code, _, err = run_cli("plan")
    assert code == 1 and "belongs to the tool" in err


def test_a_huge_data_file_is_refused_unread(project, run_cli, monkeypatch):
    from nebula_build.core import rowimages

    monkeypatch.setattr(rowimages, "MAX_DATA_BYTES", 100)
    project({"images.toml": nebula_manifest({"product": PRODUCT}), "data/products.csv": CSV})
    code, _, err = run_cli("plan")
    assert code == 1
    assert "over the 100 limit" in err


def test_json_of_too_many_values_is_refused_before_it_is_parsed(project, run_cli, monkeypatch):
    """Each JSON value costs tens of bytes once parsed: 32 MiB of `[],[],…` took 7.6 s
    and 900 MB before its rows were counted. The values are counted first (4,000,000
    at most, 200,000 rows of 19 columns), in JSON Lines too, where one line can hold
    them all; nothing is parsed."""
    from nebula_build.core import table

    parsed: list[int] = []
    load = table._load_json
    monkeypatch.setattr(
        table,
        "_load_json",
        lambda path, text, *rest: parsed.append(len(text)) or load(path, text, *rest),
    )
    values = ",".join(["[]"] * 2_000_001)  # and the commas between them
    images = {
        "product": {**PRODUCT, "rows": "data/p.json"},
        "line": {**PRODUCT, "rows": "data/q.jsonl", "output": "s/{sku}.png"},
        "inside": {**PRODUCT, "rows": {"file": "data/r.json", "at": "a"}, "output": "r/{sku}.png"},
    }
    project(
        {
            "images.toml": nebula_manifest(images),
            "data/p.json": f"[{values}]",
            "data/q.jsonl": f'{{"sku": "T-1", "x": [{values}]}}\n',
            "data/r.json": f'{{"a": [], "b": [{values}]}}',
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    too_many = (
        "is made of more than 4,000,000 JSON values (arrays, objects, and what commas "
        "separate), more than nebula-build reads from one file"
    )
    for path, image in (("p.json", "product"), ("q.jsonl", "line"), ("r.json", "inside")):
        assert f"error: data/{path}: images.{image}: {too_many}\n" in err
    assert err.count("\n") == 3, err
    assert parsed == []


def test_yaml_front_matter_of_too_many_values_is_refused_as_it_is_read(project, run_cli):
    """Each YAML value costs hundreds of bytes parsed: a 4 MiB post of `[],[],…` took
    20 s and 1 GB. Its values are counted as they are read, 200,000 at most."""
    many = ", ".join(["1"] * 199_990)  # and keys, the title, the list and the table
    cover = {"rows": {"files": "posts/*.md"}, "prompt": "cover for {title}", "output": "{slug}.png"}
    project(
        {
            "images.toml": nebula_manifest({"cover": cover}),
            "posts/a.md": f"---\ntitle: A\nx: [{many}]\n---\nhello\n",
            "posts/b.md": f"---\ntitle: B\nx: [{many}, {many}]\n---\nhello\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: posts/b.md:3: images.cover: the YAML front matter holds more than 200,000 "
        "values, more than nebula-build reads from a post\n"
    )


def test_the_data_one_manifest_reads_is_bounded_in_all(project, run_cli, monkeypatch):
    """Each file was bounded, not what they came to together: a CSV of empty fields
    holds 32 times its size in memory (31 MB, 98 KB in git, took 1 GB), YAML front
    matter costs 1.4 s a MB, and a pull request can add as many files as it likes. A
    file many declarations read counts once; a post counts its front matter."""
    from nebula_build.core import rowimages

    monkeypatch.setattr(rowimages, "MAX_DATA_READ", 1 << 20)
    rows = "sku,name,description\n" + "".join(f"T-{n},tea,a cup of tea\n" for n in range(22_000))
    assert 1 << 19 < len(rows) < 1 << 20
    images = {f"p{n}": {**PRODUCT, "limit": 1, "output": f"s/{n}/{{sku}}.png"} for n in range(9)}
    images["other"] = {**PRODUCT, "rows": "data/other.csv", "limit": 1}
    images["cover"] = {
        "rows": {"files": "posts/*.md"},
        "prompt": "cover for {title}",
        "output": "img/{slug}.png",
    }
    front = "".join(f"k{n}: v\n" for n in range(60_000))
    files = {
        "images.toml": nebula_manifest(images),
        "data/products.csv": rows,
        "data/other.csv": "sku,name,description\nT-1,tea,green\n",
        "posts/a.md": "---\ntitle: A\n---\nx\n",
    }
    project(files)
    code, _, err = run_cli("plan")
    assert code == 0, err
    project({**files, "data/other.csv": rows, "posts/b.md": f"---\ntitle: B\n{front}---\nx\n"})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.count("\n") == 2, err
    assert (
        "images.other.rows: reading data/other.csv, the rows of this manifest come to more "
        "than 1 MiB of data files and posts: more than nebula-build reads" in err
    )
    assert "images.cover.rows: reading posts/a.md, the rows of this manifest" in err
    project({**files, "posts/b.md": f"---\ntitle: B\n{front}---\nx\n"})
    code, _, err = run_cli("plan")
    assert code == 1 and err.count("\n") == 1, err
    assert "images.cover.rows: reading posts/b.md, the rows of this manifest" in err
    # the text up to the end of the first paragraph counts, unless the post sets its
    # excerpt (which is all that is read from the text)
    long_paragraph = "---\ntitle: B\n---\n\n# Heading\n\n" + "*" * 600_000 + "\n\nmore\n"
    project({**files, "posts/b.md": long_paragraph})
    code, _, err = run_cli("plan")
    assert code == 1 and "images.cover.rows: reading posts/b.md" in err
    long_paragraph = long_paragraph.replace("title: B", "title: B\nexcerpt: short")
    project({**files, "posts/b.md": long_paragraph})
    assert run_cli("plan").code == 0


def test_did_you_mean_for_missing_data_files_compares_few_names_in_all(
    project, run_cli, monkeypatch
):
    """ "did you mean" compares the missing name with each file beside it, some 1 ms
    apiece for long names alike: 20 declarations naming missing files in a folder of
    10,000 such names (empty files cost a pull request nothing) took 3 minutes, and
    thousands would hold CI for hours. A plan compares 1,000 names in all; the
    first typos still get their hint."""
    import difflib

    compared = 0
    set_seq1 = difflib.SequenceMatcher.set_seq1

    def counting(self, a):
        nonlocal compared
        compared += 1
        set_seq1(self, a)

    monkeypatch.setattr(difflib.SequenceMatcher, "set_seq1", counting)
    files = {f"data/many/item{n:04}.csv": "" for n in range(1_500)}
    images = {
        "product": {**PRODUCT, "rows": "data/product.csv"},
        **{
            f"p{n}": {
                **PRODUCT,
                "rows": f"data/many/itme{n:04}.csv",
                "output": f"s/{n}/{{sku}}.png",
            }
            for n in range(10)
        },
    }
    project({"images.toml": nebula_manifest(images), "data/products.csv": CSV, **files})
    code, _, err = run_cli("plan")
    assert code == 1
    assert "file not found: data/product.csv (did you mean data/products.csv?)" in err
    assert "images.p0.rows: file not found: data/many/itme0000.csv\n" in err
    assert 0 < compared <= 1_000


def test_a_post_two_patterns_read_from_other_folders_counts_once(project, run_cli, monkeypatch):
    """`posts/*.md` starts at posts/, `**/*.md` at the project: the same post, with the
    slug each names it by (a page bundle's folder, or not), is parsed once and its
    front matter counts once towards the data a manifest reads."""
    from nebula_build.core import rowimages

    monkeypatch.setattr(rowimages, "MAX_DATA_READ", 1 << 20)
    front = "".join(f"k{n}: v\n" for n in range(60_000))  # 590 KB: twice is past 1 MiB
    cover = {"prompt": "cover for {title}", "output": "img/{slug}.png"}
    images = {
        "cover": {**cover, "rows": {"files": "posts/*.md"}},
        "all": {**cover, "rows": {"files": "**/*.md"}, "output": "all/{slug}.png"},
        "bundle": {**cover, "rows": {"files": "posts/*/index.md"}, "output": "b/{slug}.png"},
        "inside": {**cover, "rows": {"files": "posts/hello/*.md"}, "output": "i/{slug}.png"},
        "given": {**cover, "rows": {"files": "posts/own/*.md"}, "output": "g/{slug}.png"},
    }
    project(
        {
            "images.toml": nebula_manifest(images),
            "posts/big.md": f"---\ntitle: Big\n{front}---\nx\n",
            "posts/hello/index.md": "---\ntitle: Hello\n---\n",
            "posts/own/index.md": "---\ntitle: Own\nslug: mine\n---\n",
        }
    )
    assert sorted(plan_actions(run_cli)) == [
        "all[big]",
        "all[hello]",
        "all[mine]",
        "bundle[hello]",
        "bundle[mine]",
        "cover[big]",
        "given[mine]",
        "inside[index]",
    ]


def test_the_rows_all_declarations_go_through_are_bounded(project, run_cli, monkeypatch):
    """`where` was bounded per declaration, and a declaration that keeps no row makes
    no image: 20 declarations of one 190,000-row file, each with ten comparisons,
    took 31 s, and a manifest of thousands would have held CI for hours."""
    from nebula_build.core import rowimages

    monkeypatch.setattr(rowimages, "MAX_ROW_STEPS", 20)
    where = {"where": "price > 1 and stock > 0"}
    images = {
        "p0": {**PRODUCT, "output": "s/0/{sku}.png"},  # 3 rows, 1 step each
        "p1": {**PRODUCT, **where, "output": "s/1/{sku}.png"},  # 3 steps each: 12 in all
        "p2": {**PRODUCT, **where, "output": "s/2/{sku}.png"},
    }
    project({"images.toml": nebula_manifest(images), "data/products.csv": CSV})
    code, _, err = run_cli("plan")
    assert code == 1 and err.count("\n") == 1, err
    assert (
        "images.p2.where: 3 rows at 3 steps each (a row and each comparison) bring the rows "
        "of this manifest past 20 steps in all: read the rows in fewer declarations" in err
    )
    del images["p2"]
    project({"images.toml": nebula_manifest(images), "data/products.csv": CSV})
    assert run_cli("plan").code == 0


def test_a_limit_without_where_counts_the_rows_it_reads(project, run_cli, monkeypatch):
    """Without `where`, a declaration reads at most `limit` rows (and the problems it
    reports): 50 declarations of 5 products each from a 200,000-row catalogue had
    been refused as 10,000,000 steps."""
    from nebula_build.core import rowimages

    monkeypatch.setattr(rowimages, "MAX_ROW_STEPS", 100)
    catalogue = "sku,name,description\n" + "".join(f"S-{n},tea {n},a cup\n" for n in range(30))
    images = {f"p{n}": {**PRODUCT, "limit": 1, "output": f"s/{n}/{{sku}}.png"} for n in range(6)}
    project({"images.toml": nebula_manifest(images), "data/products.csv": catalogue})
    code, _, err = run_cli("plan")
    assert code == 0, err  # 6 × 30 rows were 180 steps; each reads 1 (and 10 it reports)


def _long_lines_csv() -> str:
    """10 rows of 1,000 columns of 1,000 characters: each id problem is at the end of
    a 1 MB line."""
    header = ",".join(f"c{n}" for n in range(1000))
    row = ",".join(["x" * 1000] * 1000)
    return header + "\n" + f"{row}\n" * 10


def _late_rows_json() -> str:
    """100,000 rows that `n > 5` leaves out, then 10 that share an id."""
    rows = [{"sku": f"s{n}", "n": 0} for n in range(100_000)]
    rows += [{"sku": "same", "n": 9}] * 11
    return json.dumps(rows)


@pytest.mark.parametrize(
    ("data", "declaration", "problem", "declarations", "seconds"),
    [
        (
            "data/r.csv",
            {"id": "c999", "output": "s/{c0}.png"},
            "data/r.csv:2:1000000: images.p0: id column 'c999'",
            60,
            10,  # it had taken 20 s
        ),
        (
            "data/r.json",
            {"where": "n > 5"},
            "data/r.json:1:2688925: images.p0: id 'same'",
            30,
            25,  # it had taken 43 s; their 3,000,000 rows take 4 s of it
        ),
    ],
    ids=["csv-long-lines", "json-late-rows"],
)
def test_a_problem_many_declarations_share_is_located_once(
    project, run_cli, data, declaration, problem, declarations, seconds
):
    """A row's problem is reported by each declaration that reads the row, and each
    found it again: along its 1 MB line of CSV (60 declarations took 23 s), or from
    the start of the JSON array (30 declarations, 43 s); a thousand, many minutes."""
    product = {**PRODUCT, "rows": data, "prompt": "x", **declaration}
    images = {
        f"p{n}": {**product, "output": product["output"].replace("s/", f"s/{n}/")}
        for n in range(declarations)
    }
    text = _long_lines_csv() if data.endswith(".csv") else _late_rows_json()
    project({"images.toml": nebula_manifest(images), data: text})
    started = time.process_time()  # CPU seconds: other jobs' load does not count
    code, out, err = run_cli("plan", "--json")
    assert time.process_time() - started < seconds
    assert code == 1 and problem in err, err[:500]
    assert len(_problems(out)) == declarations  # each the same in all ten rows, said once
    assert "; the same in 9 other rows" in _problems(out)[0]["message"]


def test_a_post_field_many_declarations_miss_is_located_once(project, run_cli):
    """Each declaration that found a post's field empty looked for its line again, along
    the whole front matter: 60 declarations of 10 posts of 400,000 comment lines took
    28 s, a thousand, many minutes."""
    front = "#\n" * 400_000 + "title: ''\n"
    posts = {f"posts/{n}.md": f"---\n{front}---\nx\n" for n in range(10)}
    images = {
        f"c{n}": {
            "rows": {"files": "posts/*.md"},
            "prompt": f"cover {n} for {{title}}",
            "output": f"img/{n}/{{slug}}.png",
        }
        for n in range(60)
    }
    project({"images.toml": nebula_manifest(images), **posts})
    started = time.process_time()  # CPU seconds: other jobs' load does not count
    code, out, _ = run_cli("plan", "--json")
    assert time.process_time() - started < 20  # it had taken 31 s
    problems = _problems(out)
    assert code == 1 and len(problems) == 60 * 10
    assert {
        "file": "posts/3.md",
        "line": 400002,
        "column": 1,
        "key": "images.c59",
        "message": "column 'title' is empty (the image uses it); set title in this post's "
        'front matter, give it a default (rows = { …, defaults = { title = "…" } }), or '
        'leave such posts out (where = "title")',
    } in problems


def test_an_edited_data_file_is_seen_by_plan_and_status(project, run_cli, monkeypatch):
    from nebula_build.engine import noop

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)  # no waiting for the racy window
    cover = {"rows": {"files": "posts/*.md"}, "prompt": "{title}", "output": "img/{slug}.png"}
    manifest = nebula_manifest({"product": PRODUCT, "cover": cover}).replace(
        'backend = "nebula"', 'backend = "preview"'
    )
    root = project(
        {"images.toml": manifest, "data/products.csv": CSV, "posts/a.md": "---\ntitle: A\n---\n"}
    )
    assert run_cli("apply").code == 0
    assert run_cli("plan").out.startswith("No changes")
    assert run_cli("plan").out == "No changes: 4 images up to date.\n"
    assert (root / ".nebula-build/noop").exists()
    assert "data/products.csv\t" in (root / ".nebula-build/noop").read_text()

    data = root / "data/products.csv"  # the same size and mtime: only ctime shows
    before = data.stat()
    data.write_text(CSV.replace("a round loaf", "a rye loaf!!"))
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_size == before.st_size
    out = run_cli("plan").out
    assert "product[B-1]  regenerate" in out
    assert "product photo of Sourdough: a rye loaf!!" in out
    status = run_cli("status").out
    assert "product[B-1]" in status and "pending regenerate" in status

    (root / "data/products.csv").write_text(CSV)
    assert run_cli("plan").out.startswith("No changes")
    assert run_cli("plan").out.startswith("No changes")
    (root / "posts/b.md").write_text("---\ntitle: B\n---\n")  # a new post: its folder changed
    out = run_cli("plan").out
    assert "cover[b]  create" in out
    assert "cover[b]" in run_cli("status").out


def test_a_data_file_edited_while_the_plan_reads_it_is_seen_by_the_next(
    project, run_cli, monkeypatch
):
    from nebula_build.core import rowimages
    from nebula_build.engine import noop

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    manifest = nebula_manifest({"product": PRODUCT}).replace('"nebula"', '"preview"', 1)
    root = project({"images.toml": manifest, "data/products.csv": CSV})
    assert run_cli("apply").code == 0
    (root / noop.SNAPSHOT).unlink(missing_ok=True)
    (root / ".nebula-build/specs.json").unlink()
    real = rowimages.parse

    def parse_then_edit(*args, **kwargs):
        table = real(*args, **kwargs)  # saved just after the plan read it
        (root / "data/products.csv").write_text(CSV.replace("Sourdough", "Rye bread"))
        return table

    monkeypatch.setattr(rowimages, "parse", parse_then_edit)
    assert "No changes" in run_cli("plan").out
    monkeypatch.setattr(rowimages, "parse", real)
    assert noop.unchanged(str(root), "images.toml", None) is None
    assert "product photo of Rye bread" in run_cli("plan").out


def test_the_readme_snippet_builds_from_the_examples_data(project, run_cli):
    import re
    import shutil

    repo = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```toml\n(.*?)```", (repo / "README.md").read_text(), re.DOTALL)
    snippet = next(block for block in blocks if 'rows = "data/products.csv"' in block)
    head = (
        'version = 1\n[defaults]\nbackend = "preview"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    )
    root = project({"images.toml": head + snippet})
    for folder in ("data", "content"):
        shutil.copytree(repo / "examples/static-site" / folder, root / folder)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "product[tea-green]  create" in out and "cover[winter-menu]  create" in out


def test_posts_in_the_projects_own_folder_are_cached_like_any(project, run_cli, monkeypatch):
    from nebula_build.engine import prepare as preparing

    images = {"page": {"rows": {"files": "*.md"}, "prompt": "{title}", "output": "img/{slug}.png"}}
    manifest = nebula_manifest(images).replace('backend = "nebula"', 'backend = "preview"')
    root = project({"images.toml": manifest, "about.md": "---\ntitle: About\n---\n"})
    assert "page[about]  create" in run_cli("plan").out
    resolved = []
    real = preparing.resolve
    monkeypatch.setattr(preparing, "resolve", lambda *a, **k: resolved.append(1) or real(*a, **k))
    assert "page[about]  create" in run_cli("plan").out
    assert resolved == []  # answered from the spec cache
    (root / "contact.md").write_text("---\ntitle: Contact\n---\n")
    assert "page[contact]  create" in run_cli("plan").out
    assert resolved == [1]


def test_a_seed_too_large_to_print_from_a_row_is_one_line(project, run_cli):
    """A value of hundreds of digits squared: printing it raised Python's own limit
    (4,300 digits); a longer one is refused before it is computed (600 factors of
    4,000 digits each took 26 s)."""
    product = {**PRODUCT, "rows": "data/n.csv", "seed": "{n} * {n}", "prompt": "x"}
    big = "9" * 450
    project(
        {"images.toml": nebula_manifest({"product": product}), "data/n.csv": f"sku,n\nT-1,{big}\n"}
    )
    code, _, err = run_cli("validate")
    bits = (int(big) ** 2).bit_length()
    assert code == 1 and "Traceback" not in err
    assert f"seed: '{{n}} * {{n}}' gives a number of {bits} bits, outside 0-4294967295" in err
    product["seed"] = "{n}"
    factors = "*".join(["9" * 40] * 30)
    project(
        {
            "images.toml": nebula_manifest({"product": product}),
            "data/n.csv": f"sku,n\nT-1,{factors}\n",
        }
    )
    code, _, err = run_cli("validate")
    assert code == 1 and "seed: '{n}' is over 1,000 characters with its values filled in" in err


@pytest.mark.parametrize("row_id", ["a  b", "x\u2028y", "zw\u200bj", "rtl\u202eevil"])
def test_an_id_a_terminal_shows_otherwise_is_refused(project, run_cli, row_id):
    """`list` and completion would offer a name no one could type back (`a b`), or
    one that hides a part of it."""
    rows = json.dumps([{"sku": row_id, "name": "tea"}])
    product = {**PRODUCT, "rows": "data/p.json", "prompt": "{name}", "output": "img/{name}.png"}
    project({"images.toml": nebula_manifest({"product": product}), "data/p.json": rows})
    code, _, err = run_cli("validate")
    assert code == 1 and "has characters a terminal does not show as they are" in err, err
    assert err.count("\n") == 1


@pytest.mark.parametrize("row_id", ["👩\u200d💻", "می\u200cخواهم", "co\u00adop", "café", "日本"])
def test_ids_whose_invisible_characters_belong_in_the_word_are_kept(project, run_cli, row_id):
    rows = json.dumps([{"sku": row_id, "name": "tea"}])
    product = {**PRODUCT, "rows": "data/p.json", "prompt": "{name}", "output": "img/{name}.png"}
    project({"images.toml": nebula_manifest({"product": product}), "data/p.json": rows})
    code, out, err = run_cli("list")
    assert code == 0 and out.splitlines() == [f"product[{row_id}]"], err


def _problems(out: str) -> list[dict]:
    """The manifest's problems as `--json` gives them (the terminal shows 50)."""
    return json.loads(out)["error"]["problems"]


def test_what_only_finished_declarations_read_is_let_go(project, run_cli, monkeypatch):
    """Every table a resolve read had been kept to its end: two 16 MB CSVs of empty
    fields, five rows kept of each, peaked at 1.18 GB (0.65 GB before they were shared
    and now). The last declaration to read a source lets it go."""
    from nebula_build.core import rowimages

    held = []
    release = rowimages.Sources.release

    def recorded(self, source, still_read):
        release(self, source, still_read)
        held.append((source.path, sorted(s.path for s in self._loaded), sorted(self._documents)))

    monkeypatch.setattr(rowimages.Sources, "release", recorded)
    images = {
        "a1": {**PRODUCT, "output": "a1/{sku}.png"},
        "b": {**PRODUCT, "rows": {"file": "data/b.json", "at": "items"}, "output": "b/{sku}.png"},
        "a2": {**PRODUCT, "output": "a2/{sku}.png"},
    }
    items = [{"sku": "x", "name": "n", "description": "d"}]
    project(
        {
            "images.toml": nebula_manifest(images),
            "data/products.csv": CSV,
            "data/b.json": json.dumps({"items": items}),
        }
    )
    assert run_cli("plan").code == 0
    assert held == [("data/b.json", ["data/products.csv"], []), ("data/products.csv", [], [])]


def test_a_pattern_that_matches_no_post_yet_says_so(project, run_cli):
    images = {
        "cover": {
            "rows": {"files": "content/posts/*.md"},
            "prompt": "{scene}, editorial photo",
            "output": "img/{slug}.png",
        }
    }
    root = project({"images.toml": nebula_manifest(images), "content/posts/.keep": ""})
    code, _, err = run_cli("plan")
    assert code == 1
    # it had said the folder "has" {slug}, {path} and {excerpt}, as if the posts lacked it
    assert err == (
        "error: images.toml:15:1: images.cover.prompt: unknown placeholder {scene} "
        "(content/posts/*.md matches no post yet, whose front matter gives fields; known: "
        "{slug}, {path}, {excerpt})\n"
    )
    (root / "content/posts/first.md").write_text("---\nscene: a kite\n---\nx\n")
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == ["cover[first]"]


@pytest.mark.parametrize(
    ("where", "said"), [(None, "hero"), ("not draft", "hero and (not draft)")], ids=["", "where"]
)
def test_a_post_missing_a_field_says_the_ways_to_settle_it(project, run_cli, where, said):
    """Before: only `column 'hero' is missing (the image uses it)`."""
    cover = {
        "rows": {"files": "content/posts/*.md"},
        "prompt": "{hero}, editorial photo",
        "output": "img/{slug}.png",
    }
    if where is not None:
        cover |= {"rows": {"files": "content/posts/*.md", "defaults": {"draft": False}}}
        cover["where"] = where
    root = project(
        {
            "images.toml": nebula_manifest({"cover": cover}),
            "content/posts/about-us.md": "---\ntitle: About us\n---\nHello.\n",
            "content/posts/spring.md": "---\ntitle: Spring\nhero: a field\n---\nHello.\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: content/posts/about-us.md:1: images.cover: column 'hero' is missing (the "
        "image uses it); set hero in this post's front matter, give it a default (rows = "
        f'{{ …, defaults = {{ hero = "…" }} }}), or leave such posts out (where = "{said}")\n'
    )
    text = (root / "images.toml").read_text()
    (root / "images.toml").write_text(
        text.replace("[images.cover]", '[images.cover]\nwhere = "hero"')
        if where is None
        else text.replace(f'where = "{where}"', f'where = "{said}"')
    )
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == ["cover[spring]"]


@pytest.mark.parametrize(
    "front", ['scene: ""', "scene:", "scene: '  '"], ids=["quoted", "bare", "spaces"]
)
def test_a_post_with_an_empty_field_says_the_ways_out(project, run_cli, front):
    """Before: only `column 'scene' is empty (the image uses it)`."""
    cover = {"rows": {"files": "posts/*.md"}, "prompt": "{scene}", "output": "img/{slug}.png"}
    root = project(
        {
            "images.toml": nebula_manifest({"cover": cover}),
            "posts/a.md": f"---\ntitle: A\n{front}\n---\nHello.\n",
            "posts/b.md": "---\nscene: a kite\n---\nHello.\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: posts/a.md:3:1: images.cover: column 'scene' is empty (the image uses it); "
        "set scene in this post's front matter, give it a default (rows = { …, defaults = "
        '{ scene = "…" } }), or leave such posts out (where = "scene")\n'
    )
    text = (root / "images.toml").read_text()
    (root / "images.toml").write_text(
        text.replace("[images.cover]", '[images.cover]\nwhere = "scene"')
    )
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == ["cover[b]"]


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ("data/p.json", '{ file = "data/p.json", defaults'),
        ({"file": "data/p.json"}, "{ …, defaults"),
    ],
    ids=["path", "table"],
)
def test_a_json_row_missing_a_field_says_the_ways_out(project, run_cli, rows, said):
    """Before: only `column 'name' is missing (the image uses it)`; a plain path of rows
    is shown as the table that takes defaults."""
    product = {"rows": rows, "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    root = project(
        {
            "images.toml": nebula_manifest({"product": product}),
            "data/p.json": '[{"sku": "a", "name": "tea"}, {"sku": "b"}]',
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: data/p.json:1:31: images.product: column 'name' is missing (the image uses "
        f'it); set name in this row, give it a default (rows = {said} = {{ name = "…" }} }}), '
        'or leave such rows out (where = "name")\n'
    )
    text = (root / "images.toml").read_text()
    (root / "images.toml").write_text(text.replace('id = "sku"', 'id = "sku"\nwhere = "name"'))
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == ["product[a]"]


def test_a_row_missing_its_id_is_offered_no_default(project, run_cli):
    """The `id` takes no default: the hint had offered one all the same, for a post."""
    cover = {
        "rows": {"files": "posts/*.md"},
        "id": "title",
        "prompt": "x",
        "output": "img/{slug}.png",
    }
    project(
        {
            "images.toml": nebula_manifest({"cover": cover}),
            "posts/a.md": "---\nscene: a\n---\n",
            "posts/b.md": "---\ntitle: B\n---\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: posts/a.md:1: images.cover: column 'title' is missing (the image uses it); "
        'set title in this post\'s front matter or leave such posts out (where = "title")\n'
    )


def test_a_where_with_quotes_is_offered_as_toml_that_reads(project, run_cli):
    """A `where` holding double quotes had been offered inside double quotes."""
    cover = {
        "rows": {"files": "posts/*.md"},
        "where": 'title != "x"',
        "prompt": "{scene}",
        "output": "img/{slug}.png",
    }
    project(
        {
            "images.toml": nebula_manifest({"cover": cover}),
            "posts/a.md": "---\ntitle: A\n---\n",
            "posts/b.md": "---\ntitle: B\nscene: a kite\n---\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.endswith("""or leave such posts out (where = 'scene and (title != "x")')\n"""), err


def test_hugos_section_page_with_an_empty_field_says_how_to_leave_it_out(project, run_cli):
    """A section page with no text has an empty `excerpt`: it had been told to set
    excerpt in its front matter, not that it is no post."""
    cover = {
        "rows": {"files": "content/posts/*.md"},
        "prompt": "{title}",
        "alt": "{excerpt}",
        "output": "img/{slug}.png",
    }
    project(
        {
            "images.toml": nebula_manifest({"cover": cover}),
            "content/posts/_index.md": "---\ntitle: Posts\n---\n",
            "content/posts/spring.md": "---\ntitle: Spring\n---\nBlossoms.\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: content/posts/_index.md:1: images.cover: column 'excerpt' is empty (the "
        "image uses it); a section's _index.md is no post: `[!_]*.md` in place of `*.md` "
        "in the pattern leaves it out\n"
    )


def test_a_data_file_named_index_is_no_section_page(project, run_cli):
    product = {
        "rows": "data/_index.json",
        "id": "sku",
        "prompt": "{name}",
        "output": "img/{sku}.png",
    }
    project(
        {
            "images.toml": nebula_manifest({"product": product}),
            "data/_index.json": '[{"sku": "a", "name": "tea"}, {"sku": "b"}]',
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert "_index.md is no post" not in err and "set name in this row" in err, err


def test_hugos_section_page_says_how_to_leave_it_out(project, run_cli):
    images = {
        "cover": {
            "rows": {"files": ["content/posts/*.md", "content/posts/*/index.md"]},
            "prompt": "{scene}, editorial photo",
            "output": "img/{slug}.png",
        }
    }
    root = project(
        {
            "images.toml": nebula_manifest(images),
            "content/posts/_index.md": "---\ntitle: Posts\n---\n",
            "content/posts/spring.md": "---\nscene: blossoms\n---\nx\n",
            "content/posts/kite/index.md": "---\nscene: a kite\n---\nx\n",
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    # it had said only that the column is missing
    assert err == (
        "error: content/posts/_index.md:1: images.cover: column 'scene' is missing (the "
        "image uses it); a section's _index.md is no post: `[!_]*.md` in place of `*.md` "
        "in the pattern leaves it out\n"
    )
    text = (root / "images.toml").read_text()
    (root / "images.toml").write_text(text.replace("content/posts/*.md", "content/posts/[!_]*.md"))
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == ["cover[kite]", "cover[spring]"]


def test_an_id_that_names_another_column_says_the_images_took_other_ids(project, run_cli):
    """Before: each image of the old ids was deleted because "its row is gone from the
    data, or filtered out", though every row was still there."""
    manifest = nebula_manifest({"product": PRODUCT}).replace('"nebula"', '"preview"')
    root = project({"images.toml": manifest, "data/products.csv": CSV})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest.replace('id = "sku"', 'id = "name"'))
    out = run_cli("plan").out
    assert "its row is gone" not in out
    assert (
        "> product[Green tea]  rename  static/products/T-1.png\n"
        "      renamed from product[T-1] (the file already holds this output)\n"
    ) in out, out
    data = (root / "data/products.csv").read_text()
    (root / "data/products.csv").write_text(data.replace("T-2,Black tea,", "T-2,Oolong,"))
    out = run_cli("plan").out  # its output path is T-2's: renamed, and made anew
    assert "~ product[Oolong]  regenerate  static/products/T-2.png\n" in out, out
    assert "      renamed from product[T-2]; prompt changed\n" in out, out
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "static/products").iterdir()) == [
        "B-1.png",
        "T-1.png",
        "T-2.png",
    ]


def test_two_rows_gone_that_share_a_generation_are_not_both_said_to_be_a_new_one(project, run_cli):
    """Rows a and b (one prompt, one seed) removed, row c added with that prompt: both
    were deleted because "its image is now product[c]", which one of them at most is."""
    manifest = (
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n'
        '[images.product]\nrows = "data/p.csv"\nid = "sku"\nseed = 1\n'
        'prompt = "{description}"\noutput = "out/{sku}.png"\n'
    )
    root = project({"images.toml": manifest, "data/p.csv": "sku,description\na,tea\nb,tea\n"})
    assert run_cli("apply").code == 0
    (root / "data/p.csv").write_text("sku,description\nc,tea\n")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "is now product[c]" not in out
    assert out.count("its row is gone from the data, or filtered out") == 2, out


def test_a_declaration_whose_rows_make_no_image_says_so(project, run_cli):
    """A `where` that keeps no row (a typo in a value, everything out of stock) is
    said as such, not as each row gone, nor as an atlas's unknown member."""
    product = {**PRODUCT, "where": "stock > 0"}
    manifest = nebula_manifest({"product": product}).replace('"nebula"', '"preview"')
    root = project({"images.toml": manifest, "data/products.csv": CSV})
    assert run_cli("apply").code == 0
    made_none = "images.product makes no image now (its data has no row, or its `where` keeps none)"
    toml = root / "images.toml"
    toml.write_text(toml.read_text().replace("stock > 0", "stock > 100"))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert out.count(made_none) == 2 and "its row is gone" not in out

    toml.write_text(
        toml.read_text() + '\n[atlases.shop]\nimages = ["product[*]"]\noutput = "s.png"\n'
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.strip() == (
        "error: images.toml:21:1: atlases.shop.images: the atlas has no member: product[*] "
        "matches no image, as images.product makes none now (its data has no row, or its "
        "`where` keeps none); list another image, or remove the atlas"
    )
    toml.write_text(
        toml.read_text().replace('["product[*]"]', '["product[*]", "logo"]')
        + '\n[images.logo]\nprompt = "a logo"\noutput = "logo.png"\n'
    )
    assert run_cli("apply").code == 0
    assert list(json.loads((root / "s.json").read_text())["frames"]) == ["logo"]

    (root / "images.lock").unlink()
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert err.count("note: images.product makes no image (its data has no row, or its") == 1


def test_a_csv_saved_with_spaces_after_its_commas_changes_nothing(project, run_cli):
    """`a, b` as a spreadsheet or a person writes it: the values are `a` and `b`, as the
    header's names are, so saving the file so pays for nothing."""
    manifest = nebula_manifest({"product": PRODUCT}).replace('"nebula"', '"preview"')
    root = project({"images.toml": manifest, "data/products.csv": CSV})
    assert run_cli("apply").code == 0
    spaced = (
        "sku, name, description, category, price, stock\n"
        "T-1, Green tea, a cup of green tea, tea, 4.5, 12 \n"
        'T-2, Black tea, "a pot of black tea, steaming", tea, 5, 3\n'
        "B-1, Sourdough, a round loaf , bread, 6, 0\n"
    )
    (root / "data/products.csv").write_text(spaced)
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_prompt_that_changed_only_in_its_spaces_says_so(project, run_cli):
    manifest = nebula_manifest({"product": PRODUCT}).replace('"nebula"', '"preview"')
    root = project({"images.toml": manifest, "data/products.csv": CSV})
    assert run_cli("apply").code == 0
    (root / "data/products.csv").write_text(CSV.replace("a round loaf", "a round  loaf"))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "only spaces differ (the same words, spaced or broken otherwise)" in out
    assert out.count("only spaces differ") == 1


def test_a_spreadsheet_s_rows_of_empty_cells_are_skipped_as_blank_lines(project, run_cli):
    """Excel saves rows it once formatted as `,,,,,`: no row, as a blank line is none."""
    manifest = nebula_manifest({"product": PRODUCT}).replace('"nebula"', '"preview"')
    project({"images.toml": manifest, "data/products.csv": CSV + ",,,,,\n  , ,,,,\n"})
    assert set(plan_actions(run_cli)) == {"product[T-1]", "product[T-2]", "product[B-1]"}
