"""A value from the command line (`-C DIR`, `-f FILE`, a file's name) reaches the
terminal escaped in the error it ends in, never for the terminal to obey; a message
whose values were escaped already reads as it did."""

from __future__ import annotations

import pytest

from tests.manifests import PREVIEW as HEAD

HERO = '[images.hero]\nprompt = "a calm sea"\noutput = "hero.png"\n'


def _error(run_cli, *argv: str) -> str:
    code, out, err = run_cli(*argv)
    assert (code, out) == (1, "")
    assert "\x1b" not in err and "\u202e" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("-C", "x\x1b[2Jy", "plan"), "error: -C 'x\\x1b[2Jy': no such folder\n"),
        (("-C", "a\nerror: forged", "plan"), "error: -C 'a\\nerror: forged': no such folder\n"),
        (
            ("-f", "x\x1b]0;pwned\x07.toml", "plan"),
            "error: x\\x1b]0;pwned\\x07.toml: file not found\n",
        ),
        (("-f", "x\u202eg.toml", "validate"), "error: x\\u202eg.toml: file not found\n"),
    ],
)
def test_a_value_from_the_command_line_is_said_escaped(argv, said, project, run_cli):
    project({})
    assert _error(run_cli, *argv) == said


def test_a_typed_backslash_escape_is_told_apart_from_the_character(project, run_cli):
    project({})
    typed = _error(run_cli, "-C", "x\\x1b", "plan")
    real = _error(run_cli, "-C", "x\x1b", "plan")
    assert typed == "error: -C 'x\\\\x1b': no such folder\n"
    assert real == "error: -C 'x\\x1b': no such folder\n"


def test_a_windows_path_is_said_as_typed(project, run_cli):
    project({})
    assert _error(run_cli, "-C", "C:\\site", "plan") == "error: -C 'C:\\site': no such folder\n"


def test_minus_c_naming_a_file_with_an_escape_in_its_name_is_said_escaped(project, run_cli):
    project({"x\x1b[2J.toml": HEAD + HERO})
    assert _error(run_cli, "-C", "x\x1b[2J.toml", "plan") == (
        "error: -C 'x\\x1b[2J.toml': a file, not a folder (-C DIR runs in DIR; -f FILE names "
        "the manifest: nebula-build -f 'x\\x1b[2J.toml' …)\n"
    )


def test_a_folder_without_a_manifest_is_said_escaped(tmp_path, run_cli):
    folder = tmp_path / "p\x1b[31m"
    folder.mkdir()
    err = _error(run_cli, "-C", str(folder), "plan")
    assert err.startswith(f"error: no images.toml in {tmp_path}/p\\x1b[31m or any folder above")


def test_inspect_of_a_file_named_with_an_escape_is_said_escaped(project, run_cli):
    project({"a\x1b[2J.png": b"not an image"})
    err = _error(run_cli, "inspect", "a\x1b[2J.png")
    assert err.startswith("error: a\\x1b[2J.png: "), err


def test_a_message_escaped_already_reads_as_before(project, run_cli):
    project({"images.toml": HEAD + HERO.replace("hero.png", "/x\\u202egnp.png")})
    err = _error(run_cli, "plan")
    assert "not '/x\\u202egnp.png'" in err
    assert "\\\\u202e" not in err


def test_init_says_the_files_it_wrote_escaped(tmp_path, run_cli):
    folder = tmp_path / "q\x1b[2J"
    code, out, _ = run_cli("-C", str(folder), "-f", "s\u202e.toml", "init")
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out
    assert f"wrote {tmp_path}/q\\x1b[2J/s\\u202e.toml\n" in out
    assert "next: nebula-build -f 's\\u202e.toml' plan" in out


FORGED = "a\nerror: b.toml"


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        (  # a problem in a key: was "error: a" and "error: error: b.toml:3:9: …"
            HEAD + HERO + "width = 7\n",
            "error: a\\nerror: b.toml:",
        ),
        (HEAD + "[images.hero\n", "error: a\\nerror: b.toml:"),  # TOML that does not parse
        (b"version = 1\n\xff\n", "error: a\\nerror: b.toml:2:1: not UTF-8 text"),
    ],
)
def test_a_manifest_named_with_a_line_break_says_its_problem_on_one_line(
    manifest, said, project, run_cli
):
    project({FORGED: manifest})
    for argv in (("-f", FORGED, "plan"), ("-f", FORGED, "validate"), ("-f", FORGED, "apply")):
        err = _error(run_cli, *argv)
        assert err.startswith(said) and err.count("\n") == 1, err


def test_a_missing_manifest_named_with_a_line_break_is_one_line(project, run_cli):
    project({})
    assert _error(run_cli, "-f", FORGED, "plan") == "error: a\\nerror: b.toml: file not found\n"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("'a\\x1b'", "images.a\\\\x1b: image names may contain only"),  # typed: backslash, x1b
        ('"a\\u001b"', "images.a\\x1b: image names may contain only"),  # an escape character
        ('"a\\u202e"', "images.a\\u202e: image names may contain only"),
        ('"a\\n"', "images.a\\n: image names may contain only"),
        ("'C:\\site'", "images.C:\\site: image names may contain only"),
    ],
)
def test_an_image_name_with_a_typed_escape_is_told_apart_from_the_character(
    key, said, project, run_cli
):
    project({"images.toml": f'{HEAD}[images.{key}]\nprompt = "x"\noutput = "a.png"\n'})
    assert said in _error(run_cli, "validate")


def test_a_manifest_named_with_a_typed_escape_is_told_apart_from_the_character(project, run_cli):
    project({})
    typed = _error(run_cli, "-f", "x\\x1b.toml", "validate")
    real = _error(run_cli, "-f", "x\x1b.toml", "validate")
    assert typed == "error: x\\\\x1b.toml: file not found\n"
    assert real == "error: x\\x1b.toml: file not found\n"


def test_a_post_named_with_a_typed_escape_is_said_as_the_guard_says_it(project, run_cli):
    posts = '[images.p]\nrows = { files = "posts/*.md" }\nprompt = "{title}"\n'
    project(
        {
            "images.toml": HEAD + posts + 'output = "out/{slug}.png"\n',
            "posts/a\\x1b.md": "---\ntitle: t\n---\n",
        }
    )
    err = _error(run_cli, "validate")
    assert "cannot read posts/a\\\\x1b.md: data file 'posts/a\\\\x1b.md' contains" in err, err


@pytest.mark.parametrize(
    ("header", "entry"),
    [
        ("a\\new", "a_new = 'a\\new'"),  # a typed backslash, pasted back as typed
        ("a new\u202e", 'a_new = "a new\\u202e"'),  # an override, as an escape TOML reads
    ],
)
def test_a_columns_entry_to_paste_reads_back_as_the_header(header, entry, project, run_cli):
    rows = '[images.p]\nrows = "d.csv"\nid = "sku"\nprompt = "x"\nwhere = "a_new == 1"\n'
    project(
        {
            "images.toml": HEAD + rows + 'output = "out/{sku}.png"\n',
            "d.csv": f"sku,{header}\nx,1\n",
        }
    )
    assert f'rows = {{ file = "d.csv", columns = {{ {entry} }} }}' in _error(run_cli, "validate")
