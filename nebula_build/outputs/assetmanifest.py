"""`[assets] manifest = "…json"`: every image and variant, for templates and engines.

What a page needs for `<img srcset>` and layout-stable `width`/`height`, or a
game for its loader: path, size, format, bytes and alt text of each file.
Deterministic (sorted, stable formatting) and rewritten only when it changes.
The shape is `schemas.AssetManifest`, published as schema/assets.schema.json.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

from nebula_build.core.plan import Plan
from nebula_build.core.spec import AssetSpec
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import FORCE_HINT
from nebula_build.fsutil import atomic_write
from nebula_build.outputs.atlas import AtlasAction, AtlasState
from nebula_build.outputs.atlas import build as atlas_build
from nebula_build.outputs.atlas import plan as atlas_plan
from nebula_build.state.fileindex import FileIndex
from nebula_build.state.lockfile import LockEntry
from nebula_build.state.project import Project


def build(
    project: Project,
    target: str,
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    files: FileIndex,
) -> dict[str, Any]:
    """The manifest's content: images whose files are in place as the lock records."""
    folder = posixpath.dirname(target) or "."  # project paths are always POSIX-style
    images: dict[str, Any] = {}
    for name in sorted(specs):
        spec, entry = specs[name], lock.get(name)
        if entry is None or entry.output_key != spec.output_key:
            continue
        recorded = entry.files()
        sizes = [(spec.output, *spec.delivered_size)] + [(p, w, h) for p, w, h in spec.variants]
        listed = []
        for path, width, height in sizes:
            if files.digest(path) != recorded.get(path):
                continue  # missing or changed by hand: not what the lock promises
            listed.append(
                {
                    "path": path,
                    "url": posixpath.relpath(path, folder),
                    "width": width,
                    "height": height,
                    "format": spec.format,
                    "bytes": project.path_of(path).stat().st_size,
                }
            )
        if listed:
            images[name] = {
                "alt": spec.alt or spec.prompt,
                "generation_key": spec.generation_key,
                "files": listed,
            }
    return {"version": 1, "images": images}


def write(
    project: Project,
    target: str,
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    files: FileIndex,
) -> bool:
    """Write the asset manifest if its content changed; returns whether it did."""
    text = (
        json.dumps(build(project, target, specs, lock, files), indent=2, ensure_ascii=False) + "\n"
    )
    path = project.path_of(target)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    atomic_write(path, text.encode())
    return True


def update(prepared: Prepared, lock: Mapping[str, LockEntry]) -> bool:
    """Bring `[assets] manifest` in line with the lock, if the project asks for one."""
    target = prepared.resolved.asset_manifest
    if target is None:
        return False
    return write(prepared.project, target, prepared.specs, lock, prepared.files)


def atlas_actions(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    *,
    plan: Plan | None = None,
    force: bool = False,
) -> list[AtlasAction]:
    """What each atlas needs; with `plan`, members about to change count as changed."""
    changing = {a.image for a in plan.changes} if plan is not None else set()
    actions = []
    for atlas in prepared.resolved.atlases.values():
        action = atlas_plan(atlas, lock, prepared.files, prepared.project, force=force)
        moving = [m for m in atlas.members if m in changing]
        if moving and action.state in (AtlasState.NOOP, AtlasState.WAITING):
            action = AtlasAction(
                atlas, AtlasState.BUILD, f"members change: {', '.join(moving)}", action.key
            )
        actions.append(action)
    return actions


def build_atlases(
    prepared: Prepared, lock: Mapping[str, LockEntry], *, force: bool = False
) -> dict[str, str]:
    """Build the atlases whose members changed; returns failures by atlas name."""
    failures = {}
    for action in atlas_actions(prepared, lock, force=force):
        atlas = action.atlas
        if action.state is AtlasState.CONFLICT:
            failures[atlas.name] = f"{action.reason}; {FORCE_HINT}"
        elif action.state is AtlasState.BUILD:
            try:
                atlas_build(prepared.project, atlas, lock, action.key, prepared.files, backup=force)
            except (OSError, ValueError) as exc:
                failures[atlas.name] = f"could not build: {exc}"
    return failures
