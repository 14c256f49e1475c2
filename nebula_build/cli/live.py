"""The commands for working live: watch (with its gallery server) and gallery."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nebula_build.errors import ApplyError, UserError
from nebula_build.state.project import Project
from nebula_build.text import escaped_value, plural, printable
from nebula_build.ui.style import Style, wants_color

if TYPE_CHECKING:
    from nebula_build.live.galleryserver import GalleryServer
    from nebula_build.live.watch import Round
    from nebula_build.plugin.manager import BackendRegistry
from nebula_build.cli.context import Context, ExitCode, prepared_project

#: the gallery serves generated images; anything far larger is not one of them
MAX_SERVED_BYTES = 256 << 20


def cmd_watch(ctx: Context) -> int:
    from nebula_build.cli import eventloop
    from nebula_build.engine.round import RoundOptions
    from nebula_build.live.watch import Watcher, filesystem_changes
    from nebula_build.state.projectlock import ProjectLock

    args = ctx.args
    project = ctx.project()
    registry = ctx.registry()
    ctx.say_left_out()  # now: watch ends only when stopped
    style = Style(wants_color(ctx.out))
    with contextlib.ExitStack() as stack:
        project_lock = stack.enter_context(
            ProjectLock(
                project.project_lock_path,
                timeout=args.lock_timeout,
                command="watch",
                on_takeover=ctx.notice,
            )
        )
        on_round = None
        if args.serve is not None:
            from nebula_build.live.galleryserver import GalleryServer

            try:
                server = stack.enter_context(GalleryServer(args.host, args.serve))
            except OSError as exc:
                raise UserError(_cannot_serve(args.host, args.serve, exc)) from None
            on_round = _gallery_publisher(project, server)
            ctx.print(style(f"gallery: {server.url}", "bold") + _listening(server))
        watcher = Watcher(
            project,
            registry,
            out=ctx.out,
            style=style,
            options=RoundOptions(
                backend=args.backend,
                parallelism=args.parallelism,
                force=args.force,
                offline=args.offline,
                targets=args.target,
                max_generations=args.max_generations,
                max_cost=args.max_cost,
            ),
            on_round=on_round,
            project_lock=project_lock,
        )
        if args.serve is not None:
            from nebula_build.live.review import picker

            server.accept_picks(picker(watcher))
        if not args.once:
            manifest = escaped_value(project.display_manifest)
            ctx.print(style(f"watching {manifest} and its inputs (Ctrl-C to stop)", "dim"))
        try:
            last = eventloop.run(
                watcher.run(filesystem_changes(watcher), once=args.once), ctx.loop_failures
            )
        except KeyboardInterrupt:
            if args.once:  # one round, like apply: an interrupted one exits 130
                raise
            finished = ""
            if watcher.stopped_with is not None:  # as apply's "interrupted with" says it
                done, planned = watcher.stopped_with
                finished = (
                    f" with {done} of {plural(planned, 'image')} finished (what they made is kept)"
                )
            ctx.print(f"stopped{finished}{_maybe_billed(watcher.cut_off, registry)}")
            return ExitCode.OK
    if last is not None and last.result is not None and last.result.failures:
        files = [o.action.label for o in last.result.files if not o.ok]
        kept_back = last.result.applied.kept_back if last.result.applied else ()
        raise ApplyError(last.result.failures, files=files, kept_back=kept_back)
    return ExitCode.OK


def _listening(server: GalleryServer) -> str:
    """What the gallery's line adds when the address printed is not the only one served."""
    from nebula_build.httpthread import is_ipv6

    if not server.every_address:
        return ""
    if is_ipv6(server.address[0]):
        return " (listening on every address of this machine, IPv4 and IPv6)"
    return " (listening on every IPv4 address of this machine)"


def _cannot_serve(host: str, port: int, exc: OSError) -> str:
    import errno

    from nebula_build.httpthread import is_ipv6

    shown = f"[{host.strip('[]')}]" if is_ipv6(host) else host
    fix = "another port: --serve PORT"
    if exc.errno != errno.EADDRINUSE:
        fix = "an address of this machine: --host ADDRESS (127.0.0.1, ::1, 0.0.0.0, ::)"
    return f"cannot serve the gallery on {shown}:{port} ({exc.strerror}); pass {fix}"


