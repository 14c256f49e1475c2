"""The commands that inform or set up: init, list, models, inspect, schema."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nebula_build.cli.context import Context, ExitCode, prepared_project
from nebula_build.errors import NebulaBuildError, UserError
from nebula_build.text import escaped_value, made_by_stand_in, printable, shell_option

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nebula_build.plugin import ModelSupport


def cmd_init(ctx: Context) -> int:
    from nebula_build.state.project import MANIFEST_NAME
    from nebula_build.state.scaffold import enclosing_manifest, init_project

    folder = Path(ctx.args.directory or ".")
    named = ctx.args.file  # -f FILE: that manifest, relative to -C DIR like every path
    above = None if named else enclosing_manifest(folder)
    for line in init_project(folder / (named or MANIFEST_NAME), force=ctx.args.force):
        ctx.print(escaped_value(line))  # -C DIR and -f FILE as typed
    if above is not None:  # a subfolder of a project, most likely by mistake
        other = os.path.relpath(above, folder.resolve())
        ctx.notice(
            f"{other} is a project above this folder: commands run here now read the new "
            f"images.toml instead (-f {other} reads that one)"
        )
    command = f"nebula-build {shell_option('-f', named)}" if named else "nebula-build"
    ctx.print(escaped_value(f"next: {command} plan, then {command} apply"))
    return ExitCode.OK


def cmd_list(ctx: Context) -> int:
    """The images the manifest declares (those the patterns select), one per line."""
    if not (ctx.args.patterns or ctx.args.json) and (names := _names_since_last_plan(ctx)):
        for name in names:
            ctx.print(name)
        return ExitCode.OK
    from nebula_build.core.selection import select

    specs = prepared_project(ctx).specs
    names = list(specs)
    if ctx.args.patterns:
        parts = {name: spec.parts for name, spec in specs.items() if spec.parts}
        try:
            chosen = select(ctx.args.patterns, names, parts)
        except UserError as exc:  # as --target says it, naming the manifest
            raise UserError(f"{ctx.project().display_manifest}: {exc}") from None
        names = [name for name in names if name in chosen]
    if ctx.args.json:
        images = [
            {
                "name": name,
                "output": specs[name].output,
                "backend": specs[name].backend,
                "model": specs[name].model,
            }
            for name in names
        ]
        ctx.print_json({"images": images})
    else:
        for name in names:  # as they are, to be typed back: names show as they are
            ctx.print(name)
    return ExitCode.OK


def _names_since_last_plan(ctx: Context) -> list[str] | None:
    """The images' names as the no-op snapshot's status lines keep them, in the
    manifest's order, if nothing a plan reads changed since the last plan that found
    nothing to do: each TAB of shell completion runs `list` (100,000 images from data
    took seconds to resolve). A file's label ("atlas enemies") has a space before any
    `[`; an image's name has none."""
    from nebula_build.cli.build import fast_path_root
    from nebula_build.engine import noop

    found = fast_path_root(ctx)
    kept = None if found is None else noop.status(*found, None)
    if kept is None:
        return None
    return [label for label, *_ in kept[0] if " " not in label.partition("[")[0]]


def cmd_models(ctx: Context) -> int:
    from nebula_build.ui.report import models_text

    if ctx.args.remote:
        return _remote_models(ctx)
    registry = ctx.registry()
    names = [ctx.args.backend] if ctx.args.backend else registry.names()
    declared = _project_backend_settings(ctx)
    tables = {}
    failed: dict[str, str] = {}  # a plugin's `models` that failed: the others are listed
    for name in names:
        plugin = registry.get(name)
        # the project's settings can add models (a fine-tune, Seedream's id); where they
        # are not valid (`validate` says why) the table shows the defaults' models
        for raw in (declared.get(name, {}), {}):
            try:
                settings = plugin.parse_settings(raw)
            except ValueError:
                continue
            try:
                tables[name] = plugin.models(settings)
            except NebulaBuildError as exc:
                if ctx.args.backend:
                    raise
                failed[name] = str(exc)
            break
        else:
            ctx.notice(f"backend {name} needs settings in [backends.{name}] to list its models")
    sources = {n: p.source for n, p in registry.plugins.items() if not p.builtin}
    if ctx.args.json:
        for problem in failed.values():
            ctx.warn(f"{problem}; its models are left out")
        ctx.print_json(_models_json(tables, sources))
        return ExitCode.OK
    broken = {} if ctx.args.backend else {b.name: b.problem for b in ctx.left_out}
    if broken:  # a row of its own says it: no warning besides
        ctx.left_out = []
    ctx.print(models_text(tables, ctx.style, {**broken, **failed}, sources))
    return ExitCode.OK


#: the key of `models --json` that holds what is said of each backend besides its
#: models' parameters: added beside the backends, so readers of the earlier shape
#: still find every backend where it was (a reader that walks every key skips `_`)
ABOUT_KEY = "_backends"


