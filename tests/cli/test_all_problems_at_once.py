"""A manifest with a key that is not one in an image and a file missing in another
says both in one run: a newcomer fixing the first would otherwise find the second
only on the next run, as ruff or `terraform validate` would not make them do."""

from __future__ import annotations

import pytest

MANIFEST = """\
version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"

[images.a]
prompt = "a cat"
widht = 512
output = "a.png"

[images.b]
prompt = "a dog"
model = "black-forest-labs/FLUX.1-Fill-dev"
image = "missing.png"
mask = "missing-mask.png"
output = "b.png"

[images.c]
prompt = "a bird"
output = "a.png"

[images.d]
prompt = "a fish"
image = "@a"
model = "black-forest-labs/FLUX.1-Fill-dev"
mask = "d-mask.png"
output = "d.png"
"""


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_schema_and_resolution_problems_are_said_in_one_run(project, run_cli, command):
    root = project({"images.toml": MANIFEST, "d-mask.png": b""})
    code, _, err = run_cli(command)
    assert code == 1
    lines = err.strip().splitlines()
    assert "images.toml:8:1: images.a.widht: unknown key (did you mean 'width'?)" in lines[0]
    said = "\n".join(lines)
    assert "images.b.image: file not found: missing.png" in said
    assert "images.b.mask: file not found: missing-mask.png" in said
    assert "images.c.output: a.png is also written by images.a" in said
    # images.d takes images.a's output: it is judged once images.a is as written
    assert "images.d" not in said
    # in the order they are written, each once
    numbers = [int(line.split(":")[2]) for line in lines if line.startswith("error: images.toml:")]
    assert numbers == sorted(numbers) and len(set(lines)) == len(lines)
    assert not list(root.glob("*.png")) or [p.name for p in root.glob("*.png")] == ["d-mask.png"]


def test_a_problem_of_an_image_with_a_bad_key_is_said_once(project, run_cli):
    """The image whose key was left out to resolve the rest is not judged without it:
    a problem found then could be the missing key's doing."""
    manifest = MANIFEST.replace('widht = 512\noutput = "a.png"', 'widht = 512\noutput = "b.png"')
    project({"images.toml": manifest, "d-mask.png": b""})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.count("images.a.") == 1, err


def test_what_an_image_with_a_bad_key_makes_is_not_judged_either(project, run_cli):
    """`images.e` takes the output of an image declared with rows whose `rows` is
    wrong: resolved without it, that image makes none of the rows' names."""
    manifest = MANIFEST + (
        '\n[images.product]\nprompt = "{name}"\noutput = "p/{id}.png"\nrows = 5\n'
        '\n[images.e]\nprompt = "x"\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\n'
        'image = "@product[tea]"\nmask = "d-mask.png"\noutput = "e.png"\n'
    )
    project({"images.toml": manifest, "d-mask.png": b""})
    code, _, err = run_cli("validate")
    assert code == 1
    assert "images.product.rows" in err and "images.b.image" in err
    assert "images.e" not in err and "names no image" not in err


def test_a_problem_outside_the_images_keeps_to_the_schema(project, run_cli):
    """A bad key in [defaults] changes every image: resolving them without it would
    say problems that are not there."""
    manifest = MANIFEST.replace("[defaults]\n", "[defaults]\nsteps = 4\n")
    project({"images.toml": manifest, "d-mask.png": b""})
    code, _, err = run_cli("validate")
    assert code == 1
    assert "defaults.steps" in err and "images.a.widht" in err
    assert "missing.png" not in err
