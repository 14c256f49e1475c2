"""Candidates: an image declared with `candidates = N` has N draws. Every draw is kept
in the cache; the image's output is the picked one, which the lock records (as the
entry's `draw` parameter) and `nebula-build pick` changes.

The picked draw replaces the declared spec before the plan is made, so the rest of
the flow (plan, apply, restore, the lock) treats it as the image; the other draws the
cache lacks become `draw` actions, generations like any other (counted, priced,
capped, supplied by the remote cache where it has them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from nebula_build.core.plan import PIN_RELEASED, Action, ActionKind
from nebula_build.core.spec import AssetSpec, derived_seed
from nebula_build.errors import UserError
from nebula_build.state.cache import Store
from nebula_build.state.lockfile import MAX_CANDIDATES, DrawRecord, EarlierGeneration, LockEntry
from nebula_build.text import shell_operands


@dataclass(frozen=True)
class Picked:
    """The images with each one's picked draw, the bases the draws are made from, and
    why a recorded pick was dropped."""

    specs: dict[str, AssetSpec]
    bases: dict[str, AssetSpec]
    notes: dict[str, str]
    #: the draws of each image a plan may generate: those the manifest asks for, and
    #: the one `--more` adds. The lock may record more made (they stay pickable), but
    #: a lock never decides what is paid for.
    makeable: dict[str, tuple[int, ...]] = field(default_factory=dict)


def recorded_pick(spec: AssetSpec, entry: LockEntry | None) -> int | None:
    """The draw the lock records as picked for `spec`, if it is one of its draws now
    (same spec otherwise: an edit that changes the generation makes a new set)."""
    if entry is None:
        return None
    draw = entry.params.get("draw", 0)
    if type(draw) is not int or not 0 <= draw < spec.candidates:
        return None
    return draw if spec.drawn(draw).generation_key == entry.generation_key else None


def made_draws(base: AssetSpec, entry: LockEntry | None) -> int:
    """How many draws of `base`'s set the lock records as made (0: another set). Its
    first and last keys must be the set's: the count only widens what `pick` may
    choose from, never what a plan pays for (see `Picked.makeable`)."""
    if entry is None or not entry.draws or entry.draws[0].key != base.generation_key:
        return 0
    last = len(entry.draws) - 1
    if last and entry.draws[last].key != base.drawn(last).generation_key:
        return 1
    return min(len(entry.draws), MAX_CANDIDATES)


def remembered_draws(base: AssetSpec, entry: LockEntry | None) -> int:
    """How many draws of `base`'s set the history shows were made: an earlier output
    that was draw k of this set, before an edit now undone, keeps pickable the draws
    its set had made then (`--more`'s too), and draws 0 to k in any case."""
    if entry is None:
        return 0
    count = 0
    for earlier in entry.history:
        draw = earlier.params.get("draw", 0)
        if type(draw) is not int or not 0 <= draw < MAX_CANDIDATES:
            continue
        if max(draw + 1, earlier.draws) <= count:
            continue
        if base.drawn(draw).generation_key == earlier.generation_key:
            count = max(draw + 1, min(earlier.draws, MAX_CANDIDATES))
    return count


def set_draw_keys(spec: AssetSpec | None, earlier: EarlierGeneration) -> tuple[str, ...]:
    """The generation keys of the draws of the set `earlier` was picked from: as the
    history records them or, in a lock written before it did, as `spec`'s image draws
    that set again (where its seed is none, or the one `spec` declares; else none)."""
    if earlier.draw_keys or not earlier.draws or spec is None:
        return earlier.draw_keys
    picked = spec.with_generation(earlier.backend, earlier.model, earlier.params)
    first = _first_draw(spec, picked)
    if picked.generation_key != earlier.generation_key or first is None:
        return ()
    return tuple(first.drawn(i).generation_key for i in range(min(earlier.draws, MAX_CANDIDATES)))


def _first_draw(spec: AssetSpec, picked: AssetSpec) -> AssetSpec | None:
    """Draw 0 of `picked`'s set; None where its seed was derived from one other than
    the seed `spec` declares (a draw's seed does not tell the set's)."""
    if picked.draw == 0:
        return picked
    seed = picked.seed
    if seed is not None and picked.seed_reproducible:
        if spec.seed is None or derived_seed(spec.seed, picked.draw) != seed:
            return None
        seed = spec.seed
    return replace(picked, draw=0, seed=seed, generation_key="", output_key="")


def _plain(entry: LockEntry | None) -> bool:
    """Whether the lock records no draws, no pick and no pin for an image, now or in
    its history."""
    return entry is None or (
        not entry.draws
        and entry.pin is None
        and "draw" not in entry.params
        and not any("draw" in earlier.params for earlier in entry.history)
    )


def earlier_pick(base: AssetSpec, entry: LockEntry) -> int | None:
    """The draw of `base`'s set that was last the output, from the history: the pick
    an image had before a pin, or before an edit that is now undone."""
    for earlier in entry.history:
        draw = earlier.params.get("draw", 0)
        if type(draw) is not int or not 0 <= draw < base.candidates:
            continue
        if base.drawn(draw).generation_key == earlier.generation_key:
            return int(draw)
    return None


def differing(ours: Mapping[str, object], theirs: Mapping[str, object]) -> list[str]:
    """The generation parameters two specs do not share, by name."""
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))