def _models_json(
    tables: Mapping[str, Mapping[str, ModelSupport]], sources: Mapping[str, str]
) -> dict[str, object]:
    """`{backend: {model: [parameters]}}` as it always was, and under `ABOUT_KEY` each
    backend's distribution (None for a built-in) and its models' labels (declared ones)."""
    data: dict[str, object] = {
        b: {m: sorted(s.params) for m, s in t.items()} for b, t in tables.items()
    }
    data[ABOUT_KEY] = {
        b: {"distribution": sources.get(b), "labels": {m: s.label for m, s in t.items() if s.label}}
        for b, t in tables.items()
    }
    return data


def _project_backend_settings(ctx: Context) -> dict[str, dict[str, object]]:
    """`[backends.*]` of the project around the working folder; none outside one."""
    from nebula_build.core.manifest import load

    try:
        project = ctx.project()
        manifest = load(project.manifest_path, project.display_manifest)
    except UserError:
        return {}
    return {name: dict(raw) for name, raw in manifest.model.backends.items()}


def _remote_models(ctx: Context) -> int:
    """The provider's own model list, to find ids (Seedream's) and prices."""
    from nebula_build.cli import eventloop
    from nebula_build.text import printable

    plugin = ctx.registry().get(ctx.args.backend or "nebula", where="--backend")
    try:
        settings = plugin.parse_settings(_project_backend_settings(ctx).get(plugin.name, {}))
    except ValueError as exc:
        raise UserError(_settings_problem(ctx, plugin.name, exc)) from None
    rows = eventloop.run(plugin.remote_models(settings), ctx.loop_failures)
    if ctx.args.json:
        ctx.print_json(rows, default=str)
        return ExitCode.OK
    columns = ("model_name", "model_type", "price", "model_alias")
    # what a service says is shown as plain text: no escape sequence reaches the terminal
    table = [[printable(str(row.get(c, "")), limit=200) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in [list(columns), *table]) for i in range(len(columns))]
    for line in [list(columns), *table]:
        ctx.print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    ctx.print(
        "\nUse model_name as `model` in images.toml; for Seedream, also set "
        "[backends.nebula] seedream_model."
    )
    return ExitCode.OK


def _settings_problem(ctx: Context, backend: str, exc: ValueError) -> str:
    """The first problem of `[backends.<backend>]`, located in the manifest."""
    from pydantic import ValidationError

    from nebula_build.core.manifest import describe_setting_error

    try:
        where = ctx.project().display_manifest
    except UserError:
        where = "images.toml"
    if not isinstance(exc, ValidationError) or not exc.errors():
        return f"{where}: [backends.{backend}] is not valid: `nebula-build validate` says why"
    error = exc.errors()[0]
    key = ".".join(map(str, error["loc"]))
    return f"{where}: [backends.{backend}] {key}: {describe_setting_error(error, [], backend)}"


def _image_bytes(path: Path) -> bytes:
    """The bytes of the file to inspect: a plain file (never a FIFO, which would wait,
    nor a device, which never ends), of an image's size at most."""
    from nebula_build.imaging import MAX_BYTES
    from nebula_build.text import human_size

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: not a regular file")
        # what the file holds, not the limit: a read allocates what it asks for
        data = b"" if info.st_size > MAX_BYTES else handle.read(info.st_size + 1)
        if len(data) > info.st_size:  # it grew since fstat
            data += handle.read(MAX_BYTES + 1 - len(data))
    if info.st_size > MAX_BYTES or len(data) > MAX_BYTES:
        limit = human_size(MAX_BYTES)
        raise UserError(f"{path}: over {limit}, larger than any image nebula-build reads")
    return data


def cmd_inspect(ctx: Context) -> int:
    from nebula_build.imaging import verify_image
    from nebula_build.outputs.metadata import PARAMETERS_KEY, SPEC_KEY, read_records

    # like every other path, relative to -C DIR (Path joins keep an absolute FILE)
    path = Path(ctx.args.directory or "") / ctx.args.file
    try:
        data = _image_bytes(path)
        fmt, (width, height) = verify_image(data)
        records, unread = read_records(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    spec = _our_record(records.get(SPEC_KEY))
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
                    "unread": unread,
                },
                indent=2,
                ensure_ascii=True,  # the records are the file's: no raw control or bidi
            )
        )
        return ExitCode.OK
    ctx.print(f"{path}: {fmt.upper()} {width}x{height}, {len(data):,} bytes")
    if spec is not None:
        _print_our_record(ctx, spec)
    elif SPEC_KEY in records:
        ctx.print(f"{SPEC_KEY}: not a record this tool wrote (not a JSON object)")
    if PARAMETERS_KEY in records:
        ctx.print("parameters:")
        for line in records[PARAMETERS_KEY].splitlines():
            ctx.print("  " + printable(line))
    for key in sorted(set(records) - {PARAMETERS_KEY, SPEC_KEY}):
        ctx.print(f"{printable(key, 80)}: {printable(records[key], 200)}")
    for line in unread:
        ctx.print(printable(line, 200))
    if not records and not unread:
        ctx.print("no generation metadata")
    if spec is None and (recorded := _lock_record(path, data)) is not None:
        ctx.print(recorded)  # an edit kept with `accept`: the editor dropped the record
    return ExitCode.OK


