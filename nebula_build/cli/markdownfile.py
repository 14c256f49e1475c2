"""`plan --markdown FILE` and `apply --markdown FILE`: the job summary's Markdown in a
file, sized for a pull or merge request comment, for any CI (GitLab has no job summary)
or a bot to post. Where a file a command writes beside its outputs may go is decided
here for each option that names one (`plan --out FILE` too, see cli/savedplan.py):
`option` is the option's name as argparse keeps it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nebula_build.core.written import Read, as_one_file, read_too
from nebula_build.errors import UserError
from nebula_build.state.guard import RESERVED_FOLDERS
from nebula_build.state.project import STATE_DIR
from nebula_build.text import file_key, printable

if TYPE_CHECKING:
    from nebula_build.cli.context import Context
    from nebula_build.core.plan import Plan
    from nebula_build.core.resolve import Resolved
    from nebula_build.state.lockfile import Entries
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
#: the options that name a file a command writes beside its outputs
WRITTEN = ("markdown", "out")


def requested(ctx: Context, option: str = "markdown") -> Path | None:
    """The file `--markdown` names, from the folder the command runs in (`-C DIR`)."""
    name = getattr(ctx.args, option, None)
    return None if not name else Path(ctx.start) / name


def refuse_project_files(ctx: Context, project: Project) -> None:
    """Refuse, before any work, a `--markdown` or `--out` file the tool keeps (the
    manifest, the lock, anything in its state folder), or both naming one file."""
    named = {option: path.resolve() for option in WRITTEN if (path := requested(ctx, option))}
    for option, path in named.items():
        _refuse_linked_out(ctx, project.root, option)
        _refuse_kept(ctx, project, option, path)
    if len(named) > 1 and len(set(named.values())) == 1:
        ctx.refused_files.update(named)
        raise UserError(f"{named_file(ctx, 'out')}: --markdown writes that file too")


def _refuse_linked_out(ctx: Context, root: Path, option: str) -> None:
    """Refuse a file named inside the project (its `root`) whose folder a link leads out
    of it: a link a pull request committed (`reports -> ~/.ssh`) must not choose where
    the command writes."""
    start = Path(ctx.start).resolve()
    named = Path(os.path.normpath(start / getattr(ctx.args, option)))
    if named.is_relative_to(root) and not named.parent.resolve().is_relative_to(root):
        _refuse(ctx, option, "in a folder a link leads out of the project")


def in_version_control(root: Path, resolved: Path) -> bool:
    """Whether `resolved` (a path with no link left in it) is a version control folder
    of the project (`.git`, a file in a worktree) or inside one: never ours to write."""
    if not resolved.is_relative_to(root):
        return False
    return not _VERSION_CONTROL.isdisjoint(
        part.casefold() for part in resolved.relative_to(root).parts
    )


#: the folders of the reserved ones that version control keeps (`.git`, `.hg`, `.svn`)
_VERSION_CONTROL = RESERVED_FOLDERS - {STATE_DIR}


def _refuse_kept(ctx: Context, project: Project, option: str, resolved: Path) -> None:
    if resolved in (project.manifest_path, project.lock_path) or any(
        resolved == project.root / name for name in project.own_files
    ):
        _refuse(ctx, option, f"{resolved.name}, which nebula-build reads and keeps")
    if resolved.is_relative_to(project.root / STATE_DIR):
        _refuse(ctx, option, f"inside {STATE_DIR}/, where nebula-build keeps its state")
    if in_version_control(project.root, resolved):
        _refuse(ctx, option, "inside a version control folder (.git/), never the tool's to write")


def refuse_outputs(
    ctx: Context, project: Project, plan: Plan, resolved: Resolved, lock: Entries
) -> None:
    """Refuse a `--markdown` or `--out` file that an image, an atlas or the asset
    manifest writes (or wrote), or that the manifest reads (an image's input, a post
    `rows` would find next time): before apply generates anything. Every image of the
    manifest and the lock counts, not only those the plan lists (`--target`)."""
    for option in WRITTEN:
        path = requested(ctx, option)
        if path is not None and (relative := _in_project(project, path)) is not None:
            _refuse_output(ctx, option, relative, plan, resolved, lock=lock)


def _in_project(project: Project, path: Path) -> str | None:
    """`path` relative to the project's root; None outside it, where no output is."""
    try:
        return path.resolve().relative_to(project.root).as_posix()
    except ValueError:
        return None