def _maybe_billed(cut_off: dict[str, str], registry: BackendRegistry) -> str:
    """What `stopped` adds about the requests the round cut off on a paid backend."""
    from nebula_build.engine.apply import maybe_billed

    paid = {backend for backend in set(cut_off.values()) if registry.get(backend).paid}
    return maybe_billed(cut_off, paid)


def _gallery_publisher(project: Project, server: GalleryServer) -> Callable[[Round], None]:
    from nebula_build.engine.runstate import read_failures, read_file_failures
    from nebula_build.live.draws import image_draws, pickable, read_draw
    from nebula_build.live.gallery import Card, cards, render
    from nebula_build.live.thumblinks import ThumbLinks, thumbnail_links
    from nebula_build.outputs.thumbnails import FOLDER, Made, Thumbnails
    from nebula_build.state.guard import Guard

    guard = Guard(project.root, reserved=project.own_files)
    state = Guard(project.state_dir)
    folder = Thumbnails(project.state_dir)
    shown_before: set[str] = set()  # the thumbnails the last page named
    last_good: list[tuple[int, list[Card]]] = []  # the round whose cards the page shows
    title = f"{project.root.name} · nebula-build"

    def read(relative: str) -> bytes:
        return guard.read(relative, what="gallery file", limit=MAX_SERVED_BYTES)

    def read_thumb(name: str) -> bytes:
        return state.read(f"{FOLDER}/{name}", what="thumbnail", limit=MAX_SERVED_BYTES)

    def publish_error(report: Round) -> None:
        """The last good round's cards (still the files on disk), under the error."""
        cards_round, items = last_good[-1] if last_good else (0, [])
        html = render(
            items,
            title=title,
            live=True,
            round_number=report.number,
            token=server.token,
            run=server.run,
            error_lines=report.error_lines or [report.error or "failed"],
            cards_round=cards_round,
        )
        server.republish(html, report.number)

    def publish(report: Round) -> None:
        if report.plan is None or report.prepared is None or report.result is None:
            if report.error is not None:
                publish_error(report)
            return  # else keep showing the last good state
        store = report.prepared.store
        draws = image_draws(report.plan, report.prepared, report.result.lock)
        shown = [d.generation_key for items in draws.values() for d in items if d.cached]
        shown_as = {d.generation_key: d.shown_as for items in draws.values() for d in items}
        try:
            thumbs = thumbnail_links(report.plan, project, report.prepared.files, link="served")
        except Exception:  # a thumbnail is never worth a round: the grid shows the files
            thumbs = ThumbLinks({}, Made({}, 0, 0))
        items = cards(
            report.plan,
            project,
            failures=read_failures(project, report.prepared.specs)
            | read_file_failures(project, report.plan.files),
            link="served",
            thumbs=thumbs.links,
            # The first round builds everything: marking it all "just changed" says nothing.
            changed=report.changed if report.number > 1 else [],
            draws=draws,
            draw_links={key: f"/draws/{key}" for key in shown},
            atlases=report.prepared.resolved.atlases,
        )
        files = [a.spec.output for a in report.plan.actions if a.spec]
        files += [atlas.output for atlas in report.prepared.resolved.atlases.values()]
        last_good[:] = [(report.number, items)]
        html = render(
            items,
            title=title,
            live=True,
            round_number=report.number,
            token=server.token,
            run=server.run,
            # refused by a guard: what it would have made, pending, under why
            error_lines=(report.error_lines or [report.error]) if report.error else (),
            cards_round=report.number,
        )
        server.publish(
            html,
            files,
            report.number,
            report.changed,
            read=read,
            thumbs=thumbs.made.names.values(),
            read_thumb=read_thumb,
            draws=shown,
            read_draw=lambda key: read_draw(store, key, shown_as.get(key)),
            pickable=pickable(draws),
        )
        # what this page no longer names goes; those of a `gallery` page stay
        shown_now = set(thumbs.made.names.values())
        folder.remove(shown_before - shown_now)
        shown_before.clear()
        shown_before.update(shown_now)

    return publish


def _out_named(ctx: Context, out: Path) -> str:
    """The gallery's folder, as an error names it: `--out site` or the default's path."""
    if ctx.args.out:
        return f"--out {printable(ctx.args.out, limit=200)}"
    return printable(os.path.relpath(out), limit=200)


