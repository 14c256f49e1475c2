"""What an attacker's review of images from data (issue 17) found, through the CLI."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import nebula_manifest
from tests.live.pagedata import card


def plan_json(run_cli) -> dict[str, str]:
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return {a["image"]: a["action"] for a in json.loads(out)["actions"]}


def test_a_new_id_column_keeps_the_files_the_old_ids_wrote(project, run_cli, nebula_server):
    csv = "sku,code,name\na,a,Green tea\nb,b,Black tea\n"
    product = {"rows": "data/p.csv", "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    root = project({"images.toml": nebula_manifest({"p": product}), "data/p.csv": csv})
    assert run_cli("apply").code == 0
    before = {p.name: p.read_bytes() for p in (root / "img").iterdir()}
    assert sorted(before) == ["a.png", "b.png"]

    renamed = csv.replace("sku,code", "sku,Code").replace("a,a", "a,A")
    root.joinpath("data/p.csv").write_text(renamed)
    manifest = nebula_manifest({"p": {**product, "id": "Code"}})
    root.joinpath("images.toml").write_text(manifest)
    nebula_server.reset_counters()
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert "0 failed" in out and "disappeared" not in out + err
    assert {p.name: p.read_bytes() for p in (root / "img").iterdir()} == before
    assert nebula_server.generations == []
    assert set(plan_json(run_cli).values()) == {"noop"}
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "img").iterdir()) == ["a.png", "b.png"]


def test_a_renamed_image_keeping_its_output_keeps_its_file(project, run_cli, nebula_server):
    hero = {"prompt": "a castle", "output": "img/hero.png"}
    root = project({"images.toml": nebula_manifest({"a": hero})})
    assert run_cli("apply").code == 0
    data = (root / "img/hero.png").read_bytes()

    root.joinpath("images.toml").write_text(nebula_manifest({"b": hero}))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "img/hero.png" in out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert (root / "img/hero.png").read_bytes() == data
    assert set(plan_json(run_cli).values()) == {"noop"}


def _plan_fails(run_cli, *expected: str) -> str:
    code, out, err = run_cli("plan")
    assert code == 1, out + err
    assert "Traceback" not in err
    for message in expected:
        assert message in err, err
    return err


DEEP = 5000 * "[" + 5000 * "]"
POST = {"rows": {"files": "posts/*.md"}, "prompt": "cover for {title}", "output": "img/{slug}.png"}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("data/p.json", f'[{{"sku": "a", "name": "A", "x": {DEEP}}}]'),
        ("data/p.jsonl", f'{{"sku": "a", "name": "A", "x": {DEEP}}}\n'),
        ("data/p.json", '[{"sku": "a", "name": "A", "x": ' + 600 * "[" + 600 * "]" + "}]"),
    ],
)
def test_deeply_nested_data_is_one_line_or_a_table(project, run_cli, name, text):
    product = {"rows": name, "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    project({"images.toml": nebula_manifest({"p": product}), name: text})
    code, out, err = run_cli("plan")
    assert "Traceback" not in err and "RecursionError" not in err
    if code == 1:  # too deep for the parser: one line naming the file
        assert f"{name}:1: images.p: invalid JSON: nested too deep" in err, err
    else:  # a column no template uses may be a nested table
        assert "p[a]" in out


@pytest.mark.parametrize(
    ("post", "message"),
    [
        ("---\ntitle: A\nx: " + 600 * "[" + 600 * "]" + "\n---\n", None),
        ("+++\ntitle = 'A'\nx = " + 100 * "[" + 100 * "]" + "\n+++\n", None),
        ("+++\ntitle = 'A'\nx = " + 5000 * "[" + 5000 * "]" + "\n+++\n", "nested too deep"),
        ("---\ntitle: A\nx: &a [*a]\n---\n", "posts/a.md:3:8: images.cover: the YAML front "),
    ],
)
def test_deep_front_matter_is_one_line_or_a_table(project, run_cli, post, message):
    project({"images.toml": nebula_manifest({"cover": POST}), "posts/a.md": post})
    if message is None:
        code, out, err = run_cli("plan")
        assert code == 0, err
        assert "cover[a]" in out
    else:
        _plan_fails(run_cli, message)


def test_yaml_aliases_are_refused_before_they_expand(project, run_cli):
    laughs = ["---", "title: A", 'a0: "lol"']
    laughs += [f"a{i}: [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 11)]
    project(
        {
            "images.toml": nebula_manifest({"cover": POST}),
            "posts/a.md": "\n".join([*laughs, "---", "x"]),
            "posts/b.md": "---\nbig: &big "
            + "x" * 1_000_000
            + "\ntitle: ["
            + "*big, " * 500
            + "*big]\n---\n",
        }
    )
    _plan_fails(
        run_cli,
        "posts/a.md:4:6: images.cover: the YAML front matter uses an alias (*a0)",
        "posts/b.md:3:9: images.cover: the YAML front matter uses an alias (*big)",
    )


def test_a_list_too_long_as_text_is_refused_before_it_is_joined(project, run_cli):
    product = {"rows": "data/p.json", "id": "sku", "prompt": "{tags}", "output": "img/{sku}.png"}
    rows = [{"sku": "a", "tags": ["x" * 1000] * 20}]
    project({"images.toml": nebula_manifest({"p": product}), "data/p.json": json.dumps(rows)})
    _plan_fails(run_cli, "images.p: column 'tags' is a list longer than 10,000 characters as text")


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ("- a", "posts/b.md:2: images.cover: the front matter is not a table of fields"),
        ("just a scalar", "posts/b.md:2: images.cover: the front matter is not a table of fields"),
        (
            'title: !!python/object/apply:os.system ["id"]',
            "posts/b.md:2:8: images.cover: the YAML front matter does not parse",
        ),
    ],
)
def test_a_post_that_does_not_parse_is_reported_before_its_missing_fields(
    project, run_cli, front, message
):
    project(
        {
            "images.toml": nebula_manifest({"cover": POST}),
            "posts/a.md": "no front matter\n",
            "posts/b.md": f"---\n{front}\n---\n",
        }
    )
    err = _plan_fails(run_cli, message)
    assert "unknown placeholder" not in err


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("2026-02-30", "4:7: {} '2026-02-30' is not a date (2026-01-31, or 2026-01-31 12:00:00)"),
        ("2001-12-14 25:00:00", "4:7: {} '2001-12-14 25:00:00' is not a date"),
        ("2026-01-01 10:00:00 +99:00", "4:7: {} '2026-01-01 10:00:00 +99:00' is not a date"),
        ("!!timestamp x", "4:7: {} 'x' is not a date"),
        ("!!bool maybe", "4:7: {} 'maybe' is not true or false"),
        ("!!bool", "4:7: {} '' is not true or false"),
        ("!!int", "4:7: {} '' is not a whole number"),
        ("!!int abc", "4:7: {} 'abc' is not a whole number"),
        ("!!float", "4:7: {} '' is not a number"),
        (
            "a\x01b",
            "4:8: images.cover: the YAML front matter may not hold the control character U+0001",
        ),
        (  # libyaml counts bytes: four é had put it at 4:16
            "\u00e9\u00e9\u00e9\u00e9a\x07b",
            "4:12: images.cover: the YAML front matter may not hold the control character U+0007",
        ),
        ("!!map x", "4:7: {} '!!map' on a value that is no table"),  # had been a traceback
        ("[!!map x]", "4:8: {} '!!map' on a value that is no table"),
    ],
)
def test_a_value_yaml_reads_and_python_refuses_is_one_line_at_its_place(
    project, run_cli, value, said
):
    """A date that does not exist (`2026-02-30`), an hour of 25 or `!!bool maybe` in
    any field of any post was a traceback from validate, plan and apply; `!!int abc`
    said "a number too large"; a control character was two lines, said at line 1."""
    project(
        {
            "images.toml": nebula_manifest({"cover": POST}),
            "posts/a.md": f"---\ntitle: A\nscene: x\ndate: {value}\n---\nbody\n",
        }
    )
    for command in ("validate", "plan"):
        code, out, err = run_cli(command)
        does_not_parse = "images.cover: the YAML front matter does not parse:"
        assert (code, out) == (1, ""), err
        assert err.startswith(f"error: posts/a.md:{said.format(does_not_parse)}"), err
        assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("n > 1", ["big", "two"]),
        ("n == 1", ["one"]),
        ("n in [1, 3]", ["one"]),
        (f"n == {10**400}", ["big"]),
        (f"n in [{10**400}]", ["big"]),
        ("n < 2.5", ["one", "two"]),
    ],
)
def test_a_huge_integer_compares_as_an_integer(project, run_cli, where, expected):
    product = {"rows": "data/p.jsonl", "id": "sku", "prompt": "{sku}", "output": "img/{sku}.png"}
    rows = [{"sku": "big", "n": 10**400}, {"sku": "one", "n": 1}, {"sku": "two", "n": 2}]
    project(
        {
            "images.toml": nebula_manifest({"p": {**product, "where": where}}),
            "data/p.jsonl": "\n".join(json.dumps(row) for row in rows),
        }
    )
    assert sorted(name[2:-1] for name in plan_json(run_cli)) == expected


def test_a_huge_yaml_integer_compares_as_an_integer(project, run_cli):
    cover = {**POST, "prompt": "{slug}", "where": "n > 1"}
    project(
        {
            "images.toml": nebula_manifest({"cover": cover}),
            "posts/big.md": f"---\nn: {10**400}\n---\n",
            "posts/one.md": "---\nn: 1\n---\n",
        }
    )
    assert list(plan_json(run_cli)) == ["cover[big]"]


def test_a_filter_too_costly_for_the_rows_is_refused_at_once(project, run_cli):
    csv = "name\n" + "".join(f"n{i}\n" for i in range(60_000))
    slow = " or ".join(["name=='zz'"] * 70)
    product = {"rows": "data/p.csv", "id": "name", "prompt": "{name}", "output": "img/{name}.png"}
    project({"images.toml": nebula_manifest({"p": {**product, "where": slow}}), "data/p.csv": csv})
    _plan_fails(
        run_cli,
        "images.p.where: 70 comparisons on each of 60,000 rows is more than nebula-build "
        "evaluates (2,000,000 in all)",
    )


def test_a_long_in_list_is_one_lookup_per_row(project, run_cli):
    csv = "name\n" + "".join(f"{i}\n" for i in range(60_000))
    wanted = ",".join(str(i * 1000) for i in range(60))
    product = {"rows": "data/p.csv", "id": "name", "prompt": "{name}", "output": "img/{name}.png"}
    where = f"name in [{wanted}] and name not in ['1000', 2000.0]"
    project({"images.toml": nebula_manifest({"p": {**product, "where": where}}), "data/p.csv": csv})
    names = plan_json(run_cli)
    assert len(names) == 58, names
    assert "p[0]" in names and "p[1000]" not in names and "p[2000]" not in names


def test_an_unknown_placeholder_lists_a_few_of_a_million_columns(project, run_cli):
    row = {**{f"c{i}": 1 for i in range(100_000)}, "sku": "a", "x" * 500: 1}
    product = {"rows": "data/p.json", "id": "sku", "prompt": "{nme}", "output": "img/{sku}.png"}
    project({"images.toml": nebula_manifest({"p": product}), "data/p.json": json.dumps([row])})
    err = _plan_fails(run_cli, "unknown placeholder {nme} (data/p.json has: {c0}, {c1}, ")
    assert "{c29}, … (99,972 more))" in err
    assert len(err) < 1000


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "data/p.json",
            '[\n {"sku": "a", "name": "A}"},\n {"sku": "b",\n  "name": "B", "sku": "c"}\n]',
            "data/p.json:4:16: images.p: invalid JSON: key 'sku' appears twice in one object",
        ),
        (  # it had ended in a traceback: the key of the spec could not be written
            "data/p.json",
            '[{"sku": "a", "name": "\\ud83d\\ude00"},\n {"sku": "b", "name": "B \\ud800"}]',
            "data/p.json:2:26: images.p: invalid JSON: \\ud800 is half of a UTF-16 pair, "
            "which no text holds alone",
        ),
        (
            "data/p.jsonl",
            '{"sku": "a", "name": "\\udc00"}\n',
            "data/p.jsonl:1:23: images.p: invalid JSON: \\udc00 is half of a UTF-16 pair",
        ),
        (
            "data/p.jsonl",
            '{"sku": "a", "name": "A"}\n{"sku": "b", "name": "B", "name": "C"}\n',
            "data/p.jsonl:2:27: images.p: invalid JSON: key 'name' appears twice in one object",
        ),
        ("data/p.csv", "sku,name\na,A\n*,B\n", "data/p.csv:3:1: images.p: id column 'sku': '*'"),
    ],
)
def test_a_duplicate_key_or_an_id_of_star_is_refused(project, run_cli, name, text, message):
    product = {"rows": name, "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    project({"images.toml": nebula_manifest({"p": product}), name: text})
    _plan_fails(run_cli, message)


@pytest.mark.parametrize("blank", [b"\n\n", b"\r\n"])
def test_blank_lines_before_a_csv_header_are_skipped(project, run_cli, blank):
    product = {"rows": "data/p.csv", "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    files = {
        "images.toml": nebula_manifest({"p": product}),
        "data/p.csv": blank + b"sku,name\na,A\n",
    }
    project(files)
    assert plan_json(run_cli) == {"p[a]": "create"}
    Path("data/p.csv").write_bytes(blank + b"sku,sku\na,A\n")
    _plan_fails(
        run_cli, f"data/p.csv:{blank.count(10) + 1}:5: images.p: column 'sku' is named twice"
    )


@pytest.mark.parametrize(
    ("data", "where"),
    [("sku,name\na,A\nb,B\n", "name == 'none'"), ("sku,name\n", None)],
)
def test_every_row_gone_reads_as_no_image_made(project, run_cli, nebula_server, data, where):
    product = {"rows": "data/p.csv", "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    root = project(
        {"images.toml": nebula_manifest({"p": product}), "data/p.csv": "sku,name\na,A\nb,B\n"}
    )
    assert run_cli("apply").code == 0
    if where is not None:
        root.joinpath("images.toml").write_text(nebula_manifest({"p": {**product, "where": where}}))
    root.joinpath("data/p.csv").write_text(data)
    for _ in range(2):  # resolved, then from the spec cache
        code, out, err = run_cli("plan")
        assert code == 0, err
        made_none = "images.p makes no image now (its data has no row, or its `where` keeps none)"
        assert out.count(made_none) == 2, out
        assert "removed from the manifest" not in out and "its row is gone" not in out


def test_an_atlas_may_take_the_path_of_an_image_removed(project, run_cli, nebula_server):
    coin = {"prompt": "a coin", "output": "img/coin.png"}
    root = project(
        {
            "images.toml": nebula_manifest(
                {"a": {"prompt": "a castle", "output": "img/s.png"}, "m": coin}
            )
        }
    )
    assert run_cli("apply").code == 0
    castle = (root / "img/s.png").read_bytes()
    atlas = '\n[atlases.s]\nimages = ["m"]\noutput = "img/s.png"\n'
    root.joinpath("images.toml").write_text(nebula_manifest({"m": coin}) + atlas)
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert (root / "img/s.png").read_bytes() != castle
    assert set(plan_json(run_cli).values()) == {"noop"}


# An id from the data is part of the image's name: a command shown with that name must
# give the name back to a shell as one word, and run nothing of it.
EVIL = "j[x;touch PWNED;]"
EVIL_ROWS = {"rows": "data/j.json", "id": "id", "prompt": "{name}", "output": "img/{file}.png"}


def _evil_project(project, *, candidates: int = 2) -> Path:
    rows = [{"id": "x;touch PWNED;", "name": "a lighthouse", "file": "a"}]
    declaration = {**EVIL_ROWS, "candidates": candidates}
    return project(
        {"images.toml": nebula_manifest({"j": declaration}), "data/j.json": json.dumps(rows)}
    )


def _commands(text: str) -> list[list[str]]:
    """Each `nebula-build …` command a message shows, as a shell splits it."""
    return [shlex.split(command) for command in re.findall(r"`(nebula-build [^`]*)`", text)]


def test_a_draws_pick_command_in_the_gallery_quotes_an_image_name_from_data(
    project, run_cli, nebula_server
):
    root = _evil_project(project)
    assert run_cli("apply").code == 0
    code, _, err = run_cli("gallery")
    assert code == 0, err
    page = (root / ".nebula-build/gallery/index.html").read_text()
    commands = [draw["command"] for draw in card(page, EVIL)["draws"]]
    assert commands == [f"nebula-build pick '{EVIL}' 0", f"nebula-build pick '{EVIL}' 1"]
    assert [shlex.split(c) for c in commands] == [
        ["nebula-build", "pick", EVIL, "0"],
        ["nebula-build", "pick", EVIL, "1"],
    ]


def test_commands_shown_for_a_pinned_image_quote_its_name_from_data(
    project, run_cli, nebula_server
):
    root = _evil_project(project)
    assert run_cli("apply").code == 0
    data = root / "data/j.json"
    data.write_text(data.read_text().replace("a lighthouse", "a windmill"))
    assert run_cli("apply").code == 0
    unpin = ["nebula-build", "pick", "--unpin", EVIL]

    code, out, err = run_cli("history", EVIL)
    assert code == 0, err
    assert f"bring one back: nebula-build pick '{EVIL}' @K" in out
    assert f"or nebula-build pick --pin '{EVIL}' @K" in out
    code, _, err = run_cli("pick", EVIL, "@5")
    assert code == 1
    assert ["nebula-build", "history", EVIL] in _commands(err)
    code, _, err = run_cli("pick", EVIL, "--pin")
    assert code == 1
    assert ["nebula-build", "pick", "--pin", EVIL, "@K"] in _commands(err)

    assert run_cli("pick", EVIL, "@1", "--pin").code == 0
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert unpin in _commands(out)
    code, _, err = run_cli("apply", "--replace", EVIL)
    assert code == 1
    assert unpin in _commands(err)
    assert run_cli("gallery").code == 0
    shown = card((root / ".nebula-build/gallery/index.html").read_text(), EVIL)
    assert shlex.split(shown["draws"][0]["command"]) == unpin
    assert f"(pick --unpin '{EVIL}')" in shown["status_text"]
    assert not (root / "PWNED").exists()


def test_the_hint_to_make_more_draws_quotes_an_image_name_from_data(project, run_cli):
    _evil_project(project, candidates=1)
    code, _, err = run_cli("pick", EVIL, "1")
    assert code == 1
    assert ["nebula-build", "apply", "--more", EVIL] in _commands(err)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("data/p.json", '[{"sku": "a", "name": 1e400}]', "data/p.json:1:23: images.p: column"),
        ("data/p.jsonl", '{"sku": "a", "name": -1e999}\n', "column 'name' is -inf, not"),
        (
            "posts/a.md",
            "+++\nsku = 'a'\nname = inf\n+++\n",
            "column 'name' is inf, not",
        ),
    ],
)
def test_a_number_beyond_a_float_is_refused_not_written_as_inf(
    project, run_cli, name, text, message
):
    """JSON's `1e400` (and TOML front matter's `inf`) parse as infinity: a prompt made
    of them said "inf", as if the data had said so."""
    rows: object = {"files": "posts/*.md"} if name.endswith(".md") else name
    product = {"rows": rows, "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    project({"images.toml": nebula_manifest({"p": product}), name: text})
    _plan_fails(run_cli, message, "inf, not a number a prompt can say")


def test_a_json_number_of_a_million_digits_is_one_line_without_python_advice(project, run_cli):
    product = {"rows": "data/p.json", "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    text = '[{"sku": "a", "name": ' + "7" * 1_000_000 + "}]"
    project({"images.toml": nebula_manifest({"p": product}), "data/p.json": text})
    said = "data/p.json:1: images.p: invalid JSON: a number of 1,000,000 digits"
    err = _plan_fails(run_cli, said)
    assert "sys.set_int_max_str_digits" not in err and len(err) < 300


@pytest.mark.parametrize("value", ["!!binary aGVsbG8=", "!!set {a, b}", "{a: 1}"])
def test_a_value_that_is_not_text_says_what_it_may_be(project, run_cli, value):
    """`title: !!binary aGVsbG8=` was said to be "a table of values" (an attacker's
    review): bytes and sets are no tables."""
    project(
        {
            "images.toml": nebula_manifest({"cover": POST}),
            "posts/a.md": f"---\ntitle: {value}\nscene: x\n---\nbody\n",
        }
    )
    _plan_fails(run_cli, "column 'title' is a table, a set or binary data, not text")
