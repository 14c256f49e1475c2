"""Candidates: an image declared with `candidates = N` has N draws. Every draw is kept
in the cache; the image's output is the picked one, which the lock records (as the
entry's `draw` parameter) and `nebula-build pick` changes.

The picked draw replaces the declared spec before the plan is made, so the rest of
the flow (plan, apply, restore, the lock) treats it as the image; the other draws the
cache lacks become `draw` actions, generations like any other (counted, priced,
capped, supplied by the remote cache where it has them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from nebula_build.core.plan import Action, ActionKind
from nebula_build.core.spec import AssetSpec
from nebula_build.state.cache import Store
from nebula_build.state.lockfile import LockEntry


@dataclass(frozen=True)
class Picked:
    """The images with each one's picked draw, the bases the draws are made from, and
    why a recorded pick was dropped."""

    specs: dict[str, AssetSpec]
    bases: dict[str, AssetSpec]
    notes: dict[str, str]


def recorded_pick(spec: AssetSpec, entry: LockEntry | None) -> int | None:
    """The draw the lock records as picked for `spec`, if it is one of its draws now
    (same spec otherwise: an edit that changes the generation makes a new set)."""
    if entry is None:
        return None
    draw = entry.params.get("draw", 0)
    if type(draw) is not int or not 0 <= draw < spec.candidates:
        return None
    return draw if spec.drawn(draw).generation_key == entry.generation_key else None


def _note(spec: AssetSpec, entry: LockEntry | None) -> str | None:
    """Why the lock's pick no longer holds, if it does not."""
    recorded = entry.params.get("draw", 0) if entry is not None else 0
    if type(recorded) is not int or not recorded:
        return None
    if recorded >= spec.candidates:
        return (
            f"draw {recorded} was picked, beyond candidates = {spec.candidates}: "
            "draw 0 is the output"
        )
    return f"draw {recorded} was picked; this set of draws starts at draw 0"


def _on_picked_inputs(spec: AssetSpec, chosen: Mapping[str, AssetSpec]) -> AssetSpec:
    """`spec` with its `@image` inputs keyed by the draw picked for them: the key names
    the upstream's output, and a pick changes it."""
    changed = {}
    for field in ("image_digest", "mask_digest"):
        value = getattr(spec, field)
        if isinstance(value, str) and value.startswith("@"):
            name, _, key = value[1:].partition(":")
            upstream = chosen.get(name)
            if upstream is not None and upstream.output_key != key:
                changed[field] = f"@{name}:{upstream.output_key}"
    if not changed:
        return spec
    return replace(spec, **changed, generation_key="", output_key="")  # type: ignore[arg-type]


def picked(
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    picks: Mapping[str, int] = {},
) -> Picked:
    chosen: dict[str, AssetSpec] = {}
    bases: dict[str, AssetSpec] = {}
    notes: dict[str, str] = {}

    def choose(name: str) -> AssetSpec:
        if name not in chosen:
            spec = specs[name]
            for upstream in spec.depends_on:  # resolution refused cycles
                if upstream in specs:
                    choose(upstream)
            base = bases[name] = _on_picked_inputs(spec, chosen)
            draw = picks.get(name)
            if draw is None:
                entry = lock.get(name)
                draw = recorded_pick(base, entry)
                if draw is None:
                    draw = 0
                    if (note := _note(base, entry)) is not None:
                        notes[name] = note
            chosen[name] = base.drawn(draw)
        return chosen[name]

    for name in specs:
        choose(name)
    return Picked({name: chosen[name] for name in specs}, bases, notes)


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
        entry = lock.get(name)
        recorded = entry.candidates if entry is not None else 0
        if action.kind is ActionKind.NOOP and recorded >= base.candidates:
            continue
        for index in range(base.candidates):
            if index == chosen.specs[name].draw:
                continue
            draw = base.drawn(index)
            if not store.has_ours(draw.generation_key):
                result.append(
                    Action(
                        image=f"{name}#{index}",
                        kind=ActionKind.DRAW,
                        reason=f"candidate {index} of {base.candidates}",
                        output=None,
                        spec=draw,
                    )
                )
    return result


def raised_counts(plan_actions: Iterable[Action], failed: Collection[str]) -> dict[str, int]:
    """The images whose draws this run made, all of them, with their count of draws:
    what the lock records once they are in the cache."""
    counts: dict[str, int] = {}
    broken: set[str] = set()
    for action in plan_actions:
        if action.kind is ActionKind.DRAW and action.spec is not None:
            name = action.image.partition("#")[0]
            counts[name] = action.spec.candidates
            if action.image in failed:
                broken.add(name)
    return {name: count for name, count in counts.items() if name not in broken}


def with_notes(actions: tuple[Action, ...], notes: Mapping[str, str]) -> tuple[Action, ...]:
    if not notes:
        return actions
    return tuple(
        replace(a, notes=(*a.notes, notes[a.image])) if a.image in notes else a for a in actions
    )
