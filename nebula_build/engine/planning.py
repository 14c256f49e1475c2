"""The whole plan: each image's action (the pure diff of `core.plan`) and the files
made from the images (atlases, the asset manifest)."""

from __future__ import annotations

from collections.abc import Collection

from nebula_build.core.plan import Plan, make_plan
from nebula_build.engine.derived import plan_files
from nebula_build.engine.prepare import Prepared
from nebula_build.state.lockfile import Entries


def plan_for(
    prepared: Prepared,
    lock: Entries,
    *,
    targets: Collection[str] = (),
    replace: Collection[str] = (),
    force: bool = False,
) -> Plan:
    images = make_plan(
        prepared.specs,
        lock,
        digest_of=prepared.files.digest,
        has_cached=prepared.store.has,
        known_output=prepared.store.output_files,
        targets=targets,
        replace_images=replace,
        force=force,
    )
    files = plan_files(prepared, lock, images.actions, force=force)
    return Plan(images.actions, files)
