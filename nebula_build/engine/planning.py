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
            f"{prepared.project.display_manifest}: --more: unknown image(s): {', '.join(unknown)}"
        )
    chosen = candidates.picked(prepared.specs, lock, picks, more=more, pins=pins, unpin=unpin)
    lost = _lost_pins(chosen, pins, prepared, remote)
    if lost:  # a pin never pays: the manifest's spec is made instead
        chosen = candidates.picked(
            prepared.specs, lock, picks, more=more, pins=pins, unpin={*unpin, *lost}
        )
        chosen.notes.update(
            (name, "its pinned earlier generation is in no cache here: the pin is released")
            for name in lost
        )
    images = make_plan(
        chosen.specs,
        lock,
        digest_of=prepared.files.digest,
        has_cached=prepared.store.has_ours,
        known_output=prepared.store.output_files,
        targets=targets,
        replace_images=replace,
        force=force,
    )
    actions = candidates.with_notes(images.actions, chosen.notes)
    if draws:
        actions += tuple(candidates.draw_actions(actions, chosen, lock, prepared.store))
    images = Plan(actions)
    if remote is not None:
        from nebula_build.engine.remotecache import mark

        images = mark(images, remote, notice)
    files = plan_files(prepared, lock, images.actions, force=force)
    return Plan(images.actions, files)


def _lost_pins(
    chosen: candidates.Picked,
    pins: Mapping[str, AssetSpec],
    prepared: Prepared,
    remote: Remote | None,
) -> set[str]:
    """The images the lock pins to an earlier generation that no cache here holds. The
    lock chose those parameters, not the manifest: they are never generated."""
    lost = {
        name
        for name, spec in chosen.specs.items()
        if spec.pin is not None
        and name not in pins
        and not prepared.store.has_ours(spec.generation_key)
    }
    if lost and remote is not None:
        held = remote.lookup([chosen.specs[name].generation_key for name in lost])
        lost = {name for name in lost if chosen.specs[name].generation_key not in held}
    return lost
