"""A newcomer's first usage mistakes get the command line they meant: no command shows
the help, `help COMMAND` works, and an option mistyped, put on the wrong side of the
command, or an image named without --target says what to type instead."""

from __future__ import annotations

import pytest

from tests.manifests import PREVIEW as HEAD

HERO = '[images.hero]\nprompt = "x"\noutput = "hero.png"\n'


def _said(run_cli, capsys, *argv: str) -> str:
    """The line of a usage error (argparse writes it to sys.stderr), then where the
    options are listed."""
    assert run_cli(*argv).code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    said, listed = err.strip().splitlines()
    assert listed.startswith("  (`nebula-build") and listed.endswith("options)")
    return said


def test_no_command_shows_the_commands_and_the_first_steps(run_cli):
    code, out, err = run_cli()
    assert code == 1
    assert err == ""  # on stdout, to be read through a pager (`nebula-build | less`)
    assert "the following arguments are required" not in out
    assert "  plan      show what apply would change, and why" in out
    assert "  nebula-build init           a starter images.toml in this folder" in out


def test_a_command_without_its_action_shows_the_actions(run_cli):
    code, out, _ = run_cli("cache")
    assert code == 1
    assert out.startswith("usage: nebula-build cache")
    assert "    push      upload the project's generations" in out


@pytest.mark.parametrize(
    ("topic", "usage"),
    [
        ((), "usage: nebula-build [-h]"),
        (("plan",), "usage: nebula-build plan [-h]"),
        (("cache", "push"), "usage: nebula-build cache push [-h]"),
    ],
)
def test_help_shows_the_help_of_nebula_build_or_of_a_command(topic, usage, run_cli):
    code, out, _ = run_cli("help", *topic)
    assert code == 0
    assert out.startswith(usage)
    assert "example:" in out or "first steps" in out


def test_help_of_a_mistyped_command_says_did_you_mean(project, run_cli):
    code, out, err = run_cli("help", "aply")
    assert code == 1
    assert out == ""
    assert err == (
        "error: no command 'aply' in nebula-build; did you mean 'apply'? "
        "(`nebula-build --help` lists them)\n"
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ("plan", "--targte", "hero"),
            "nebula-build plan: error: unrecognized arguments: --targte hero; "
            "did you mean --target?",
        ),
        (
            ("plan", "-json"),
            "nebula-build plan: error: unrecognized arguments: -json; did you mean --json?",
        ),
        (
            ("-c", ".", "plan"),
            "nebula-build: error: unrecognized arguments: -c; did you mean -C?",
        ),
    ],
    ids=str,
)
def test_a_mistyped_option_says_did_you_mean(argv, said, project, run_cli, capsys):
    project({"images.toml": HEAD + HERO})
    assert _said(run_cli, capsys, *argv) == said


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (("plan", "--json", "-f", "images.toml"), "nebula-build -f images.toml plan --json"),
        (("-C", ".", "apply", "-C", "my site"), "nebula-build -C . -C 'my site' apply"),
        (("cache", "push", "-fother.toml"), "nebula-build -fother.toml cache push"),
        (("plan", "-f"), "nebula-build -f FILE plan"),
    ],
    ids=str,
)
def test_a_global_option_after_the_command_says_where_it_goes(
    argv, meant, project, run_cli, capsys
):
    project({"images.toml": HEAD + HERO})
    flag = "-C" if "-C" in argv[1:] else "-f"
    assert _said(run_cli, capsys, *argv).endswith(f"; {flag} goes before the command: {meant}")


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (("--json", "plan"), "nebula-build plan --json"),
        (("--target", "hero", "apply", "-q"), "nebula-build apply --target hero -q"),
    ],
    ids=str,
)
def test_a_command_option_before_the_command_says_it_goes_after(
    argv, meant, project, run_cli, capsys
):
    project({"images.toml": HEAD + HERO})
    said = _said(run_cli, capsys, *argv)
    assert said.endswith(f"; it is an option of {meant.split()[1]}, and goes after it: {meant}")


def test_an_image_named_without_target_says_to_use_target(project, run_cli, capsys):
    project({"images.toml": HEAD + HERO + HERO.replace("hero", "icon")})
    said = _said(run_cli, capsys, "apply", "--json", "hero", "icon")
    assert said == (
        "nebula-build apply: error: unrecognized arguments: hero icon; to apply only some "
        "images, name each with --target: nebula-build apply --json --target hero --target icon"
    )
    assert not (project({}) / "hero.png").exists()


def test_minus_c_naming_a_file_says_to_use_minus_f(project, run_cli):
    project({"images.toml": HEAD + HERO})
    code, _, err = run_cli("-C", "images.toml", "plan")
    assert code == 1
    assert err == (
        "error: -C images.toml: a file, not a folder (-C DIR runs in DIR; -f FILE names the "
        "manifest: nebula-build -f images.toml …)\n"
    )
