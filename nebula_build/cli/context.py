"""What every command gets: the parsed arguments, the output streams, shared steps."""

from __future__ import annotations

import argparse
import os
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TextIO

from nebula_build.ui.style import Style, wants_color

if TYPE_CHECKING:
    from collections.abc import Callable

    from nebula_build.engine.prepare import Prepared
    from nebula_build.plugin.manager import BackendRegistry
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

    def registry(self) -> BackendRegistry:
        """Every backend installed here, loaded once per command; an installed plugin
        that cannot be loaded is a warning (an error only for a manifest that uses it)."""
        if self._registry is None:
            from nebula_build.plugin.manager import load_registry

            self._registry = load_registry()
            for broken in self._registry.broken.values():
                self.warn(broken.warning)
        return self._registry

    @property
    def start(self) -> str:
        """The folder the command runs in: -C DIR, else the current one."""
        return str(self.args.directory) if self.args.directory else os.getcwd()  # noqa: PTH109

    @property
    def style(self) -> Style:
        return Style(wants_color(self.out))

    def notice(self, message: str) -> None:
        """A note on stderr; under GitHub Actions also a notice annotation, so a remote
        cache that failed or a balance that could not be read shows on the run's page."""
        self.err.write(Style(wants_color(self.err))(f"note: {message}", "yellow") + "\n")
        if os.environ.get("GITHUB_ACTIONS") == "true" and not getattr(self.args, "json", False):
            from nebula_build.ui.github import annotation
            from nebula_build.ui.runnerlog import write_command

            write_command(self.out, annotation("notice", message))

    def warn(self, message: str) -> None:
        self.err.write(Style(wants_color(self.err))(f"warning: {message}", "yellow") + "\n")

    def project(self) -> Project:
        from pathlib import Path

        from nebula_build.errors import UserError
        from nebula_build.state.project import Project

        start = Path(self.start)
        if not start.is_dir():
            raise UserError(f"-C {self.args.directory}: no such folder")
        return Project.find(start, self.args.file)

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def print_json(self, data: object, default: Callable[[Any], object] | None = None) -> None:
        """A command's --json answer: strings from a manifest, a lock or a server
        escaped where a terminal would not show them as they are."""
        from nebula_build.text import json_text

        self.print(json_text(data, default=default))


# --- commands -----------------------------------------------------------------


def prepared_project(ctx: Context, *, read_inputs: bool = False) -> Prepared:
    from nebula_build.engine.prepare import prepare

    backend = getattr(ctx.args, "backend", None)
    return prepare(ctx.project(), ctx.registry(), backend=backend, read_inputs=read_inputs)
