"""Selecting images by name: --target, --replace and an atlas's `images`, through the
CLI: a `*` matches the values each image was made from, and a hostile atlas stays cheap."""

from __future__ import annotations

import json
from functools import cached_property

import pytest

from tests.cli.test_rows import CSV
from tests.cli.test_rows_matrix import SHOTS, preview

KEY = "e40164619ad0f1e2faabff4fbb2da4e9b617d5d760714c4262e0925f8565e3e7"
COMMAS = {
    "matrix": {"k": ["a,b", "c"], "s": [1, 2]},
    "prompt": "{k} {s}",
    "output": "m/{index}.png",
}


def chosen(run_cli, *args: str) -> list[str]:
    code, out, err = run_cli("plan", "--json", *args)
    assert code == 0, err
    return [a["image"] for a in json.loads(out)["actions"] if a["image"].startswith("m[")]


def refused(run_cli, *args: str) -> str:
    code, _, err = run_cli(*args)
    assert code == 1
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def atlas(*images: str) -> str:
    listed = ", ".join(json.dumps(image) for image in images)
    return f'\n[atlases.sheet]\nimages = [{listed}]\noutput = "sheet.png"\n'


def test_a_star_matches_values_that_have_a_comma(project, run_cli):
    root = project({"images.toml": preview({"m": COMMAS}) + atlas("m[*,1]")})
    assert chosen(run_cli, "--replace", "m[*,1]", "--target", "m[*,1]") == ["m[a,b,1]", "m[c,1]"]
    assert chosen(run_cli, "--target", "m[c,*]") == ["m[c,1]", "m[c,2]"]
    assert "unknown image: m[a,*,1]" in refused(run_cli, "plan", "--target", "m[a,*,1]")
    code, _, err = run_cli("apply")
    assert code == 0, err
    frames = json.loads((root / "sheet.json").read_text())["frames"]
    assert sorted(frames) == ["m[a,b,1]", "m[c,1]"]  # no frame lost


def test_a_star_never_splits_a_rows_id(project, run_cli):
    posts = {"rows": "data/p.csv", "id": "id", "prompt": "{id}", "output": "p/{n}.png"}
    project({"images.toml": preview({"p": posts}), "data/p.csv": 'id,n\n"c,d",1\ne,2\n'})
    for pattern in ("p[c,*]", "p[*,d]"):
        assert f"unknown image: {pattern}" in refused(run_cli, "plan", "--target", pattern)
    code, out, err = run_cli("plan", "--json", "--target", "p[*]")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == ["p[c,d]", "p[e]"]


def test_keys_and_names_are_unchanged(project, run_cli):
    enemy = {"matrix": {"kind": ["slime"], "pose": ["idle"]}, "prompt": "a {kind}, {pose}"}
    project({"images.toml": preview({"enemy": {**enemy, "output": "e/{kind}-{pose}.png"}})})
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    (action,) = json.loads(out)["actions"]
    assert action["image"] == "enemy[slime,idle]"
    assert action["generation_key"] == KEY  # as main made it, before values were recorded


MANY = 1000  # the most an atlas lists: each one a pattern with a `*`
PATTERNS = [f"m[*,v{i}]" for i in range(MANY)]
WIDE = {
    "matrix": {"k": ["a", "b", "c", "d"], "v": [f"v{i}" for i in range(MANY)]},
    "prompt": "{k}{v}",
}


@pytest.fixture
def indexed(monkeypatch) -> list[int]:
    """How many names each index of values was built over, in order: the cost that
    grew with every pattern and every atlas (bench/select_scale.py times it)."""
    from nebula_build.core import selection

    built: list[int] = []
    build = selection._Index.__dict__["_values"].func

    def counted(index):
        built.append(len(index.names))
        return build(index)

    values = cached_property(counted)
    values.__set_name__(selection._Index, "_values")
    monkeypatch.setattr(selection._Index, "_values", values)
    return built


def test_an_atlas_of_many_wildcards_costs_about_one_pass(project, run_cli, indexed):
    """Each pattern used to scan and split every name: 1,000 of them (500 twice) over
    4,000 images took seconds; now the names are indexed once for them all."""
    m = {**WIDE, "output": "m/{k}-{v}.png"}
    project({"images.toml": preview({"m": m}) + atlas(*PATTERNS[:1])})
    assert run_cli("validate").code == 0
    one = list(indexed)
    assert one and min(one) >= 4_000
    indexed.clear()
    project({"images.toml": preview({"m": m}) + atlas(*PATTERNS[:500], *PATTERNS[:500])})
    code, _, err = run_cli("validate")
    assert code == 0, err
    assert indexed == one


