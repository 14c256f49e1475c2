"""`nebula-build accept NAME… | --all`: make an image's output, edited by hand, the file
images.lock records (see engine/accepting.py). Generates nothing."""

from __future__ import annotations

from nebula_build.cli.context import Context, ExitCode
from nebula_build.errors import UserError
from nebula_build.text import plural, printable


def cmd_accept(ctx: Context) -> int:
    from nebula_build.engine.accepting import accept_edits
    from nebula_build.state.projectlock import ProjectLock

    args = ctx.args
    if bool(args.names) == args.all:
        raise UserError("accept: name the images whose edited output to keep, or give --all")
    project = ctx.project()
    with ProjectLock(
        project.project_lock_path,
        timeout=args.lock_timeout,
        command="accept",
        on_takeover=ctx.notice,
    ):
        accepted = accept_edits(project, ctx.registry(), args.names, notice=ctx.notice)
    for one in accepted:
        again = " (in place of the edit accepted before)" if one.again else ""
        ctx.print(f"{one.name}: {printable(one.output, limit=200)} is its output as edited{again}")
    ctx.print(
        f"{project.lock_path.name} records {plural(len(accepted), 'hand edit', 'hand edits')}: "
        "apply keeps a copy of an edit under .nebula-build/backup/ before it replaces it "
        "(the image's spec changed), and never removes one; commit "
        f"{project.lock_path.name} with the files"
    )
    return ExitCode.OK
