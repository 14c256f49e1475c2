"""Files made from the images: atlas sheets and the asset manifest.

They are planned with the images (so `plan` shows them, with reasons) and built
after them, from the lock as the images left it, so a failed member never goes
into a sheet.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebula_build.core.plan import Action, ActionKind, FileAction, FileState
from nebula_build.core.spec import AtlasSpec
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import FORCE_HINT, ChangedMeanwhileError, ConflictError, UserError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import image_size
from nebula_build.outputs import assetmanifest
from nebula_build.outputs.atlas import plan_atlas, read_recorded, record_key, recorded_exports
from nebula_build.outputs.atlas import render as render_atlas
from nebula_build.state.lockfile import LockEntry

#: the file names an export has (Aseprite JSON, a Godot resource): nothing else is removed
_EXPORT_SUFFIXES = (".json", ".tres")
#: an asset manifest far larger than 100k images' would be is not read
_LIMIT = 256 << 20


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file made from the images."""

    action: FileAction
    ok: bool
    error: str | None = None
    #: the file was changed by hand (before the plan or since) and is kept
    conflict: bool = False


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
    return [action for action, _ in _planned_atlases(prepared, lock, changing, force=force)]


#: the digest of each file an atlas writes (sheet, exports) as its plan saw it
_Seen = dict[str, str | None]


def _planned_atlases(
    prepared: Prepared, lock: Mapping[str, LockEntry], changing: set[str], *, force: bool
) -> list[tuple[FileAction, _Seen]]:
    files = prepared.files
    actions = []
    for atlas in prepared.resolved.atlases.values():
        recorded = read_recorded(prepared.guard, atlas)
        exports = {path: files.digest(path) for path in atlas.exports}
        sheet = files.digest(atlas.output)
        action = plan_atlas(
            atlas,
            lock,
            sheet=sheet,
            recorded=recorded,
            changing=changing,
            force=force,
            known_output=prepared.store.output_files,
            exports=exports,
            dropped=dropped_exports(prepared, atlas, recorded),
        )
        actions.append((action, {atlas.output: sheet, **exports}))
    return actions


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
    for action, seen in _planned_atlases(prepared, lock, set(), force=force):
        if action.state is FileState.CONFLICT:
            outcome = FileOutcome(
                action, ok=False, error=f"{action.reason}; {FORCE_HINT}", conflict=True
            )
        elif action.state is FileState.BUILD:
            outcome = _build_atlas(prepared, lock, action, seen, force=force)
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
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    action: FileAction,
    seen: _Seen,
    *,
    force: bool,
) -> FileOutcome:
    atlas = prepared.resolved.atlases[action.name]
    guard = prepared.guard
    try:
        recorded = read_recorded(guard, atlas)
        dropped = dropped_exports(prepared, atlas, recorded)
        sheet, frames, exports = render_atlas(guard, atlas, lock, action.key)
        files = {atlas.output: sheet, **exports}
        digests = {path: sha256_bytes(data) for path, data in files.items()}
        # Before the renames: a sheet a killed build leaves is recognised as ours (and
        # the exports, so that one dropped from the manifest later can be removed).
        prepared.store.record_output(record_key(atlas, action.key), digests)
        if action.backup:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for path in atlas.paths:
                guard.backup(path, prepared.project.backup_dir, stamp)
        checks: dict[str, Callable[[], None]] = {}
        if not action.backup:  # else backed up above, whatever they hold now
            for path in files:  # every file before any is written
                checks[path] = functools.partial(
                    _check_unchanged, prepared, path, seen, force=force
                )
                checks[path]()
        for path, data in files.items():  # and each again just before its rename
            _write(prepared, path, data, digests[path], checks.get(path))
        # before the frame map, which stops naming them: a build killed in between is
        # built again, and removes them then
        _remove_dropped(prepared, dropped, recorded_exports(recorded), written=list(files))
        _write(prepared, atlas.frames, frames, sha256_bytes(frames))  # last: records the build
    except ConflictError as exc:
        return FileOutcome(action, ok=False, error=str(exc), conflict=True)
    except (OSError, ValueError, UserError) as exc:
        return FileOutcome(action, ok=False, error=f"could not build {action.output}: {exc}")
    return FileOutcome(action, ok=True)