def test_an_atlas_lists_at_most_1000_entries(project, run_cli):
    project(
        {
            "images.toml": preview({"m": {**WIDE, "output": "m/{k}-{v}.png"}})
            + atlas(*PATTERNS, "m[*]")
        }
    )
    err = refused(run_cli, "validate")
    assert "images.toml" in err
    assert "atlases.sheet.images: list should have at most 1000 items" in err, err


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ({"index": ["x", "y"]}, "images.m.matrix.index: 'index' is taken"),
        ({"kind": ["x", "*"]}, "images.m.matrix.kind: '*' cannot be a value"),
    ],
)
def test_a_matrix_key_or_value_the_names_need_is_refused(project, run_cli, matrix, message):
    m = {"matrix": matrix, "prompt": "thing {index}", "output": "m/{index}.png"}
    project({"images.toml": preview({"m": m})})
    assert message in refused(run_cli, "plan")
    product = {**SHOTS, "matrix": matrix, "output": "img/{sku}-{index}.png"}
    project({"images.toml": preview({"m": product}), "data/products.csv": CSV})
    assert message in refused(run_cli, "plan")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output": "img/{index}.png"}, "every row's images would write the same files"),
        ({"output": "img/{shot}.png"}, "every row's images would write the same files"),
        ({"matrix": None, "output": "img/x.png"}, "every row's image would write the same file"),
    ],
)
def test_an_output_that_uses_no_column_beside_rows_is_one_error(project, run_cli, changes, message):
    product = {k: v for k, v in {**SHOTS, **changes}.items() if v is not None}
    if "matrix" not in product:
        product["prompt"], product["seed"] = "photo of {name}", 7
    project({"images.toml": preview({"product": product}), "data/products.csv": CSV})
    err = refused(run_cli, "plan")
    assert f"images.product.output: uses no column of the rows: {message}" in err, err
    assert "put a column in the path ({sku})" in err
    project({"images.toml": preview({"product": {**product, "limit": 1}})})
    assert run_cli("plan").code == 0  # one row: nothing to tell apart


def test_without_a_matrix_a_column_named_index_tells_rows_apart(project, run_cli):
    card = {"rows": "data/cards.csv", "id": "name", "prompt": "a card of {name}", "seed": 3}
    files = {"data/cards.csv": "name,index\nace,1\nking,2\n"}
    project({"images.toml": preview({"card": {**card, "output": "c/{index}.png"}}), **files})
    code, _, err = run_cli("validate")
    assert code == 0, err


def atlases(patterns: list[str]) -> str:
    return "".join(
        f'\n[atlases.s{i}]\nimages = ["{pattern}"]\noutput = "s/{i}.png"\n'
        for i, pattern in enumerate(patterns)
    )


def test_many_atlases_cost_about_one_pass_too(project, run_cli, indexed):
    """The names are indexed once per manifest, not once per atlas: 500 atlases of one
    wildcard each over 4,000 images took seconds."""
    m = {**WIDE, "output": "m/{k}-{v}.png"}
    project({"images.toml": preview({"m": m}) + atlases(PATTERNS[:1])})
    assert run_cli("validate").code == 0
    one = list(indexed)
    indexed.clear()
    project({"images.toml": preview({"m": m}) + atlases(PATTERNS[:500])})
    code, _, err = run_cli("validate")
    assert code == 0, err
    assert indexed == one


def test_an_unknown_name_lists_a_few_known_ones(project, run_cli):
    m = {**WIDE, "output": "m/{k}-{v}.png"}
    project({"images.toml": preview({"m": m}) + atlases([f"nope{i}" for i in range(30)])})
    code, _, err = run_cli("validate")
    assert code == 1 and len(err.splitlines()) == 30
    assert len(err) < 30 * 1000, len(err)  # each line about 400 bytes: not 4,000 names
    assert "unknown image: nope0 (known: m[a,v0], m[a,v1], m[a,v2], " in err
    assert ", … (3,980 more))" in err


@pytest.mark.parametrize("command", ["plan", "apply", "status", "gallery", "list"])
def test_a_mistyped_target_says_which_name_was_meant(project, run_cli, command):
    images = {name: {"prompt": name, "output": f"{name}.png"} for name in ("hero", "icon")}
    project({"images.toml": preview(images)})
    option = [] if command == "list" else ["--target"]
    # an option's names the manifest and the option, as --more does: it had said only
    # "unknown image: zzz", with nothing to show another manifest was meant (-f FILE)
    said = "images.toml: " if command == "list" else "images.toml: --target: "
    # it had listed the known names without pointing at the one meant, as `pick` does
    assert refused(run_cli, command, *option, "herp") == (
        f"error: {said}unknown image: herp (known: hero, icon); did you mean 'hero'?\n"
    )
    assert refused(run_cli, command, *option, "zzz") == (
        f"error: {said}unknown image: zzz (known: hero, icon)\n"
    )


def test_a_mistyped_replace_names_the_manifest_and_the_option(project, run_cli):
    images = {name: {"prompt": name, "output": f"{name}.png"} for name in ("hero", "icon")}
    project({"images.toml": preview(images), "other.toml": preview(images)})
    assert refused(run_cli, "-f", "other.toml", "apply", "--replace", "herp") == (
        "error: other.toml: --replace: unknown image: herp (known: hero, icon); "
        "did you mean 'hero'?\n"
    )
