"""The command line: parse arguments, run a command, map errors to exit codes.

`main(argv) -> int` is callable in process; it is the only place that prints
errors or decides an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import __version__
from .errors import ApplyError, NebulaBuildError, UserError
from .project import Project
from .style import Style, wants_color

if TYPE_CHECKING:
    from .apply import ApplyResult
    from .galleryserver import GalleryServer
    from .lockfile import Entries
    from .plan import Plan
    from .watch import Round
    from .workflow import Prepared


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    CHANGES_PENDING = 2


@dataclass
class Context:
    """What every command gets: parsed arguments and the output streams."""

    args: argparse.Namespace
    out: TextIO
    err: TextIO

    @property
    def style(self) -> Style:
        return Style(wants_color(self.out))

    def notice(self, message: str) -> None:
        self.err.write(Style(wants_color(self.err))(f"note: {message}", "yellow") + "\n")

    def project(self) -> Project:
        start = Path(self.args.directory) if self.args.directory else Path.cwd()
        if not start.is_dir():
            raise UserError(f"-C {self.args.directory}: no such folder")
        return Project.find(start, self.args.file)

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")


# --- commands -----------------------------------------------------------------


def cmd_init(ctx: Context) -> int:
    from .scaffold import init_project

    folder = Path(ctx.args.directory or ".")
    for line in init_project(folder, force=ctx.args.force):
        ctx.print(line)
    ctx.print("next: nebula-build plan, then nebula-build apply")
    return ExitCode.OK


def _prepared(ctx: Context, *, read_inputs: bool = False) -> Prepared:
    from .plugins import load_registry
    from .workflow import prepare

    backend = getattr(ctx.args, "backend", None)
    return prepare(ctx.project(), load_registry(), backend=backend, read_inputs=read_inputs)


def cmd_validate(ctx: Context) -> int:
    prepared = _prepared(ctx)
    ctx.print(f"{prepared.project.display_manifest}: {len(prepared.specs)} image(s), valid")
    return ExitCode.OK


def cmd_plan(ctx: Context) -> int:
    from .assets import atlas_actions
    from .report import plan_json, plan_text
    from .workflow import current_lock, plan_for

    prepared = _prepared(ctx)
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
    from .report import plan_json, status_text
    from .workflow import current_lock, plan_for

    prepared = _prepared(ctx)
    plan = plan_for(prepared, current_lock(prepared.project, ctx.notice))
    prepared.files.save()
    if ctx.args.json:
        ctx.print(json.dumps(plan_json(plan), indent=2, ensure_ascii=False))
    else:
        ctx.print(status_text(plan, ctx.style))
    return ExitCode.OK


def cmd_apply(ctx: Context) -> int:
    import asyncio

    from .assets import build_atlases
    from .assets import update as update_assets
    from .execute import execute
    from .plugins import load_registry
    from .progress import Progress
    from .projectlock import ProjectLock
    from .report import apply_json, summary_line
    from .runstate import record_failures
    from .workflow import plan_for, prepare

    args = ctx.args
    project = ctx.project()
    registry = load_registry()
    with ProjectLock(project.project_lock_path, timeout=args.lock_timeout, on_takeover=ctx.notice):
        lock = _recovered_lock(project, ctx)
        prepared = prepare(project, registry, backend=args.backend, read_inputs=True)
        plan = plan_for(prepared, lock, targets=args.target, replace=args.replace, force=args.force)
        refused = _refuse_apply(ctx, plan)
        if refused is not None:
            return refused
        if not plan.has_changes:
            sheet_failures = build_atlases(prepared, force=args.force)
            update_assets(prepared)
            prepared.files.save()
            if sheet_failures:
                raise ApplyError({f"atlas {n}": UserError(m) for n, m in sheet_failures.items()})
            if args.json:
                ctx.print(json.dumps(apply_json(plan, None), indent=2))
            else:
                ctx.print(f"No changes: {len(plan.actions)} image(s) up to date.")
            return ExitCode.OK
        for name in sorted({a.spec.backend for a in plan.generations if a.spec}):
            prepared.resolved.backend_classes[name].preflight(prepared.resolved.settings[name])
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
        sheets = build_atlases(prepared, force=args.force)
        update_assets(prepared)
    failures: dict[str, Exception] = dict(result.failures)
    failures |= {f"atlas {name}": UserError(message) for name, message in sheets.items()}
    _report_apply(ctx, plan, result, time.perf_counter() - progress.started_at, failures)
    return ExitCode.OK


def _refuse_apply(ctx: Context, plan: Plan) -> int | None:
    """--locked and --max-generations: refuse before anything is spent."""
    from .report import apply_json, plan_text

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
    from .report import apply_json

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


def cmd_watch(ctx: Context) -> int:
    import asyncio
    import contextlib

    from .plugins import load_registry
    from .projectlock import ProjectLock
    from .watch import Watcher, filesystem_changes

    args = ctx.args
    project = ctx.project()
    registry = load_registry()
    style = Style(wants_color(ctx.out))
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            ProjectLock(
                project.project_lock_path,
                timeout=args.lock_timeout,
                command="watch",
                on_takeover=ctx.notice,
            )
        )
        on_round = None
        if args.serve is not None:
            from .galleryserver import GalleryServer

            try:
                server = stack.enter_context(GalleryServer(args.host, args.serve))
            except OSError as exc:
                raise UserError(
                    f"cannot serve the gallery on {args.host}:{args.serve} "
                    f"({exc.strerror}); pass another port: --serve PORT"
                ) from None
            on_round = _gallery_publisher(project, server)
            ctx.print(style(f"gallery: {server.url}", "bold"))
        watcher = Watcher(
            project,
            registry,
            out=ctx.out,
            style=style,
            backend=args.backend,
            parallelism=args.parallelism,
            force=args.force,
            on_round=on_round,
        )
        if not args.once:
            ctx.print(
                style(f"watching {project.display_manifest} and its inputs (Ctrl-C to stop)", "dim")
            )
        try:
            asyncio.run(watcher.run(filesystem_changes(watcher), once=args.once))
        except KeyboardInterrupt:
            ctx.print("stopped")
    return ExitCode.OK


def _gallery_publisher(project: Project, server: GalleryServer) -> Callable[[Round], None]:
    from .gallery import cards, render
    from .runstate import read_failures

    def publish(report: Round) -> None:
        if report.plan is None:
            return  # keep showing the last good state
        items = cards(
            report.plan,
            project,
            failures=read_failures(project),
            link="served",
            # The first round builds everything: marking it all "just changed" says nothing.
            changed=report.changed if report.number > 1 else [],
        )
        files = {
            a.spec.output: project.path_of(a.spec.output) for a in report.plan.actions if a.spec
        }
        html = render(
            items,
            title=f"{project.root.name} · nebula-build",
            live=True,
            round_number=report.number,
        )
        server.publish(html, files, report.number, report.changed)

    return publish


def cmd_gallery(ctx: Context) -> int:
    from .gallery import cards, render
    from .runstate import read_failures
    from .workflow import current_lock, plan_for

    prepared = _prepared(ctx)
    project = prepared.project
    out = Path(ctx.args.out).resolve() if ctx.args.out else project.gallery_dir
    plan = plan_for(prepared, current_lock(project, ctx.notice))
    items = cards(plan, project, failures=read_failures(project), base=out)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(render(items, title=f"{project.root.name} · nebula-build"), encoding="utf-8")
    ctx.print(f"wrote {os.path.relpath(page)} ({len(items)} images)")
    return ExitCode.OK


def cmd_models(ctx: Context) -> int:
    from .plugins import load_registry
    from .report import models_text

    if ctx.args.remote:
        return _remote_models(ctx)
    registry = load_registry()
    names = [ctx.args.backend] if ctx.args.backend else registry.names()
    tables = {}
    for name in names:
        cls = registry.get(name)
        tables[name] = cls.models(cls.settings_model())
    if ctx.args.json:
        data = {b: {m: sorted(s.params) for m, s in t.items()} for b, t in tables.items()}
        ctx.print(json.dumps(data, indent=2))
    else:
        ctx.print(models_text(tables, ctx.style))
    return ExitCode.OK


def _remote_models(ctx: Context) -> int:
    """The provider's own model list, to find ids (Seedream's) and prices."""
    import asyncio

    from .backends.nebula import NebulaSettings, list_remote_models

    raw: dict[str, object] = {}
    try:
        project = ctx.project()
    except UserError:
        project = None
    if project is not None:
        from .manifest import load

        raw = dict(
            load(project.manifest_path, project.display_manifest).model.backends.get("nebula", {})
        )
    settings = NebulaSettings.model_validate(raw)
    rows = asyncio.run(list_remote_models(settings))
    if ctx.args.json:
        ctx.print(json.dumps(rows, indent=2, ensure_ascii=False))
        return ExitCode.OK
    columns = ("model_name", "model_type", "price", "model_alias")
    table = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in [list(columns), *table]) for i in range(len(columns))]
    for line in [list(columns), *table]:
        ctx.print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    ctx.print(
        "\nUse model_name as `model` in images.toml; for Seedream, also set "
        "[backends.nebula] seedream_model."
    )
    return ExitCode.OK


def cmd_inspect(ctx: Context) -> int:
    from .metadata import PARAMETERS_KEY, SPEC_KEY, read
    from .outputs import verify_image

    path = Path(ctx.args.file)
    try:
        data = path.read_bytes()
        fmt, (width, height) = verify_image(data)
        records = read(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    spec = json.loads(records[SPEC_KEY]) if SPEC_KEY in records else None
    if ctx.args.json:
        ctx.print(
            json.dumps(
                {
                    "file": str(path),
                    "format": fmt,
                    "width": width,
                    "height": height,
                    "metadata": records,
                    "spec": spec,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return ExitCode.OK
    ctx.print(f"{path}: {fmt.upper()} {width}x{height}, {len(data):,} bytes")
    if spec is not None:
        ctx.print(ctx.style(f"made by nebula-build: image {spec.get('image')!r}", "green"))
        for key, value in sorted(spec.get("generation", {}).items()):
            ctx.print(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
        ctx.print(f"  generation key: {spec.get('generation_key')}")
    if PARAMETERS_KEY in records:
        ctx.print("parameters:")
        ctx.print("  " + records[PARAMETERS_KEY].replace("\n", "\n  "))
    others = sorted(set(records) - {PARAMETERS_KEY, SPEC_KEY})
    for key in others:
        ctx.print(f"{key}: {records[key][:200]}")
    if not records:
        ctx.print("no generation metadata")
    return ExitCode.OK


def cmd_schema(ctx: Context) -> int:
    from .manifest import json_schema

    if ctx.args.assets:
        from .schemas import asset_manifest_schema

        ctx.print(json.dumps(asset_manifest_schema(), indent=2, ensure_ascii=False))
        return ExitCode.OK
    ctx.print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return ExitCode.OK


def cmd_gc(ctx: Context) -> int:
    from .gc import collect
    from .projectlock import ProjectLock

    prepared = _prepared(ctx)
    project = prepared.project
    with ProjectLock(
        project.project_lock_path,
        timeout=ctx.args.lock_timeout,
        command="gc",
        on_takeover=ctx.notice,
    ):
        lock = _recovered_lock(project, ctx)
        removed, freed = collect(prepared, lock, dry_run=ctx.args.dry_run)
    verb = "would remove" if ctx.args.dry_run else "removed"
    ctx.print(
        f"{verb} {removed} cache entr{'y' if removed == 1 else 'ies'} ({freed / 1_000_000:.1f} MB)"
    )
    return ExitCode.OK


def _recovered_lock(project: Project, ctx: Context) -> Entries:
    """The lock with a crashed apply's journal folded in; needs the project lock."""
    from .lockfile import recover

    entries, folded = recover(project)
    if folded:
        ctx.notice("recorded the images finished by an interrupted apply (from its journal)")
    return entries