def changed_since(base: AssetSpec, earlier: AssetSpec) -> list[str]:
    """What the manifest changed since `earlier` was made, as a user would say it: an
    earlier draw is compared with the same draw of today's spec, so its draw number
    and derived seed are not reported as changes (unless nothing else differs)."""
    whole = differing(base.generation_params(), earlier.generation_params())
    if not whole or earlier.draw == base.draw:
        return whole
    same_draw = base.drawn(earlier.draw).generation_params()
    return differing(same_draw, earlier.generation_params()) or whole


def _pinned(base: AssetSpec, entry: LockEntry | None) -> AssetSpec | None:
    """The earlier generation the lock pins as the output, while the manifest's spec
    is still the one it was pinned against."""
    if entry is None or entry.pin != base.generation_key:
        return None
    params = dict(entry.params)
    spec = base.with_generation(entry.backend, entry.model, params)
    if spec.generation_key != entry.generation_key:
        return None
    return replace(spec, pin=entry.pin)


def pin_note(base: AssetSpec, pinned: AssetSpec) -> str:
    fields = changed_since(base, pinned)
    verb = "differs" if len(fields) == 1 else "differ"
    which = f" ({', '.join(fields)} {verb} from the manifest)" if fields else ""
    unpin = f"nebula-build pick --unpin {shell_operands(base.name)}"
    return f"pinned to an earlier generation{which}: `{unpin}` ends the pin"


#: how the note on a pick that no longer holds begins (`_note`): "draw 2 was picked"
_PICK_DROPPED = re.compile(r"draw \d+ was picked\b")


def dropped_picks(actions: Iterable[Action]) -> dict[str, str]:
    """The note of each image whose picked draw no longer holds (an edit made new
    draws, or fewer), by image: what `plan` notes under it, and `watch` says."""
    return {
        action.image: note
        for action in actions
        for note in action.notes
        if _PICK_DROPPED.match(note)
    }


def _note(spec: AssetSpec, entry: LockEntry | None) -> str | None:
    """Why the lock's pick no longer holds, if it does not (`dropped_picks`)."""
    recorded = entry.params.get("draw", 0) if entry is not None else 0
    if type(recorded) is not int or not recorded or entry is None:
        return None
    if (
        0 < recorded < MAX_CANDIDATES
        and spec.drawn(recorded).generation_key == entry.generation_key
    ):
        return (
            f"draw {recorded} was picked, beyond the {spec.candidates} draws this image has "
            "now: draw 0 is the output"
        )
    return (
        f"draw {recorded} was picked before this change: draw 0 of the new draws is the "
        f"output until you pick another; undoing the change brings draw {recorded} back"
    )


def _on_picked_inputs(spec: AssetSpec, chosen: Mapping[str, AssetSpec]) -> AssetSpec:
    """`spec` with its `@image` inputs keyed by the draw picked for them: the key names
    the upstream's output, and a pick changes it."""
    changed = {}
    for attribute in ("image_digest", "mask_digest"):
        value = getattr(spec, attribute)
        if isinstance(value, str) and value.startswith("@"):
            name, _, key = value[1:].partition(":")
            upstream = chosen.get(name)
            if upstream is not None and upstream.output_key != key:
                changed[attribute] = f"@{name}:{upstream.output_key}"
    if not changed:
        return spec
    return replace(spec, **changed, generation_key="", output_key="")  # type: ignore[arg-type]


