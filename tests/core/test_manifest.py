"""Malformed manifests: one clear line each, naming file, line, column and key; exit 1."""

from __future__ import annotations

import pytest

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
        "images.toml:7:13: invalid TOML: Expected ']' at the end of a table declaration",
    ),
    "wrong type": (
        HEAD + '[images.hero]\nprompt = "x"\nwidth = "512"\noutput = "a.png"\n',
        'images.toml:9:1: images.hero.width: input should be a valid integer (got "512")',
    ),
    "unknown key with a suggestion": (
        HEAD + '[images.hero]\nprompt = "x"\nsed = 4\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.sed: unknown key (did you mean 'seed'?)",
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
    "unsupported parameter inherited from defaults": (
        HEAD.replace("height = 512", "height = 512\nnum_steps = 20")
        + '[images.hero]\nmodel = "Bytedance-Seedream-3.0"\nprompt = "x"\noutput = "a.png"\n',
        "images.toml:7:1: defaults.num_steps: Bytedance-Seedream-3.0 does not take num_steps "
        "(inherited by images.hero)",
    ),
    "output escaping the project": (
        HEAD + '[images.hero]\nprompt = "x"\noutput = "../outside.png"\n',
        "images.toml:9:1: images.hero.output: output must stay inside the project "
        "('../outside.png' uses '..')",
    ),
    "absolute output": (
        HEAD + '[images.hero]\nprompt = "x"\noutput = "/tmp/x.png"\n',
        "images.hero.output: output must be a path relative to the manifest's folder",
    ),
    "unsupported output type": (
        HEAD + '[images.hero]\nprompt = "x"\noutput = "a.gif"\n',
        "images.hero.output: unsupported file type '.gif'; use one of .png, .webp, .jpg, .jpeg",
    ),
    "size not a multiple of 8": (
        HEAD + '[images.hero]\nprompt = "x"\nwidth = 500\noutput = "a.png"\n',
        "images.toml:9:1: images.hero.width: must be a multiple of 8 within 64-2048 for "
        "black-forest-labs/FLUX.1-schnell (got 500)",
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
        "images.cap.image: 'in.gif' is not a JPG, PNG or WebP file",
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
        "images.hero image: image names may contain only letters, digits, '-' and '_'",
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
    "seed out of range": (
        HEAD + '[images.hero]\nprompt = "x"\nseed = -1\noutput = "a.png"\n',
        "images.hero.seed: must be within 0-4294967295 (got -1)",
    ),
    "duplicate output": (
        HEAD + '[images.a]\nprompt = "x"\noutput = "a.png"\n'
        '[images.b]\nprompt = "y"\noutput = "a.png"\n',
        "images.toml:12:1: images.b.output: a.png is also written by images.a",
    ),
    "bad backend setting": (
        HEAD + "[backends.preview]\nconcurrency = 0\n",
        "images.toml:8:1: backends.preview.concurrency: input should be greater than or equal to 1",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_manifest_is_one_clear_line(name, project, run_cli):
    text, expected = CASES[name]
    project({"images.toml": text, "m.png": b"", "in.png": b"", "in.gif": b"GIF89a"})
    for command in ("plan", "validate", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (command, out, err)
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error: ")
        assert expected in lines[0]
        assert "Traceback" not in err


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
    assert (
        err.strip() == "error: images.toml: not UTF-8 text (invalid continuation byte at byte 17)"
    )