def _refuse_output(
    ctx: Context, option: str, relative: str, plan: Plan, resolved: Resolved, *, lock: Entries
) -> None:
    reads = [Read("the manifest as rows", path) for path in resolved.data_files]
    reads += [
        Read(f"the manifest as a post ({pattern})", folder, tuple(pattern.split("/")))
        for folder, pattern, _ in resolved.data_globs
    ]
    named = file_key(relative)
    for _, read in read_too({named}, (as_one_file(read) for read in reads)):
        _refuse(ctx, option, f"read by {read.reader}")
    for owner, paths in _written(plan, resolved, lock):
        if _names(paths, named):
            _refuse(ctx, option, f"the output of {printable(owner, limit=120)}")
    for image, spec in resolved.specs.items():
        if _names((spec.image, spec.mask, spec.palette_file), named):
            _refuse(ctx, option, f"an input of image {printable(image, limit=120)}")


def _names(paths: Sequence[str | None], named: str) -> bool:
    """Whether one of `paths` is the file `named` (a `file_key`)."""
    return any(path and file_key(path) == named for path in paths)


def _written(
    plan: Plan, resolved: Resolved, lock: Entries
) -> Iterator[tuple[str, Sequence[str | None]]]:
    """(owner, the files it writes or wrote) of each image and file made from them."""
    for action in plan.actions:
        spec_paths = action.spec.paths if action.spec is not None else ()
        yield (
            f"image {action.image}",
            (action.output, action.old_output, *action.removes, *spec_paths),
        )
    for file in plan.files:
        yield file.label, (file.output, file.frames, *file.removes)
    for image, spec in resolved.specs.items():
        yield f"image {image}", spec.paths
    for name, atlas in resolved.atlases.items():
        yield f"atlas {name}", atlas.paths
    if resolved.asset_manifest is not None:
        yield "asset manifest", (resolved.asset_manifest,)
    for image, entry in lock.items():
        yield f"image {image}", tuple(entry.files())


def _refuse(ctx: Context, option: str, what: str) -> None:
    ctx.refused_files.add(option)
    raise UserError(f"{named_file(ctx, option)}: that is {what}; name another file")


def named_file(ctx: Context, option: str = "markdown") -> str:
    """The option and the file it names, as an error shows them: `--markdown plan.md`."""
    name = printable(str(getattr(ctx.args, option)), limit=200)
    return f"--{option.replace('_', '-')} {name}"


def write(ctx: Context, text: str, option: str = "markdown") -> None:
    """Replace the `--markdown` file with `text`, whole or not at all."""
    from nebula_build.fsutil import atomic_write

    path = requested(ctx, option)
    if path is None:
        return
    try:
        atomic_write(path, text.encode(), durable=False)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"{named_file(ctx, option)}: cannot write it: {reason}") from None


#: how every file `--markdown` writes begins (`ui.markdown`): one an earlier run wrote
OURS = b"### nebula-build "


def write_failure(ctx: Context, text: str, project: Project | None) -> None:
    """Replace the `--markdown` file with `text`, what a command that failed says, where
    that cannot be a file the tool keeps or an image writes or reads: not one refused,
    nor, inside the project (or with none found), one that holds anything but a plan an
    earlier run wrote, since a manifest that failed to load leaves the images' files
    unknown. A file left as it is, or that cannot be written, is a warning: the error
    the command ended with comes first."""
    path = requested(ctx)
    if path is None or "markdown" in ctx.refused_files:
        return
    if not Path(ctx.start).is_dir() and not Path(ctx.args.markdown).is_absolute():
        return  # named from a -C folder that is not there, as the error says
    try:
        if project is not None:
            refuse_project_files(ctx, project)
        else:  # no manifest found (a pull request removed it): where it runs stands for it
            _refuse_linked_out(ctx, Path(ctx.start).resolve(), "markdown")
        inside = project is None or _in_project(project, path) is not None
        if inside and path.exists() and not _holds_a_plan(path):
            ctx.warn(
                f"{named_file(ctx)}: left as it is: it holds no plan nebula-build wrote, "
                "and the manifest was not read, to tell whether an image writes or reads it"
            )
            return
        write(ctx, text)
    except UserError as error:
        ctx.warn(str(error))


def _holds_a_plan(path: Path) -> bool:
    """Whether `path` is a file that begins as `--markdown` writes one."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(OURS)) == OURS
    except OSError:
        return False


def listed(ctx: Context) -> str:
    """Where the lines the file leaves out can be read."""
    return LISTED_ELSEWHERE if getattr(ctx.args, "quiet", False) else LISTED


def limit(ctx: Context) -> int:
    """The most characters the file may hold."""
    return int(getattr(ctx.args, "markdown_limit", None) or DEFAULT_LIMIT)