def _renamed_inputs(spec: AssetSpec, entry: LockEntry | None) -> AssetSpec:
    """`spec` with its `@image` inputs named as the lock records them where only the
    upstream's name differs (`@mob` renamed `@monster`, its output the same) and that
    makes the lock's generation again: a rename alone makes nothing anew."""
    if not spec.depends_on or entry is None:
        return spec
    changed = {}
    for param, attribute in (("image", "image_digest"), ("mask", "mask_digest")):
        value, recorded = getattr(spec, attribute), entry.params.get(param)
        if not (isinstance(value, str) and isinstance(recorded, str)) or value == recorded:
            continue
        upstreams = value.startswith("@") and recorded.startswith("@")
        if upstreams and value.partition(":")[2] == recorded.partition(":")[2]:  # same output
            changed[attribute] = recorded
    if not changed:
        return spec
    named = replace(spec, **changed, generation_key="", output_key="")  # type: ignore[arg-type]
    draw = entry.params.get("draw", 0)
    if type(draw) is not int or not 0 <= draw < MAX_CANDIDATES:
        return spec
    return named if named.drawn(draw).generation_key == entry.generation_key else spec


def picked(
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    picks: Mapping[str, int] = {},
    *,
    more: Collection[str] = (),
    pins: Mapping[str, AssetSpec] = {},
    unpin: Collection[str] = (),
    only: Collection[str] | None = None,
    on_disk: Callable[[AssetSpec, int], int | None] = lambda base, count: None,
) -> Picked:
    """Each image's chosen spec: `pins` (an earlier generation), `picks` (a draw), the
    lock's pin or pick, the draw its file holds where the lock has no entry for it
    (`on_disk(base, count)`: as this checkout's cache made it), or draw 0. An image's
    set of draws is as large as the manifest asks or the lock records made (`more`: one
    more). `only`: just these images (and those they take inputs from), not all of
    `specs`."""
    chosen: dict[str, AssetSpec] = {}
    bases: dict[str, AssetSpec] = {}
    notes: dict[str, str] = {}
    makeable: dict[str, tuple[int, ...]] = {}
    asked = {*more, *pins, *picks, *unpin}

    def choose(name: str) -> AssetSpec:
        if name not in chosen:
            spec = specs[name]
            for upstream in spec.depends_on:  # resolution refused cycles
                if upstream in specs:
                    choose(upstream)
            entry = lock.get(name)
            base = _renamed_inputs(_on_picked_inputs(spec, chosen), entry)
            if base.candidates == 1 and _plain(entry) and name not in asked:
                bases[name] = chosen[name] = base  # most images: one draw, no pick, no pin
                makeable[name] = (0,)
                return base
            declared = base.candidates
            made = max(made_draws(base, entry), remembered_draws(base, entry))
            count = max(declared, made) + (1 if name in more else 0)
            if count > MAX_CANDIDATES:
                raise UserError(
                    f"--more: images.{name} has {MAX_CANDIDATES} draws, the most an image may have"
                )
            makeable[name] = (*range(declared), *((count - 1,) if name in more else ()))
            if count != declared:
                base = replace(base, candidates=count)
            bases[name] = base
            if name in pins:
                chosen[name] = pins[name]
                return chosen[name]
            draw = picks.get(name)
            pinned = _pinned(base, entry) if draw is None and name not in unpin else None
            if pinned is not None:
                notes[name] = pin_note(base, pinned)
                chosen[name] = pinned
                return pinned
            if entry is not None and entry.pin is not None and name not in unpin:
                notes[name] = PIN_RELEASED
            if draw is None:
                draw = recorded_pick(base, entry)
            if draw is None and entry is not None:
                draw = earlier_pick(base, entry)
            if draw is None and entry is None and (draw := on_disk(base, count)):
                notes[name] = f"{base.output} holds draw {draw}, picked before: it stays the output"
            if draw is None:
                draw = 0
                if (note := _note(base, entry)) is not None:
                    notes[name] = note
            chosen[name] = base.drawn(draw)
        return chosen[name]

    if only is not None:
        for name in only:
            if name in specs:
                choose(name)
        return Picked(chosen, bases, notes, makeable)
    for name in specs:
        choose(name)
    return Picked({name: chosen[name] for name in specs}, bases, notes, makeable)


