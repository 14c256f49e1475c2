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
output = "e.png"

[images.e]
prompt = "an eel"
output = "e.png"

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
    assert "images.e.output: e.png is also written by images.c" in said
    # images.d takes images.a's output: it is judged once images.a is as written
    assert "images.d" not in said
    # in the order they are written, each once
    numbers = [int(line.split(":")[2]) for line in lines if line.startswith("error: images.toml:")]
    assert numbers == sorted(numbers) and len(set(lines)) == len(lines)
    assert not list(root.glob("*.png")) or [p.name for p in root.glob("*.png")] == ["d-mask.png"]


def test_a_problem_of_an_image_with_a_bad_key_is_said_once(project, run_cli):
    """The image whose key was left out to resolve the rest is not judged without it:
    a problem found then could be the missing key's doing."""
    manifest = MANIFEST.replace('widht = 512\noutput = "a.png"', 'widht = 512\noutput = "a"')
    project({"images.toml": manifest, "d-mask.png": b""})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.count("images.a.") == 1, err


@pytest.mark.parametrize("bad", ["rows = 5", 'rows = "data.csv"\nlimit = "1"'])
def test_a_bad_key_that_decides_how_many_images_keeps_to_the_schema(project, run_cli, bad):
    """Without its `rows` or `limit`, a declaration makes other images than it
    declares: `images.f` would name one it does not make, and `max_images` count
    ones it does not have."""
    manifest = MANIFEST.replace("version = 1\n", "version = 1\nmax_images = 6\n") + (
        f'\n[images.product]\nprompt = "{{name}}"\noutput = "p/{{id}}.png"\n{bad}\n'
        '\n[images.f]\nprompt = "x"\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\n'
        'image = "@product[tea]"\nmask = "d-mask.png"\noutput = "f.png"\n'
    )
    data = "id,name\ntea,tea\nbread,bread\n"
    project({"images.toml": manifest, "d-mask.png": b"", "data.csv": data})
    code, _, err = run_cli("validate")
    assert code == 1
    assert "images.product." in err and "images.a.widht" in err
    assert "images.b" not in err and "images.f" not in err and "max_images" not in err


def test_a_problem_many_images_share_is_said_for_those_judged(project, run_cli):
    """The resolver says a problem many images share once, listing them: an image
    whose key was cut is not among them."""
    images = "".join(
        f'[images.i{n}]\nprompt = "x"\noutput = "{n}.png"\n' + ("model = 5\n" if n == 1 else "")
        for n in range(10)
    )
    project({"images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n' + images})
    code, _, err = run_cli("validate")
    assert code == 1
    lines = err.strip().splitlines()
    assert "images.i1.model: input should be a valid string (got 5)" in lines[1]
    assert len(lines) == 10 and all("i1," not in line for line in lines), err


def test_a_resolution_problem_of_a_cut_image_is_not_said_nor_a_traceback(project, run_cli):
    """Found by the fuzz test: a problem of the cut image, left unsaid, was taken
    for the one said last."""
    manifest = FILL + '[images.a]\nprompt = "a"\nbackend = 0\noutput = "|"\n'
    project({"images.toml": manifest})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: images.toml:7:1: images.a.backend: input should be a valid string (got 0)"
    ], err


def test_a_problem_outside_the_images_keeps_to_the_schema(project, run_cli):
    """A bad key in [defaults] changes every image: resolving them without it would
    say problems that are not there."""
    manifest = MANIFEST.replace("[defaults]\n", "[defaults]\nsteps = 4\n")
    project({"images.toml": manifest, "d-mask.png": b""})
    code, _, err = run_cli("validate")
    assert code == 1
    assert "defaults.steps" in err and "images.a.widht" in err
    assert "missing.png" not in err


FILL = """\
version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-Fill-dev"
"""


def test_what_the_cut_key_would_change_elsewhere_is_not_said(project, run_cli):
    """Without `variant_patern`, images.a would write a-320.png, as images.c does; an
    atlas listing images a declaration with a bad `rows` no longer makes; a style
    that takes images.a's output, resized without its `resise`: none of it is there
    once the keys are fixed."""
    manifest = FILL.replace("Fill-dev", "schnell") + (
        '[styles.fill]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nimage = "@a"\n'
        '[images.a]\nprompt = "a"\nwidth = 512\nheight = 512\nwidths = [320]\n'
        'variant_patern = "{stem}@{width}w{ext}"\nresise = [256, 256]\noutput = "a.png"\n'
        '[images.c]\nprompt = "c"\noutput = "a-320.png"\n'
        '[images.d]\nprompt = "d"\nstyle = "fill"\nmask = "m.png"\noutput = "d.png"\n'
        '[images.enemy]\nprompt = "a {kind}"\noutput = "e/{kind}.png"\n'
        'matrix = { kind = ["slime", 1.5] }\n'
        '[atlases.shop]\nimages = ["enemy[slime]"]\noutput = "shop.png"\n'
    )
    project({"images.toml": manifest, "m.png": _png(256, 256)})
    code, _, err = run_cli("validate")
    assert code == 1
    assert [line.split(": ")[2] for line in err.strip().splitlines()] == [
        "images.a.variant_patern",
        "images.a.resise",
        "images.enemy.matrix.kind.1",
    ], err


def test_a_refused_input_is_said_as_refused(project, run_cli, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png(8, 8))
    manifest = FILL + (
        '[images.a]\nprompt = "a"\nwidht = 512\noutput = "a.png"\n'
        '[images.b]\nprompt = "b"\nimage = "in.png"\nmask = "m.png"\noutput = "b.png"\n'
    )
    root = project({"images.toml": manifest, "m.png": _png(8, 8)})
    (root / "in.png").symlink_to(outside)
    code, _, err = run_cli("validate")
    assert code == 1
    assert "images.b.image" in err and "symbolic link" in err and "not found" not in err


@pytest.mark.parametrize("bad_key", ["", "widht = 1\n"])
def test_a_chain_of_thousands_of_images_is_no_traceback(project, run_cli, bad_key):
    images = "".join(
        f'[images.i{n}]\nprompt = "x"\nimage = "@i{n + 1}"\nmask = "m.png"\noutput = "{n}.png"\n'
        + (bad_key if n == 0 else "")
        for n in range(3000)
    )
    last = '[images.i3000]\nprompt = "x"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    last += 'output = "l.png"\n'
    project({"images.toml": FILL + images + last, "m.png": _png(1024, 1024)})
    code, _, err = run_cli("validate")
    assert "Traceback" not in err and "RecursionError" not in err
    assert (code, bool(bad_key)) in ((0, False), (1, True)), err
    if bad_key:
        assert err.strip().splitlines() == [
            "error: images.toml:10:1: images.i0.widht: unknown key (did you mean 'width'?)"
        ]


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()
