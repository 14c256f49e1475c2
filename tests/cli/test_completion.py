"""`nebula-build completion SHELL`: the script comes from the parser, so every command
and option completes; bash's is run for real."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nebula_build.cli import build_parser


def _complete_in_bash(script, words):
    line = " ".join(words)
    program = (
        f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
        f'COMP_LINE="{line}"; COMP_POINT={len(line)}; _shtab_nebula_build; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_their_options(run_cli, tmp_path):
    code, out, _ = run_cli("completion", "bash")
    assert code == 0
    script = tmp_path / "nebula-build.bash"
    script.write_text(out)
    assert _complete_in_bash(script, ["nebula-build", "hi"]) == ["history"]
    assert _complete_in_bash(script, ["nebula-build", "pi"]) == ["pick"]
    options = _complete_in_bash(script, ["nebula-build", "pick", "hero", "--"])
    assert {"--next", "--prev", "--pin", "--unpin"} <= set(options)
    assert "--more" in _complete_in_bash(script, ["nebula-build", "apply", "--m"])


def test_fish_and_zsh_name_every_command(run_cli):
    parser = build_parser()
    (commands,) = [a.choices for a in parser._actions if a.dest == "command"]
    fish = run_cli("completion", "fish").out
    zsh = run_cli("completion", "zsh").out
    for name in commands:
        assert f"-n '__fish_use_subcommand' -a {name} " in fish
        assert name in zsh
    assert "-n '__fish_seen_subcommand_from pick' -l unpin" in fish
    assert zsh.startswith("#compdef nebula-build")


def test_an_unknown_shell_is_one_line(run_cli, capsys):
    code, _, _ = run_cli("completion", "tcsh-ish")
    assert code == 1 and "invalid choice: 'tcsh-ish'" in capsys.readouterr().err
