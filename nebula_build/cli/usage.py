"""Usage mistakes said so that the next command is right: an option mistyped, one put
on the wrong side of the command, an image name given without --target; and
`nebula-build help [COMMAND]`. Imported only when there is something to say."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from nebula_build.cli.context import Context, ExitCode
from nebula_build.errors import UserError, did_you_mean

#: nebula-build's own options, which go before the command
_GLOBAL_WITH_VALUE = ("-C", "-f")
_GLOBAL_FLAGS = ("-h", "--help", "--version")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands (or a command's actions) `parser` takes, by name; none for a leaf."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def unknown_global(argv: Sequence[str], parser: argparse.ArgumentParser) -> str | None:
    """What to say of the first option before the command that is not nebula-build's
    own (`-c DIR`, `--json plan`), or None. Without this, argparse takes the word
    after it for the command and says "invalid choice: '.'"."""
    at = 0
    while at < len(argv):
        word = argv[at]
        if word == "--" or not word.startswith("-") or word == "-":
            return None
        if not _is_global(word):
            return f"unrecognized arguments: {word}{_global_hint(argv, at, parser)}"
        at += 2 if word in _GLOBAL_WITH_VALUE else 1
    return None


def _is_global(word: str) -> bool:
    if word in _GLOBAL_FLAGS or word[:2] in _GLOBAL_WITH_VALUE:  # -Cdir, -fimages.toml
        return True
    name = word.partition("=")[0]  # argparse takes --vers for --version
    return name.startswith("--") and any(flag.startswith(name) for flag in _GLOBAL_FLAGS)


def _global_hint(argv: Sequence[str], at: int, parser: argparse.ArgumentParser) -> str:
    """`-c` is `-C`; `--json` is plan's, and goes after it; `--jsn` is plan's --json.
    An option a command takes as typed comes first, then one of nebula-build's own that
    it mistypes, then a command's that it mistypes."""
    word = argv[at]
    close = _meant_option(word, (*_GLOBAL_WITH_VALUE, *_GLOBAL_FLAGS))
    if close is not None and close.lower() == word.lower():
        return f"; did you mean {close}?"
    commands = subcommands(parser)
    found = _command_taking(argv, at, commands, exactly=True)
    if found is None and close is None:
        found = _command_taking(argv, at, commands, exactly=False)
    if found is None:
        return f"; did you mean {close}?" if close else ""
    name, meant, values = found
    moved = [meant + word[len(_name(word)) :], *argv[at + 1 : at + 1 + values]]
    rest = [*argv[:at], *argv[at + 1 + values :]]
    where = rest.index(name) + 1
    line = shlex.join(["nebula-build", *rest[:where], *moved, *rest[where:]])
    mistyped = "" if meant == _name(word) else f"did you mean {meant}? "
    return f"; {mistyped}it is an option of {name}, and goes after it: {line}"


def _command_taking(
    argv: Sequence[str], at: int, commands: dict[str, argparse.ArgumentParser], *, exactly: bool
) -> tuple[str, str, int] | None:
    """The command after `argv[at]` that takes it as an option (`exactly`, or one it
    likely stands for), that option, and how many words after it are its value, or
    None. The command is past that value: in `--target plan plan` the first `plan` is
    the value; in `--serve watch` (whose value is optional) `watch` is the command."""
    word = argv[at]
    for where in range(at + 1, len(argv)):
        command = commands.get(argv[where])
        options = [] if command is None else _option_strings(command)
        meant = _name(word) if exactly else _meant_option(word, options)
        action = None if command is None or meant is None else _option(command, meant)
        if meant is None or action is None:
            continue
        values = _values(action, word)
        if where == at + 1 and action.nargs == argparse.OPTIONAL:
            values = 0
        if where > at + values:
            return argv[where], meant, values
    return None