# --- parsing ------------------------------------------------------------------


def _targets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", action="append", default=[], metavar="NAME", help="only this image (repeatable)"
    )
    parser.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NAME",
        help="regenerate this image even if unchanged: a new draw (repeatable)",
    )
    parser.add_argument(
        "--backend", metavar="NAME", help="run every image through this backend (e.g. preview)"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite files changed by hand (a backup is kept)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def _add_live_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = sub.add_parser("watch", help="apply, then apply again on every save")
    watch.add_argument("--once", action="store_true", help="run a single round and exit")
    watch.add_argument(
        "--serve",
        nargs="?",
        type=int,
        const=8765,
        default=None,
        metavar="PORT",
        help="serve the live gallery (default port 8765)",
    )
    watch.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only)",
    )
    watch.add_argument("--backend", metavar="NAME", help="run every image through NAME")
    watch.add_argument(
        "--parallelism",
        type=_positive_int,
        metavar="N",
        help="at most N generations at once per backend",
    )
    watch.add_argument(
        "--force", action="store_true", help="overwrite files changed by hand (a backup is kept)"
    )
    watch.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a running apply",
    )
    watch.set_defaults(run=cmd_watch)

    gallery = sub.add_parser("gallery", help="write an HTML contact sheet of every image")
    gallery.add_argument(
        "--out", metavar="DIR", help="folder for index.html (default .nebula-build/gallery)"
    )
    gallery.add_argument("--backend", metavar="NAME", help="as if run through NAME")
    gallery.set_defaults(run=cmd_gallery)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nebula-build",
        description="Generated images as declared infrastructure: images.toml -> plan -> apply.",
    )
    parser.add_argument("--version", action="version", version=f"nebula-build {__version__}")
    parser.add_argument("-C", dest="directory", metavar="DIR", help="run as if started in DIR")
    parser.add_argument(
        "-f",
        dest="file",
        metavar="FILE",
        help="the manifest (default: images.toml here or in a parent folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = sub.add_parser("init", help="write a starter images.toml")
    init.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    init.set_defaults(run=cmd_init)

    validate = sub.add_parser("validate", help="check the manifest, generate nothing")
    validate.add_argument("--backend", metavar="NAME", help="validate against this backend")
    validate.set_defaults(run=cmd_validate)

    plan = sub.add_parser("plan", help="show what apply would change, and why")
    _targets(plan)
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when there are none",
    )
    plan.set_defaults(run=cmd_plan)

    apply = sub.add_parser("apply", help="generate what changed and update images.lock")
    _targets(apply)
    apply.add_argument(
        "--parallelism",
        type=_positive_int,
        metavar="N",
        help="at most N generations at once per backend",
    )
    apply.add_argument(
        "--locked",
        action="store_true",
        help="generate nothing; exit 2 if anything would need generating",
    )
    apply.add_argument(
        "--max-generations",
        type=int,
        metavar="N",
        help="refuse to start if more than N images would be generated",
    )
    apply.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another apply to finish",
    )
    apply.add_argument("-q", "--quiet", action="store_true", help="no line per image")
    apply.set_defaults(run=cmd_apply)

    status = sub.add_parser("status", help="each image: up to date, pending or conflict")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--backend", metavar="NAME", help="as if run through this backend")
    status.set_defaults(run=cmd_status)

    models = sub.add_parser("models", help="which model takes which parameter, per backend")
    models.add_argument("--backend", metavar="NAME", help="only this backend")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument(
        "--remote",
        action="store_true",
        help="ask the Nebula API for its model list (ids, type, price)",
    )
    models.set_defaults(run=cmd_models)

    _add_live_commands(sub)

    inspect = sub.add_parser("inspect", help="show the generation metadata a file carries")
    inspect.add_argument("file", metavar="FILE", help="a PNG, JPEG, WebP or AVIF image")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=cmd_inspect)

    schema = sub.add_parser("schema", help="print the JSON Schema of images.toml")
    schema.add_argument(
        "--assets", action="store_true", help="the schema of the asset manifest instead"
    )
    schema.set_defaults(run=cmd_schema)

    gc = sub.add_parser("gc", help="remove cache entries nothing refers to")
    gc.add_argument("--dry-run", action="store_true", help="only say what would go")
    gc.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a running apply",
    )
    gc.set_defaults(run=cmd_gc)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the CLI; returns the exit code instead of exiting."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    ctx = Context(args, out, err)
    run: Callable[[Context], int] = args.run
    try:
        return int(run(ctx))
    except NebulaBuildError as exc:
        err_style = Style(wants_color(err))
        for line in str(exc).splitlines() or [type(exc).__name__]:
            prefix = err_style("error:", "red", "bold") + " " if not line.startswith("  ") else ""
            err.write(f"{prefix}{line}\n")
        if os.environ.get("NEBULA_BUILD_DEBUG"):
            traceback.print_exception(exc, file=err)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return ExitCode.OK


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
