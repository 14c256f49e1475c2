"""`nebula-build completion bash|zsh|fish`: a shell completion script, made from the
command line's own parser, so it never lags behind a new command or option."""

from __future__ import annotations

import argparse
from collections.abc import Collection

from nebula_build.cli.context import Context, ExitCode

#: what completes an image's name: the manifest's images where the shell is
LIST_IMAGES = "nebula-build list 2>/dev/null"
#: the shell functions that offer them. A name comes from the project (a data row's
#: id): each is offered as it is, never expanded (bash's `compgen -W` and a zsh
#: `(…)` list both expand the words they are given, `$(…)` included), and inserted
#: quoted (bash inserts a function's words as they are; zsh's compadd quotes them)
_IMAGES_FUNCTION = "_nebula_build_images"
_PREAMBLE = {
    "bash": f"""
{_IMAGES_FUNCTION}() {{
  local name quoted
  while IFS= read -r name; do
    printf -v quoted '%q' "$name"
    [[ "$name" == "$1"* || "$quoted" == "$1"* ]] && printf '%s\\n' "$quoted"
  done < <({LIST_IMAGES})
}}
""",
    "zsh": f"""
{_IMAGES_FUNCTION}() {{
  local -a names
  names=("${{(@f)$({LIST_IMAGES})}}")
  compadd -a names
}}
""",
}
#: the arguments that take an image's name (in every command that has them)
_IMAGE_OPTIONS = ("target", "replace", "more", "patterns")
_IMAGE_POSITIONALS = {"pick": "name", "history": "name"}


def cmd_completion(ctx: Context) -> int:
    from nebula_build.cli import build_parser

    parser = build_parser()
    if ctx.args.shell == "fish":
        ctx.print(fish_script(parser))
    else:
        import shtab  # bash and zsh, from the same parser

        for action in image_arguments(parser):
            action.complete = {"bash": _IMAGES_FUNCTION, "zsh": _IMAGES_FUNCTION}  # type: ignore[attr-defined]
        script = shtab.complete(parser, shell=ctx.args.shell, preamble=_PREAMBLE[ctx.args.shell])
        ctx.print(script.rstrip("\n"))
    return ExitCode.OK


def image_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments that take image names: `nebula-build list` completes them."""
    return [
        action
        for name, command in _subcommands(parser).items()
        for action in command._actions
        if action.dest in _IMAGE_OPTIONS or _IMAGE_POSITIONALS.get(name) == action.dest
    ]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(text: str | None) -> str:
    return (text or "").replace("\\", "").replace("'", "\\'").replace("%%", "%")[:72]


def _option_lines(
    parser: argparse.ArgumentParser, condition: str, images: Collection[argparse.Action] = ()
) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        flags = []
        for option in action.option_strings:
            if option.startswith("--"):
                flags.append(f"-l {option[2:]}")
            elif len(option) == 2:
                flags.append(f"-s {option[1]}")
        if not flags:
            continue
        takes = " -r" if action.nargs != 0 else ""
        choices = f" -a '{' '.join(map(str, action.choices))}'" if action.choices else ""
        if action in images:
            choices = f" -a '({LIST_IMAGES})'"
        lines.append(
            f"complete -c {parser.prog.split()[0]} -n '{condition}' {' '.join(flags)}{takes}"
            f"{choices} -d '{_help(action.help)}'"
        )
    return lines


def fish_script(parser: argparse.ArgumentParser) -> str:
    """Completions for fish: the commands, then each command's options."""
    prog = parser.prog
    commands = _subcommands(parser)
    help_of = {
        choice.dest: choice.help
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    }
    lines = [
        f"# fish completion for {prog}: {prog} completion fish | source",
        f"complete -c {prog} -f",
    ]
    lines += _option_lines(parser, "__fish_use_subcommand")
    for name in commands:
        described = _help(help_of.get(name))
        lines.append(f"complete -c {prog} -n '__fish_use_subcommand' -a {name} -d '{described}'")
    images = image_arguments(parser)
    for name, command in commands.items():
        seen = f"__fish_seen_subcommand_from {name}"
        lines += _option_lines(command, seen, images)
        if any(a in images and not a.option_strings for a in command._actions):
            lines.append(f"complete -c {prog} -n '{seen}' -a '({LIST_IMAGES})'")
        for sub, subparser in _subcommands(command).items():
            lines.append(f"complete -c {prog} -n '__fish_seen_subcommand_from {name}' -a {sub}")
            lines += _option_lines(subparser, f"__fish_seen_subcommand_from {sub}")
    return "\n".join(lines)
