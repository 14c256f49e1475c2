"""Malformed manifests: one clear line each, naming file, line, column and key; exit 1."""

from __future__ import annotations

import io
import json
import os
import random
import re
from pathlib import Path

import pytest

from nebula_build.core import manifest as manifest_module
from nebula_build.core.manifest import parse
from nebula_build.errors import ManifestError

HEAD = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 512
height = 512
"""

CASES = {
    "bad TOML": (
        HEAD + "[images.hero\nprompt = 'x'\n",
        "images.toml:7:13: invalid TOML: the [table] header is not closed: end it with ] "
        "([images.hero])",
    ),
    "wrong type": (
        HEAD + '[images.hero]\nprompt = "x"\nwidth = "512"\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.width: must be an integer, without quotes (width = 512)",
    ),
    "unknown key with a suggestion": (
        HEAD + '[images.hero]\nprompt = "x"\nsed = 4\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.sed: unknown key (did you mean 'seed'?)",
    ),
    "unknown key in a nested table names that table's keys": (
        HEAD + '[images.hero]\nprompt = "x"\ntrim = true\nchecks = { size = 16 }\n'
        'output = "a.png"\n',
        "images.toml:10:1: images.hero.checks.size: unknown key; "
        "expected one of: alpha, max_kb, max_colors, min_opaque, square",
    ),
    "unknown key with a suggestion in a nested table": (
        HEAD + '[images.hero]\nprompt = "x"\ntrim = true\nchecks = { max_kbs = 16 }\n'
        'output = "a.png"\n',
        "images.toml:10:1: images.hero.checks.max_kbs: unknown key (did you mean 'max_kb'?)",
    ),
    "unknown key in a top-level table": (
        HEAD + '[assets]\nmanfest = "a.json"\n',
        "images.toml:8:1: assets.manfest: unknown key (did you mean 'manifest'?)",
    ),
    "a value where a table belongs": (
        HEAD + '[images.hero]\nprompt = "x"\nchecks = "strict"\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.checks: must be a table of alpha, max_kb, max_colors, "
        'min_opaque, square (got "strict")',
    ),
    "unknown top-level table": (
        HEAD + '[image.hero]\nprompt = "x"\n',
        "images.toml:7:1: image: unknown key (did you mean 'images'?)",
    ),
    "unsupported parameter": (
        HEAD + '[images.hero]\nprompt = "x"\nnegative_prompt = "blur"\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.negative_prompt: black-forest-labs/FLUX.1-schnell "
        "does not take negative_prompt",
    ),
    "output escaping the project": (
        HEAD + '[images.hero]\nprompt = "x"\noutput = "../outside.png"\n',
        "images.toml:9:1: images.hero.output: must stay inside the project "
        "('../outside.png' uses '..')",
    ),
    "absolute output": (
        HEAD + '[images.hero]\nprompt = "x"\noutput = "/tmp/x.png"\n',
        "images.hero.output: must be a path relative to the manifest's folder",
    ),
    "unsupported output type": (
        HEAD + '[images.hero]\nprompt = "x"\noutput = "a.gif"\n',
        "images.hero.output: unsupported file type '.gif'; use one of .png, .webp, .jpg, .jpeg",
    ),
    "size not a multiple of 8": (
        HEAD + '[images.hero]\nprompt = "x"\nwidth = 500\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.width: must be a multiple of 8 within 64-2048 (got 500)",
    ),
    "fill needs multiples of 16": (
        HEAD + '[images.cap]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "x"\n'
        'width = 520\nimage = "in.png"\nmask = "m.png"\noutput = "a.png"\n',
        "images.cap.width: must be a multiple of 16",
    ),
    "fill needs image and mask": (
        HEAD + '[images.cap]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "x"\n'
        'output = "a.png"\n',
        "images.toml:7:1: images.cap: black-forest-labs/FLUX.1-Fill-dev needs 'image' and 'mask'",
    ),
    "image on a model that takes none": (
        HEAD + '[images.hero]\nprompt = "x"\nimage = "in.png"\noutput = "a.png"\n',
        "images.hero.image: black-forest-labs/FLUX.1-schnell does not take image",
    ),
    "missing input file": (
        HEAD + '[images.cap]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "x"\n'
        'image = "nope.png"\nmask = "m.png"\noutput = "a.png"\n',
        "images.toml:10:1: images.cap.image: file not found: nope.png",
    ),
    "input of another format": (
        HEAD + '[images.cap]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "x"\n'
        'image = "in.gif"\nmask = "m.png"\noutput = "a.png"\n',
        "images.cap.image: 'in.gif' is not a PNG, JPEG or WebP file",
    ),
    "unknown model": (
        HEAD + '[images.hero]\nmodel = "dall-e"\nprompt = "x"\noutput = "a.png"\n',
        "images.toml:8:1: images.hero.model: unknown model 'dall-e' for backend 'preview' "
        "(known: stabilityai/stable-diffusion-xl-base-1.0, black-forest-labs/FLUX.1-schnell",
    ),
    "unknown backend": (
        HEAD + '[images.hero]\nbackend = "dalle"\nprompt = "x"\noutput = "a.png"\n',
        "images.toml:8:1: images.hero.backend: unknown backend 'dalle' (known: ",
    ),
    "bad image name": (
        HEAD + '[images."hero image"]\nprompt = "x"\noutput = "a.png"\n',
        "images.hero image: image names may contain only ASCII letters, digits, '-' and '_'",
    ),
    "missing output": (
        HEAD + '[images.hero]\nprompt = "x"\n',
        "images.toml:7:1: images.hero.output: is required",
    ),
    "missing prompt": (
        HEAD + '[images.hero]\noutput = "a.png"\n',
        "images.hero.prompt: is required",
    ),
    "wrong version": (
        'version = 2\n[images.hero]\nprompt = "x"\noutput = "a.png"\n',
        "images.toml:1:1: version: unsupported manifest version (got 2); this nebula-build "
        "reads version 1",
    ),
    "version true": (  # true == 1 in Python, as 1.0 is: neither is the format's 1
        'version = true\n[images.hero]\nprompt = "x"\noutput = "a.png"\n',
        "images.toml:1:1: version: unsupported manifest version (got true); this nebula-build "
        "reads version 1",
    ),
    "version 1.0": (
        'version = 1.0\n[images.hero]\nprompt = "x"\noutput = "a.png"\n',
        "images.toml:1:1: version: unsupported manifest version (got 1.0); this nebula-build "
        "reads version 1",
    ),
    "seed out of range": (
        HEAD + '[images.hero]\nprompt = "x"\nseed = -1\noutput = "a.png"\n',
        "images.hero.seed: must be within 0-4294967295 (got -1)",
    ),
    "duplicate output": (
        HEAD + '[images.a]\nprompt = "x"\noutput = "a.png"\n'
        '[images.b]\nprompt = "y"\noutput = "a.png"\n',
        "images.toml:12:1: images.b.output: a.png is also written by images.a",
    ),
    "seed of the wrong type": (
        HEAD + '[images.hero]\nprompt = "x"\nseed = 1.5\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.seed: must be an integer, or with a matrix an expression "
        'such as "{index} + 100" (got 1.5)',
    ),
    "matrix value of the wrong type": (
        HEAD + '[images.hero]\nprompt = "x {k}"\nmatrix = { k = [1.5] }\noutput = "{k}.png"\n',
        "images.toml:9:1: images.hero.matrix.k.0: must be a string or an integer (got 1.5)",
    ),
    "table declared twice": (
        HEAD + '[defaults]\nseed = 1\n[images.hero]\nprompt = "x"\noutput = "a.png"\n',
        "images.toml:7:1: defaults: is declared twice; declare a table once, with all its keys",
    ),
    "key set twice": (
        HEAD + '[images.hero]\nprompt = "x"\nprompt = "y"\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.prompt: is set twice; a key takes one value",
    ),
    "key set twice, the second time over several lines": (
        HEAD + '[images.hero]\nprompt = "x"\n  prompt = """y\nz"""\noutput = "a.png"\n',
        "images.toml:9:3: images.hero.prompt: is set twice; a key takes one value",
    ),
    "key set twice in an inline table": (
        HEAD + '[images]\nhero = { prompt = "x", prompt = "y", output = "a.png" }\n',
        "images.toml:8:36: images.hero.prompt: is set twice; a key takes one value",
    ),
    "inline table extended": (
        HEAD + '[images]\nhero = { prompt = "x" }\nhero.output = "a.png"\n',
        "images.toml:9:22: images.hero: is an inline table ({ … }), which takes no keys from "
        "outside its braces; write them inside, or make it a [table]",
    ),
    "bad backend setting": (
        HEAD + "[backends.preview]\nconcurrency = 0\n",
        "images.toml:8:1: backends.preview.concurrency: must be at least 1 (got 0)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_manifest_is_one_clear_line(name, project, run_cli):
    text, expected = CASES[name]
    inputs = {"m.png": _png(512, 512), "in.png": _png(512, 512), "in.gif": b"GIF89a"}
    project({"images.toml": text, **inputs})
    for command in ("plan", "validate", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (command, out, err)
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error: ")
        assert expected in lines[0]
        assert "Traceback" not in err
        assert not any(leak in err for leak in (".int:", ".str:", "Cannot declare"))


def test_several_problems_are_all_reported(project, run_cli):
    project(
        {
            "images.toml": HEAD + '[images.a]\nprompt = "x"\nwidth = 500\noutput = "a.png"\n'
            '[images.b]\nprompt = "y"\noutput = "../b.png"\n'
        }
    )
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.count("error: ") == 2
    assert "images.a.width" in err and "images.b.output" in err


def test_seed_on_a_model_without_seed_is_a_note_not_an_error(project, run_cli, fake_site, tmp_path):
    project(
        {
            "images.toml": HEAD.replace('"preview"', '"fake"')
            + (
                '[images.logo]\nmodel = "stabilityai/stable-diffusion-xl-base-1.0"\nprompt = "x"\n'
                'seed = 3\noutput = "a.png"\n'
            )
        }
    )
    code, out, _ = run_cli("plan")
    assert code == 0
    assert "does not take a seed" in out and "will not reproduce it" in out


def test_schema_comment_and_windows_paths_are_fine(project, run_cli):
    project(
        {
            "images.toml": "#:schema ./schema/images.schema.json\n"
            + HEAD
            + '[images.a]\nprompt = "x"\noutput = "sub\\\\a.png"\n'
        }
    )
    code, out, err = run_cli("validate")
    assert code == 0, err


def test_a_manifest_that_is_not_utf8_is_one_line(project, run_cli):
    project({"images.toml": b"version = 1\n# caf\xe9\n"})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.strip() == (
        "error: images.toml:2:6: not UTF-8 text (byte 0xe9, 'é' in Latin-1); save it as UTF-8"
    )


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_styles_snippet() -> str:
    """The README's "Families, styles, chains and atlases" example, as written there."""
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    return next(block for block in blocks if "[styles.pixel]" in block)


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_readme_styles_snippet_builds_with_the_default_model(project, run_cli):
    """A style's negative_prompt applies where the model takes it: FLUX.1 schnell
    leaves it out, with one note for the six images, and nothing fails."""
    project({"images.toml": HEAD + _readme_styles_snippet(), "masks/crown.png": _png(512, 512)})
    code, _, err = run_cli("validate")
    assert code == 0, err
    code, out, err = run_cli("plan")
    assert code == 0, err
    note = (
        "  note for 6 images (enemy[slime,idle], enemy[slime,attack], …): "
        "black-forest-labs/FLUX.1-schnell does not take negative_prompt: "
        "left out (styles.pixel.negative_prompt)\n"
    )
    assert out.count(note) == 1 and out.count("does not take") == 1, out
    data = json.loads(run_cli("plan", "--json").out)
    notes = [note for action in data["actions"] for note in action.get("notes", [])]
    assert sum("does not take negative_prompt" in note for note in notes) == 6
    code, _, err = run_cli("apply")
    assert code == 0, err


