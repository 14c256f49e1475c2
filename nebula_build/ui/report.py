"""Render plans, statuses and apply results as text or JSON. Decides nothing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nebula_build.core.handedits import acceptable as accepted_edits
from nebula_build.core.handedits import edit_form
from nebula_build.core.plan import (
    LINK_IN_THE_WAY,
    PIN_RELEASED,
    PLACEHOLDER_NOTE,
    SETTINGS_NOTE,
    Action,
    ActionKind,
    Change,
    FileAction,
    FileKind,
    FileState,
    Plan,
)
from nebula_build.core.spec import AssetSpec
from nebula_build.core.sprite import added_key_suffix, describe_check
from nebula_build.errors import ManifestError, first_line
from nebula_build.params import FILES, OPTIONAL
from nebula_build.plugin.catalog import ModelSupport
from nebula_build.text import (
    escaped,
    escaped_value,
    plural,
    printable,
    shell_operands,
    shell_option,
)
from nebula_build.ui.statuslines import (
    remade_as_renamed,
    removal_note,
    status_lines,
    status_rows,
    stays_reasons,
    verb,
)
from nebula_build.ui.style import Style

if TYPE_CHECKING:
    import re

    from nebula_build.engine.apply import Outcome
    from nebula_build.engine.cost import CostLine, Estimate
    from nebula_build.engine.derived import FileOutcome
    from nebula_build.engine.lockmerge import LockMerge
    from nebula_build.engine.prepare import Prepared
    from nebula_build.engine.round import RoundResult

SYMBOLS = {
    ActionKind.CREATE: ("+", "green"),
    ActionKind.REGENERATE: ("~", "yellow"),
    ActionKind.REENCODE: ("~", "cyan"),
    ActionKind.RESTORE: ("<", "cyan"),
    ActionKind.MOVE: (">", "cyan"),
    ActionKind.DELETE: ("-", "red"),
    ActionKind.CONFLICT: ("!", "magenta"),
    ActionKind.NOOP: (" ", "dim"),
    ActionKind.DRAW: ("*", "green"),
}
_FILE_NOUNS = {
    FileKind.ATLAS: ("atlas", "atlases"),
    FileKind.ASSET_MANIFEST: ("asset manifest", "asset manifests"),
}


def shown_value(field: str, value: Any) -> str:
    """A parameter's value as the plan shows it: `(unset)`, an input by its digest or
    upstream, anything else as JSON (`history` shows them alike)."""
    if value is None:
        return "(unset)"
    if field in FILES:
        text = str(value)
        if text.startswith("@"):
            upstream, _, key = text.partition(":")
            return f"{upstream} (output {key[:12]}…)"
        return f"sha256:{text[:12]}…"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)  # `max_kb = 8` is read as 8.0: shown as written
    # JSON escapes C0 controls only: a C1 control or a bidirectional override from a
    # pull request's manifest or lock would reach the terminal as it is
    return escaped(json.dumps(value, ensure_ascii=False))


#: a note the same for this many images of one plan is said once, after the plan
SHARED_NOTE = 3


def shared_notes(actions: Iterable[Action]) -> dict[str, list[str]]:
    """Each note that many images share (a model leaving out an inherited parameter,
    for every image of a matrix), with the images it is about."""
    about: dict[str, list[str]] = {}
    for action in actions:
        for note in action.notes:
            about.setdefault(note, []).append(action.image)
    return {note: images for note, images in about.items() if len(images) >= SHARED_NOTE}


def shared_note_line(note: str, images: list[str], style: Style) -> str:
    named = ", ".join(images[:2]) + (", …" if len(images) > 2 else "")
    return style(f"  note for {len(images)} images ({named}): {printable(note)}", "yellow")


def cache_note(action: Action) -> str:
    """What the plan adds to a reason where the cache spares a generation: " (from
    cache, no generation)"; else ""."""
    made = action.kind in (ActionKind.CREATE, ActionKind.REGENERATE)
    if action.from_remote:
        return " (from the remote cache, no generation)" if made else " (from the remote cache)"
    if action.from_cache and made and not action.in_place:
        return " (from cache, no generation)"
    return ""


def change_line(change: Change) -> str:
    """One changed field, old -> new, as the plan shows it under the action."""
    change = as_written(change)
    old, new = shown_value(change.field, change.old), shown_value(change.field, change.new)
    return f"{escaped_value(change.field)}: {old} -> {new}"


#: a text change longer than this (old and new together) also gets the words that changed
WORDS_AFTER = 80
#: more changed stretches than this, and the whole values say it better
MOST_WORD_CHANGES = 3


def as_written(change: Change) -> Change:
    """A transparent image's prompt change as the manifest's words: without the key
    colour's words both prompts end with (the plan's "transparent:" line says them)."""
    old, new = change.old, change.new
    if change.field != "prompt" or not isinstance(old, str) or not isinstance(new, str):
        return change
    added = added_key_suffix(old)
    if added is None or added_key_suffix(new) != added:
        return change
    return Change(change.field, old.removesuffix(added), new.removesuffix(added))