def released_pins(specs: Mapping[str, AssetSpec], lock: Mapping[str, LockEntry]) -> set[str]:
    """The images of `specs` whose lock entry records a pin that the manifest's spec no
    longer holds to, while the output is already what the manifest asks for: an edit
    ended the pin, and undoing the edit must not bring it back."""
    pinned = [name for name in specs if (entry := lock.get(name)) is not None and entry.pin]
    if not pinned:
        return set()
    chosen = picked(specs, lock, only=pinned)
    return {
        name
        for name in pinned
        if chosen.specs[name].pin is None
        and chosen.specs[name].generation_key == lock[name].generation_key
    }


def draw_actions(
    actions: Iterable[Action],
    chosen: Picked,
    lock: Mapping[str, LockEntry],
    store: Store,
) -> list[Action]:
    """A `draw` action for each candidate the cache lacks but the picked one, of the
    images that change now or whose lock records fewer draws than the manifest asks
    for. An image that is up to date with all its draws recorded asks for none: a
    checkout without the cache is not made to pay for the draws again."""
    result = []
    for action in actions:
        name = action.image
        base = chosen.bases.get(name)
        if base is None or base.candidates < 2 or action.kind is ActionKind.DELETE:
            continue
        if chosen.specs[name].pin is not None:
            continue
        entry = lock.get(name)
        recorded = made_draws(base, entry)
        wanted = chosen.makeable.get(name, ())
        # Draws are made for a new set, or where the manifest (or --more) asks for more
        # than the lock records made: a checkout without the cache, which restores,
        # moves or even regenerates the output, pays for no draw it had already.
        if recorded > max(wanted, default=-1):
            continue
        for index in wanted:
            if index < recorded or index == chosen.specs[name].draw:
                continue  # made already (where no cache here holds it, a pick says so)
            draw = base.drawn(index)
            if not store.has_ours(draw.generation_key):
                result.append(
                    Action(
                        image=f"{name}#{index}",
                        kind=ActionKind.DRAW,
                        reason=f"draw {index} ({base.candidates} candidates)",
                        output=None,
                        spec=draw,
                    )
                )
    return result


def touched(plan_actions: Iterable[Action]) -> set[str]:
    """The images a plan does something to (a draw counts for its image)."""
    return {
        action.image.partition("#")[0]
        for action in plan_actions
        if action.kind not in (ActionKind.NOOP, ActionKind.DELETE)
    }


def recorded_draws(
    chosen: Picked, names: Iterable[str], store: Store, lock: Mapping[str, LockEntry]
) -> dict[str, tuple[DrawRecord, ...]]:
    """For each image of `names` with candidates, every draw of its set (key and digest
    of the original), where the cache holds each one or the lock records it made."""
    result = {}
    for name in names:
        base = chosen.bases.get(name)
        if base is None or base.candidates < 2 or chosen.specs[name].pin is not None:
            continue
        entry = lock.get(name)
        known = {draw.key: draw.digest for draw in entry.draws} if entry is not None else {}
        records = []
        for index in range(base.candidates):
            key = base.drawn(index).generation_key
            digest = store.digest(key) or known.get(key)
            if digest is None:
                break
            records.append(DrawRecord(key, digest))
        else:
            result[name] = tuple(records)
    return result


#: the note on an image whose one more draw (`--more`) a cache holds already: the
#: lock records it, and nothing else changes
DRAW_RECORDED = "its next draw is in the cache already: apply records it in the lock"


def draws_to_record(
    actions: Iterable[Action],
    chosen: Picked,
    store: Store,
    lock: Mapping[str, LockEntry],
    more: Collection[str],
) -> dict[str, str]:
    """A note (`DRAW_RECORDED`) for each image of `more` that apply only records a draw
    of, since the cache holds it (the lock of a branch without it): nothing else
    changes for it, and the plan must still say that the lock will."""
    actions = list(actions)
    drawn = touched(actions)
    names = [a.image for a in actions if a.kind is ActionKind.NOOP and a.image in more]
    recorded = recorded_draws(chosen, [name for name in names if name not in drawn], store, lock)
    return {
        name: DRAW_RECORDED
        for name, draws in recorded.items()
        if (entry := lock.get(name)) is not None
        and entry.draws != draws
        and entry.generation_key in {draw.key for draw in draws}
    }


def with_notes(actions: tuple[Action, ...], notes: Mapping[str, str]) -> tuple[Action, ...]:
    if not notes:
        return actions
    return tuple(
        replace(a, notes=(*a.notes, notes[a.image])) if a.image in notes else a for a in actions
    )
