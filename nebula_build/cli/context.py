"""What every command gets: the parsed arguments, the output streams, shared steps."""

from __future__ import annotations

import argparse
import os
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TextIO

from nebula_build.ui.style import Style, wants_color

if TYPE_CHECKING:
    from collections.abc import Callable

    from nebula_build.cli.eventloop import ExceptionHandler
    from nebula_build.engine.prepare import Prepared
    from nebula_build.plugin.manager import BackendRegistry, BrokenPlugin
    from nebula_build.state.project import Project


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    CHANGES_PENDING = 2


class Context:
    """What every command gets: parsed arguments and the output streams. Light on
    purpose: a no-op `plan` is answered having loaded little more than this."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self._registry: BackendRegistry | None = None
        #: the installed plugins left out as broken, not yet said (see `say_left_out`)
        self.left_out: list[BrokenPlugin] = []
        #: whether the command wrote its job summary and `--markdown` file (or tried):
        #: an error it then ends with writes none of its own (see cli/errorreport.py)
        self.summarized = False
        #: the options (`markdown`, `out`) whose file was refused: nothing is written to it
        self.refused_files: set[str] = set()
        #: puts back the thread exception hook set once plugins are loaded (see `close`)
        self._restore_thread_hook: Callable[[], None] | None = None
        #: the exception handler of the event loops run once plugins are loaded: a task
        #: or callback a plugin left to the loop that fails is one line (cli/eventloop.py)
        self.loop_failures: ExceptionHandler | None = None

    def registry(self) -> BackendRegistry:
        """Every backend installed here, loaded once per command; an installed plugin
        that cannot be loaded is a warning as the command ends (an error only for a
        manifest that uses it, which says it once)."""
        if self._registry is None:
            from nebula_build.cli.threadfailures import loop_failures_in_one_line, say_in_one_line
            from nebula_build.plugin.manager import load_registry

            self._registry = load_registry()
            self._restore_thread_hook = say_in_one_line(self.warn, self.err.write, self._registry)
            self.loop_failures = loop_failures_in_one_line(
                self.warn, self.err.write, self._registry
            )
            self.left_out = sorted(self._registry.broken.values(), key=lambda b: b.name)
        return self._registry

    def close(self) -> None:
        """The command has ended: a thread that fails from now on is Python's to say."""
        if self._restore_thread_hook is not None:
            self._restore_thread_hook()
            self._restore_thread_hook = None

    def say_left_out(self, said: str = "") -> None:
        """Warn of each installed plugin left out as broken, but one whose problem `said`
        (the error the command ends with) holds already."""
        left_out, self.left_out = self.left_out, []
        for broken in left_out:
            if broken.problem not in said:
                self.warn(broken.warning)

    @property
    def start(self) -> str:
        """The folder the command runs in: -C DIR, else the current one."""
        return str(self.args.directory) if self.args.directory else os.getcwd()  # noqa: PTH109

    @property
    def style(self) -> Style:
        return Style(wants_color(self.out))

    def notice(self, message: str, *, annotate: bool = True) -> None:
        """A note on stderr; under GitHub Actions also a notice annotation (`annotate`),
        so a remote cache that failed or a balance that could not be read shows on the
        run's page."""
        self.err.write(Style(wants_color(self.err))(f"note: {_shown(message)}", "yellow") + "\n")
        if (
            annotate
            and os.environ.get("GITHUB_ACTIONS") == "true"
            and not getattr(self.args, "json", False)
        ):
            from nebula_build.ui.github import annotation
            from nebula_build.ui.runnerlog import write_command

            write_command(self.out, annotation("notice", message))

    def warn(self, message: str) -> None:
        self.err.write(Style(wants_color(self.err))(f"warning: {_shown(message)}", "yellow") + "\n")

    def project(self) -> Project:
        from pathlib import Path

        from nebula_build.errors import UserError
        from nebula_build.state.project import Project
        from nebula_build.text import escaped_value, shell_option

        start = Path(self.start)
        if start.is_file():  # the folder as typed, escaped: a line break in it is no new line
            raise UserError(
                escaped_value(
                    f"{shell_option('-C', self.args.directory)}: a file, not a folder (-C DIR "
                    "runs in DIR; -f FILE names the manifest: nebula-build "
                    f"{shell_option('-f', self.args.directory)} …)"
                )
            )
        if not start.is_dir():
            raise UserError(
                escaped_value(f"{shell_option('-C', self.args.directory)}: no such folder")
            )
        return Project.find(start, self.args.file)

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def print_json(self, data: object, default: Callable[[Any], object] | None = None) -> None:
        """A command's --json answer: strings from a manifest, a lock or a server
        escaped where a terminal would not show them as they are."""
        from nebula_build.text import json_text

        self.print(json_text(data, default=default))


def _shown(message: str) -> str:
    """`message` as the terminal shows it: a value it holds (a file's name, a word of the
    command line) escaped where no one did yet, its own lines kept."""
    from nebula_build.text import escaped

    return "\n".join(escaped(line) for line in message.split("\n"))


# --- commands -----------------------------------------------------------------


def prepared_project(ctx: Context, *, read_inputs: bool = False) -> Prepared:
    from nebula_build.engine.prepare import prepare

    backend = getattr(ctx.args, "backend", None)
    return prepare(ctx.project(), ctx.registry(), backend=backend, read_inputs=read_inputs)
