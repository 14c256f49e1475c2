"""How a command that ends in one of nebula-build's errors says it: one line per
problem on stderr (the traceback too under NEBULA_BUILD_DEBUG=1, without secrets),
a JSON object under --json, workflow annotations under GitHub Actions."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TextIO

from nebula_build.cli.context import Context
from nebula_build.cli.stray import without_secrets
from nebula_build.errors import error_lines

if TYPE_CHECKING:
    from nebula_build.state.project import Project


def report_error(exc: Exception, ctx: Context) -> None:
    """Say `exc`, the error the command ended with, where its reader looks: after the
    installed plugins left out as broken, but one the error names."""
    ctx.say_left_out(str(exc))
    _print_error(exc, ctx.err)
    if getattr(ctx.args, "json", False):
        _print_json_error(exc, ctx.out)
    elif os.environ.get("GITHUB_ACTIONS") == "true":
        _annotate(exc, ctx, ctx.out)
    if getattr(ctx.args, "command", None) in _SUMMARIZED and not ctx.summarized:
        _summarize_failure(exc, ctx)


#: in a job summary or a pull request's comment, which points at the log for all
_SUMMARIZED_PROBLEMS = 20
#: the commands whose job summary and `--markdown` file say what a whole run did
_SUMMARIZED = ("plan", "apply")


def _print_error(exc: Exception, err: TextIO) -> None:
    from nebula_build.text import escaped
    from nebula_build.ui.style import Style, wants_color

    style = Style(wants_color(err))
    for line in error_lines(exc):
        prefix = style("error:", "red", "bold") + " " if not line.startswith("  ") else ""
        # a value from the command line or a file's name, escaped where no one did yet;
        # a value a manifest repeats may be a backend's secret
        err.write(f"{prefix}{escaped(without_secrets(line))}\n")
    if os.environ.get("NEBULA_BUILD_DEBUG"):
        _print_traceback(exc, err)


def _print_traceback(exc: Exception, err: TextIO) -> None:
    """NEBULA_BUILD_DEBUG=1: the error's traceback, and that of each image a plugin's
    bug failed (its message says this shows it), without the secrets backends named."""
    import traceback

    from nebula_build.errors import PluginError

    failures = getattr(exc, "failures", None)
    crashes = [e for e in (failures or {}).values() if isinstance(e, PluginError)]
    for error in (exc, *crashes):
        err.write(without_secrets("".join(traceback.format_exception(error))))


def _print_json_error(exc: Exception, out: TextIO) -> None:
    """Under --json, the error as a JSON object on stdout, for tools that drive the CLI.
    An apply that kept going already printed its results, failures included."""
    from nebula_build.errors import ApplyError
    from nebula_build.text import json_text
    from nebula_build.ui.report import error_json

    if not isinstance(exc, ApplyError):
        out.write(without_secrets(json_text({"error": error_json(exc)})) + "\n")


def _annotate(exc: Exception, ctx: Context, out: TextIO) -> None:
    """The error as GitHub workflow commands, so it shows on the pull request's diff."""
    from nebula_build.ui import github
    from nebula_build.ui.runnerlog import write_command

    source = None
    try:
        project = ctx.project()
        manifest: str | None = project.display_manifest
    except Exception:  # no project to point at: the annotation goes on no file
        manifest = None
    else:
        if getattr(exc, "failures", None):  # failed images point at their declarations
            from nebula_build.core.manifest import source_text

            source = source_text(project.manifest_path)
    for line in github.error_annotations(exc, manifest, source):
        write_command(out, without_secrets(line))


def _summarize_failure(exc: Exception, ctx: Context) -> None:
    """A plan or apply that failed before it had a plan to show says so, and why, in the
    job summary under GitHub Actions and in the `--markdown` file: a failed job's summary
    must not be empty, nor a pull request's comment keep the plan before."""
    from nebula_build.cli import markdownfile
    from nebula_build.ui import github, markdown

    on_github = os.environ.get("GITHUB_ACTIONS") == "true"
    if not on_github and markdownfile.requested(ctx) is None:
        return
    command: str = ctx.args.command
    project = _project(ctx)
    title = f"nebula-build {command}"
    title += f" ({project.display_manifest})" if project is not None else ""
    lines = [without_secrets(line) for line in error_lines(exc, _SUMMARIZED_PROBLEMS)]
    if on_github and (unwritten := github.append_summary(markdown.failed(title, command, lines))):
        ctx.warn(unwritten)
    if markdownfile.requested(ctx) is not None:
        text = markdown.failed(title, command, lines, budget=markdownfile.limit(ctx))
        markdownfile.write_failure(ctx, text, project)


def _project(ctx: Context) -> Project | None:
    """The project the command ran in; None where there is none to point at."""
    try:
        return ctx.project()
    except Exception:  # no manifest found, -C names no folder: the error says so
        return None
