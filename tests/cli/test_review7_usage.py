"""What a newcomer's review met (sixteenth pass): an empty option value taken for no
option, and a table written the wrong way said in a validation library's words."""

from __future__ import annotations

import pytest

from tests.manifests import PREVIEW

IMAGE = '[images.a]\nprompt = "x"\noutput = "a.png"\n'


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (("-f", "", "plan"), "argument -f: must name a file"),
        (("-C", "", "plan"), "argument -C: must name a folder"),
        (("apply", "--backend", ""), "argument --backend: must name a backend"),
        (("plan", "--backend", " "), "argument --backend: must name a backend"),
        (("gallery", "--out", ""), "argument --out: must name a folder"),
    ],
)
def test_an_empty_option_value_is_refused_not_taken_for_none(
    project, run_cli, capsys, arguments, said
):
    """`apply --backend "$UNSET"` ran on the manifest's backends, `-f ''` said
    "error:  is a folder", `gallery --out ''` wrote the default gallery."""
    root = project({"images.toml": PREVIEW + IMAGE})
    result = run_cli(*arguments)
    assert result.code != 0
    assert f"error: {said}\n  (`nebula-build" in capsys.readouterr().err
    assert not (root / "a.png").exists() and not (root / ".nebula-build/gallery").exists()


@pytest.mark.parametrize(
    ("written", "said"),
    [
        (
            '[[images]]\nprompt = "x"\noutput = "a.png"\n',
            "images.toml:8:1: images: [[images]] makes a list; write each as a table of its "
            "own, named: [images.NAME]",
        ),
        ('images = "x"', 'images.toml:2:1: images: must be a table (got "x")'),
        ("images = []", "images.toml:2:1: images: must be a table (got [])"),
        (
            '[images."café"]\nprompt = "x"\noutput = "a.png"\n',
            "images.toml:8:1: images.café: image names may contain only ASCII letters, "
            "digits, '-' and '_'",
        ),
        (
            '[styles."my look"]\nprompt = "x"\n' + IMAGE,
            "images.toml:8:1: styles.my look: style names may contain only ASCII letters, "
            "digits, '-' and '_'",
        ),
    ],
)
def test_a_table_written_the_wrong_way_is_said_in_toml_s_words(project, run_cli, written, said):
    """pydantic's "input should be a valid dictionary"; "image names" of a style."""
    above_every_table = written.startswith("images = ")
    manifest = f"version = 1\n{written}\n" if above_every_table else PREVIEW + written
    project({"images.toml": manifest})
    code, out, err = run_cli("validate")
    assert (code, out, err) == (1, "", f"error: {said}\n")
