"""The whole plan: each image's action (the pure diff of `core.plan`) and the files
made from the images (atlases, the asset manifest)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from nebula_build.core.plan import Plan, make_plan
from nebula_build.core.spec import AssetSpec
from nebula_build.engine import candidates
from nebula_build.engine.derived import plan_files
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import UserError
from nebula_build.state.lockfile import Entries
from nebula_build.state.remote import Remote


def plan_for(
    prepared: Prepared,
    lock: Entries,
    *,
    targets: Collection[str] = (),
    replace: Collection[str] = (),
    force: bool = False,
    remote: Remote | None = None,
    notice: Callable[[str], None] = lambda message: None,
    picks: Mapping[str, int] = {},
    draws: bool = True,
    more: Collection[str] = (),
    pins: Mapping[str, AssetSpec] = {},
    unpin: Collection[str] = (),
) -> Plan:
    """The plan; with `remote`, the generations it holds are marked as restores from it.
    Each image is its picked draw (`picks` overrides the lock's); with `draws`, the
    candidates the cache lacks are `draw` actions."""
    unknown = sorted(set(more) - prepared.specs.keys())
    if unknown:
        raise UserError(
            f"{prepared.project.display_manifest}: --more: unknown "
            f"{'image' if len(unknown) == 1 else 'images'}: {', '.join(unknown)}"
        )
    chosen = candidates.picked(prepared.specs, lock, picks, more=more, pins=pins, unpin=unpin)
    for option, names in (("--more", more), ("--replace", replace)):
        pinned = sorted(n for n in names if n in chosen.specs and chosen.specs[n].pin is not None)
        if pinned:
            raise UserError(
                f"{option}: images.{pinned[0]} is pinned to an earlier generation: "
                f"`nebula-build pick {pinned[0]} --unpin` first"
            )

    def diff(chosen: candidates.Picked) -> Plan:
        return make_plan(
            chosen.specs,
            lock,
            digest_of=prepared.files.digest,
            has_cached=prepared.store.has_ours,
            known_output=prepared.store.output_files,
            targets=targets,
            replace_images=replace,
            force=force,
        )

    images = diff(chosen)
    lost = _lost_pins(images, pins, remote)
    if lost:  # a pin never pays: the manifest's spec is made instead
        chosen = candidates.picked(
            prepared.specs, lock, picks, more=more, pins=pins, unpin={*unpin, *lost}
        )
        chosen.notes.update(
            (name, "its pinned earlier generation is in no cache here: the pin is released")
            for name in lost
        )
        images = diff(chosen)
    actions = candidates.with_notes(images.actions, chosen.notes)
    if draws:
        actions += tuple(candidates.draw_actions(actions, chosen, lock, prepared.store))
    images = Plan(actions)
    if remote is not None:
        from nebula_build.engine.remotecache import mark

        images = mark(images, remote, notice)
    files = plan_files(prepared, lock, images.actions, force=force)
    return Plan(images.actions, files)


def _lost_pins(images: Plan, pins: Mapping[str, AssetSpec], remote: Remote | None) -> set[str]:
    """The images the lock pins to an earlier generation whose output must be made
    again while no cache here holds it. The lock chose those parameters, not the
    manifest: they are never generated."""
    lost = {
        action.image: action.spec.generation_key
        for action in images.actions
        if action.spec is not None
        and action.spec.pin is not None
        and action.image not in pins
        and action.generates
    }
    if lost and remote is not None:
        held = remote.lookup(lost.values())
        return {name for name, key in lost.items() if key not in held}
    return set(lost)