def test_a_style_parameter_still_reaches_a_model_that_takes_it(project, run_cli):
    style = '[styles.soft]\nnegative_prompt = "blurry"\n'
    images = (
        '[images.logo]\nstyle = "soft"\nmodel = "stabilityai/stable-diffusion-xl-base-1.0"\n'
        'prompt = "x"\noutput = "logo.png"\n'
        '[images.hero]\nstyle = "soft"\nprompt = "y"\noutput = "hero.png"\n'
    )
    project({"images.toml": HEAD + style + images})
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    actions = {action["image"]: action for action in json.loads(out)["actions"]}
    assert "notes" not in actions["logo"]
    assert actions["hero"]["notes"] == [
        "black-forest-labs/FLUX.1-schnell does not take negative_prompt: "
        "left out (styles.soft.negative_prompt)"
    ]


def test_a_defaults_parameter_is_left_out_where_the_model_does_not_take_it(project, run_cli):
    text = HEAD.replace("height = 512", "height = 512\nnum_steps = 20") + (
        '[images.hero]\nmodel = "Bytedance-Seedream-3.0"\nprompt = "x"\noutput = "a.png"\n'
    )
    project({"images.toml": text})
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        "note: Bytedance-Seedream-3.0 does not take num_steps: left out (defaults.num_steps)" in out
    )


