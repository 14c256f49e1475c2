"""What a saved plan records of a `Plan`, and how a plan made later differs from it.

A saved plan (`plan --out FILE`) holds a line per image (name, action, key, output,
reason) and per file made from the images, for a reader and for naming a difference,
and a digest over everything apply would act on (each key, file it writes, removes or
keeps, whether a cache makes it), which decides: two plans are the same where their
lines and their digest are. The lines keep a short key so that a plan of 100k images
stays a few MiB; the digest holds the whole keys.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from nebula_build.core.plan import Action, ActionKind, FileAction, FileState, Plan
from nebula_build.state.lockfile import LockEntry
from nebula_build.text import plural, printable

#: the actions that make pixels: a generation, unless a cache or the file holds them
_GENERATING = (ActionKind.CREATE, ActionKind.REGENERATE, ActionKind.DRAW)
#: hex digits of an output key a line keeps: the digest holds the whole key
KEY_CHARS = 16
#: details hashed at once: one call to the encoder each, in bounded memory
_CHUNK = 1024
_COMPACT = json.JSONEncoder(separators=(",", ":"))

#: how a difference says what a plan does to an image
_DONE = {
    ActionKind.CREATE.value: "created",
    ActionKind.REGENERATE.value: "regenerated",
    ActionKind.REENCODE.value: "re-encoded",
    ActionKind.RESTORE.value: "restored",
    ActionKind.MOVE.value: "moved",
    ActionKind.DELETE.value: "deleted",
    ActionKind.CONFLICT.value: "in conflict",
    ActionKind.NOOP.value: "up to date",
    ActionKind.DRAW.value: "drawn",
}
#: ... and to a file made from the images
_FILE_DONE = {
    FileState.BUILD.value: "built",
    FileState.NOOP.value: "up to date",
    FileState.WAITING.value: "waiting for its images",
    FileState.CONFLICT.value: "in conflict",
    FileState.DELETE.value: "deleted",
}
ACTION_KINDS = frozenset(_DONE)
FILE_STATES = frozenset(_FILE_DONE)


class ActionLine(NamedTuple):
    """An image's line: what the plan does to it, with which key, to which file, why.
    A tuple: a plan of 100k images makes and reads 100k of them."""

    image: str
    kind: str
    key: str
    output: str | None
    reason: str


class FileLine(NamedTuple):
    """A file's line (an atlas, the asset manifest): what the plan does to it, and why."""

    label: str
    state: str
    output: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """What a saved plan holds of a plan's actions."""

    actions: tuple[ActionLine, ...]
    files: tuple[FileLine, ...]
    #: sha256 over every detail apply acts on (see `_action_detail`)
    digest: str
    #: the images whose generation the plan pays for (`cheaper`); None where not recorded
    generating: frozenset[str] | None = None


def record(plan: Plan) -> PlanRecord:
    """The record of `plan`."""
    return PlanRecord(
        actions=tuple(_action_line(action) for action in plan.actions),
        files=tuple(FileLine(f.label, f.state.value, f.output, f.reason) for f in plan.files),
        digest=_digest(plan),
        generating=frozenset(action.image for action in plan.actions if action.generates),
    )


def cheaper(saved: PlanRecord, plan: Plan) -> list[str] | None:
    """Where `plan` (made now) is the `saved` one but for images a cache makes now that
    it was to generate (a job run again after its first run filled the remote cache),
    those images; None where it is not. The saved digest decides: `plan`'s, with
    those images generated as before, must be it (the file's list of images to
    generate only says which to try, so a crafted one gains nothing)."""
    if not saved.generating:
        return None
    spared = {
        action.image
        for action in plan.actions
        if action.image in saved.generating
        and action.kind in _GENERATING
        and not action.generates
        and (action.from_cache or action.from_remote)
        and not action.in_place
    }
    if not spared or any(
        action.generates and action.image not in saved.generating for action in plan.actions
    ):
        return None
    if _digest(plan, generating=spared) != saved.digest:
        return None
    return sorted(spared)


def _full_key(action: Action) -> str:
    keyed = action.spec or action.entry
    return keyed.output_key if keyed is not None else ""


def _action_line(action: Action) -> ActionLine:
    key = _full_key(action)[:KEY_CHARS]
    return ActionLine(action.image, action.kind.value, key, action.output, action.reason)


def _digest(plan: Plan, *, generating: Collection[str] = frozenset()) -> str:
    """sha256 over the details of each action, then of each file, as compact JSON,
    hashed as they are made, so a plan of 100k images is never held twice. The
    images of `generating` as if no cache made them."""
    digest = hashlib.sha256()
    details = itertools.chain(
        (_action_detail(action, action.image in generating) for action in plan.actions),
        ["files"],
        (_file_detail(file) for file in plan.files),
    )
    while chunk := list(itertools.islice(details, _CHUNK)):  # encoded at C speed
        digest.update(_COMPACT.encode(chunk).encode())
    return digest.hexdigest()


