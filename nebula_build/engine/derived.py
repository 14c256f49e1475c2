"""Files made from the images: atlas sheets and the asset manifest.

They are planned with the images (so `plan` shows them, with reasons) and built
after them, from the lock as the images left it, so a failed member never goes
into a sheet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from nebula_build.core.plan import Action, ActionKind, FileAction, FileState
from nebula_build.core.spec import AtlasSpec
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import FORCE_HINT, UserError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import image_size
from nebula_build.outputs import assetmanifest
from nebula_build.outputs.atlas import plan_atlas, read_recorded, record_key, recorded_exports
from nebula_build.outputs.atlas import render as render_atlas
from nebula_build.state.lockfile import LockEntry

#: an asset manifest far larger than 100k images' would be is not read
_LIMIT = 256 << 20


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file made from the images."""

    action: FileAction
    ok: bool
    error: str | None = None


def plan_files(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    images: Collection[Action] = (),
    *,
    force: bool = False,
) -> tuple[FileAction, ...]:
    """What each atlas and the asset manifest need, given the images' own actions."""
    changing = {a.image for a in images if a.is_change and a.kind is not ActionKind.CONFLICT}
    actions = _plan_atlases(prepared, lock, changing, force=force)
    target = prepared.resolved.asset_manifest
    if target is not None:
        wanted = None if changing else _asset_manifest_text(prepared, lock)
        current = _read(prepared, target)
        actions.append(
            assetmanifest.plan_asset_manifest(target, wanted=wanted, current=current, force=force)
        )
    return tuple(actions)


def _plan_atlases(
    prepared: Prepared, lock: Mapping[str, LockEntry], changing: set[str], *, force: bool
) -> list[FileAction]:
    files = prepared.files
    return [
        plan_atlas(
            atlas,
            lock,
            sheet=files.digest(atlas.output),
            recorded=read_recorded(prepared.guard, atlas),
            changing=changing,
            force=force,
            known_output=prepared.store.output_files,
            exports={path: files.digest(path) for path in atlas.exports},
        )
        for atlas in prepared.resolved.atlases.values()
    ]


def build_files(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    *,
    force: bool = False,
    on_built: Callable[[FileOutcome], None] = lambda outcome: None,
) -> list[FileOutcome]:
    """Build what the files need now that the images are done; one failure stops no
    other. Returns what was built or refused."""
    outcomes = []
    for action in _plan_atlases(prepared, lock, set(), force=force):
        if action.state is FileState.CONFLICT:
            outcome = FileOutcome(action, ok=False, error=f"{action.reason}; {FORCE_HINT}")
        elif action.state is FileState.BUILD:
            outcome = _build_atlas(prepared, lock, action)
        else:
            continue
        outcomes.append(outcome)
        on_built(outcome)
    written = _write_asset_manifest(prepared, lock, force=force)
    if written is not None:
        outcomes.append(written)
        on_built(written)
    return outcomes


def _build_atlas(
    prepared: Prepared, lock: Mapping[str, LockEntry], action: FileAction
) -> FileOutcome:
    atlas = prepared.resolved.atlases[action.name]
    guard, files = prepared.guard, prepared.files
    try:
        dropped = _dropped_exports(prepared, atlas)
        sheet, frames, exports = render_atlas(guard, atlas, lock, action.key)
        digest = sha256_bytes(sheet)
        written = {path: sha256_bytes(blob) for path, blob in exports.items()}
        # Before the renames: a sheet a killed build leaves is recognised as ours (and
        # the exports, so that one dropped from the manifest later can be removed).
        prepared.store.record_output(
            record_key(atlas, action.key), {atlas.output: digest, **written}
        )
        if action.backup:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for path in atlas.paths:
                guard.backup(path, prepared.project.backup_dir, stamp)
        # the frame map last: it records the build (and the exports')
        for path, data in {atlas.output: sheet, **exports, atlas.frames: frames}.items():
            try:
                guard.write(path, data)
            except IsADirectoryError:
                raise UserError(f"{path} is a folder: remove it or choose another path") from None
            files.record(path, digest=sha256_bytes(data))
        for path in dropped:
            guard.remove(path)
            files.forget(path)
            guard.prune_empty(path.rpartition("/")[0])
    except (OSError, ValueError, UserError) as exc:
        return FileOutcome(action, ok=False, error=f"could not build {action.output}: {exc}")
    return FileOutcome(action, ok=True)


def _dropped_exports(prepared: Prepared, atlas: AtlasSpec) -> list[str]:
    """Exports the atlas's last build wrote that the manifest no longer asks for, to
    remove with this build: only where the file still holds what that build wrote,
    as both the frame map and this machine's cache record it (a frame map from a
    pull request alone deletes nothing), and no other output claims the path."""
    recorded = read_recorded(prepared.guard, atlas)
    before = recorded_exports(recorded)
    if recorded is None or not before:
        return []
    ours = prepared.store.output_files(record_key(atlas, str(recorded.get("key"))))
    resolved = prepared.resolved
    candidates = [
        path
        for path, digest in before.items()
        if path not in atlas.paths
        and ours.get(path) == digest
        and prepared.files.digest(path) == digest
    ]
    if not candidates:
        return []
    claimed = {path for spec in resolved.specs.values() for path in spec.paths}
    claimed |= {path for other in resolved.atlases.values() for path in other.paths}
    claimed.add(resolved.asset_manifest or "")
    return [path for path in candidates if path not in claimed]


def _write_asset_manifest(
    prepared: Prepared, lock: Mapping[str, LockEntry], *, force: bool
) -> FileOutcome | None:
    """Write the asset manifest if its content changed (computed once); None when the
    project has none or it is already right."""
    target = prepared.resolved.asset_manifest
    if target is None:
        return None
    text = _asset_manifest_text(prepared, lock)
    current = _read(prepared, target)
    action = assetmanifest.plan_asset_manifest(target, wanted=text, current=current, force=force)
    if action.state is FileState.CONFLICT:
        return FileOutcome(action, ok=False, error=f"{target}: {action.reason}; {FORCE_HINT}")
    if action.state is not FileState.BUILD:
        return None
    try:
        if action.backup:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            prepared.guard.backup(target, prepared.project.backup_dir, stamp)
        prepared.guard.write(target, text.encode())
    except (OSError, UserError) as exc:
        return FileOutcome(action, ok=False, error=f"could not write {target}: {exc}")
    return FileOutcome(action, ok=True)


def _asset_manifest_text(prepared: Prepared, lock: Mapping[str, LockEntry]) -> str:
    target = prepared.resolved.asset_manifest
    assert target is not None
    project = prepared.project
    data = assetmanifest.content(
        target,
        prepared.specs,
        lock,
        digest_of=prepared.files.digest,
        size_of=lambda path: project.path_of(path).stat().st_size,
        dimensions_of=lambda path: _dimensions(prepared, path),
    )
    return assetmanifest.text_of(data)


def _dimensions(prepared: Prepared, relative: str) -> tuple[int, int] | None:
    """A file's width and height from its header; None if it cannot be read as one."""
    try:
        return image_size(prepared.guard.read(relative, what="image", limit=_LIMIT))
    except (OSError, UserError, ValueError):
        return None


def _read(prepared: Prepared, relative: str) -> str | None:
    """The file's text; None if missing; UNREADABLE if it is there but not ours to read."""
    try:
        return prepared.guard.read(relative, what="asset manifest", limit=_LIMIT).decode()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError, UserError):
        return assetmanifest.UNREADABLE
