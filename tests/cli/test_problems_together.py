"""A manifest's problems are said together, each at its line, in the order they are
written: one problem of an image does not hide the image's others until it is fixed."""

from __future__ import annotations

import json

import pytest

from tests.manifests import PREVIEW

HEAD = PREVIEW.count("\n")


def validated(project, run_cli, images: str) -> list[str]:
    project({"images.toml": PREVIEW + images})
    code, out, err = run_cli("validate")
    assert code == 1 and out == "" and "Traceback" not in err, err
    return err.splitlines()


def test_a_seed_that_is_not_an_expression_does_not_hide_the_image_s_other_problems(
    project, run_cli
):
    lines = validated(
        project,
        run_cli,
        '\n[images.hero]\nprompt = "a lighthouse"\nseed = "oops + 1"\nstyle = "nope"\n'
        'output = "img/hero.png"\n'
        '\n[images.ref]\nprompt = "x"\nimage = "@hero"\noutput = "img/ref.png"\n',
    )
    assert lines == [
        f"error: images.toml:{HEAD + 4}:1: images.hero.seed: 'oops + 1' is not an integer "
        "expression (integers, placeholders, + - * only)",
        f"error: images.toml:{HEAD + 5}:1: images.hero.style: unknown style 'nope' (known: "
        "none declared)",
        f"error: images.toml:{HEAD + 10}:1: images.ref.image: black-forest-labs/FLUX.1-schnell "
        "does not take image (black-forest-labs/FLUX.1-Fill-dev does): remove it here, or set "
        "it in a style or [defaults], where it applies only to the models that take it",
    ]


def test_a_matrix_s_seed_expression_does_not_hide_its_other_problems(project, run_cli):
    lines = validated(
        project,
        run_cli,
        '\n[images.n]\nprompt = "a {color} cat"\nmatrix = { color = ["red", "blue"] }\n'
        'seed = "{index} / 2"\noutput = "img/n-{color}.png"\nstyle = "nope"\n'
        '\n[images.m]\nprompt = "a {color} dog"\nmatrix = { color = ["red"] }\n'
        'seed = "{nope}"\noutput = "img/{color}-{other}.png"\n',
    )
    assert lines == [
        f"error: images.toml:{HEAD + 5}:1: images.n.seed: '{{index}} / 2' is '0 / 2' here, and "
        "is not an integer expression (integers, placeholders, + - * only)",
        f"error: images.toml:{HEAD + 7}:1: images.n.style: unknown style 'nope' (known: none "
        "declared; for 2 of its images)",
        f"error: images.toml:{HEAD + 12}:1: images.m.seed: unknown placeholder {{nope}} (known: "
        "{color}, {index})",
        f"error: images.toml:{HEAD + 13}:1: images.m.output: unknown placeholder {{other}} "
        "(known: {color}, {index})",
    ]


def test_a_written_file_the_project_refuses_is_said_at_its_line(project, run_cli):
    """Checked once the images are resolved (perhaps from the spec cache, with no
    manifest parsed): it was said as `images.toml: assets.manifest: …`, with no line."""
    images = (
        '\n[assets]\nmanifest = "images.lock"\n'
        '\n[images.a]\nprompt = "a lighthouse"\noutput = "out/a.png"\n'
    )
    said = f"error: images.toml:{HEAD + 3}:1: assets.manifest: 'images.lock' is the tool's own file"
    assert validated(project, run_cli, images) == [said]
    code, out, _ = run_cli("plan", "--json")
    problem = json.loads(out)["error"]["problems"][0]
    assert code == 1 and (problem["line"], problem["key"]) == (HEAD + 3, "assets.manifest")


ROWS = (
    '\n[images.product]\nrows = "data/p.csv"\nid = "sku"\nprompt = "a {name}"\n'
    'output = "img/{sku}.png"\n'
)
EMPTY = (
    "images.product: column 'name' is empty (the image uses it); set name in this row, give "
    'it a default (rows = { file = "data/p.csv", defaults = { name = "…" } }), or leave such '
    'rows out (where = "name")'
)


def test_rows_with_the_same_problem_are_one_line_naming_the_others(project, run_cli):
    """40 rows with an empty `name` were ten lines, and said nothing of the other 30."""
    csv = "sku,name\n" + "".join(f"s{n},\n" for n in range(40))
    project({"images.toml": PREVIEW + ROWS, "data/p.csv": csv})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.splitlines() == [
        f"error: data/p.csv:2:4: {EMPTY}; the same in 39 other rows (lines 3, 4, 5, 6, 7, …)"
    ]


