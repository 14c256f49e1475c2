"""Candidates: an image declared with `candidates = N` has N draws. Every draw is kept
in the cache; the image's output is the picked one, which the lock records (as the
entry's `draw` parameter) and `nebula-build pick` changes.

The picked draw replaces the declared spec before the plan is made, so the rest of
the flow (plan, apply, restore, the lock) treats it as the image; the other draws the
cache lacks become `draw` actions, generations like any other (counted, priced,
capped, supplied by the remote cache where it has them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from nebula_build.core.plan import Action, ActionKind
from nebula_build.core.spec import AssetSpec
from nebula_build.state.cache import Store
from nebula_build.state.lockfile import LockEntry


@dataclass(frozen=True)
class Picked:
    """The specs with each image's picked draw, and why a recorded pick was dropped."""

    specs: dict[str, AssetSpec]
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


def picked(
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    picks: Mapping[str, int] = {},
) -> Picked:
    chosen: dict[str, AssetSpec] = {}
    notes: dict[str, str] = {}
    for name, spec in specs.items():
        entry = lock.get(name)
        draw = picks.get(name)
        if draw is None:
            draw = recorded_pick(spec, entry) or 0
            recorded = entry.params.get("draw", 0) if entry is not None else 0
            if type(recorded) is int and recorded and draw == 0:
                notes[name] = f"draw {recorded} was picked; this set of draws starts at draw 0"
        chosen[name] = spec.drawn(draw) if spec.candidates > 1 or draw else spec
    return Picked(chosen, notes)


def draw_actions(
    declared: Mapping[str, AssetSpec],
    chosen: Mapping[str, AssetSpec],
    store: Store,
    names: Collection[str],
) -> list[Action]:
    """A `draw` action for each candidate of `names` the cache lacks, but the picked."""
    actions = []
    for name in names:
        spec = declared[name]
        for index in range(spec.candidates):
            if index == chosen[name].draw:
                continue
            draw = spec.drawn(index)
            if not store.has_ours(draw.generation_key):
                actions.append(
                    Action(
                        image=f"{name}#{index}",
                        kind=ActionKind.DRAW,
                        reason=f"candidate {index} of {spec.candidates}",
                        output=None,
                        spec=draw,
                    )
                )
    return actions


def with_notes(actions: tuple[Action, ...], notes: Mapping[str, str]) -> tuple[Action, ...]:
    if not notes:
        return actions
    return tuple(
        replace(a, notes=(*a.notes, notes[a.image])) if a.image in notes else a for a in actions
    )
