"""Odd words on the command line are said, never a traceback, and a word holding an
escape sequence reaches the terminal escaped, not for it to obey."""

from __future__ import annotations

import pytest


def _said(run_cli, capsys, *argv: str) -> str:
    """The line of a usage error (argparse writes it to sys.stderr), then where the
    options are listed."""
    assert run_cli(*argv).code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    said, listed = err.strip().splitlines()
    assert listed.startswith("  (`nebula-build") and listed.endswith("options)")
    return said


@pytest.mark.parametrize("argv", [("--",), ("-f", "images.toml", "--")])
def test_a_bare_double_dash_is_an_unrecognized_argument(argv, run_cli, capsys):
    said = _said(run_cli, capsys, *argv)
    assert said == "nebula-build: error: unrecognized arguments: --"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (("--serve", "watch"), "nebula-build watch --serve"),
        (("--serve", "9000", "watch"), "nebula-build watch --serve 9000"),
        (("--target", "plan", "plan"), "nebula-build plan --target plan"),
    ],
)
def test_an_option_before_the_command_it_could_take_for_a_value(argv, line, run_cli, capsys):
    said = _said(run_cli, capsys, *argv)
    assert said.endswith(f"and goes after it: {line}")


def test_an_option_whose_value_is_the_only_command_is_said_without_a_line(run_cli, capsys):
    said = _said(run_cli, capsys, "--target", "plan")
    assert said == "nebula-build plan: error: unrecognized arguments: --target"


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (("--x\x1b]0;pwned\x07",), "--x\\x1b]0;pwned\\x07"),
        (("plan", "--x\x1b[2J"), "--x\\x1b[2J"),
        (("plan", "he\x1b[31mro\u202e"), "--target 'he\\x1b[31mro\\u202e'"),
    ],
)
def test_a_word_with_escape_sequences_is_shown_escaped(argv, shown, run_cli, capsys):
    said = _said(run_cli, capsys, *argv)
    assert shown in said
    assert "\x1b" not in said
    assert "\u202e" not in said