def _check_unchanged(prepared: Prepared, path: str, seen: _Seen, *, force: bool) -> None:
    """Refuse to replace a file changed since the build was planned (a stat against the
    file index; hashed only if its stat changed); with --force, back it up first (once:
    what was backed up counts as seen)."""
    current = prepared.files.digest(path)
    if current is not None and current != seen[path]:
        _changed_since_planned(prepared, path, force=force)
        seen[path] = current


def _changed_since_planned(prepared: Prepared, path: str, *, force: bool) -> None:
    """A conflict, or with --force a backup of the file before it is replaced."""
    if not force:
        raise ChangedMeanwhileError(
            f"{path}: changed by hand during the apply; {FORCE_HINT}", path=path
        )
    stamp = time.strftime("%Y%m%dT%H%M%S")
    prepared.guard.backup(path, prepared.project.backup_dir, stamp)


def _write(
    prepared: Prepared,
    path: str,
    data: bytes,
    digest: str,
    unchanged: Callable[[], None] | None = None,
) -> None:
    try:
        prepared.guard.write(path, data, unchanged=unchanged)
    except IsADirectoryError:
        raise UserError(f"{path} is a folder: remove it or choose another path") from None
    prepared.files.record(path, digest=digest)


def dropped_exports(
    prepared: Prepared, atlas: AtlasSpec, recorded: Mapping[str, Any] | None
) -> list[str]:
    """Exports the atlas's last build wrote (`recorded`, its frame map's record) that
    the manifest no longer asks for and that go with this build: only where the file
    still holds what that build wrote, as both the frame map and this machine's cache
    record it (a frame map from a pull request alone deletes nothing), and where
    nothing the manifest writes or reads claims the path. The plan names them
    (`FileAction.removes`), so this is what the build removes."""
    before = recorded_exports(recorded)
    if recorded is None or not before:
        return []
    gone = {
        path: digest
        for path, digest in before.items()
        if path not in atlas.paths and path.endswith(_EXPORT_SUFFIXES)
    }
    if not gone:
        return []
    ours = prepared.store.output_files(record_key(atlas, str(recorded.get("key"))))
    candidates = [
        path
        for path, digest in gone.items()
        if ours.get(path) == digest and prepared.files.digest(path) == digest
    ]
    if not candidates:
        return []
    resolved = prepared.resolved
    claimed = {path for spec in resolved.specs.values() for path in spec.paths}
    claimed |= {
        path
        for spec in resolved.specs.values()
        for path in (spec.image, spec.mask, spec.palette_file)
        if path
    }
    claimed |= {path for other in resolved.atlases.values() for path in other.paths}
    claimed |= {resolved.asset_manifest or "", *resolved.data_files}
    folders = [folder for folder, _, _ in resolved.data_globs]
    project = prepared.project
    return [
        path
        for path in candidates
        if path not in claimed
        and not any(folder in ("", ".") or path.startswith(f"{folder}/") for folder in folders)
        # another name of a file the atlas writes (a link, a case-insensitive disk)
        and not any(_same_file(project.path_of(path), project.path_of(p)) for p in atlas.paths)
    ]


def _remove_dropped(
    prepared: Prepared, dropped: list[str], built: Mapping[str, str], *, written: list[str]
) -> None:
    """Remove the dropped exports, unless one changed since the last build wrote it
    (`built`: a hand edit while this one ran, which stays) or is another name of a file
    just written (a link in the path, a case-insensitive disk: checked on the disk)."""
    project, guard = prepared.project, prepared.guard
    for path in dropped:
        if prepared.files.digest(path) != built.get(path):
            continue
        target = project.path_of(path)
        if any(_same_file(target, project.path_of(other)) for other in written):
            continue
        guard.remove(path)
        prepared.files.forget(path)
        guard.prune_empty(path.rpartition("/")[0])


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return False


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
        error = f"{target}: {action.reason}; {FORCE_HINT}"
        return FileOutcome(action, ok=False, error=error, conflict=True)
    if action.state is not FileState.BUILD:
        return None
    try:
        if action.backup:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            prepared.guard.backup(target, prepared.project.backup_dir, stamp)

        def unchanged() -> None:  # still the text planned over, just before the rename
            if not action.backup and _read(prepared, target) not in (None, current):
                _changed_since_planned(prepared, target, force=force)

        prepared.guard.write(target, text.encode(), unchanged=unchanged)
    except ConflictError as exc:
        return FileOutcome(action, ok=False, error=str(exc), conflict=True)
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
