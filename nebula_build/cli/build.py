"""The commands that plan and build: validate, plan, status, apply, gc."""

from __future__ import annotations

import json
import time
import traceback
from typing import TYPE_CHECKING

from nebula_build.errors import ApplyError, NebulaBuildError, UserError
from nebula_build.ui.style import Style, wants_color

if TYPE_CHECKING:
    from nebula_build.core.plan import Plan
    from nebula_build.engine.apply import ApplyResult
from nebula_build.cli.context import Context, ExitCode, prepared_project


def cmd_validate(ctx: Context) -> int:
    prepared = prepared_project(ctx)
    ctx.print(f"{prepared.project.display_manifest}: {len(prepared.specs)} image(s), valid")
    return ExitCode.OK


def cmd_plan(ctx: Context) -> int:
    from nebula_build.engine.prepare import current_lock, plan_for
    from nebula_build.outputs.assetmanifest import atlas_actions
    from nebula_build.ui.report import plan_json, plan_text

    prepared = prepared_project(ctx)
    lock = current_lock(prepared.project, ctx.notice)
    plan = plan_for(
        prepared, lock, targets=ctx.args.target, replace=ctx.args.replace, force=ctx.args.force
    )
    atlases = atlas_actions(prepared, lock, plan=plan, force=ctx.args.force)
    prepared.files.save()
    if ctx.args.json:
        ctx.print(json.dumps(plan_json(plan, atlases), indent=2, ensure_ascii=False))
    else:
        ctx.print(plan_text(plan, ctx.style, atlases))
    pending_sheets = any(a.state in ("build", "conflict") for a in atlases)
    if ctx.args.detailed_exitcode and (plan.has_changes or pending_sheets):
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK


def cmd_status(ctx: Context) -> int:
    from nebula_build.engine.prepare import current_lock, plan_for
    from nebula_build.ui.report import plan_json, status_text

    prepared = prepared_project(ctx)
    plan = plan_for(prepared, current_lock(prepared.project, ctx.notice))
    prepared.files.save()
    if ctx.args.json:
        ctx.print(json.dumps(plan_json(plan), indent=2, ensure_ascii=False))
    else:
        ctx.print(status_text(plan, ctx.style))
    return ExitCode.OK


def cmd_apply(ctx: Context) -> int:
    import asyncio

    from nebula_build.engine.execute import execute
    from nebula_build.engine.prepare import plan_for, prepare, recovered_lock
    from nebula_build.engine.runstate import record_failures
    from nebula_build.outputs.assetmanifest import build_atlases
    from nebula_build.outputs.assetmanifest import update as update_assets
    from nebula_build.plugin.manager import load_registry
    from nebula_build.state.lockfile import read
    from nebula_build.state.projectlock import ProjectLock
    from nebula_build.ui.progress import Progress
    from nebula_build.ui.report import apply_json, summary_line

    args = ctx.args
    project = ctx.project()
    registry = load_registry()
    with ProjectLock(project.project_lock_path, timeout=args.lock_timeout, on_takeover=ctx.notice):
        lock = recovered_lock(project, ctx.notice)
        prepared = prepare(project, registry, backend=args.backend, read_inputs=True)
        plan = plan_for(prepared, lock, targets=args.target, replace=args.replace, force=args.force)
        refused = _refuse_apply(ctx, plan)
        if refused is not None:
            return refused
        if not plan.has_changes:
            sheet_failures = build_atlases(prepared, lock, force=args.force)
            update_assets(prepared, lock)
            prepared.files.save()
            if sheet_failures:
                raise ApplyError({f"atlas {n}": UserError(m) for n, m in sheet_failures.items()})
            if args.json:
                ctx.print(json.dumps(apply_json(plan, None), indent=2))
            else:
                ctx.print(f"No changes: {len(plan.actions)} image(s) up to date.")
            return ExitCode.OK
        for name in sorted({a.spec.backend for a in plan.generations if a.spec}):
            prepared.resolved.backend_classes[name].preflight(
                prepared.resolved.settings[name], prepared.project.root
            )
        if not args.json:
            ctx.print(summary_line(plan))
        live = wants_color(ctx.err) and ctx.err.isatty()
        progress = Progress(
            ctx.err,
            len(plan.changes),
            live=live,
            style=Style(wants_color(ctx.err)),
            quiet=args.quiet,
        )
        result = asyncio.run(
            execute(prepared, plan, lock, progress=progress, parallelism=args.parallelism)
        )
        progress.close()
        record_failures(project, result, prepared.specs)
        final = read(project)  # as the run left it; atlases and the asset manifest follow it
        sheets = build_atlases(prepared, final, force=args.force)
        update_assets(prepared, final)
    failures: dict[str, Exception] = dict(result.failures)
    failures |= {f"atlas {name}": UserError(message) for name, message in sheets.items()}
    _report_apply(ctx, plan, result, time.perf_counter() - progress.started_at, failures)
    return ExitCode.OK


def _refuse_apply(ctx: Context, plan: Plan) -> int | None:
    """--locked and --max-generations: refuse before anything is spent."""
    from nebula_build.ui.report import apply_json, plan_text

    generations = len(plan.generations)
    if ctx.args.locked and generations:
        if ctx.args.json:
            ctx.print(json.dumps(apply_json(plan, None), indent=2))
        else:
            ctx.print(plan_text(plan, ctx.style))
        ctx.err.write(
            f"error: --locked: {generations} image(s) would need generating; run "
            "`nebula-build apply` without --locked\n"
        )
        return ExitCode.CHANGES_PENDING
    limit = ctx.args.max_generations
    if limit is not None and generations > limit:
        raise UserError(
            f"this apply would generate {generations} image(s), more than "
            f"--max-generations {limit}; nothing was generated"
        )
    return None


def _report_apply(
    ctx: Context, plan: Plan, result: ApplyResult, elapsed: float, failures: dict[str, Exception]
) -> None:
    """The closing summary; every failure ends in an ApplyError (exit 1)."""
    from nebula_build.ui.report import apply_json

    if ctx.args.json:
        ctx.print(json.dumps(apply_json(plan, result), indent=2, ensure_ascii=False))
    else:
        done = len(result.outcomes) - len(result.failures)
        ctx.print(
            ctx.style(
                f"Apply finished in {elapsed:.1f}s: {done} done "
                f"({result.generated} generated), {len(result.failures)} failed.",
                "bold",
            )
        )
    for name, error in failures.items():
        if not isinstance(error, NebulaBuildError | OSError):
            ctx.err.write(f"internal error while building {name} (a bug, please report it):\n")
            traceback.print_exception(error, file=ctx.err)
    if failures:
        raise ApplyError(failures)


def cmd_gc(ctx: Context) -> int:
    from nebula_build.engine.gc import collect
    from nebula_build.engine.prepare import recovered_lock
    from nebula_build.state.projectlock import ProjectLock

    prepared = prepared_project(ctx)
    project = prepared.project
    with ProjectLock(
        project.project_lock_path,
        timeout=ctx.args.lock_timeout,
        command="gc",
        on_takeover=ctx.notice,
    ):
        lock = recovered_lock(project, ctx.notice)
        removed, freed = collect(prepared, lock, dry_run=ctx.args.dry_run)
    verb = "would remove" if ctx.args.dry_run else "removed"
    ctx.print(
        f"{verb} {removed} cache entr{'y' if removed == 1 else 'ies'} ({freed / 1_000_000:.1f} MB)"
    )
    return ExitCode.OK
