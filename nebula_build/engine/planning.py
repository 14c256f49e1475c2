"""The whole plan: each image's action (the pure diff of `core.plan`) and the files
made from the images (atlases, the asset manifest)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from nebula_build.core.plan import Plan, make_plan
from nebula_build.engine import candidates
from nebula_build.engine.derived import plan_files
from nebula_build.engine.prepare import Prepared
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
) -> Plan:
    """The plan; with `remote`, the generations it holds are marked as restores from it.
    Each image is its picked draw (`picks` overrides the lock's); with `draws`, the
    candidates the cache lacks are `draw` actions."""
    chosen = candidates.picked(prepared.specs, lock, picks)
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
