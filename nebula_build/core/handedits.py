"""Which outputs edited by hand `nebula-build accept` can make the image's output: the
plan's hints name the command only for those (engine/accepting.py records them)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from nebula_build.core.plan import HAND_EDIT, ActionKind, Plan
from nebula_build.core.spec import AssetSpec

__all__ = ["acceptable", "edit_form", "output_size", "takers_of", "why_not_accepted"]


def takers_of(specs: Iterable[AssetSpec]) -> dict[str, set[str]]:
    """The images that take each image as their input, by its name: one pass over
    them all, for any number of edits (`why_not_accepted`)."""
    takers: dict[str, set[str]] = {}
    for other in specs:
        for name in other.depends_on:
            takers.setdefault(name, set()).add(other.name)
    return takers


def why_not_accepted(spec: AssetSpec, takers: Mapping[str, Collection[str]]) -> str | None:
    """Why an edit of `spec`'s output cannot be its output (the rest of the sentence
    after the image's name), or None: files made from the generated image would go
    on showing it (responsive variants, an image that takes it as input, by
    `takers_of`), or a step records in the file what an editor does not keep (trim's
    place in a sheet)."""
    if spec.variants:
        return (
            "has responsive variants, made from the generated image: an edit of its "
            "output would leave them showing the old one"
        )
    if found := sorted(takers.get(spec.name, ())):
        return (
            f"is the input of {', '.join(found[:3])}, made from the generated image: "
            "accept takes an image no other image takes"
        )
    if dict(spec.sprite).get("trim"):
        return (
            "is trimmed, and its file records where it sits in the untrimmed image "
            "(atlases read it), which an editor does not keep"
        )
    return None


def output_size(spec: AssetSpec) -> tuple[int, int]:
    """The width and height of the output file: the delivered size, grown by a
    sprite's padding and extrusion."""
    steps = dict(spec.sprite)
    grown = 2 * ((steps.get("pad") or 0) + (steps.get("extrude") or 0))
    width, height = spec.delivered_size
    return width + grown, height + grown


def edit_form(spec: AssetSpec) -> str:
    """What an edit of `spec`'s output must stay, for the hints: `a PNG of 1344×768`."""
    width, height = output_size(spec)
    return f"a {spec.format.upper()} of {width}×{height}"


def acceptable(plan: Plan) -> list[str]:
    """The images in conflict because their output file was changed by hand, whose
    edit `accept` can keep: the manifest still declares what the lock records."""
    edited = [
        (action.image, action.spec)
        for action in plan.actions
        if action.kind is ActionKind.CONFLICT
        and action.reason == HAND_EDIT
        and action.spec is not None
        and action.entry is not None
        and action.entry.generation_key == action.spec.generation_key
        and action.entry.output_key == action.spec.output_key
    ]
    if not edited:  # every watch round and plan asks
        return []
    takers = takers_of(action.spec for action in plan.actions if action.spec is not None)
    return [image for image, spec in edited if why_not_accepted(spec, takers) is None]