def _refuse_a_folder_led_out(ctx: Context, root: Path, out: Path) -> None:
    """Refuse `--out` named inside the project where a link leads out of it (a pull
    request's `review -> ~/somewhere`): the link must not choose where the page and the
    draws are written. Named outside the project, the folder is the user's choice."""
    from nebula_build.cli.markdownfile import in_version_control

    named = Path(os.path.normpath(Path(ctx.start).resolve() / ctx.args.out))
    if named.is_relative_to(root) and not out.is_relative_to(root):
        raise UserError(
            f"{_out_named(ctx, out)}: a link leads out of the project there; name another "
            "folder (or the place the link leads to, if the gallery should go there)"
        )
    if in_version_control(root, out):
        raise UserError(
            f"{_out_named(ctx, out)}: that is in a version control folder (.git/), never "
            "the tool's to write; name another folder"
        )


def _refuse_a_page_not_ours(ctx: Context, out: Path, page: Path) -> None:
    """`--out` names a folder; an index.html there that an earlier gallery did not
    write (a site's own page) is never replaced."""
    from nebula_build.live.gallerypage import page_is_a_gallery

    if out.exists() and not out.is_dir():
        raise UserError(
            f"{_out_named(ctx, out)}: that is a file, not a folder; name the folder to write "
            "the gallery's index.html in"
        )
    if not (page.exists() or page.is_symlink()) or page_is_a_gallery(page):
        return
    raise UserError(
        f"{_out_named(ctx, out)}: {printable(os.path.relpath(page), limit=200)} is not a page "
        "nebula-build wrote; name another folder, or move that file away"
    )


@contextlib.contextmanager
def _writing_gallery(ctx: Context, out: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        named = _out_named(ctx, out)
        raise UserError(f"{named}: cannot write the gallery there: {reason}") from None


def cmd_gallery(ctx: Context) -> int:
    from nebula_build.engine.lockmerge import settled
    from nebula_build.engine.planning import plan_for
    from nebula_build.engine.prepare import current_lock
    from nebula_build.engine.runstate import read_failures, read_file_failures
    from nebula_build.fsutil import atomic_write
    from nebula_build.live.draws import copy_draws, image_draws
    from nebula_build.live.gallery import cards, render
    from nebula_build.live.thumblinks import thumbnail_links
    from nebula_build.outputs.thumbnails import Thumbnails

    started = time.time()
    prepared = prepared_project(ctx)
    project = prepared.project
    # like every other path, relative to -C DIR
    out = (Path(ctx.start) / ctx.args.out).resolve() if ctx.args.out else project.gallery_dir
    if ctx.args.out:
        _refuse_a_folder_led_out(ctx, project.root, out)
    lock, _ = settled(prepared, current_lock(project, ctx.notice), ctx.notice)
    plan = plan_for(prepared, lock, targets=ctx.args.target)
    draws = image_draws(plan, prepared, lock)
    page = out / "index.html"
    every_draw = [draw for items in draws.values() for draw in items]
    with _writing_gallery(ctx, out):
        if ctx.args.out:
            _refuse_a_page_not_ours(ctx, out, page)
        out.mkdir(parents=True, exist_ok=True)
        copied = copy_draws(every_draw, prepared.store, out)
    thumbs = thumbnail_links(plan, project, prepared.files, base=out)
    if not ctx.args.target:  # the whole set: a thumbnail no image shows now goes
        Thumbnails(project.state_dir).prune(thumbs.made.names.values(), made_before=started)
    items = cards(
        plan,
        project,
        failures=read_failures(project, prepared.specs) | read_file_failures(project, plan.files),
        base=out,
        draws=draws,
        draw_links=copied,
        thumbs=thumbs.links,
        atlases=prepared.resolved.atlases,
    )
    html = render(items, title=f"{project.root.name} · nebula-build")
    with _writing_gallery(ctx, out):
        atomic_write(page, html.encode(), durable=False)  # replaces a link, never follows it
    made = thumbs.made
    if made.made or made.failed:
        failed = f"; {plural(made.failed, 'image')} could not be read" if made.failed else ""
        ctx.print(f"made {plural(made.made, 'thumbnail')}{failed}")
    sheets = sum(1 for item in items if item.name.startswith("atlas "))
    shown = plural(len(items) - sheets, "image") + (
        f", {plural(sheets, 'atlas', 'atlases')}" if sheets else ""
    )
    ctx.print(f"wrote {os.path.relpath(page)} ({shown})")
    ctx.print(f"open {page.resolve().as_uri()}")
    return ExitCode.OK