def test_rows_past_the_ones_said_are_counted(project, run_cli):
    csv = "sku,name\n" + "".join(f"/s{n},x\n" for n in range(14)) + "a,\nb,\n"
    project({"images.toml": PREVIEW + ROWS, "data/p.csv": csv})
    code, _, err = run_cli("validate")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 11, lines
    assert lines[0] == (
        "error: data/p.csv:2:1: images.product: column 'sku': '/s0' would make the output "
        "'img//s0.png' have an empty or '.' folder (written elsewhere than it reads)"
    )
    assert lines[-1] == "error: images.toml: and 6 more problems; fix these first"


def test_images_whose_seed_is_no_seed_are_resolved_for_their_other_problems_up_to_a_bound(
    project, run_cli, monkeypatch
):
    """Resolving 100,000 images with `seed = "x"` for their other problems doubled
    `validate`'s time (bench/problem_bounds.py): past SEEDLESS, their seed alone is said."""
    monkeypatch.setattr("nebula_build.core.resolve.SEEDLESS", 2)
    images = "".join(
        f'\n[images.i{n}]\nprompt = "p"\nseed = "x"\nstyle = "nope"\noutput = "o/i{n}.png"\n'
        for n in range(3)
    )
    lines = validated(project, run_cli, images)
    assert [line.split(": ", 3)[2] for line in lines] == [
        "images.i0.seed",
        "images.i0.style",
        "images.i1.seed",
        "images.i1.style",
        "images.i2.seed",
    ]


def test_rows_with_a_problem_kept_are_still_counted_past_the_bound(project, run_cli, monkeypatch):
    """Past the different problems kept, a row with one of them joins its line, and a
    row with another is counted."""
    monkeypatch.setattr("nebula_build.core.rowimages._PROBLEMS_KEPT", 2)
    csv = "sku,name\na,\n/b,x\n/c,x\nd,\ne,\n"
    project({"images.toml": PREVIEW + ROWS, "data/p.csv": csv})
    code, _, err = run_cli("validate")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 3, lines
    assert lines[0] == f"error: data/p.csv:2:3: {EMPTY}; the same in 2 other rows (lines 5, 6)"
    assert lines[1].startswith("error: data/p.csv:3:1: images.product: column 'sku': '/b' ")
    assert lines[2] == "error: images.toml: and 1 more problem; fix these first"


def test_rows_past_the_problem_rows_looked_at_are_said_as_at_least(project, run_cli, monkeypatch):
    """Going through every row with a problem made 49 declarations of 200,000 such rows
    take 90 s (1.5 s when each stopped at its tenth); the declarations share a bound,
    and one that stops before its last row, or at `limit`, says "at least"."""
    monkeypatch.setattr("nebula_build.core.rowimages.PROBLEM_ROWS", 15)
    second = ROWS.replace("[images.product]", "[images.other]").replace("img/", "other/")
    csv = "sku,name\n" + "".join(f"s{n},\n" for n in range(40))
    project({"images.toml": PREVIEW + ROWS + second, "data/p.csv": csv})
    code, _, err = run_cli("validate")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 2, lines
    assert lines[0].endswith("; the same in at least 14 other rows (lines 3, 4, 5, 6, 7, …)")
    assert lines[1].startswith("error: data/p.csv:2:4: images.other: column 'name'")
    assert lines[1].endswith("; the same in at least 9 other rows (lines 3, 4, 5, 6, 7, …)")
    monkeypatch.undo()
    project({"images.toml": PREVIEW + ROWS.replace('id = "sku"', 'id = "sku"\nlimit = 5')})
    _, _, err = run_cli("validate")
    assert err.splitlines()[0].endswith(
        "; the same in at least 9 other rows (lines 3, 4, 5, 6, 7, …)"
    )


def test_a_placeholder_in_an_output_without_a_matrix_is_one_line(project, run_cli):
    """Resolved all the same, its output was said twice (the placeholder, then the
    path as written)."""
    lines = validated(project, run_cli, '\n[images.c]\nprompt = "p"\noutput = "../c{x}.png"\n')
    assert len(lines) == 1 and "images.c.output: placeholder {x}" in lines[0], lines


@pytest.mark.parametrize(
    ("rows", "said"), [(12, "the same in 11"), (13, "the same in at least 11")]
)
def test_at_least_is_said_only_where_rows_were_left_unseen(
    project, run_cli, monkeypatch, rows, said
):
    """A declaration that used up the bound on its last row said "at least"."""
    monkeypatch.setattr("nebula_build.core.rowimages.PROBLEM_ROWS", 12)
    optional = ROWS.replace(
        'rows = "data/p.csv"', 'rows = { file = "data/p.csv", defaults = { name = "" } }'
    ).replace('"a {name}"', '"{name}"')
    csv = "sku,name\n" + "".join(f"s{n},\n" for n in range(rows))
    project({"images.toml": PREVIEW + optional, "data/p.csv": csv})
    code, _, err = run_cli("validate")
    assert code == 1 and f"(and defaults); {said} other rows (lines 3, 4, 5, 6, 7, …)" in err, err