def _action_detail(action: Action, generating: bool = False) -> list[Any]:
    """Everything of an action that changes what apply writes, removes, keeps or pays
    for; not its wording (reason, notes), which follows from these. `generating`: as
    if no cache made it."""
    spec, entry = action.spec, action.entry
    made = [action.generates, action.from_cache, action.from_remote, action.in_place]
    if generating:
        made = [True, False, False, False]
    return [
        action.image,
        action.kind.value,
        None if spec is None else [spec.generation_key, spec.output_key],
        None if entry is None else _entry_detail(entry),
        action.output,
        action.old_output,
        action.removes,
        *([action.stays] if action.stays else []),  # only where some: digests stay as they were
        sorted(action.kept),
        action.found,
        made,
        [action.fresh, action.backup, action.keep_file],
        None if action.resolution is None else _action_detail(action.resolution),
    ]


def _entry_detail(entry: LockEntry) -> list[Any]:
    """The lock entry's part: a plan saved after a saved plan's apply differs from it,
    even where that apply remade the files as they were (`--replace` of a seeded
    image); the applied plan only where recorded, so other digests stay as they were."""
    detail = [entry.generation_key, entry.output_key, entry.digest]
    return detail if entry.applied_plan is None else [*detail, entry.applied_plan]


def _file_detail(file: FileAction) -> list[Any]:
    return [
        file.kind.value,
        file.name,
        file.state.value,
        file.output,
        file.key,
        file.backup,
        file.new,
        file.frames,
        file.removes,
    ]


Line = ActionLine | FileLine


def differences(saved: PlanRecord, now: PlanRecord) -> list[str]:
    """What differs between the plan `saved` records and the one made `now`, one phrase
    each, the first as the plan lists it: empty where they are the same plan."""
    found = _differing(saved.actions, now.actions, _action_change)
    found += _differing(saved.files, now.files, _file_change)
    paid = (
        sorted(now.generating - saved.generating)
        if now.generating and saved.generating is not None
        else []
    )
    if not found and paid:
        named = ", ".join(paid[:3]) + (f" and {len(paid) - 3} more" if len(paid) > 3 else "")
        found.append(
            f"{named} would now be generated, where the saved plan had "
            f"{'it' if len(paid) == 1 else 'them'} from a cache that is not here (plan "
            "and apply on two machines: give both one remote cache, docs/ci.md)"
        )
    if not found and (saved.digest != now.digest or len(saved.actions) != len(now.actions)):
        found.append(
            "the plan now differs in what its lines do not show (a whole key, a file it "
            "removes or keeps, or an original a cache holds)"
        )
    return found


def changed_since(saved: PlanRecord, now: PlanRecord, applied: Collection[str]) -> list[str]:
    """`differences`, less the images whose change the saved plan's apply made
    (`applied`) and that nothing changed since: what an edit after it moved."""
    noop = ActionKind.NOOP.value
    now_kinds = {line.image: line.kind for line in now.actions}
    done = {image for image in applied if now_kinds.get(image, noop) == noop}
    return differences(
        PlanRecord(tuple(a for a in saved.actions if a.image not in done), saved.files, ""),
        PlanRecord(tuple(a for a in now.actions if a.image not in done), now.files, ""),
    )


@dataclass(frozen=True, slots=True)
class Carried:
    """How far a saved plan was carried out already: of the changes it lists, those
    done and those the plan made now still lists as it did."""

    done: int
    left: int


def carried_out(
    saved: PlanRecord, now: PlanRecord, applied: Collection[str] = frozenset()
) -> Carried | None:
    """Where the plan made `now` is what carrying out `saved` leaves (some of its
    changes done: an image up to date with the key and output it planned, or whose
    lock entry that plan's apply wrote (`applied`: a `--replace` remade as it was
    plans the same again), a file built, a deletion gone, a candidate drawn; the others
    as it listed them, and nothing else), how many were done and are left; None where
    anything else moved, or none of its changes is done."""
    later = {line.image for line in saved.actions if line.kind == ActionKind.DRAW.value}

    def action_carried(line: ActionLine, after: ActionLine | None) -> str | None:
        if line.image in applied and line.kind != ActionKind.NOOP.value:
            # done, unless an edit since plans it with another key or output
            if after is None or after.kind == ActionKind.NOOP.value:
                return "done"
            return "done" if after[2:4] == line[2:4] else None
        return _action_carried(line, after)

    states = _carried(saved.actions, now.actions, action_carried, _drawn_again(later))
    states += _carried(saved.files, now.files, _file_carried, lambda name: False)
    if None in states or "done" not in states:
        return None
    return Carried(states.count("done"), states.count("left"))


