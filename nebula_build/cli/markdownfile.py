"""`plan --markdown FILE` and `apply --markdown FILE`: the job summary's Markdown in a
file, sized for a pull or merge request comment, for any CI (GitLab has no job summary)
or a bot to post."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nebula_build.core.written import Read, as_one_file, read_too
from nebula_build.errors import UserError
from nebula_build.state.project import STATE_DIR
from nebula_build.text import file_key, printable

if TYPE_CHECKING:
    from nebula_build.cli.context import Context
    from nebula_build.core.plan import Plan
    from nebula_build.core.resolve import Resolved
    from nebula_build.state.project import Project

#: GitHub's limit on a comment's body is 65,536 characters (GitLab's on a note:
#: 1,000,000), less room for what a script adds (the line it finds its comment by)
DEFAULT_LIMIT = 65_000
#: the least `--markdown-limit` takes: room for the parts every plan has
LEAST_LIMIT = 10_000
#: where the lines a comment leaves out are, said where it cuts
LISTED = "(the job log lists all)"
#: ... where `apply -q` left them out of the job log too
LISTED_ELSEWHERE = "(`nebula-build plan --json` lists all)"


def requested(ctx: Context) -> Path | None:
    """The file `--markdown` names, from the folder the command runs in (`-C DIR`)."""
    name = getattr(ctx.args, "markdown", None)
    return None if not name else Path(ctx.start) / name


def refuse_project_files(ctx: Context, project: Project) -> None:
    """Refuse, before any work, a `--markdown` file the tool keeps: the manifest, the
    lock, anything in its state folder."""
    path = requested(ctx)
    if path is None:
        return
    resolved = path.resolve()
    if resolved in (project.manifest_path, project.lock_path) or any(
        resolved == project.root / name for name in project.own_files
    ):
        _refuse(ctx, f"{resolved.name}, which nebula-build reads and keeps")
    if resolved.is_relative_to(project.root / STATE_DIR):
        _refuse(ctx, f"inside {STATE_DIR}/, where nebula-build keeps its state")


def refuse_outputs(ctx: Context, project: Project, plan: Plan, resolved: Resolved) -> None:
    """Refuse a `--markdown` file that an image, an atlas or the asset manifest writes
    (or wrote), or that the manifest reads (a post `rows` would find next time): before
    apply generates anything."""
    path = requested(ctx)
    if path is None:
        return
    try:
        relative = path.resolve().relative_to(project.root).as_posix()
    except ValueError:
        return  # outside the project: no output is there
    reads = [Read("the manifest as rows", path) for path in resolved.data_files]
    reads += [
        Read(f"the manifest as a post ({pattern})", folder, tuple(pattern.split("/")))
        for folder, pattern, _ in resolved.data_globs
    ]
    for _, read in read_too({file_key(relative)}, (as_one_file(read) for read in reads)):
        _refuse(ctx, f"read by {read.reader}")
    for action in plan.actions:
        written = (action.output, action.old_output, *action.removes)
        if action.spec is not None:
            written += action.spec.paths
        if relative in written:
            _refuse(ctx, f"the output of image {action.image}")
    for file in plan.files:
        if relative in (file.output, file.frames, *file.removes):
            _refuse(ctx, f"the output of {file.label}")


def _refuse(ctx: Context, what: str) -> None:
    raise UserError(f"--markdown {_named(ctx)}: that is {what}; name another file")


def _named(ctx: Context) -> str:
    return printable(str(ctx.args.markdown), limit=200)


def write(ctx: Context, markdown: str) -> None:
    """Replace the `--markdown` file with `markdown`, whole or not at all."""
    from nebula_build.fsutil import atomic_write

    path = requested(ctx)
    if path is None:
        return
    try:
        atomic_write(path, markdown.encode(), durable=False)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"--markdown {_named(ctx)}: cannot write it: {reason}") from None


def listed(ctx: Context) -> str:
    """Where the lines the file leaves out can be read."""
    return LISTED_ELSEWHERE if getattr(ctx.args, "quiet", False) else LISTED


def limit(ctx: Context) -> int:
    """The most characters the file may hold."""
    return int(getattr(ctx.args, "markdown_limit", None) or DEFAULT_LIMIT)
