"""A path the manifest may not use is one clear line: shown as it was typed (a Windows
path's backslashes single), and said once for a declaration whose every image has it."""

from __future__ import annotations

import pytest

from tests.conftest import fake_manifest, generation_log
from tests.manifests import PREVIEW as HEAD


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
            "images.hero.output: must be a path relative to the manifest's folder, "
            "not 'C:\\site\\x.avif'",
        ),
        (
            "output = '\\\\server\\share\\x.png'",
            "images.hero.output: must be a path relative to the manifest's folder, "
            "not '\\\\server\\share\\x.png'",
        ),
        (
            "output = 'site\\..\\..\\x.png'",
            "images.hero.output: must stay inside the project ('site\\..\\..\\x.png' uses '..')",
        ),
        (
            'output = "C:\\\\it\'s\\\\x.png"',
            "images.hero.output: must be a path relative to the manifest's folder, "
            'not "C:\\it\'s\\x.png"',
        ),
        (
            'output = "/x\\u202egnp.png"',  # the override shown as its escape, not obeyed
            "images.hero.output: must be a path relative to the manifest's folder, "
            "not '/x\\u202egnp.png'",
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
    assert "images.fill.image: 'in\\a.gif' is not a PNG, JPEG or WebP file" in errors
    assert "not 'C:\\m.png'" in errors
    assert "data file 'data\\products.csv' contains a backslash" in errors
    assert "images.cover.rows: 'content\\posts\\*.md' contains a backslash" in errors


def test_control_characters_are_still_shown_escaped(project, run_cli):
    project({"images.toml": HEAD + '\n[images.hero]\nprompt = "a cat"\noutput = "a\\u007f.png"\n'})
    assert _errors(run_cli) == [
        "error: images.toml:11:1: images.hero.output: may not contain control "
        "characters ('a\\x7f.png')"
    ]


def test_a_template_outside_the_project_is_one_line_for_all_its_rows(project, run_cli):
    """Before: one line per row, `images.product[tea-green].output: … ('../x/tea-green.png'
    uses '..')`, then the same for every other row, where a `.gif` output was one line."""
    project(
        {
            "images.toml": HEAD
            + """
[images.product]
rows = "data/products.csv"
id = "sku"
prompt = "{description}"
output = "../x/{sku}.png"

[images.shot]
matrix = { k = ["a", "b", "c"] }
prompt = "{k}"
output = 'C:\\site\\{k}.png'
""",
            "data/products.csv": "sku,description\ntea-green,green tea\nsencha,a sencha\n"
            "matcha,a matcha\n",
        }
    )
    assert _errors(run_cli) == [
        "error: images.toml:13:1: images.product.output: must stay inside the project "
        "('../x/{sku}.png' uses '..'; for 3 of its images)",
        "error: images.toml:18:1: images.shot.output: must be a path relative to the "
        "manifest's folder, not 'C:\\site\\{k}.png' (for 3 of its images)",
    ]


def test_a_value_that_leaves_the_project_is_said_at_the_value(project, run_cli):
    """The template is fine; one of the matrix's values is not: said at the value (as
    "leave the project", which x/../y.png does not: it climbs out of x/)."""
    project(
        {
            "images.toml": HEAD
            + '\n[images.shot]\nmatrix = { k = ["a", "..", "b"] }\nprompt = "{k}"\n'
            + 'output = "x/{k}/y.png"\n'
        }
    )
    assert _errors(run_cli) == [
        "error: images.toml:10:1: images.shot.matrix.k: '..' would make the output "
        "'x/../y.png' use '..' (a value may name folders, not climb out of one)"
    ]


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_a_folder_at_an_output_is_a_conflict_before_anything_is_generated(
    project, run_cli, fake_site, tmp_path, force
):
    """Before: planned `+ a create`; apply generated (and a paid backend billed) the
    image, then failed with "could not write out/a.png: Is a directory"."""
    log = tmp_path / "gen.log"
    images = {
        "a": {"prompt": "one", "output": "out/a.png"},
        "b": {"prompt": "two", "output": "out/b.png"},
    }
    root = project({"images.toml": fake_manifest(log, images)})
    (root / "out" / "a.png").mkdir(parents=True)
    planned = run_cli("plan", "--detailed-exitcode", *force)
    assert planned.code == 1
    said = "out/a.png is a folder: remove it or give this image another output"
    assert f"! a  conflict  out/a.png\n      {said}\n" in planned.out
    assert "--force" not in planned.out  # it cannot help
    applied = run_cli("apply", *force)
    assert applied.code == 1
    assert f"a: {said}\n" in applied.err
    assert generation_log(log) == ["b"]
    assert (root / "out" / "a.png").is_dir() and (root / "out" / "b.png").is_file()


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_a_file_where_an_outputs_folder_goes_is_a_conflict_before_anything_is_generated(
    project, run_cli, fake_site, tmp_path, force
):
    """A pull request commits a file `out` (or `out/sub`): planned `+ a create`, apply
    generated (and a paid backend billed) the image, then failed with "out is not a
    plain folder (a symbolic link or a file appeared there)"."""
    log = tmp_path / "gen.log"
    images = {
        "a": {"prompt": "one", "output": "out/sub/a.png"},
        "b": {"prompt": "two", "output": "b.png"},
    }
    root = project({"images.toml": fake_manifest(log, images), "out": "a file\n"})
    planned = run_cli("plan", *force)
    assert planned.code == 0, planned.err
    said = (
        "out is a file, where out/sub/a.png needs a folder: remove it or give this image "
        "another output"
    )
    assert f"! a  conflict  out/sub/a.png\n      {said}\n" in planned.out
    assert "--force" not in planned.out  # it cannot help
    applied = run_cli("apply", *force)
    assert applied.code == 1
    assert f"a: {said}\n" in applied.err
    assert generation_log(log) == ["b"]
    assert (root / "out").read_text() == "a file\n"
