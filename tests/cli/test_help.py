"""Every command's --help says what it does and shows one example to copy."""

from __future__ import annotations

import argparse

import pytest

from nebula_build.cli import build_parser


def _commands() -> list[list[str]]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = []
    for name, parser in sub.choices.items():
        commands.append([name])
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands += [[name, inner] for inner in action.choices]
    return commands


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_help_has_a_description_and_an_example(command, run_cli, capsys):
    assert run_cli(*command, "--help").code == 0
    text = capsys.readouterr().out
    usage, description = text.split("\n\n")[:2]
    assert usage.startswith(f"usage: nebula-build {' '.join(command)}")
    assert not description.startswith("options:") and description.strip().endswith(".")
    assert all(len(line) <= 80 for line in description.splitlines())
    example = text.split("\nexample:\n", 1)[1]
    assert f"nebula-build {command[0]}" in example.splitlines()[0]
