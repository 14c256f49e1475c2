"""A path the manifest may not use is one clear line: shown as it was typed (a Windows
path's backslashes single), and said once for a declaration whose every image has it."""

from __future__ import annotations

import pytest

HEAD = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""


def _errors(run_cli) -> list[str]:
    code, out, err = run_cli("plan")
    assert code == 1, out
    assert "Traceback" not in err
    return err.splitlines()


@pytest.mark.parametrize(
    ("declared", "said"),
    [
        (
            "output = 'C:\\site\\x.avif'",
            "images.hero.output: output must be a path relative to the manifest's folder, "
            "not 'C:\\site\\x.avif'",
        ),
        (
            "output = '\\\\server\\share\\x.png'",
            "images.hero.output: output must be a path relative to the manifest's folder, "
            "not '\\\\server\\share\\x.png'",
        ),
        (
            "output = 'site\\..\\..\\x.png'",
            "images.hero.output: output must stay inside the project ('site\\..\\..\\x.png' "
            "uses '..')",
        ),
        (
            'output = "C:\\\\it\'s\\\\x.png"',
            "images.hero.output: output must be a path relative to the manifest's folder, "
            'not "C:\\it\'s\\x.png"',
        ),
        (
            'output = "/x\\u202egnp.png"',  # shown as a terminal shows it: no override
            "images.hero.output: output must be a path relative to the manifest's folder, "
            "not '/xgnp.png'",
        ),
    ],
    ids=["drive", "share", "dots", "quote", "bidi"],
)
def test_a_windows_path_is_shown_as_it_was_typed(project, run_cli, declared, said):
    """Before: 'C:\\\\site\\\\x.avif', each backslash doubled by repr."""
    project({"images.toml": HEAD + f'\n[images.hero]\nprompt = "a cat"\n{declared}\n'})
    assert _errors(run_cli) == [f"error: images.toml:11:1: {said}"]


def test_windows_paths_of_inputs_and_rows_are_shown_as_typed(project, run_cli):
    project(
        {
            "images.toml": HEAD
            + """
[images.fill]
model = "black-forest-labs/FLUX.1-Fill-dev"
prompt = "a cat"
image = 'in\\a.gif'
mask = 'C:\\m.png'
output = "fill.png"

[images.product]
rows = 'data\\products.csv'
id = "sku"
prompt = "x"
output = "{sku}.png"

[images.cover]
rows = { files = 'content\\posts\\*.md' }
prompt = "x"
output = "{slug}.png"
"""
        }
    )
    errors = "\n".join(_errors(run_cli))
    assert "\\\\" not in errors, errors
    assert "images.fill.image: 'in\\a.gif' is not a JPG, PNG or WebP file" in errors
    assert "not 'C:\\m.png'" in errors
    assert "data file 'data\\products.csv' contains a backslash" in errors
    assert "images.cover.rows: 'content\\posts\\*.md' contains a backslash" in errors


def test_control_characters_are_still_shown_escaped(project, run_cli):
    project({"images.toml": HEAD + '\n[images.hero]\nprompt = "a cat"\noutput = "a\\u007f.png"\n'})
    assert _errors(run_cli) == [
        "error: images.toml:11:1: images.hero.output: output may not contain control "
        "characters ('a\\x7f.png')"
    ]
