"""The core's limits, below the CLI: the image cap before expansion, templates,
locating a value nested too deep for tomllib."""

from __future__ import annotations

from pathlib import Path

import pytest

from nebula_build.core import resolve as resolve_module
from nebula_build.core import sourcemap
from nebula_build.core.manifest import MAX_DEPTH, parse
from nebula_build.core.spec import check_template, fill, parse_template
from nebula_build.errors import ManifestError
from nebula_build.plugin.manager import load_registry

HEAD = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""


def test_the_image_cap_is_checked_before_a_matrix_is_expanded(monkeypatch):
    made: list[str] = []
    real = resolve_module.expand

    def counting(base, decl):
        for image in real(base, decl):
            made.append(image.name)
            yield image

    monkeypatch.setattr(resolve_module, "expand", counting)
    axis = "[" + ", ".join(str(n) for n in range(1000)) + "]"
    text = (
        HEAD
        + '[images.small]\nprompt = "x"\noutput = "s.png"\n'
        + '[images.huge]\nprompt = "x"\noutput = "h{index}.png"\n'
        + f"matrix = {{ a = {axis}, b = {axis}, c = {axis} }}\n"
    )
    manifest = parse(text, Path("images.toml"), "images.toml")
    with pytest.raises(ManifestError) as raised:
        resolve_module.resolve(manifest, load_registry(), lambda path: None)
    assert made == []  # a billion images were never made (`small` is as declared)
    assert "images.huge.matrix: makes 1,000,000,000 images, more than max_images" in str(
        raised.value
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{width:>400000000}", "{width:>400000000}: only plain placeholders like {name}"),
        ("{stem!s}", "{stem!s}: only plain placeholders"),
        ("{stem!r:>9}", "{stem!r:>9}: only plain placeholders"),
        ("{0}", "{0}: only plain placeholders"),
        ("{}", "{}: only plain placeholders"),
        ("{stem[0]}", "{stem[0]}: only plain placeholders"),
        ("{stem.upper}", "{stem.upper}: only plain placeholders"),
        ("{width:{stem}}", "{width:{stem}}: only plain placeholders"),
        ("{nope}", "unknown placeholder {nope} (known: {stem}, {width}, {ext})"),
        ("{stem", "expected '}' before end of string"),
    ],
)
def test_templates_take_only_plain_names(template, message):
    problem = check_template(template, ("stem", "width", "ext"))
    assert problem is not None and message in problem


def test_plain_templates_fill_as_format_would():
    values = {"stem": "hero", "width": 320, "ext": ".png"}
    for template in ("{stem}-{width}{ext}", "{{stem}}/{stem}", "x", ""):
        assert check_template(template, values) is None
        assert fill(template, values) == template.format(**values)
    assert parse_template("a{b}c") == (("a", "b"), ("c", None))


def test_where_tomllib_gave_up_is_found():
    text = (
        HEAD + "[images.a]\n" + 'prompt = "[[[[ # not nesting"  # [[[[\n' + "x = [\n  [[" + "[" * 40
    )
    line, column = sourcemap.nesting_beyond(text, MAX_DEPTH) or (0, 0)
    assert line == 10 and column > 1
    assert sourcemap.key_at(text, line) == ("images", "a", "x")


def test_a_multiline_string_does_not_count_as_nesting():
    text = 'a = """\n[[[[[[\n"""\nb = [[[]]]\n'
    assert sourcemap.nesting_beyond(text, 2) == (4, 7)
    assert sourcemap.nesting_beyond(text, 3) is None
    assert sourcemap.key_at(text, 4) == ("b",)


def test_the_keys_of_a_few_problems_are_placed_as_a_map_of_every_key_places_them():
    """Placing the ten thousand problems shown of a manifest of a million keys read every
    line's key (5 µs each); only the lines whose key starts with a name of theirs are."""
    text = (
        'version = 1\n[images]\nb.output = "x"\n[images.a]\nk1 = 1\n "k2" = 2\n'
        "k3.x = 3\n[[images.a.rows]]\nk1 = 1\n[images.c]\nk1 = 4\n"
    )
    every = sourcemap.key_positions(text)
    wanted = [("images", "a", "k2"), ("images", "a", "rows", "k1"), ("images", "b", "x")]
    wanted += [("images", "c", "k1", "z"), ("version",)]
    some = sourcemap.key_positions(text, wanted)
    for path in wanted:
        for end in range(1, len(path) + 1):
            assert some.get(path[:end]) == every.get(path[:end]), path[:end]
    assert ("images", "a", "k3") not in some
