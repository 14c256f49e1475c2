"""`nebula-build completion SHELL`: the script comes from the parser, so every command
and option completes; bash's is run for real."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from nebula_build.cli import build_parser


def _complete_in_bash(script, words, **run):
    line = " ".join(words)
    program = (
        f"source {script}; COMP_WORDS=({' '.join(map(shlex.quote, words))}); "
        f"COMP_CWORD={len(words) - 1}; "
        f'COMP_LINE="{line}"; COMP_POINT={len(line)}; _shtab_nebula_build; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, check=True, **run
    )
    return done.stdout.splitlines()


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


ROWS = "sku,name\n$(touch PWNED),tea\n`touch PWNED2`,coffee\n"


@pytest.fixture
def named(project, tmp_path):
    """A project whose image names come from data, some of them shell code, and the
    environment a shell runs in with `nebula-build` on its PATH (as pip puts it)."""
    images = (
        '[images.enemy]\nprompt = "a {kind}"\nmatrix = { kind = ["slime", "bat"] }\n'
        'output = "e/{kind}.png"\n[images.potion]\nprompt = "a potion"\noutput = "p.png"\n'
        '[images.row]\nrows = "rows.csv"\nid = "sku"\nprompt = "{name}"\noutput = "r/{name}.png"\n'
    )
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n' + images,
            "rows.csv": ROWS,
        }
    )
    shim = tmp_path / "bin" / "nebula-build"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m nebula_build "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    return root, {"cwd": root, "env": env}


NAMES = ["enemy[slime]", "enemy[bat]", "potion", "row[$(touch PWNED)]", "row[`touch PWNED2`]"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_image_names_from_the_manifest_and_never_runs_them(run_cli, named, tmp_path):
    root, run = named
    assert run_cli("list").out.splitlines() == NAMES
    assert run_cli("list", "enemy").out.splitlines() == ["enemy[slime]", "enemy[bat]"]
    script = tmp_path / "nebula-build.bash"
    script.write_text(run_cli("completion", "bash").out)
    words = ["nebula-build", "pick", "en"]
    assert _complete_in_bash(script, words, **run) == ["enemy\\[slime\\]", "enemy\\[bat\\]"]
    words = ["nebula-build", "apply", "--target", "po"]
    assert _complete_in_bash(script, words, **run) == ["potion"]
    words = ["nebula-build", "pick", "enemy\\[s"]  # what was typed, quoted already
    assert _complete_in_bash(script, words, **run) == ["enemy\\[slime\\]"]
    offered = _complete_in_bash(script, ["nebula-build", "history", "r"], **run)
    # inserted as they are offered, then run: each is one argument, its name exactly
    line = "printf '%s\\n' " + " ".join(offered)
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True, **run)
    assert done.stdout.splitlines() == NAMES[3:]
    assert not (root / "PWNED").exists() and not (root / "PWNED2").exists()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
def test_zsh_offers_image_names_as_they_are_and_never_runs_them(run_cli, named):
    """The function the zsh script completes names with, run with a compadd that
    prints what it is given."""
    root, run = named
    script = run_cli("completion", "zsh").out
    assert (
        ":NAME:_nebula_build_images" in script
        and "$(nebula-build list" not in script.split("# End Custom Preamble")[1]
    )
    function = script[script.index("_nebula_build_images() {") :]
    function = function[: function.index("\n}\n") + 3]
    program = f"compadd() {{ print -rl -- ${{(P)2}} }}\n{function}\n_nebula_build_images"
    done = subprocess.run(
        ["zsh", "-c", program], check=False, capture_output=True, text=True, **run
    )
    assert done.stdout.splitlines() == NAMES, done.stderr
    assert not (root / "PWNED").exists() and not (root / "PWNED2").exists()


def test_fish_and_zsh_complete_image_names_too(run_cli):
    fish = run_cli("completion", "fish").out
    assert "-n '__fish_seen_subcommand_from apply' -l target -r -a '(nebula-build list" in fish
    assert "-n '__fish_seen_subcommand_from pick' -a '(nebula-build list 2>/dev/null)'" in fish
    assert "nebula-build list 2>/dev/null" in run_cli("completion", "zsh").out