def test_a_parameter_the_image_sets_is_one_error_for_its_declaration(project, run_cli):
    """Set on a matrix's declaration, the parameter is one mistake: one line there,
    naming its style and how many images it hits, not one line per image."""
    snippet = _readme_styles_snippet().replace(
        "[images.enemy]  ", '[images.enemy]\nnegative_prompt = "text"\n', 1
    )
    project({"images.toml": HEAD + snippet, "masks/crown.png": _png(512, 512)})
    for command in ("validate", "plan", "apply"):
        code, _, err = run_cli(command)
        assert code == 1, err
        assert err.splitlines() == [
            "error: images.toml:13:1: images.enemy.negative_prompt: "
            "black-forest-labs/FLUX.1-schnell does not take negative_prompt "
            "(stabilityai/stable-diffusion-xl-base-1.0 does): remove it here, or set it in "
            "its style 'pixel' or [defaults], where it applies only to the models that take "
            "it (for 6 of its images)"
        ], err


def test_problems_in_several_images_and_tables_are_all_reported_in_order(project, run_cli):
    project(
        {
            "images.toml": HEAD + '[images.a]\nprompt = "x"\noutput = "a.png"\n'
            '[images.b]\nprompt = "y"\nsed = 4\noutput = "b.png"\n'
            '[images."c d"]\nprompt = "z"\noutput = "c.png"\n'
            '[images.e]\nprompt = "w"\n'
            '[assets]\nmanfest = "a.json"\n'
        }
    )
    code, _, err = run_cli("validate")
    assert code == 1
    lines = err.splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "images.b.sed",
        "images.c d",
        "images.e.output",
        "assets.manfest",
    ], err


