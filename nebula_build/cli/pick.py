"""`nebula-build pick NAME [INDEX | --next | --prev]`: make another of an image's
candidate draws its output, from the cache (local or remote): zero generations."""

from __future__ import annotations

from nebula_build.cli.context import Context, ExitCode


def cmd_pick(ctx: Context) -> int:
    import asyncio

    from nebula_build.cli.build import ApplyListener, render_round
    from nebula_build.engine.picking import pick_draw
    from nebula_build.plugin.manager import load_registry
    from nebula_build.state.projectlock import ProjectLock

    args = ctx.args
    project = ctx.project()
    registry = load_registry()
    step = 1 if args.next else -1 if args.prev else 0
    with ProjectLock(project.project_lock_path, timeout=args.lock_timeout, on_takeover=ctx.notice):
        chosen, result = asyncio.run(
            pick_draw(
                project,
                registry,
                args.name,
                index=args.index,
                step=step,
                listener=ApplyListener(ctx, quiet=True),
            )
        )
    code = render_round(ctx, result)
    if code == ExitCode.OK and not result.generated:
        ctx.print(
            f"{args.name}: draw {chosen.index} of {chosen.count} is the output ({chosen.output})"
        )
        if chosen.takers:
            ctx.notice(
                f"{', '.join(chosen.takers)} take its output: `nebula-build apply` remakes them"
            )
    return code