def _meant_option(word: str, options: Sequence[str]) -> str | None:
    """The option `word` likely stands for: itself, one it mistypes (`--jsn`, `-c`), or
    for a short `-j` that is neither, the one long option whose name starts with its
    letter (`--json`); None where no one option fits."""
    name = _name(word)
    if name in options:
        return name
    if len(name) < 2:  # `-` alone (standard input) names no option: none is meant
        return None
    if name.startswith("--"):  # by the names alone: their dashes made `--bogus` `--out`
        long = {option[2:]: option for option in options if option.startswith("--")}
        close = did_you_mean(name[2:], long)
        return None if close is None else long[close]
    close = did_you_mean(name, options)
    if close is not None or len(name) != 2 or name[1] == "-":
        return close
    letter = f"--{name[1]}".lower()
    starting = [option for option in options if option.lower().startswith(letter)]
    return starting[0] if len(starting) == 1 else None


def _name(word: str) -> str:
    """The option's name in `word` (`--json` of `--json=x`)."""
    return word.partition("=")[0]


def unrecognized(
    argv: Sequence[str],
    extras: Sequence[str],
    parser: argparse.ArgumentParser,
    command: argparse.ArgumentParser,
) -> str:
    """argparse's "unrecognized arguments" of `command` (the subparser, whose prog
    names it), with what was likely meant: `--targte`, `-f FILE` after the command,
    `plan hero`, `--json` before it."""
    before = unknown_global(argv, parser)
    if before is not None:
        return before
    message = f"unrecognized arguments: {' '.join(extras)}"
    return message + _after_command_hint(argv, extras, command)


def _after_command_hint(
    argv: Sequence[str], extras: Sequence[str], command: argparse.ArgumentParser
) -> str:
    word = extras[0]
    if len(command.prog.split()) < 2:  # `nebula-build --`: no command to place it by
        return ""
    name = command.prog.split()[1]  # `cache` of `nebula-build cache push`
    start = argv.index(name)
    if word[:2] in _GLOBAL_WITH_VALUE:
        at = len(argv) - 1 - argv[::-1].index(word)
        moved = argv[at : at + (1 if word[2:] else 2)]
        if len(moved) == 1 and not word[2:]:  # `plan -f`: the value is missing too
            moved = [word, "DIR" if word == "-C" else "FILE"]
        rest = [*argv[:at], *argv[at + len(moved) :]]
        line = shlex.join(["nebula-build", *rest[:start], *moved, *rest[start:]])
        return f"; {word[:2]} goes before the command: {line}"
    options = _option_strings(command)
    if word.startswith("-"):
        return _option_hint(word, options)
    if "--target" in options:  # `apply hero`: a name where --target NAME was meant
        images = [w for w in extras if not w.startswith("-")]
        kept = [w for w in argv[start:] if w not in images]
        targets = [w for image in images for w in ("--target", image)]
        line = shlex.join(["nebula-build", *argv[:start], *kept, *targets])
        return f"; to {name} only some images, name each with --target: {line}"
    return ""


def _option_hint(word: str, options: Sequence[str]) -> str:
    """`--jsn` or `-j` after plan is its --json; `--version` or `-v` after a command is
    nebula-build's own, which answers without one."""
    name = _name(word)
    meant = name if name in _GLOBAL_FLAGS else _meant_option(word, [*options, *_GLOBAL_FLAGS])
    if meant is None:
        return ""
    if meant in options:
        return f"; did you mean {meant}?"
    mistyped = "" if meant == name else f"did you mean {meant}? it"
    return f"; {mistyped or meant} goes before the command: nebula-build {meant}"


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings]


def _option(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    name = _name(word)
    return next((a for a in parser._actions if name in a.option_strings), None)


def _values(action: argparse.Action, word: str) -> int:
    """How many words after `word` are its value: none for a flag or `--x=value`."""
    return 0 if action.nargs == 0 or "=" in word else 1


def cmd_help(ctx: Context) -> int:
    """`nebula-build help [COMMAND [ACTION]]`: that help, as `--help` shows it."""
    from nebula_build.cli import build_parser

    parser = build_parser()
    for word in ctx.args.topic:
        commands = subcommands(parser)
        if word not in commands:
            close = did_you_mean(word, commands)
            hint = f"; did you mean {close!r}?" if close else ""
            raise UserError(
                f"no command {word!r} in {parser.prog}{hint} (`{parser.prog} --help` lists them)"
            )
        parser = commands[word]
    ctx.out.write(parser.format_help())
    return ExitCode.OK