def _stat_saying(size: int, real=os.fstat):  # type: ignore[no-untyped-def]
    """os.fstat, as if the file had `size` bytes when it was asked (it grows after)."""

    def fstat(fd: int) -> os.stat_result:
        info = real(fd)
        fields = list(info)
        fields[6] = size  # st_size
        return os.stat_result(fields)

    return fstat


def test_a_manifest_that_grows_while_read_is_read_whole(tmp_path, monkeypatch):
    from nebula_build.core import manifest

    text = HEAD + '[images.a]\nprompt = "a"\noutput = "a.png"\n'
    (tmp_path / "images.toml").write_text(text, encoding="utf-8")
    monkeypatch.setattr(manifest.os, "fstat", _stat_saying(10))
    assert manifest.read_bytes(tmp_path / "images.toml") == text.encode()


def test_a_manifest_that_grows_past_its_bound_while_read_is_refused(tmp_path, monkeypatch):
    from nebula_build.core import manifest

    (tmp_path / "images.toml").write_text(HEAD + "#" * 200 + "\n", encoding="utf-8")
    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", 150)
    monkeypatch.setattr(manifest.os, "fstat", _stat_saying(10))
    with pytest.raises(manifest.ManifestError, match="more bytes than a manifest may have"):
        manifest.read_bytes(tmp_path / "images.toml")


