"""`status`'s lines, from a plan or from the rows the no-op snapshot kept of one.

Light on purpose: `status` of an unchanged project prints from here without
loading the plan's types (see engine/noop.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from nebula_build.text import escaped_value, printable
from nebula_build.ui.style import Style

if TYPE_CHECKING:
    from nebula_build.core.plan import Action, FileAction, Plan

#: image (or file label), state, reason, output
Row = tuple[str, str, str, str]


def status_rows(plan: Plan, spared: Callable[[Action], str] = lambda action: "") -> list[Row]:
    """One row per image, then per file made from them; a reason says what else the
    action removes, and `spared` where a cache spares its generation."""
    rows = [(a.image, verb(a), _reason(a, spared), a.output or "") for a in plan.actions]
    rows += [(f.label, f.state.value, reason_line(f), f.output) for f in plan.files]
    return rows


#: an up-to-date image with candidates says which draw is its output, numbered as
#: `pick NAME K` takes it (from 0)
_PICKED = "up to date: draw "


def _reason(action: Action, spared: Callable[[Action], str]) -> str:
    """Why the image is pending, with where it comes from when no generation is paid
    for; for an up-to-date image with candidates, which draw is its output."""
    spec = action.spec
    if action.is_change:
        return reason_line(action) + spared(action)
    if spec is None or spec.candidates < 2 or spec.pin is not None:
        return reason_line(action)
    return f"{_PICKED}{spec.draw} ({spec.candidates} candidates)"


#: files the note on what an action removes names one by one
_NAMED_REMOVALS = 5


def removal_text(action: Action | FileAction) -> str:
    """What an action removes beside its output: "also removes out/b-16.png" for a
    deleted image, "removes …" for a deleted atlas (each of its files); else "removes
    …, which it no longer writes"."""
    from nebula_build.core.plan import ActionKind, FileState  # loaded with any action

    named = ", ".join(escaped_value(path) for path in action.removes[:_NAMED_REMOVALS])
    if len(action.removes) > _NAMED_REMOVALS:
        named += f" and {len(action.removes) - _NAMED_REMOVALS} more"
    if action.kind is ActionKind.DELETE:
        return f"also removes {named}"
    if getattr(action, "state", None) is FileState.DELETE:
        return f"removes {named}"
    return f"removes {named}, which it no longer writes"


def removal_note(action: Action | FileAction) -> str | None:
    """What an action removes beside its output, as the plan says it under the action;
    for a conflict, what `--force` would remove; then the files the lock records for it
    that stay, as nothing shows nebula-build wrote them. None where there is neither."""
    note = _removals(action)
    stays = _stays(action)
    if stays is None:
        return note
    return stays if note is None else f"{note}; {stays}"


def _stays(action: Action | FileAction) -> str | None:
    """ "keeps out/a-16.png: <why>", one clause per reason (`stays_reasons`)."""
    reasons = stays_reasons(action)
    if not reasons:
        return None
    grouped: dict[str, list[str]] = {}
    for path, why in reasons.items():
        grouped.setdefault(why, []).append(path)
    return "; ".join(f"keeps {_named(paths)}: {why}" for why, paths in grouped.items())


def stays_reasons(action: Action | FileAction) -> dict[str, str]:
    """Each file the lock records for the image that stays where an apply would have
    removed it, with why; for a conflict, those of what `--force` would do."""
    from nebula_build.core.plan import NOT_VOUCHED  # loaded with any action

    stays: tuple[str, ...] = getattr(action, "stays", ())
    elsewhere = dict(getattr(action, "stays_elsewhere", ()))
    resolution = getattr(action, "resolution", None)
    if not stays and resolution is not None:
        stays, elsewhere = resolution.stays, dict(resolution.stays_elsewhere)
    return {path: elsewhere.get(path, NOT_VOUCHED) for path in stays}


def _named(paths: Sequence[str]) -> str:
    named = ", ".join(escaped_value(path) for path in paths[:_NAMED_REMOVALS])
    if len(paths) > _NAMED_REMOVALS:
        named += f" and {len(paths) - _NAMED_REMOVALS} more"
    return named


def _removals(action: Action | FileAction) -> str | None:
    from nebula_build.core.plan import ActionKind, FileState  # loaded with any action

    if action.kind is ActionKind.CONFLICT:
        instead = action.resolution
        return f"with --force, {removal_text(instead)}" if instead and instead.removes else None
    if not action.removes:
        return None
    if getattr(action, "state", None) is FileState.CONFLICT:
        return f"with --force, {removal_text(action)}"
    return removal_text(action)


def verb(action: Action) -> str:
    """The action as a person reads it: a regeneration the cache spares is an update
    ("regenerate" reads as a generation paid for), and so is an image renamed whose
    output must be made again (its new name is no new image); `--json` keeps the kind."""
    from nebula_build.core.plan import ActionKind  # loaded with any action

    if action.kind is ActionKind.REGENERATE or remade_as_renamed(action):
        return "regenerate" if action.generates else "update"
    return action.kind.value


def remade_as_renamed(action: Action) -> bool:
    """Whether the action is an image renamed whose output is made again (its spec
    changed, or its file or cache entry is gone): a new name's "create" in the lock."""
    from nebula_build.core.plan import ActionKind

    return (
        action.kind is ActionKind.CREATE and action.renamed_from is not None and not action.in_place
    )


def reason_line(action: Action | FileAction) -> str:
    """The reason, with what else the action removes, on one line: for the job summary's
    reason cell and `status`, where a reviewer must see it too."""
    note = removal_note(action)
    return action.reason if note is None else f"{action.reason}; {note}"


def status_lines(
    rows: Sequence[Row],
    summary: str,
    style: Style,
    *,
    pinned: Collection[str] = (),
    edited: Collection[str] = (),
    failed: Mapping[str, str] | None = None,
    notes: Mapping[str, str] | None = None,
    shared_notes: Sequence[str] = (),
) -> str:
    """Each row as up to date, pending, waiting or conflict (and the last apply's
    error where it failed), each with its note; then the notes many rows share, and
    the summary line."""
    failed, notes = failed or {}, notes or {}
    width = max((len(name) for name, *_ in rows), default=0)
    lines = []
    for name, state, reason, output in rows:
        if state == "noop" and reason.startswith(_PICKED):  # "draw 1 (2 candidates)"
            edit = ", hand edit" if name in edited else ""
            shown = style(printable(reason.removesuffix(")") + edit + ")"), "green")
        elif state == "noop":
            marks = [m for m, names in (("pinned", pinned), ("hand edit", edited)) if name in names]
            shown = style("up to date" + (f" ({', '.join(marks)})" if marks else ""), "green")
        elif state == "conflict":
            shown = style(f"conflict: {printable(reason)}", "magenta")
        elif state == "waiting":
            shown = style(printable(reason), "dim")
        else:
            shown = style(f"pending {state}: {printable(reason)}", "yellow")
        # a conflict apply stopped at is said once: its failure repeats the reason
        if name in failed and not (state == "conflict" and reason in failed[name]):
            shown += style(f" (last apply failed: {printable(failed[name], limit=120)})", "red")
        lines.append(f"{name.ljust(width)}  {shown}  {style(printable(output), 'dim')}")
        if name in notes:  # made with other settings than the backend's now
            lines.append(style(f"{' ' * width}  note: {printable(notes[name])}", "yellow"))
    if not lines:
        return "No images declared."
    return "\n".join([*lines, *shared_notes, "", style(summary, "bold")])