def _drawn_again(drawn: set[str]) -> Callable[[str], bool]:
    """Whether a line the saved plan lacks is the next draw of an image it drew
    (`--more` asks one more each time)."""
    bases = {name.rpartition("#")[0] for name in drawn}
    return lambda name: "#" in name and name.rpartition("#")[0] in bases


def _carried(
    saved: Sequence[Line],
    now: Sequence[Line],
    state: Callable[[Any, Any], str | None],
    new_is_next: Callable[[str], bool],
) -> list[str | None]:
    """Per line: "same" (no change, as saved), "left" (a change still planned as
    saved), "done" (a change carried out), None (anything else)."""
    after = {_name(line): line for line in now}
    states = [state(line, after.get(_name(line))) for line in saved]
    before = {_name(line) for line in saved}
    states += [None for name in after if name not in before and not new_is_next(name)]
    return states


def _action_carried(saved: ActionLine, now: ActionLine | None) -> str | None:
    noop = ActionKind.NOOP.value
    if now == saved:
        return "same" if saved.kind == noop else "left"
    if saved.kind in (ActionKind.DELETE.value, ActionKind.DRAW.value):
        return "done" if now is None else None
    planned = saved.kind not in (noop, ActionKind.CONFLICT.value)
    if planned and now is not None and now.kind == noop and now[2:4] == saved[2:4]:
        return "done"
    return None


def _file_carried(saved: FileLine, now: FileLine | None) -> str | None:
    if now == saved:
        return "same" if saved.state == FileState.NOOP.value else "left"
    if saved.state == FileState.DELETE.value:
        return "done" if now is None else None
    built = saved.state in (FileState.BUILD.value, FileState.WAITING.value)
    if built and now is not None and now.state == FileState.NOOP.value:
        return "done" if now.output == saved.output else None
    return None


def other_project(saved: PlanRecord, now: PlanRecord) -> bool:
    """Whether no image of the saved plan is in the plan made now, though both have some:
    a plan saved for another project (or another manifest)."""
    names = {line.image for line in now.actions}
    return bool(saved.actions and names) and not any(line.image in names for line in saved.actions)


def _differing(
    saved: Sequence[Line], now: Sequence[Line], change: Callable[[str, Any, Any], str | None]
) -> list[str]:
    before = {_name(line): line for line in saved}
    after = {_name(line): line for line in now}
    names = [*after, *(name for name in before if name not in after)]
    said = (change(name, before.get(name), after.get(name)) for name in names)
    return [phrase for phrase in said if phrase is not None]


def _name(line: Line) -> str:
    return line.image if isinstance(line, ActionLine) else line.label


def _shown(text: str | None) -> str:
    return printable(text or "", limit=120)


def _action_change(name: str, saved: ActionLine | None, now: ActionLine | None) -> str | None:
    if saved == now:
        return None
    return _change(
        _shown(name),
        None if saved is None else (_DONE[saved.kind], saved.output, saved.reason),
        None if now is None else (_DONE[now.kind], now.output, now.reason),
        same_key=saved is None or now is None or saved.key == now.key,
    )


def _file_change(name: str, saved: FileLine | None, now: FileLine | None) -> str | None:
    if saved == now:
        return None
    return _change(
        _shown(name),
        None if saved is None else (_FILE_DONE[saved.state], saved.output, saved.reason),
        None if now is None else (_FILE_DONE[now.state], now.output, now.reason),
        same_key=True,
    )


#: what a line says an image or a file is made: done (a participle), output, reason
Done = tuple[str, "str | None", str]


def _change(name: str, saved: Done | None, now: Done | None, *, same_key: bool) -> str:
    """'hero would now be regenerated (prompt changed), the saved plan had it up to date'."""
    if now is None:
        assert saved is not None
        return f"{name} is no longer planned, the saved plan had it {_said(saved)}"
    done = f"{name} would now be {_said(now)}"
    if saved is None:
        return f"{done}, the saved plan does not list it"
    if saved[0] != now[0]:
        return f"{done}, the saved plan had it {_said(saved)}"
    if not same_key:
        return f"{done} from another spec than the saved plan's"
    if saved[1] != now[1]:
        return f"{done} at {_shown(now[1])}, the saved plan at {_shown(saved[1])}"
    return f"{done}, the saved plan had it {_said(saved)}"


def _said(done: Done) -> str:
    """'regenerated (prompt changed)', 'up to date'."""
    participle, _, reason = done
    if participle == "up to date" or not reason or reason == participle:
        return participle
    return f"{participle} ({_shown(reason)})"


def stale_line(found: Sequence[str]) -> str:
    """The first difference, and how many more."""
    more = len(found) - 1
    return found[0] + (f" (and {plural(more, 'more difference')})" if more else "")