def test_a_small_manifest_is_read_without_asking_for_its_bound(tmp_path):
    """A read allocates what it asks for: 64 MiB on every read (each watch round)."""
    import tracemalloc

    from nebula_build.core import manifest

    (tmp_path / "images.toml").write_text(HEAD, encoding="utf-8")
    tracemalloc.start()
    try:
        manifest.read_bytes(tmp_path / "images.toml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


#: values of an image table that make problems of every kind: unknown keys (in a `rows`
#: or `checks` table too), wrong types, a union's, a list's items
_TABLE_LINES = (
    'prompt = "x"',
    "prompt = 3",
    'output = "o.png"',
    "seed = 1.5",
    'widths = [1, "a", "b"]',
    'rows = { file = "d.csv", qq = 1, str = {} }',
    "rows = { file = 3, qq = 1, str = 2 }",
    "checks = { a = 1, alpha = 3 }",
    'matrix = { k = [1.5, "a"] }',
    "zz = 1",
    "yy = 2",
)


def _problem_laden(rng: random.Random) -> str:
    """A small manifest with many problems, in tables written in any order."""
    sections = ["[defaults]\nbb = 1\nwidth = 'x'\ncc = 2\n"] if rng.random() < 0.5 else []
    for n in range(rng.randint(0, 12)):
        name = rng.choice([f"i{n}", f"i{n}", f"b@d{n}"])
        lines = rng.sample(_TABLE_LINES, rng.randint(0, 5)) if rng.random() < 0.7 else []
        sections.append(f'[images."{name}"]\n' + "".join(f"{line}\n" for line in lines))
    for n in range(rng.randint(0, 3)):
        sections.append(f"[styles.s{n}]\n" + rng.choice(["q = 1\n", "prompt = 1\n", ""]))
        sections.append(f"[atlases.a{n}]\n" + rng.choice(["q = 1\n", 'output = "a.png"\n', ""]))
    rng.shuffle(sections)
    top = "".join(f"top{n} = 1\n" for n in range(rng.randint(0, 2)))
    return ("version = 1\n" if rng.random() < 0.9 else "") + top + "".join(sections)


def _problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as raised:
        parse(text, Path("images.toml"), "images.toml")
    return [str(problem) for problem in raised.value.problems]


def test_problems_past_the_bound_are_the_same_when_unknown_keys_are_left_unlisted(monkeypatch):
    """Past MAX_PROBLEMS, unknown keys (and tables holding nothing else) past the first
    problems are taken out before validating again: what is described, and the count of
    the rest, are what validating all of it says (each problem a line of its own: the
    pruned cannot join a line that many images share)."""
    rng = random.Random(20261202)
    cases = [_problem_laden(rng) for _ in range(300)]
    for bound in (1, 3, 8):
        monkeypatch.setattr(manifest_module, "MAX_PROBLEMS", bound)
        monkeypatch.setattr(manifest_module, "GROUPED_FROM", 1_000_000)
        pruned = [_problems(text) for text in cases]
        monkeypatch.setattr(manifest_module._Pruning, "table", lambda self, model, data: data)
        assert [_problems(text) for text in cases] == pruned
        monkeypatch.undo()
