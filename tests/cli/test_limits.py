"""A manifest from a pull request cannot crash the tool or exhaust its memory.

Each case was a traceback or a runaway before it had a limit: through `validate`,
`plan` and `apply` it is one line naming the file, the image and the key; exit 1.
"""

from __future__ import annotations

import json

import pytest

HEAD = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""
FILL = 'model = "black-forest-labs/FLUX.1-Fill-dev"\n'


def image(fields: str, name: str = "a", output: str = "a.png") -> str:
    return f'\n[images.{name}]\nprompt = "x"\noutput = "{output}"\n{fields}\n'


def axis(name: str, size: int) -> str:
    return f"{name} = [{', '.join(str(n) for n in range(size))}]"


CASES = {
    # finding 13: tracebacks
    "array nested 1000 deep (tomllib recursion)": (
        HEAD + image("x = " + "[" * 1000 + "]" * 1000),
        "images.toml:11:1: images.a.x: nested more than 16 levels deep",
    ),
    "array nested 30 deep": (
        HEAD + image("x = " + "[" * 30 + "]" * 30),
        "images.toml:11:1: images.a.x: nested more than 16 levels deep",
    ),
    "inline tables nested in a backend's settings": (
        HEAD + "[backends.preview]\nx = " + "{ a = " * 40 + "1" + " }" * 40 + "\n",
        "images.toml:8:1: backends.preview.x.a.a.a",
    ),
    "1000-term seed expression": (
        HEAD + image('seed = "' + "+".join(["1"] * 1000) + '"'),
        "images.toml:11:1: images.a.seed: a seed expression may be at most 200 characters",
    ),
    "1000-term seed expression in a matrix": (
        HEAD + image('seed = "' + "+".join(["{index}"] * 300) + '"\nmatrix = { k = [1, 2] }'),
        "images.a.seed: a seed expression may be at most 200 characters",
    ),
    "a matrix value a terminal shows otherwise": (
        HEAD + image('matrix = { k = ["c\\u202ed"] }', output="a{k}.png"),
        "images.a.matrix: 'k': 'c\\u202ed' has characters a terminal does not show as they are",
    ),
    "a matrix value that starts with a space": (
        HEAD + image('matrix = { k = [" big"] }', output="a{k}.png"),
        "images.a.matrix: 'k': ' big' starts or ends with a space",
    ),
    "NUL in an output path": (
        HEAD + image("", output="a\\u0000.png"),
        "images.toml:10:1: images.a.output: may not contain control characters ('a\\x00.png')",
    ),
    "escape in an output path": (
        HEAD + image("", output="img/\\u001b[2Ja.png"),
        "images.a.output: may not contain control characters ('img/\\x1b[2Ja.png')",
    ),
    "DEL in an output path": (
        HEAD + image("", output="a\\u007f.png"),
        "images.a.output: may not contain control characters ('a\\x7f.png')",
    ),
    "newline in a matrix output": (
        HEAD + image("matrix = { k = [1] }", output="a{k}\\n.png"),
        "images.a[1].output: may not contain control characters ('a1\\n.png')",
    ),
    "NUL in an inpainting image": (
        HEAD + image(FILL + 'image = "in\\u0000.png"\nmask = "m.png"'),
        "images.a.image: an input may not contain control characters ('in\\x00.png')",
    ),
    "tab in a mask": (
        HEAD + image(FILL + 'image = "in.png"\nmask = "m\\t.png"'),
        "images.a.mask: an input may not contain control characters ('m\\t.png')",
    ),
    "input escaping the project": (
        HEAD + image(FILL + 'image = "../in.png"\nmask = "m.png"'),
        "images.a.image: an input must stay inside the project ('../in.png' uses '..')",
    ),
    "absolute mask": (
        HEAD + image(FILL + 'image = "in.png"\nmask = "/etc/m.png"'),
        "images.a.mask: an input must be a path relative to the manifest's folder",
    ),
    "control character in a variant pattern": (
        HEAD + image('widths = [32]\nvariant_pattern = "{stem}\\u0001{width}{ext}"'),
        "images.a.variant_pattern: may not contain control characters ('{stem}\\x01{width}{ext}')",
    ),
    "NUL in an atlas": (
        HEAD
        + image("")
        + '[atlases.sheet]\nimages = ["a"]\noutput = "s\\u0000.png"\nframes = "s.json"\n',
        "images.toml:14:1: atlases.sheet.output: an atlas may not contain control characters",
    ),
    "NUL in an atlas's frame map": (
        HEAD
        + image("")
        + '[atlases.sheet]\nimages = ["a"]\noutput = "s.png"\nframes = "s\\u0000.json"\n',
        "atlases.sheet.frames: a frame map may not contain control characters",
    ),
    "atlas's frame map escaping the project": (
        HEAD
        + image("")
        + '[atlases.sheet]\nimages = ["a"]\noutput = "s.png"\nframes = "../s.json"\n',
        "atlases.sheet.frames: a frame map must stay inside the project",
    ),
    "NUL in the asset manifest": (
        HEAD + image("") + '[assets]\nmanifest = "i\\u0000.json"\n',
        "images.toml:13:1: assets.manifest: the asset manifest may not contain control characters",
    ),
    "absolute asset manifest": (
        HEAD + image("") + '[assets]\nmanifest = "/etc/images.json"\n',
        "assets.manifest: the asset manifest must be a path relative to the manifest's folder",
    ),
    "control character in a matrix value": (
        HEAD + image('matrix = { k = ["b\\u0007"] }', output="a{k}.png"),
        "images.toml:11:1: images.a.matrix: 'k': 'b\\x07' contains a control character",
    ),
    "control characters in a key are shown escaped": (
        HEAD + '[images."a\\u001b[31m"]\nprompt = "x"\noutput = "a.png"\n',
        "images.a\\x1b[31m: image names may contain only ASCII letters, digits, '-' and '_'",
    ),
    # finding 16: memory
    "format spec in a variant pattern": (
        HEAD + image('widths = [32]\nvariant_pattern = "{stem}-{width:>400000000}{ext}"'),
        "images.toml:12:1: images.a.variant_pattern: {width:>400000000}: only plain "
        "placeholders like {name}, without a format spec or conversion",
    ),
    "format spec in [defaults]' variant pattern, reported once": (
        HEAD
        + 'widths = [32]\nvariant_pattern = "{stem}-{width:>400000000}{ext}"\n'
        + image("")
        + image("", name="b", output="b.png"),
        "images.toml:8:1: defaults.variant_pattern: {width:>400000000}: only plain",
    ),
    "conversion in a variant pattern": (
        HEAD + image('widths = [32]\nvariant_pattern = "{stem!r}-{width}{ext}"'),
        "images.a.variant_pattern: {stem!r}: only plain placeholders like {name}",
    ),
    "attribute in a variant pattern": (
        HEAD + image('widths = [32]\nvariant_pattern = "{stem.__class__}-{width}{ext}"'),
        "images.a.variant_pattern: {stem.__class__}: only plain placeholders like {name}",
    ),
    "format spec in a matrix prompt": (
        HEAD
        + image('matrix = { k = ["x"] }', output="a{k}.png").replace(
            'prompt = "x"', 'prompt = "a {k:>400000000}"'
        ),
        "images.toml:9:1: images.a.prompt: {k:>400000000}: only plain placeholders like {name}",
    ),
    "format spec in a matrix output": (
        HEAD + image('matrix = { k = ["x"] }', output="a{index:0>400000000}.png"),
        "images.a.output: {index:0>400000000}: only plain placeholders like {name}",
    ),
    "format spec in a seed expression": (
        HEAD + image('seed = "{index:>400000000}"\nmatrix = { k = ["x"] }', output="a{k}.png"),
        "images.a.seed: {index:>400000000}: only plain placeholders like {name}",
    ),
    "a 216,000-image matrix": (
        HEAD + image(f"matrix = {{ {axis('a', 60)}, {axis('b', 60)}, {axis('c', 60)} }}"),
        "images.toml:11:1: images.a.matrix: makes 216,000 images, more than max_images = 10000; "
        "split the project: a manifest may declare at most 100000",
    ),
    "a 20,000-image matrix": (
        HEAD + image(f"matrix = {{ {axis('a', 200)}, {axis('b', 100)} }}", output="a{index}.png"),
        "images.toml:11:1: images.a.matrix: makes 20,000 images, more than max_images = 10000; "
        "set `max_images` at the top of images.toml to allow more (default 10000, at most 100000)",
    ),
    "matrices that make too many together": (
        HEAD
        + image(f"matrix = {{ {axis('a', 60)}, {axis('b', 100)} }}", output="a{index}.png")
        + image(
            f"matrix = {{ {axis('a', 60)}, {axis('b', 100)} }}", name="b", output="b{index}.png"
        ),
        "images.toml:13:1: images.b: brings the manifest to 12,000 images, more than "
        "max_images = 10000; set `max_images`",
    ),
    "a lower max_images": (
        "max_images = 3\n" + HEAD + image("matrix = { k = [1, 2, 3, 4] }", output="a{k}.png"),
        "images.a.matrix: makes 4 images, more than max_images = 3",
    ),
    "max_images beyond its ceiling": (
        "max_images = 1000000\n" + HEAD + image(""),
        "images.toml:1:1: max_images: must be at most 100000 (got 1000000)",
    ),
    "a prompt past 10,000 characters": (
        HEAD + image("").replace('prompt = "x"', f'prompt = "{"x" * 10_001}"'),
        "images.toml:9:1: images.a.prompt: string should have at most 10000 characters "
        '(got "xxxxxxxx',
    ),
    "a 10 MB prompt": (
        HEAD + image("").replace('prompt = "x"', f'prompt = "{"x" * 10_000_000}"'),
        "images.toml:9:1: images.a.prompt: a string may be at most 100,000 characters long "
        "(this one has 10,000,000)",
    ),
    "a 10 MB string in a backend's settings": (
        HEAD + f'[backends.preview]\nx = "{"x" * 10_000_000}"\n',
        "images.toml:8:1: backends.preview.x: a string may be at most 100,000 characters long",
    ),
    "a 10 MB key": (
        HEAD + image(f"{'k' * 10_000_000} = 1"),
        "images.toml:11:1: images.a.kkkkkkkk",
    ),
    "a file name past 200 bytes": (
        HEAD + image("", output="img/" + "é" * 101 + ".png"),
        "images.a.output: has a file or folder name longer than 200 bytes",
    ),
    "an integer of 5,000 digits (Python reads none past 4,300)": (
        HEAD + image(f"seed = {'1' * 5000}"),
        "images.toml:11:1: images.a.seed: an integer may be at most 300 digits long",
    ),
    "a hexadecimal integer Python cannot print": (
        HEAD + image(f"seed = 0x{'f' * 5000}"),
        "images.toml:11:1: images.a.seed: an integer may be at most 300 digits long",
    ),
    "a 5,000-digit integer in a backend's settings": (
        HEAD + f"[backends.preview]\nx = [1, -{'9' * 5000}]\n",
        "images.toml:8:1: backends.preview.x: an integer may be at most 300 digits long",
    ),
    "a path past 1024 characters": (
        HEAD + image("", output="a/" * 600 + "a.png"),
        "images.a.output: string should have at most 1024 characters",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_manifest_past_a_limit_is_one_clear_line(name, project, run_cli):
    text, expected = CASES[name]
    project({"images.toml": text, "m.png": b"", "in.png": b""})
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (command, out, err[:2000])
        lines = err.splitlines()
        assert len(lines) == 1, err[:2000]
        assert lines[0].startswith("error: ")
        assert expected in lines[0], lines[0][:2000]
        assert len(lines[0]) < 400
        assert "\x1b" not in err and "\x00" not in err


def test_limits_are_inclusive(project, run_cli):
    """At the limit is fine: a 10,000-character prompt, a matrix of max_images."""
    text = (
        "max_images = 4\n"
        + HEAD
        + image("matrix = { k = [1, 2, 3] }", output="a{k}.png").replace(
            'prompt = "x"', f'prompt = "{"x" * 10_000}"'
        )
        + image("", name="b", output="b.png")
    )
    project({"images.toml": text})
    code, out, err = run_cli("validate")
    assert code == 0, err
    assert "4 images, valid" in out


def test_plain_placeholders_still_work(project, run_cli):
    text = HEAD + image(
        'matrix = { k = ["x", "y"] }\nseed = "{index} * 2 + 1"\nwidths = [32]\n'
        'variant_pattern = "{stem}@{width}w{ext}"',
        output="img/a-{k}.png",
    ).replace('prompt = "x"', 'prompt = "a {k} {{literal}}"')
    root = project({"images.toml": text})
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert sorted(p.name for p in (root / "img").iterdir()) == [
        "a-x.png",
        "a-x@32w.png",
        "a-y.png",
        "a-y@32w.png",
    ]
    lock = (root / "images.lock").read_text()
    assert 'prompt = "a x {literal}"' in lock and "seed = 3" in lock


def test_a_manifest_of_thousands_of_problems_shows_fifty_and_counts_the_rest(project, run_cli):
    """Before: one line each, 1,000 lines for a generated manifest's 1,000 mistakes."""
    project({"images.toml": HEAD + "".join(image(f"bogus{n} = 1", f"i{n}") for n in range(1000))})
    code, _, err = run_cli("plan")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 51, lines[-3:]
    assert lines[0].startswith("error: images.toml:11:1: images.i0.bogus0: unknown key")
    assert lines[-1] == "error: … and 950 more problems (`nebula-build validate --json` lists all)"
    code, out, _ = run_cli("validate", "--json")
    assert code == 1 and len(json.loads(out)["error"]["problems"]) == 1000