#: the largest images.lock `inspect` reads for what it records of a file (a 1,000-image
#: lock is some 1 MiB): past it, the file's own record is all it says
_INSPECTED_LOCK_BYTES = 64 << 20


def _lock_record(path: Path, data: bytes) -> str | None:
    """What the images.lock of the project the file lies in records of it, where it
    is an image's output as recorded; None where no lock says so (or none is found).
    Reads the lock alone: no snapshot, no journal, nothing written."""
    from nebula_build.errors import NebulaBuildError
    from nebula_build.fsutil import read_regular, sha256_bytes
    from nebula_build.state.lockfile import loads
    from nebula_build.state.project import Project
    from nebula_build.text import shell_operands

    try:
        where = path.resolve()
        project = Project.find(where.parent)
        relative = where.relative_to(project.root.resolve()).as_posix()
        raw = read_regular(project.lock_path, limit=_INSPECTED_LOCK_BYTES)
        lock = loads(raw.decode(), project.lock_path.name) if raw is not None else {}
    except (NebulaBuildError, OSError, ValueError, RecursionError):
        return None
    digest = sha256_bytes(data)
    here = project.root.resolve() == Path.cwd().resolve()
    folder = printable(shell_option("-C", str(project.root)), limit=300)
    command = "nebula-build" if here else f"nebula-build {folder}"
    for name, entry in lock.items():
        if entry.output != relative or entry.digest != digest:
            continue
        history = f"`{command} history {shell_operands(name)}` lists what made it"
        if entry.edited_from is not None:
            return (
                f"{project.lock_path.name} records it as {printable(name)}'s output: a hand "
                f"edit of {entry.edited_from[:12]}, kept with `nebula-build accept` ({history})"
            )
        return f"{project.lock_path.name} records it as {printable(name)}'s output ({history})"
    return None


def _our_record(text: str | None) -> dict[str, Any] | None:
    """The `nebula-build` record, if it is a JSON object (the file is untrusted)."""
    if text is None:
        return None
    try:  # NaN and Infinity are no JSON: a record with them is not ours
        record = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _print_our_record(ctx: Context, record: dict[str, Any]) -> None:
    """What made the file, from our record: every value made one printable line."""

    def shown(value: object) -> str:
        return printable(json.dumps(value, ensure_ascii=False), 300)

    atlas = record.get("atlas")
    if isinstance(atlas, str) and "image" not in record:
        sheet = record.get("sheet")
        at = f" at {printable(sheet, 200)}" if isinstance(sheet, str) else ""
        ctx.print(ctx.style(f"made by nebula-build: atlas {printable(atlas, 200)!r}", "green"))
        ctx.print(f"  a sprite sheet built{at} from its images' files (no generation)")
        return
    image = printable(str(record.get("image")), 200)
    ctx.print(ctx.style(f"made by nebula-build: image {image!r}", "green"))
    generation = record.get("generation")
    for key, value in sorted(generation.items() if isinstance(generation, dict) else ()):
        ctx.print(f"  {printable(str(key), 80)}: {shown(value)}")
    ctx.print(f"  generation key: {printable(str(record.get('generation_key')), 100)}")
    seed = record.get("seed")
    if seed is not None and not (isinstance(generation, dict) and seed == generation.get("seed")):
        ctx.print(f"  seed used: {shown(seed)}")
    made_with = record.get("made_with")
    if isinstance(made_with, dict) and made_with:
        settings = ", ".join(f"{key} {value}" for key, value in sorted(made_with.items()))
        ctx.print(f"  made with: {printable(settings, 600)}")
    if made_by_stand_in(made_with):
        from nebula_build.core.plan import PLACEHOLDER_REASON

        ctx.print(ctx.style(f"  {PLACEHOLDER_REASON} (a dry run)", "yellow"))


def cmd_schema(ctx: Context) -> int:
    from nebula_build.core.manifest import json_schema
    from nebula_build.plugin.manager import builtin_settings

    if ctx.args.assets:
        from nebula_build.outputs.schemas import asset_manifest_schema

        ctx.print_json(asset_manifest_schema())
        return ExitCode.OK
    ctx.print_json(json_schema(builtin_settings()))
    return ExitCode.OK
