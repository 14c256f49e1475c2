"""An option mistyped gets a "did you mean" wherever it stands: a short `-j` for the one
long option starting with its letter, a command's option mistyped before the command,
and nebula-build's own (--version) after one."""

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


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (("--jsn", "plan"), "did you mean --json? it is an option of plan, and goes after it: "),
        (("-j", "plan"), "did you mean --json? it is an option of plan, and goes after it: "),
        (("--tagret", "hero", "plan"), "did you mean --target? it is an option of plan, and "),
    ],
)
def test_a_command_option_mistyped_before_the_command_says_the_line_meant(
    argv, hint, run_cli, capsys
):
    said = _said(run_cli, capsys, *argv)
    assert hint in said, said
    line = "nebula-build plan --target hero" if "hero" in argv else "nebula-build plan --json"
    assert said.endswith(line)


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (("status", "-v"), "; did you mean --version? it goes before the command: "),
        (("status", "-V"), "; did you mean --version? it goes before the command: "),
        (("status", "--versoin"), "; did you mean --version? it goes before the command: "),
        (("status", "--version"), "; --version goes before the command: "),
    ],
)
def test_nebula_builds_own_option_after_a_command_says_where_it_goes(argv, hint, run_cli, capsys):
    said = _said(run_cli, capsys, *argv)
    assert said == f"nebula-build status: error: unrecognized arguments: {argv[1]}{hint}" + (
        "nebula-build --version"
    )


@pytest.mark.parametrize(
    ("argv", "meant"),
    [(("plan", "-j"), "--json"), (("status", "-d"), "--detailed-exitcode"), (("-v",), "--version")],
)
def test_a_short_option_is_taken_for_the_long_one_starting_with_its_letter(
    argv, meant, run_cli, capsys
):
    assert _said(run_cli, capsys, *argv).endswith(f"; did you mean {meant}?")


def test_a_short_option_no_one_option_starts_with_gets_no_hint(run_cli, capsys):
    said = _said(run_cli, capsys, "plan", "-x")
    assert said == "nebula-build plan: error: unrecognized arguments: -x"


@pytest.mark.parametrize("command", ["status", "plan", "validate"])
def test_a_lone_dash_is_not_taken_for_help(command, run_cli, capsys):
    said = _said(run_cli, capsys, command, "-")
    assert said == f"nebula-build {command}: error: unrecognized arguments: -"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("plan", "--bogus"), "unrecognized arguments: --bogus"),  # was "did you mean --out?"
        (("plan", "--forse"), "unrecognized arguments: --forse; did you mean --force?"),
        (("plan", "--OUT"), "unrecognized arguments: --OUT; did you mean --out?"),
    ],
)
def test_a_long_option_is_guessed_from_its_name_not_its_dashes(argv, said, run_cli, capsys):
    assert _said(run_cli, capsys, *argv) == f"nebula-build plan: error: {said}"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ("apply", "--max-generations", "2.5"),
            "argument --max-generations: not a whole number: '2.5'",
        ),
        (("apply", "--parallelism", "x"), "argument --parallelism: not a whole number: 'x'"),
        (("watch", "--serve", "x"), "argument --serve: not a whole number: 'x'"),
        (("watch", "--serve", "99999"), "argument --serve: not a port (0-65535): '99999'"),
        (
            ("apply", "--max-generations", "٣"),
            "argument --max-generations: not a whole number: '٣'",
        ),
        (("apply", "--lock-timeout", "x"), "argument --lock-timeout: not a number of seconds: 'x'"),
        (("apply", "--lock-timeout", "nan"), "argument --lock-timeout: must be zero or more"),
    ],
)
def test_a_number_option_given_no_number_says_so_not_the_parsers_name(argv, said, run_cli, capsys):
    """It read "invalid _count value: '2.5'": the name of a function inside the tool."""
    line = _said(run_cli, capsys, *argv)
    assert line.endswith(said), line
