"""What each command's --help says above and below its flags: what it does, and one
example to copy."""

from __future__ import annotations

import argparse
import textwrap

#: command (or "cache push"...) -> (description, example command line with its comment)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": (
        "Write a starter images.toml (and a .gitignore line for .nebula-build/) in the "
        "current folder, or in DIR with -C; -f FILE writes that manifest instead (a "
        "second one beside images.toml, with its own lock).",
        "nebula-build init && nebula-build apply   # a starter project, made offline",
    ),
    "list": (
        "The images images.toml declares, one name per line, in its order: what --target, "
        "--replace, pick and history take (shell completion reads it).",
        "nebula-build list 'enemy[*,idle]'",
    ),
    "validate": (
        "Check images.toml: its keys, values, placeholders, backends and models. "
        "Generates nothing and writes no file but its cache; of an input image it reads the "
        "header alone (its size).",
        "nebula-build validate --backend preview",
    ),
    "plan": (
        "Show what `apply` would do to each image, atlas and asset manifest, and why. "
        "Changes nothing. --markdown FILE also writes it as Markdown, sized for a pull or "
        "merge request comment; --out FILE saves it for `apply --plan FILE` (docs/ci.md).",
        "nebula-build plan --detailed-exitcode   # 0 no changes, 2 changes, 1 a conflict",
    ),
    "apply": (
        "Generate what the plan says, write the outputs, atlases and asset manifest, and "
        "update images.lock. Images that fail do not stop the others. --plan FILE: only "
        "if the plan is still the one `plan --out FILE` saved, else nothing.",
        "nebula-build apply --backend preview --target hero",
    ),
    "status": (
        "Each image, atlas and asset manifest: up to date, pending (and why), in conflict, "
        "or failed in the last apply; then a summary line.",
        "nebula-build status --detailed-exitcode   # 0 up to date, 2 pending, 1 conflict/failed",
    ),
    "models": (
        "Which model takes which generation parameter, for each backend (or ask the "
        "Nebula API for its model list with --remote).",
        "nebula-build models --backend nebula",
    ),
    "watch": (
        "Apply, then apply again each time images.toml, an input image or a data file "
        "it reads (a CSV, a post) is saved, or a post is added; --serve shows a live "
        "gallery in the browser.",
        "nebula-build watch --backend preview --serve",
    ),
    "gallery": (
        "Write an HTML contact sheet of every image (prompt, parameters, status) and "
        "print its file:// address.",
        "nebula-build gallery --out site-gallery",
    ),
    "inspect": (
        "Show the generation metadata an image file carries: the image, its prompt and "
        "parameters, its generation key.",
        "nebula-build inspect images/hero.png   # the starter's hero, after an apply",
    ),
    "schema": (
        "Print the JSON Schema of images.toml (or, with --assets, of the asset manifest) "
        "for editors and validators.",
        "nebula-build schema > images.schema.json",
    ),
    "cache": (
        "Share generations with your team through the remote cache ([cache] remote in "
        "images.toml, or NEBULA_BUILD_CACHE_REMOTE).",
        "nebula-build cache status",
    ),
    "cache push": (
        "Upload the project's generations that the remote cache lacks.",
        "nebula-build cache push",
    ),
    "cache pull": (
        "Download the generations the manifest needs from the remote cache.",
        "nebula-build cache pull",
    ),
    "cache status": (
        "How many of the manifest's generations the local and the remote cache hold.",
        "nebula-build cache status --json",
    ),
    "pick": (
        "Make another candidate draw, or an earlier generation (`history NAME`), an "
        "image's output. Generates nothing.",
        "nebula-build pick hero 2   # the third draw of hero",
    ),
    "accept": (
        "Keep an output file you edited by hand as the image's output: images.lock records "
        "it as it is, and plan calls it up to date. apply keeps a copy of the edit before "
        "it replaces it (the image's spec changed) and never removes it. Generates nothing; "
        "the edit must be of the image the manifest still declares.",
        "nebula-build accept hero   # keep the retouched hero.png",
    ),
    "history": (
        "An image's earlier generations, the last one replaced first, with what changed "
        "between them.",
        "nebula-build history hero",
    ),
    "completion": (
        "Print the shell completion script for bash, zsh or fish, made from this "
        "command line's own parser.",
        'eval "$(nebula-build completion bash)"   # in ~/.bashrc',
    ),
    "gc": (
        "Remove cache entries that no image, candidate draw or history refers to, and "
        "with --backups the folders of .nebula-build/backup/ (with --older-than 30d, "
        "those of runs more than 30 days ago); --dry-run lists them first.",
        "nebula-build gc --dry-run",
    ),
    "help": (
        "Show the help of nebula-build, or of a command (the same as COMMAND --help): "
        "what it does, its options and an example.",
        "nebula-build help apply",
    ),
}

#: below the command list of `nebula-build --help` (and of a bare `nebula-build`)
FIRST_STEPS = """\
first steps (offline and free on the preview backend, the one init sets):
  nebula-build init           a starter images.toml in this folder
  nebula-build plan           what apply would make, and why
  nebula-build apply          makes it; images.lock records what made each file
  nebula-build watch --serve  rebuilds on every save, with a live gallery

`nebula-build help COMMAND` (or COMMAND --help): its options and an example.
`nebula-build schema`: every key of images.toml, each with what it does (the
source's README.md and docs/manifest.md say more)."""


def describe(parser: argparse.ArgumentParser, command: str) -> None:
    """Give `parser` (the subcommand `command`) its description and example; a command
    without them keeps argparse's plain help (tests/cli/test_help.py asks for them)."""
    if command not in COMMANDS:
        return
    description, example = COMMANDS[command]
    parser.description = textwrap.fill(description, width=78)
    parser.epilog = f"example:\n  {example}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def describe_all(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every subcommand of `sub`, and the actions of those that have their own."""
    for name, parser in sub.choices.items():
        describe(parser, name)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for inner, inner_parser in action.choices.items():
                    describe(inner_parser, f"{name} {inner}")