def changed_words(change: Change) -> str | None:
    """For a long text edited in a few words, only those: `words: "calm" -> "stormy",
    + "dramatic"`; None where the old -> new line says it at a glance."""
    change = as_written(change)
    old, new = change.old, change.new
    if not isinstance(old, str) or not isinstance(new, str) or change.field in FILES:
        return None
    if old.split() == new.split():  # two texts that look alike
        return "only spaces differ (the same words, spaced or broken otherwise)"
    if len(old) + len(new) <= WORDS_AFTER:
        return None
    import difflib  # only for a long text that changed
    import re

    # words and runs of punctuation, each with where it is: a stretch is shown as typed
    before, after = (list(re.finditer(r"\w+|[^\w\s]+", text)) for text in (old, new))
    matcher = difflib.SequenceMatcher(
        None, [m[0] for m in before], [m[0] for m in after], autojunk=False
    )
    stretches = [
        _stretch(_text(old, before[i1:i2]), _text(new, after[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]
    if not stretches or len(stretches) > MOST_WORD_CHANGES:
        return None
    return "words: " + ", ".join(stretches)


def _text(text: str, tokens: list[re.Match[str]]) -> str:
    return text[tokens[0].start() : tokens[-1].end()] if tokens else ""


def _stretch(old: str, new: str) -> str:
    def quoted(text: str) -> str:
        return escaped(json.dumps(text, ensure_ascii=False))

    if not old:
        return f"+ {quoted(new)}"
    if not new:
        return f"- {quoted(old)}"
    return f"{quoted(old)} -> {quoted(new)}"


def renamed_only(action: Action) -> bool:
    """Whether the action is an image renamed and nothing else: it takes over the file
    of the image it was (`Action.renamed_from`), which already holds its output."""
    return action.kind is ActionKind.CREATE and action.renamed_from is not None and action.in_place


def said_with_its_heir(action: Action) -> bool:
    """Whether the action is the old name of a renamed image, dropped from the lock
    and nothing more: the plan says it on the new name's line."""
    return (
        action.kind is ActionKind.DELETE
        and action.renamed_to is not None
        and not action.removes
        and not action.stays
    )


def action_lines(action: Action, style: Style, shared: Collection[str] = frozenset()) -> list[str]:
    symbol, color = SYMBOLS[action.kind]
    word = verb(action)
    if renamed_only(action):
        (symbol, color), word = SYMBOLS[ActionKind.MOVE], "rename"
    elif remade_as_renamed(action):
        symbol, color = SYMBOLS[ActionKind.REGENERATE]
    cache = cache_note(action)
    head = f"  {style(symbol, color, 'bold')} {style(action.image, 'bold')}  {style(word, color)}"
    if action.output and not (action.keep_file and action.kind is ActionKind.DELETE):
        # a deleted image's file that stays: its reason names it
        head += f"  {printable(action.output)}"
    lines = [head, style(f"      {printable(action.reason)}{cache}", "dim")]
    if action.spec is not None and action.spec.depends_on:
        lines.append(style(f"      takes the output of {', '.join(action.spec.depends_on)}", "dim"))
    if action.spec is not None:
        lines += [style(f"      {line}", "dim") for line in _sprite_lines(action.spec)]
    instead = action.resolution
    if action.kind is ActionKind.CONFLICT and instead and instead.kind is not ActionKind.RESTORE:
        # what else is pending for it, which the conflict holds back
        why = f"{verb(instead)} ({printable(instead.reason)}){cache_note(instead)}"
        lines.append(style(f"      with --force: {why}", "dim"))
    for change in action.changes or (instead.changes if instead else ()):
        lines.append(f"      {style('~', 'yellow')} {change_line(change)}")
        if (words := changed_words(change)) is not None:
            lines.append(style(f"        {words}", "dim"))
    if (note := removal_note(action)) is not None:
        lines.append(style(f"      {note}", "yellow"))
    if action.backup:
        lines.append(style(f"      {BACKED_UP}", "magenta"))
    lines += [
        style(f"      note: {printable(note)}", "yellow")
        for note in action.notes
        if note not in shared
    ]
    return lines


#: what the plan says under an action that keeps a copy of the file it replaces
BACKED_UP = "the current file is backed up (.nebula-build/backup/), then replaced"


def backup_note(action: Action | FileAction) -> str:
    """What a one-line reason (a job summary's cell) adds where the action keeps a copy
    of the file it replaces and its reason does not say so already; else ""."""
    if not action.backup or ".nebula-build/backup/" in action.reason:
        return ""
    return f"; {BACKED_UP}"


def _sprite_lines(spec: AssetSpec) -> list[str]:
    """What the plan says of a sprite: its key colour and its checks."""
    lines = []
    if spec.key_color is not None:
        lines.append(
            f"transparent: generated on the key colour {spec.key_color} (a suffix added to "
            "the prompt asks for it), then keyed out"
        )
    if spec.checks:
        lines.append("checks: " + ", ".join(describe_check(n, v) for n, v in spec.checks))
    return lines


def _restore_label(plan: Plan) -> str:
    remote = sum(1 for a in plan.actions if a.kind is ActionKind.RESTORE and a.from_remote)
    return f"to restore ({remote} from remote cache)" if remote else "to restore"


def summary_line(plan: Plan) -> str:
    counts = Counter(a.kind for a in plan.actions)
    made = [
        a
        for a in plan.actions
        if a.kind in (ActionKind.CREATE, ActionKind.REGENERATE) and not renamed_only(a)
    ]
    from_remote = sum(1 for a in made if a.from_remote)
    from_cache = sum(1 for a in made if a.from_cache and not a.from_remote)
    renamed = plan.renamed()
    dropped = sum(1 for a in plan.actions if a.kind is ActionKind.DELETE and a.renamed_to)
    generating = plan.generating(draws=False)  # the draws have their own count
    parts = [f"{generating.images} to generate{generating.shared}"]
    if from_cache:
        parts.append(f"{from_cache} from cache")
    if from_remote:
        parts.append(f"{from_remote} from remote cache")
    if renamed:
        parts.append(f"{renamed} renamed")
    parts.append(f"{counts[ActionKind.DELETE] - dropped} to delete")
    labels = (
        (ActionKind.REENCODE, "to re-encode"),
        (ActionKind.RESTORE, _restore_label(plan)),
        (ActionKind.MOVE, "to move"),
        (ActionKind.CONFLICT, "in conflict"),
        (ActionKind.DRAW, "to make"),
        (ActionKind.NOOP, "up to date"),
    )
    for action_kind, label in labels:
        if n := counts[action_kind]:
            counted = plural(n, "candidate draw") if action_kind is ActionKind.DRAW else n
            parts.append(f"{counted} {label}")
    files = Counter((f.kind, f.state) for f in plan.files)
    for kind, (one, many) in _FILE_NOUNS.items():
        for state, label in (
            (FileState.BUILD, "to build"),
            (FileState.DELETE, "to delete"),
            (FileState.CONFLICT, "in conflict"),
        ):
            if n := files[kind, state]:
                parts.append(f"{n} {one if n == 1 else many} {label}")
    return "Plan: " + ", ".join(parts) + "."


def generation_costs(plan: Plan) -> list[str]:
    """'3 × FLUX.1-schnell on nebula' for each model that will be billed a generation."""
    counts = Counter((a.spec.backend, a.spec.model) for a in plan.generations if a.spec)
    return [
        f"{n} × {printable(model)} on {printable(backend)}"
        for (backend, model), n in sorted(counts.items())
    ]


def price_origin(line: CostLine) -> str:
    """' per the manifest' after a price that is not the provider's list's."""
    from nebula_build.engine.cost import CONFIGURED, TRUSTED

    origins = {CONFIGURED: "the manifest", TRUSTED: TRUSTED}
    return f" per {origins[line.source]}" if line.source in origins else ""


def _priced(line: CostLine) -> str:
    from nebula_build.engine.cost import money

    model = printable(line.model)
    if not line.paid:
        return f"{line.generations} × {model}"
    if line.price is None:
        return f"{line.generations} × {model} at an unknown price"
    return f"{line.generations} × {model} at {money(line.price)}{price_origin(line)}"


def cost_text(estimate: Estimate) -> str | None:
    """'Generations: 3 on nebula (2 × … at $0.003, 1 × … at $0.009); estimated cost
    $0.015.', or None when nothing is generated."""
    from nebula_build.engine.cost import money

    if not estimate.lines:
        return None
    backends: dict[str, list[CostLine]] = {}
    for line in estimate.lines:
        backends.setdefault(line.backend, []).append(line)
    parts = []
    for backend, lines in backends.items():
        listed = ", ".join(_priced(line) for line in lines)
        free = "" if lines[0].paid else ", free"
        count = sum(line.generations for line in lines)
        parts.append(f"{count} on {printable(backend)} ({listed}{free})")
    text = "Generations: " + ", ".join(parts)
    if estimate.paid_generations:
        unknown = sum(line.generations for line in estimate.unknown)
        if not unknown:
            text += f"; estimated cost {money(estimate.known)}"
        elif unknown == estimate.paid_generations:
            text += "; estimated cost unknown"
        else:
            text += (
                f"; estimated cost at least {money(estimate.known)} "
                f"({plural(unknown, 'generation')} at an unknown price)"
            )
    return text + "."


def cost_question(plan: Plan, estimate: Estimate) -> str:
    """'Generate 3 images on nebula (estimated $0.027)? [y/N] ', or '… 2 images in 1
    generation …' where images of one spec share theirs: what the paid backends make,
    counted as the plan's summary line counts it."""
    from nebula_build.engine.cost import money

    paid = set(estimate.paid_backends)
    bought = Plan(tuple(a for a in plan.actions if a.spec is not None and a.spec.backend in paid))
    backends = " and ".join(estimate.paid_backends)
    total = estimate.total
    if total is not None:
        said = f"estimated {money(total)}"
    elif estimate.known:
        said = f"at least {money(estimate.known)}, some prices unknown"
    else:
        said = "price unknown"
    return f"Generate {bought.generating().said()} on {backends} ({said})? [y/N] "


def estimate_json(estimate: Estimate) -> dict[str, Any]:
    """The estimate as `plan --json` and `apply --json` give it; amounts in USD."""

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    return {
        "currency": "USD",
        "generations": estimate.generations,
        "paid_generations": estimate.paid_generations,
        "total": number(estimate.total),
        "known": float(estimate.known),
        "lines": [
            {
                "backend": line.backend,
                "model": line.model,
                "generations": line.generations,
                "paid": line.paid,
                "price": number(line.price),
                "subtotal": number(line.subtotal),
                "source": line.source,
                "confirmed": line.confirmed,
            }
            for line in estimate.lines
        ],
    }


_FILE_MARKS = {
    FileState.BUILD: ("+", "green"),
    FileState.CONFLICT: ("!", "magenta"),
    FileState.DELETE: ("-", "red"),
    FileState.WAITING: (" ", "dim"),
    FileState.NOOP: (" ", "dim"),
}


def file_lines(actions: Iterable[FileAction], style: Style) -> list[str]:
    """The files made from the images that change (or wait), like image actions."""
    lines = []
    for action in actions:
        if action.state is FileState.NOOP:
            continue
        symbol, color = _FILE_MARKS[action.state]
        if action.state is FileState.BUILD and action.moved_from is not None:
            symbol, color = SYMBOLS[ActionKind.MOVE]
        elif action.state is FileState.BUILD and not action.new:
            symbol, color = "~", "cyan"
        lines.append(
            f"  {style(symbol, color, 'bold')} {style(printable(action.label), 'bold')}"
            f"  {style(action.state.value, color)}  {printable(action.output)}"
        )
        lines.append(style(f"      {printable(action.reason)}", "dim"))
        if (note := removal_note(action)) is not None:
            lines.append(style(f"      {note}", "yellow"))
        if action.backup:  # the reason says why: --force, or nothing vouches for the file
            lines.append(style(f"      {BACKED_UP}", "magenta"))
    return lines


def pin_lines(plan: Plan, style: Style) -> list[str]:
    """The images whose output is an earlier generation pinned over the manifest, and
    those whose pin an edit ended while their output stays."""
    lines = []
    for action in plan.actions:
        spec = action.spec
        if action.kind is not ActionKind.NOOP or spec is None:
            continue
        if spec.pin is not None:
            note = action.notes[-1] if action.notes else "pinned to an earlier generation"
            lines.append(style(f"  = {action.image}  {printable(note)}", "yellow"))
        elif PIN_RELEASED in action.notes:  # apply writes the lock without it
            lines.append(style(f"  = {action.image}  {PIN_RELEASED}", "yellow"))
    return lines


def pins_released(plan: Plan) -> list[str]:
    """The images whose pin an edit ended while their output stays: apply changes
    nothing of theirs but the lock, which it writes without the pin."""
    return _noted(plan, PIN_RELEASED)


def draws_recorded(plan: Plan) -> list[str]:
    """The images of `--more` whose next draw the cache holds: apply changes nothing of
    theirs but the lock, which it writes with the draw."""
    from nebula_build.engine.candidates import DRAW_RECORDED

    return _noted(plan, DRAW_RECORDED)


def _noted(plan: Plan, note: str) -> list[str]:
    return [a.image for a in plan.actions if a.kind is ActionKind.NOOP and note in a.notes]


def lock_changes(plan: Plan, *, written: bool = False) -> str | None:
    """What apply writes to the lock that no image's action shows ("apply writes the
    lock without 1 pin (hero)"), or, once `written`, what it wrote; None where nothing."""
    parts = []
    if released := pins_released(plan):
        parts.append(f"without {plural(len(released), 'pin')} ({_listed(released)})")
    if recorded := draws_recorded(plan):
        parts.append(f"with {plural(len(recorded), 'draw')} the cache holds ({_listed(recorded)})")
    if not parts:
        return None
    return ("written " if written else "apply writes the lock ") + " and ".join(parts)


def _listed(images: list[str]) -> str:
    """'hero, logo, bg and 2 more'."""
    named = ", ".join(printable(name, limit=80) for name in images[:3])
    return named + (f" and {len(images) - 3} more" if len(images) > 3 else "")


def lock_changes_json(plan: Plan) -> dict[str, Any] | None:
    """`lock_changes` of `plan --json` and `status --json` (null where apply would
    write nothing to the lock that the actions do not show)."""
    message = lock_changes(plan)
    if message is None:
        return None
    return {
        "pins_released": pins_released(plan),
        "draws_recorded": draws_recorded(plan),
        "message": message,
    }


def conflict_lines(plan: Plan, style: Style) -> list[str]:
    """What to do about files changed by hand, which apply never overwrites unasked,
    and about symbolic links out of the project in the way (no file to back up)."""
    resolved = [  # --force resolves them
        a for a in plan.actions if a.kind is ActionKind.CONFLICT and a.resolution is not None
    ]
    images = [a.image for a in resolved if not a.reason.startswith(LINK_IN_THE_WAY)]
    links = ["", style(LINKS_REPLACED, "yellow")] if len(images) < len(resolved) else []
    sheets = any(f.state is FileState.CONFLICT for f in plan.files)
    if not images and not sheets:
        return links
    # another image's file, or a name held back by the one it swaps with: no edit to keep
    edited = sheets or any("changed by hand" in a.reason for a in resolved)
    what, keep, keep_one = (
        ("changed by hand", "your edit", "an edit") if edited else ("in the way", "it", "one")
    )
    # an output edited by hand, of the image the manifest still declares: kept as it is
    acceptable = accepted_edits(plan)
    # accept keeps each edit: moving one away is no longer the only way to keep it
    only_edits = not sheets and set(images) <= set(acceptable)
    move = "." if only_edits else f"; to keep {keep}, move it elsewhere."
    move_one = "." if only_edits else f"; to keep {keep_one}, move the file elsewhere."
    text = (
        f"A file {what} is kept: `nebula-build apply --force` replaces it (the "
        f"old one goes to .nebula-build/backup/){move}"
    )
    # a name swapped with another is renamed with it (--target takes both): not one alone
    alone = [image for image in images if image not in _swapped(plan)]
    if len(images) > 1 and not alone:
        text = (
            f"Files {what} are kept: `nebula-build apply --force` replaces them (the "
            f"old ones go to .nebula-build/backup/){move_one}"
        )
    elif len(images) > 1:
        first = printable(alone[0])
        target = printable(shell_option("--target", alone[0]))
        text = (
            f"Files {what} are kept: `nebula-build apply --force` replaces them (the "
            f"old ones go to .nebula-build/backup/), `nebula-build apply --force {target}` "
            f"only {first}'s{move_one}"
        )
    if acceptable:
        command = printable(f"nebula-build accept {shell_operands(*acceptable[:3])}", limit=200)
        if len(acceptable) == 1:
            spec = next(a.spec for a in plan.actions if a.image == acceptable[0] and a.spec)
            edits = f"the edit as the image's output ({edit_form(spec)}, as it was made)"
        else:
            edits = "edits as outputs (each in its output's format and size)"
        apart = "; or move the file elsewhere to keep it apart" if only_edits else ""
        text += f" `{command}` keeps {edits}{apart}."
    return ["", style(text, "yellow"), *links[1:]]


def _swapped(plan: Plan) -> set[str]:
    """The images of the plan that swap names with another (or are renamed round a
    cycle): --target of one takes the others along."""
    declared = {a.image for a in plan.actions if a.spec is not None}
    swapped = set()
    for action in plan.actions:
        old = action.taking_over
        if old is not None and old in declared:
            swapped |= {action.image, old}
    return swapped


#: what the plan says where a symbolic link out of the project is in an image's way:
#: --force has no file to back up there (`core.plan._link_replaced`)
LINKS_REPLACED = (
    "A symbolic link out of the project is in the way: `nebula-build apply --force` "
    "replaces the link (what it points to outside the project is not touched); to keep "
    "it, give the image another output."
)


def settings_lines(plan: Plan, style: Style) -> list[str]:
    """The images kept as they are although the lock says they were made with other
    settings than the backend's now (not in the key: `apply --replace` redoes them),
    or by the stand-in for the API (said once for many)."""
    notes, shared = _settings_notes(plan, style)
    lines = [
        style(f"  note for {printable(image)}: {printable(note)}", "yellow")
        for image, note in notes.items()
    ]
    return lines if shared is None else [*lines, shared]


def _settings_notes(plan: Plan, style: Style) -> tuple[dict[str, str], str | None]:
    """The note of each image kept with other settings (`_settings`), but for
    placeholders of the stand-in when there are many: one shared line for them."""
    from nebula_build.engine.standins import kept_note

    notes = _settings(plan)
    placeholders = [image for image, note in notes.items() if note.startswith(PLACEHOLDER_NOTE)]
    if len(placeholders) < SHARED_NOTE:
        return notes, None
    alone = {image: note for image, note in notes.items() if image not in placeholders}
    return alone, shared_note_line(kept_note(placeholders), placeholders, style)


def plan_text(
    plan: Plan,
    style: Style,
    estimate: Estimate | None = None,
    *,
    limit: int | None = None,
    lock_written: bool = False,
    merge: LockMerge | None = None,
    conflict_advice: bool = True,
) -> str:
    """The plan as `plan` prints it; with `limit`, at most that many images' actions
    (the count of the others instead). `lock_written`: apply has carried it out, and
    what it wrote to the lock alone is said as done.
    `merge`: the lock still has a merge's conflict markers, which apply resolves.
    Without `conflict_advice`, nothing on what to do about files in the way: apply's
    refusal of each says it."""
    lock = lock_changes(plan, written=lock_written)
    lock_lines = [style(f"Lock: {lock}.", "bold")] if lock is not None else []
    if merge is not None:
        lock_lines.insert(0, style(merge_line(merge), "bold"))
    if not plan.has_changes:
        nothing = "No changes to the images" if lock_lines else "No changes"
        return "\n".join(
            [
                f"{nothing}: {plural(len(plan.actions), 'image')} up to date.",
                *pin_lines(plan, style),
                *settings_lines(plan, style),
                *lock_lines,
            ]
        )
    lines = ["nebula-build will perform these actions:", ""]
    changes = [a for a in plan.changes if not said_with_its_heir(a)]
    shown = changes[:limit]
    shared = shared_notes(shown)
    for action in shown:
        lines += action_lines(action, style, shared)
    if limit is not None and len(changes) > limit:
        more = len(changes) - limit
        lines.append(
            style(f"  … and {plural(more, 'more image')} (`nebula-build plan` lists them)", "dim")
        )
    lines += file_lines(plan.files, style)
    lines += pin_lines(plan, style)
    lines += settings_lines(plan, style)
    if conflict_advice:
        lines += conflict_lines(plan, style)
    if shared:  # after every line of the plan, as Terraform says its warnings
        lines += ["", *(shared_note_line(note, images, style) for note, images in shared.items())]
    lines += ["", style(summary_line(plan), "bold")]
    said = cost_text(estimate) if estimate is not None else None
    if said is not None:
        lines.append(said)
    else:
        costs = generation_costs(plan)
        if costs:
            lines.append("Generations: " + ", ".join(costs) + ".")
    return "\n".join([*lines, *lock_lines])  # the summary and its cost kept together


_MAKES_PIXELS = (ActionKind.CREATE, ActionKind.REGENERATE, ActionKind.DRAW)


def action_json(action: Action) -> dict[str, Any]:
    data: dict[str, Any] = {
        "image": action.image,
        "action": action.kind.value,
        "reason": action.reason,
        "output": action.output,
        "generates": action.generates,
        # a restore is from a cache by its kind: the local one, where not the remote
        "from_cache": action.from_cache
        or (action.kind is ActionKind.RESTORE and not action.from_remote),
        "from_remote_cache": action.from_remote,
        "backup": action.backup,
    }
    if action.in_place:  # the file already holds the output: nothing is made
        data["in_place"] = True
    if action.spec is not None:
        data |= {
            "backend": action.spec.backend,
            "model": action.spec.model,
            "generation_key": action.spec.generation_key,
        }
    if action.spec is not None and action.kind in _MAKES_PIXELS:
        data["prompt"] = action.spec.prompt  # filled in from its row: read before paying
    if action.old_output:
        data["old_output"] = action.old_output
    if action.renamed_from is not None:
        data["renamed_from"] = action.renamed_from
    if action.renamed_to is not None:
        data["renamed_to"] = action.renamed_to
    if action.kind is ActionKind.CONFLICT and action.resolution is not None:
        # --force keeps a copy of every file it writes over (core/plan.py `_guard`), and
        # replaces a link out of the project, which has no bytes to keep
        backup = not action.reason.startswith(LINK_IN_THE_WAY)
        data["with_force"] = action_json(action.resolution) | {"backup": backup}
    if action.removes:
        data["removes"] = list(action.removes)
    if action.stays:
        data["stays"] = list(action.stays)
        data["stays_because"] = stays_reasons(action)
    if action.spec is not None and action.spec.depends_on:
        data["depends_on"] = list(action.spec.depends_on)
    if action.changes:
        data["changes"] = [{"field": c.field, "old": c.old, "new": c.new} for c in action.changes]
    if action.notes:
        data["notes"] = list(action.notes)
    if action.spec is not None and action.spec.pin is not None:
        data["pinned"] = True
    elif action.spec is not None and action.spec.candidates > 1:
        # which draw is the output (`pick NAME K` takes the same number), of how many
        data |= {"draw": action.spec.draw, "candidates": action.spec.candidates}
    if action.spec is not None and action.spec.key_color is not None:
        data["key_color"] = action.spec.key_color
    if action.spec is not None and action.spec.checks:
        data["checks"] = dict(action.spec.checks)
    return data


def file_json(action: FileAction) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": action.label,
        "kind": action.kind.value,
        "action": action.state.value,
        "reason": action.reason,
        "output": action.output,
        "backup": action.backup,
    }
    if action.kind is FileKind.ATLAS:
        data |= {"atlas": action.name, "frames": action.frames, "exports": list(action.exports)}
    if action.moved_from is not None:
        data["old_output"] = action.moved_from  # as a moved image's
    if action.removes and action.state is FileState.CONFLICT:  # as an image's conflict
        data["with_force"] = {"removes": list(action.removes), "backup": True}
    elif action.removes:
        data["removes"] = list(action.removes)
    return data


def plan_json(plan: Plan, estimate: Estimate | None = None) -> dict[str, Any]:
    data = {
        "actions": [action_json(a) for a in plan.actions],
        "files": [file_json(f) for f in plan.files],
        "summary": plan.summary(),
        "files_summary": dict(Counter(f.state.value for f in plan.files)),
        "generations": len(plan.generations),
        "lock_changes": lock_changes_json(plan),
    }
    if estimate is not None:
        data["cost"] = estimate_json(estimate)
    return data


def merge_line(merge: LockMerge) -> str:
    """The summary's line on a lock a merge left conflict markers in: that it still has
    them, and that apply, not an editor, resolves them."""
    then = f"; then {merge.todo}" if merge.todo else ""
    return (
        f"Lock: {merge.lock} still has git's conflict markers: leave them to `nebula-build "
        f"apply`, which writes it resolved from both sides ({merge.ours} + {merge.theirs} "
        f"entries){then}."
    )


def lock_merge_json(merge: LockMerge | None) -> dict[str, Any] | None:
    """`lock_merge` of `plan --json` and `status --json`: what the two sides of a lock
    with merge conflicts held (null where it has none)."""
    if merge is None:
        return None
    return {
        "lock": merge.lock,
        "ours": merge.ours,
        "theirs": merge.theirs,
        "contested": sorted(merge.contested),
        "dropped": [
            {"image": one.image, "side": one.side, "output": one.dropped, "command": one.command}
            for one in merge.dropped
        ],
        "message": merge.line(written=False),
    }


def status_text(
    plan: Plan,
    style: Style,
    failed: Mapping[str, str] | None = None,
    merge: LockMerge | None = None,
) -> str:
    """One line per image, then per file made from them: up to date, pending or conflict
    (and the last apply's error where it failed); then a summary line. `failed`: the
    last error of each image still pending (`status_failed`); `merge`: the lock still
    has a merge's conflict markers."""
    failed = failed or {}
    pinned = {a.image for a in plan.actions if a.spec is not None and a.spec.pin is not None}
    summary = status_summary(plan, failed)
    rows = status_rows(plan, cache_note)
    edited = {
        a.image
        for a in plan.actions
        if a.kind is ActionKind.NOOP and a.entry is not None and a.entry.edited_from is not None
    }
    notes, shared = _settings_notes(plan, style)
    text = status_lines(
        rows,
        summary,
        style,
        pinned=pinned,
        edited=edited,
        failed=failed,
        notes=notes,
        shared_notes=() if shared is None else (shared,),
    )
    lock = lock_changes(plan)
    if merge is not None:
        text += "\n" + style(merge_line(merge), "bold")
    return text if lock is None else text + "\n" + style(f"Lock: {lock}.", "bold")


def _settings(plan: Plan) -> dict[str, str]:
    """The note of each image kept although made with other settings, or by the
    stand-in for the API (`settings_lines`)."""
    return {
        action.image: note
        for action in plan.actions
        if action.kind is ActionKind.NOOP
        for note in action.notes
        if SETTINGS_NOTE in note or note.startswith(PLACEHOLDER_NOTE)
    }


def status_failed(plan: Plan, failures: Mapping[str, str]) -> dict[str, str]:
    """The last apply's error of each image that is still to be done: an image up to
    date since (its prompt put back, the lock of a colleague's apply) failed no more.
    (A file's: `runstate.read_file_failures`, by its label.)"""
    pending = {a.image for a in plan.actions if a.is_change}
    return {name: message for name, message in failures.items() if name in pending}


def status_summary(plan: Plan, failed: Mapping[str, str]) -> str:
    """'Status: 3 images (2 up to date, 1 pending), 1 atlas waiting; 1 image failed in
    the last apply.' Images as the plan counts them: a renamed image once, by its new
    name (its old name's row says the rename, and is not counted again)."""
    images = [a for a in plan.actions if a.kind is not ActionKind.DRAW and a.renamed_to is None]
    parts = [_counted(plural(len(images), "image"), [a.kind.value for a in images])]
    if draws := sum(1 for a in plan.actions if a.kind is ActionKind.DRAW):
        parts.append(f"{plural(draws, 'candidate draw')} to make")
    for kind, (one, many) in _FILE_NOUNS.items():
        if files := [f for f in plan.files if f.kind is kind]:
            parts.append(_counted(plural(len(files), one, many), [f.state for f in files]))
    line = "Status: " + ", ".join(parts)
    if failed:
        kinds = {f.label: f.kind for f in plan.files}
        counted = Counter(kinds.get(name) for name in failed)
        said = [plural(counted[None], "image")] if counted[None] else []
        said += [plural(counted[k], *_FILE_NOUNS[k]) for k in _FILE_NOUNS if counted[k]]
        line += f"; {' and '.join(said)} failed in the last apply"
    return line + "."


_STATUS_WORDS = {"noop": "up to date", "waiting": "waiting", "conflict": "in conflict"}


def _counted(things: str, states: Iterable[str]) -> str:
    """'3 images up to date', or '3 images (2 up to date, 1 pending)': how many are in
    each state, in that order."""
    counts = Counter(_STATUS_WORDS.get(state, "pending") for state in states)
    order = ("up to date", "pending", "waiting", "in conflict")
    if len(counts) == 1:
        return f"{things} {next(iter(counts))}"
    return f"{things} (" + ", ".join(f"{counts[w]} {w}" for w in order if counts[w]) + ")"


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    data = action_json(outcome.action) | {
        "status": "ok" if outcome.ok else "failed",
        "elapsed": round(outcome.elapsed, 4),
        "generated": outcome.generated,
        "refused": outcome.refused,
    }
    if outcome.timings:
        data["timings"] = dict(outcome.timings)
    if outcome.peak_memory is not None:
        data["peak_memory_bytes"] = outcome.peak_memory
    if outcome.warnings:
        data["warnings"] = list(outcome.warnings)
    if outcome.error is not None:
        data["error"] = str(outcome.error)
    checked = outcome.checks or getattr(outcome.error, "checks", None)
    if checked:  # each check's measured value; `checks` beside it holds the limits
        data["check_values"] = dict(checked)
    return data


def file_outcome_json(outcome: FileOutcome) -> dict[str, Any]:
    data = file_json(outcome.action) | {"status": "ok" if outcome.ok else "failed"}
    if outcome.error is not None:
        data["error"] = outcome.error
    return data


def done_text(result: RoundResult) -> str:
    """'5 done (3 generated), 1 atlas built (4 files)': images first, what is made from
    them after; a generation whose bytes were refused is counted with the failures
    (`failed_text`)."""
    done = result.applied.done if result.applied else 0
    deleted = (
        f", {result.applied.deleted} deleted" if result.applied and result.applied.deleted else ""
    )
    text = f"{done} done ({result.generated - refused_count(result)} generated{deleted})"
    built = [o.action for o in result.files if o.ok and o.action.state is not FileState.DELETE]
    if atlases := [a for a in built if a.kind is FileKind.ATLAS]:
        written = sum(_atlas_files(result, a) for a in atlases)
        text += f", {plural(len(atlases), 'atlas', 'atlases')} built ({plural(written, 'file')})"
    if any(a.kind is FileKind.ASSET_MANIFEST for a in built):
        text += ", asset manifest written"
    if removed := sum(len(o.action.removes) for o in result.files if o.ok):
        text += f", {removed} file{'' if removed == 1 else 's'} removed"
    return text


def _atlas_files(result: RoundResult, action: FileAction) -> int:
    """The files an atlas's build writes: its sheet, its frame map and its exports."""
    atlas = result.prepared.resolved.atlases.get(action.name)
    return len(atlas.paths) if atlas is not None else 2


def refused_count(result: RoundResult) -> int:
    """The generations whose bytes were refused: paid for, maybe, and no image."""
    return result.applied.refused if result.applied else 0


def failed_text(result: RoundResult, failed: Collection[str]) -> str:
    """'1 failed', or '1 failed (1 generated then refused)' where the backend answered
    (and may have billed) with bytes that could not be used; the files made from the
    images among `failed` counted apart ('6 failed, 1 atlas failed')."""
    kinds = {o.action.label: o.action.kind for o in result.files}
    counted = Counter(kinds.get(name) for name in failed)
    files = [f"{plural(counted[k], *_FILE_NOUNS[k])} failed" for k in _FILE_NOUNS if counted[k]]
    images = f"{counted[None]} failed"
    if refused := refused_count(result):
        images += f" ({refused} generated then refused)"
    return ", ".join(files if files and images == "0 failed" else [images, *files])


def apply_json(result: RoundResult) -> dict[str, Any]:
    outcomes = result.applied.outcomes if result.applied else []
    return {
        "results": [outcome_json(o) for o in outcomes],
        "files": [file_outcome_json(o) for o in result.files],
        "summary": result.plan.summary(),
        "done": result.applied.done if result.applied else 0,
        "generated": result.generated,
        "refused": refused_count(result),
        "failed": sorted(result.counted_failures),
        "cost": estimate_json(result.estimate),
        "backups": [backup_json(copy) for copy in backups(result.prepared)],
    }


@dataclass(frozen=True, slots=True)
class Backup:
    """A file a round copied before replacing it, paths relative to the project."""

    #: `out/b.png`
    file: str
    #: `.nebula-build/backup/20250102T030405/out/b.png`
    copy: str
    #: `.nebula-build/backup/20250102T030405/`: the run's folder
    folder: str


def backups(prepared: Prepared) -> list[Backup]:
    """The copies the round made, in the order it made them."""
    root, backup_dir = prepared.project.root, prepared.project.backup_dir
    found = []
    for copy in prepared.guard.backups:
        run, *file = copy.relative_to(backup_dir).parts
        folder = (backup_dir / run).relative_to(root).as_posix() + "/"
        found.append(Backup("/".join(file), copy.relative_to(root).as_posix(), folder))
    return found


def backup_json(backup: Backup) -> dict[str, str]:
    return {"file": backup.file, "copy": backup.copy, "folder": backup.folder}


def backups_line(prepared: Prepared) -> str | None:
    """`2 replaced files backed up in .nebula-build/backup/20250102T030405/`, or None
    where the round copied nothing."""
    copies = backups(prepared)
    if not copies:
        return None
    folders = ", ".join(sorted({copy.folder for copy in copies}))
    return f"{plural(len(copies), 'replaced file')} backed up in {folders}"


def models_text(
    tables: Mapping[str, Mapping[str, ModelSupport]],
    style: Style,
    broken: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> str:
    """Each backend's models, their labels and the parameters each takes, under the
    distribution that provides it (`sources`, by backend; none for a built-in); an
    installed plugin left out as `broken` (by its entry point's name: what went wrong)
    is a row of its own."""
    lines = []
    for backend, models in tables.items():
        labelled = any(m.label for m in models.values())
        header = ["model", *(["label"] if labelled else []), *OPTIONAL, "size"]
        rows = [
            [
                printable(mid),
                *([printable(m.label or "")] if labelled else []),
                *("yes" if p in m.params else "-" for p in OPTIONAL),
                f"x{m.size_multiple}",
            ]
            for mid, m in models.items()
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines += [
            style(f"backend {printable(backend)}", "bold") + _provided_by(backend, sources),
            "  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        ]
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        ]
        lines.append("")
    for name, problem in sorted((broken or {}).items()):
        said = printable(problem)
        lines += [style(f"backend {printable(name)}", "bold") + f"  broken: {said}", ""]
    lines.append(
        "All models take prompt, width and height. A seed on a model without "
        "'seed' still asks for a new draw, but is not reproducible."
    )
    return "\n".join(lines)


def _provided_by(backend: str, sources: Mapping[str, str] | None) -> str:
    source = (sources or {}).get(backend)
    return f" ({printable(source)})" if source else ""


def error_json(exc: Exception) -> dict[str, Any]:
    """An error as `--json` prints it: what the stderr line says, in fields."""
    data: dict[str, Any] = {"kind": type(exc).__name__, "message": first_line(exc)}
    if isinstance(exc, ManifestError):
        data["message"] = str(exc.problems[0]) if exc.problems else data["message"]
        data["problems"] = [
            {
                "file": p.path,
                "line": p.line,
                "column": p.column,
                "key": p.loc,
                "message": p.message,
            }
            for p in exc.problems
        ]
    return data
