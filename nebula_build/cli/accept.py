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
        said = accept_edits(project, ctx.registry(), args.names, notice=ctx.notice)
    lock = project.lock_path.name
    if not said:
        ctx.print("Nothing to accept: no output file is changed by hand.")
        return ExitCode.OK
    for one in said:
        output = printable(one.output, limit=200)
        if one.already:
            ctx.print(f"{one.name}: {output} is already the output {lock} records")
            continue
        again = " (in place of the edit accepted before)" if one.again else ""
        ctx.print(f"{one.name}: {output} is its output as edited{again}")
    accepted = sum(not one.already for one in said)
    if accepted:
        ctx.print(
            f"{lock} records {plural(accepted, 'hand edit', 'hand edits')}: apply keeps a "
            "copy of an edit under .nebula-build/backup/ before it replaces it (the "
            f"image's spec changed), and never removes one; commit {lock} with the files"
        )
    if atlases := sorted({atlas for one in said for atlas in one.atlases}):
        named = ", ".join(printable(atlas, limit=80) for atlas in atlases[:3])
        more = f" and {len(atlases) - 3} more" if len(atlases) > 3 else ""
        which = "atlas" if len(atlases) == 1 else "atlases"
        ctx.print(f"`nebula-build apply` packs the edit into {which} {named}{more}")
    return ExitCode.OK
