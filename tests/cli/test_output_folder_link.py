"""An output folder that a symbolic link leads out of the project is refused by every
command that reads the manifest, not by apply alone: CI's plan is not green (nor
`--detailed-exitcode` 2, "1 to generate") for a manifest apply refuses."""

from __future__ import annotations

import pytest

from tests.manifests import PREVIEW

MANIFEST = PREVIEW + '\n[images.a]\nprompt = "a lighthouse"\noutput = "{output}"\n'

LEAVES = (
    "error: images.toml:11:1: images.a.output: 'linkout/a.png' leaves the project through a "
    "symbolic link; nebula-build only touches files inside the project\n"
)


@pytest.mark.parametrize(
    "command", [["validate"], ["plan"], ["plan", "--detailed-exitcode"], ["status"], ["apply"]]
)
def test_an_output_folder_linked_out_of_the_project_is_refused(project, run_cli, tmp_path, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = project({"images.toml": MANIFEST.format(output="linkout/a.png")})
    (root / "linkout").symlink_to(outside)
    code, out, err = run_cli(*command)
    assert (code, err) == (1, LEAVES), (out, err)
    assert list(outside.iterdir()) == []


def test_an_image_a_matrix_makes_through_a_link_out_is_said_at_its_declaration(
    project, run_cli, tmp_path
):
    (tmp_path / "outside").mkdir()
    text = MANIFEST.format(output="{c}/a.png").replace(
        "[images.a]\n", '[images.a]\nmatrix = { c = ["in", "linkout"] }\n'
    )
    root = project({"images.toml": text, "in/.keep": ""})
    (root / "linkout").symlink_to(tmp_path / "outside")
    code, _, err = run_cli("plan")
    assert code == 1 and err.startswith(
        "error: images.toml:12:1: images.a[linkout].output: 'linkout/a.png' leaves the project"
    ), err


def test_an_output_folder_linked_into_the_state_says_where_it_leads_once(project, run_cli):
    root = project({"images.toml": MANIFEST.format(output="alias/a.png"), "sub/.keep": ""})
    (root / ".nebula-build" / "cache").mkdir(parents=True)
    (root / "alias").symlink_to(".nebula-build/cache")
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: images.toml:11:1: images.a.output: 'alias/a.png' leads to "
        "'.nebula-build/cache/a.png' through a symbolic link, and that path is inside "
        ".nebula-build/, which belongs to the tool or to version control\n"
    )


def test_an_output_folder_linked_inside_the_project_is_planned(project, run_cli):
    root = project({"images.toml": MANIFEST.format(output="alias/deep/a.png"), "sub/.keep": ""})
    (root / "sub" / "deep").mkdir()
    (root / "alias").symlink_to("sub")
    code, out, err = run_cli("plan")
    assert code == 0 and "+ a  create  alias/deep/a.png" in out, err
