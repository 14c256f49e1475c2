"""`nebula-build pick NAME [INDEX | --next | --prev]`: make another of an image's
candidate draws its output, from the cache (local or remote): zero generations."""

from __future__ import annotations

from nebula_build.cli.context import Context, ExitCode
from nebula_build.errors import UserError


def cmd_pick(ctx: Context) -> int:
    import asyncio

    from nebula_build.cli.build import ApplyListener, render_round
    from nebula_build.engine.candidates import picked, recorded_pick
    from nebula_build.engine.prepare import prepare, recovered_lock
    from nebula_build.engine.remotecache import configured
    from nebula_build.engine.round import RoundOptions, apply_round
    from nebula_build.plugin.manager import load_registry
    from nebula_build.state.projectlock import ProjectLock

    args = ctx.args
    project = ctx.project()
    registry = load_registry()
    manifest = project.display_manifest
    with ProjectLock(project.project_lock_path, timeout=args.lock_timeout, on_takeover=ctx.notice):
        lock = recovered_lock(project, ctx.notice)
        prepared = prepare(project, registry)
        spec = prepared.specs.get(args.name)
        if spec is None:
            raise UserError(f"{manifest}: no image named {args.name!r}")
        count = spec.candidates
        if count < 2:
            raise UserError(
                f"{manifest}: images.{args.name} has one draw: set `candidates = N` to "
                "have several to pick from"
            )
        spec = picked(prepared.specs, lock).bases[args.name]  # its inputs' picks applied
        current = recorded_pick(spec, lock.get(args.name)) or 0
        if args.next or args.prev:
            index = (current + (1 if args.next else -1)) % count
        elif args.index is None:
            raise UserError("pick: give the draw's INDEX, --next or --prev")
        else:
            index = args.index
        if not 0 <= index < count:
            raise UserError(f"pick: images.{args.name} has draws 0 to {count - 1} (got {index})")
        key = spec.drawn(index).generation_key
        remote = configured(prepared.resolved, notice=ctx.notice)
        if not prepared.store.has_ours(key) and not (remote and key in remote.lookup([key])):
            raise UserError(
                f"draw {index} of {args.name} is not in the cache here: `nebula-build apply` "
                "makes the candidates of an image it changes, `nebula-build cache pull` "
                "fetches them from a remote cache"
            )
        # locked: a pick never pays (a cache entry that fails its check is an error)
        options = RoundOptions(
            targets=[args.name], picks={args.name: index}, draws=False, locked=True
        )
        result = asyncio.run(
            apply_round(project, registry, options, listener=ApplyListener(ctx, quiet=True))
        )
    code = render_round(ctx, result)
    if code == ExitCode.OK and not result.generated:
        ctx.print(f"{args.name}: draw {index} of {count} is the output ({spec.output})")
        takers = [name for name, other in prepared.specs.items() if args.name in other.depends_on]
        if takers:
            ctx.notice(f"{', '.join(takers)} take its output: `nebula-build apply` remakes them")
    return code
