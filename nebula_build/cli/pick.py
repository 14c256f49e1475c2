"""`nebula-build pick NAME [INDEX | @K | --next | --prev | --unpin]`: make another of
an image's candidate draws, or an earlier generation, its output, from the cache
(local or remote): zero generations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nebula_build.cli.context import Context, ExitCode
from nebula_build.errors import UserError
from nebula_build.text import plural, printable, shell_operands

if TYPE_CHECKING:
    from nebula_build.engine.history import Change, Row
    from nebula_build.state.lockfile import LockEntry


def _which(text: str | None) -> tuple[int | None, int | None]:
    """(draw, earlier generation) from `INDEX` or `@K`."""
    if text is None:
        return None, None
    earlier = text.startswith("@")
    digits = text[1:] if earlier else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 6:
        raise UserError(f"pick: {text[:20]!r} is neither a draw INDEX (0, 1, …) nor @K (@1, @2, …)")
    return (None, int(digits)) if earlier else (int(digits), None)


def cmd_pick(ctx: Context) -> int:
    from nebula_build.cli import eventloop
    from nebula_build.cli.build import ApplyListener, render_round
    from nebula_build.engine.picking import pick_draw
    from nebula_build.state.projectlock import ProjectLock
    from nebula_build.ui.report import backups_line

    args = ctx.args
    project = ctx.project()
    registry = ctx.registry()
    step = 1 if args.next else -1 if args.prev else 0
    index, earlier = _which(args.index)
    if args.pin and earlier is None:
        name = shell_operands(args.name)
        raise UserError(
            f"pick: --pin is for an earlier generation: `nebula-build pick --pin {name} @K` "
            f"(`nebula-build history {name}` lists them)"
        )
    if step and args.index is not None:
        raise UserError("pick: give INDEX, @K, --next or --prev, not two of them")
    if args.unpin and (args.index is not None or step):
        raise UserError("pick: --unpin takes no INDEX, @K, --next or --prev")
    with ProjectLock(
        project.project_lock_path,
        timeout=args.lock_timeout,
        command="pick",
        on_takeover=ctx.notice,
    ):
        chosen, result = eventloop.run(
            pick_draw(
                project,
                registry,
                args.name,
                index=index,
                step=step,
                earlier=earlier,
                pin=args.pin,
                unpin=args.unpin,
                force=args.force,
                listener=ApplyListener(ctx, quiet=True),
            ),
            ctx.loop_failures,
        )
    code = render_round(ctx, result, summary=False)
    if code == ExitCode.OK and not result.generated:
        ctx.print(f"{args.name}: {chosen.described} ({chosen.output})")
        built = [outcome.action for outcome in result.files if outcome.ok]
        if built:  # the sheets and the asset manifest the new output goes into
            ctx.print(f"rebuilt {', '.join(f'{a.label} ({printable(a.output)})' for a in built)}")
        # an output kept with `accept` is a hand edit no cache holds: say where its copy is
        if (backed_up := backups_line(result.prepared)) is not None:
            ctx.print(backed_up)
        if chosen.takers:
            verb, them = ("takes", "it") if len(chosen.takers) == 1 else ("take", "them")
            ctx.notice(
                f"{', '.join(chosen.takers)} {verb} its output: `nebula-build apply` remakes {them}"
            )
    return code


def cmd_history(ctx: Context) -> int:

    from nebula_build.cli.context import prepared_project
    from nebula_build.core.selection import not_one_image
    from nebula_build.engine.history import backed_up_edits, rows
    from nebula_build.engine.lockmerge import settled
    from nebula_build.engine.prepare import current_lock

    name = ctx.args.name
    prepared = prepared_project(ctx)
    manifest = prepared.project.display_manifest
    parts = {known: spec.parts for known, spec in prepared.specs.items()}
    if (why := not_one_image(name, prepared.specs, parts)) is not None:
        raise UserError(f"{manifest}: {why}")
    lock, _ = settled(prepared, current_lock(prepared.project, ctx.notice), ctx.notice)
    entry = lock.get(name)
    if entry is None:
        raise UserError(f"images.{name} has not been generated yet: run `nebula-build apply`")
    seed = prepared.specs[name].seed
    listed = rows(entry, prepared.store, () if seed is None else (seed,))
    # an accepted edit an apply replaced: in no cache, only in the backup folder
    edits = {row.edited for row in listed[1:] if row.edited is not None}
    copies = backed_up_edits(prepared.project, prepared.guard, entry.output, edits)
    if ctx.args.json:
        data = {
            "image": name,
            "output": entry.output,
            "pinned": entry.pin is not None,
            # the output is a hand edit `accept` kept: the digest of the file it replaced
            "edited_from": entry.edited_from,
            # each generation's `digest` is the file it made; `edited`, the hand edit
            # accept kept as its output, and `edited_copy`, apply's copy of it
            "generations": [
                {
                    "index": row.index,
                    "draw": _draw(row),
                    "generation_key": row.generation_key,
                    "digest": row.digest,
                    "made": row.made,
                    "in_cache": row.in_cache,
                    "edited": row.edited,
                    "edited_copy": copies.get(row.edited) if row.index and row.edited else None,
                    "changes": {c.name: {"then": c.earlier, "now": c.current} for c in row.changes},
                }
                for row in listed
            ],
        }
        ctx.print_json(data)
        return ExitCode.OK
    earlier = len(listed) - 1
    listing = (
        f"{plural(earlier, 'earlier generation')}, the last one replaced first"
        if earlier
        else "no earlier generation yet (an apply that replaces the output keeps the one it "
        "replaced here)"
    )
    pinned = " · pinned to an earlier one" if entry.pin is not None else ""
    ctx.print(f"{name} ({entry.output}): {listing}{pinned}")
    for row in listed:
        label = "now" if row.index == 0 else f"@{row.index}"
        # when it was made, which a generation back from the cache keeps
        when = "made " + row.made.replace("T", " ")[:16] + " UTC" if row.made else "?" * 25
        cached = "" if row.in_cache else "  (not in the cache here)"
        shown = row.digest
        if row.index == 0 and row.edited is not None:
            shown = row.edited
            cached += f"  (a hand edit of {row.digest[:12]}, kept with accept)"
        ctx.print(f"  {label:<4} {when}  {shown[:12]}{_of_set(row, entry)}{cached}")
        if row.index and row.edited is not None:
            copy = copies.get(row.edited)
            where = (
                f"apply's copy: {printable(copy, limit=200)}"
                if copy
                else "not in .nebula-build/backup/ (removed, or left where it was when the "
                "output moved)"
            )
            ctx.print(
                ctx.style(f"       its output was a hand edit, {row.edited[:12]}: {where}", "dim")
            )
        for change in row.changes:
            ctx.print(ctx.style(f"       {_change_text(change)}", "dim"))
    if earlier:
        _print_how_to_bring_back(ctx, name, manifest, listed)
    return ExitCode.OK


def _draw(row: Row) -> int | None:
    """The draw of its set a generation was (0 where it was the only one)."""
    draw = row.params.get("draw", 0)
    return draw if type(draw) is int else None


def _of_set(row: Row, entry: LockEntry) -> str:
    """Which draw of its set a generation was; for the output of an image with
    candidates, draw 0 too, and how many there are (numbered as `pick` takes them)."""
    draw = _draw(row)
    if draw is None:
        return ""
    if row.index == 0 and entry.pin is None and entry.candidates > 1:
        return f"  draw {draw} ({entry.candidates} candidates)"
    return f"  draw {draw}" if draw else ""


def _print_how_to_bring_back(ctx: Context, name: str, manifest: str, listed: list[Row]) -> None:
    if any(row.changes for row in listed):
        ctx.print(
            ctx.style("       [-…-] is in that generation, {+…+} in the current output", "dim")
        )
    operands = shell_operands(name, "@K")
    ctx.print(
        f"bring one back: nebula-build pick {operands} (one made from what {manifest} declares "
        f"now), or nebula-build pick --pin {operands} (one made from something else: kept "
        f"until {manifest} changes)"
    )


def _change_text(change: Change) -> str:
    from nebula_build.engine.history import word_diff
    from nebula_build.params import FILES
    from nebula_build.ui.report import shown_value

    then, now = change.earlier, change.current
    name = printable(change.name, 80)  # a pull request's lock names the parameters
    if isinstance(then, str) and isinstance(now, str) and change.name not in FILES:
        return f"{name}: {printable(word_diff(then, now), 300)}"
    earlier, current = shown_value(change.name, then), shown_value(change.name, now)
    return f"{name}: {printable(earlier, 80)} -> {printable(current, 80)}"
