"""Files made from the images: atlas sheets and the asset manifest.

They are planned with the images (so `plan` shows them, with reasons) and built
after them, from the lock as the images left it, so a failed member never goes
into a sheet.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebula_build.core.plan import RECORD, Action, ActionKind, FileAction, FileKind, FileState
from nebula_build.core.spec import AtlasSpec
from nebula_build.engine import candidates
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import FORCE_HINT, ChangedMeanwhileError, ConflictError, UserError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import MAX_BYTES, image_size
from nebula_build.outputs import assetmanifest
from nebula_build.outputs.atlas import (
    FRAME_MAP_LIMIT,
    merged_record,
    plan_atlas,
    read_recorded,
    record_key,
    recorded_exports,
    some_names,
)
from nebula_build.outputs.atlas import render as render_atlas
from nebula_build.outputs.engines import is_godot_export
from nebula_build.outputs.metadata import written_as_sheet
from nebula_build.state.derivedrecords import AtlasRecord, Made
from nebula_build.state.lockfile import LockEntry, read_made, write_made
from nebula_build.state.siblings import Recorded, recorded_elsewhere
from nebula_build.text import file_key, file_keys, printable

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
    deleting: bool = True,
    related: Collection[str] | None = None,
) -> tuple[FileAction, ...]:
    """What each atlas and the asset manifest need, given the images' own actions;
    `deleting`: an atlas gone from the manifest is deleted (not under --target, as an
    image gone is not unless named); `related`: only the atlases with a member among
    these images (--target's, with the images they take outputs from)."""
    # a candidate draw is kept in the cache only: no file changes, none is listed
    changing = {
        a.image
        for a in images
        if a.is_change and a.kind not in (ActionKind.CONFLICT, ActionKind.DRAW)
    }
    renamed = {a.image: a.renamed_from for a in images if a.renamed_from and a.image in changing}
    # a member moved or restored keeps its name and bytes: its atlases' sheets stay as
    # they are (the asset manifest, which names paths, still changes with it)
    kept = {a.image for a in images if _keeps_recorded_bytes(a, prepared.store.placeholder)}
    # an image whose files already hold its output (a lost lock) is recorded as they
    # are: its atlases are planned from those bytes, as apply builds them
    held = {
        a.image: entry
        for a in images
        if a.image in changing and a.image not in renamed and (entry := _held(a))
    }
    made = read_made(prepared.project)
    planned = _planned_atlases(
        prepared,
        {**lock, **held} if held else lock,
        made,
        changing - kept - held.keys(),
        renamed,
        force=force,
        deleting=deleting,
        related=related,
        rewriting=changing,
    )
    actions = [action for action, _ in planned]
    target = prepared.resolved.asset_manifest
    wanted = None if changing or target is None else _asset_manifest_text(prepared, lock)
    action = _asset_manifest_action(
        prepared,
        lock,
        made.asset_manifest,
        wanted=wanted,
        current=None if target is None else _read(prepared, target),
        force=force,
        deleting=deleting,
    )
    if action is not None:
        actions.append(action)
    return tuple(actions)


def _held(action: Action) -> LockEntry | None:
    """The entry apply records for an image whose files already hold its output
    (`Action.in_place`), as far as its atlases read it: its name and digest."""
    spec = action.spec
    digest = dict(action.found).get(spec.output) if action.in_place and spec else None
    if spec is None or digest is None:
        return None
    return LockEntry(
        spec.backend, spec.model, spec.output, digest, spec.generation_key, spec.output_key, {}
    )


def _keeps_recorded_bytes(action: Action, placeholder: Callable[[Mapping[str, str]], bool]) -> bool:
    """Whether the image's output after the action holds the bytes its lock entry
    records, under the same name: a move, or a restore of the same generation and
    output options (not a placeholder's entry, whose restore is the real image). An
    atlas is made from its members' names and digests only (`members_key`), never
    their paths."""
    spec, entry = action.spec, action.entry
    return (
        action.kind in (ActionKind.MOVE, ActionKind.RESTORE)
        and spec is not None
        and entry is not None
        and action.renamed_from is None
        and entry.generation_key == spec.generation_key
        and entry.output_key == spec.output_key
        and not (entry.made_with and placeholder(entry.made_with))
    )


#: the digest of each file an atlas writes (sheet, exports) as its plan saw it
_Seen = dict[str, str | None]


def _planned_atlases(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    made: Made,
    changing: set[str],
    renamed: Mapping[str, str],
    *,
    force: bool,
    deleting: bool,
    related: Collection[str] | None = None,
    rewriting: Collection[str] = (),
) -> list[tuple[FileAction, _Seen]]:
    """`rewriting`: the images whose files this apply writes before the atlases are
    built; every other member's file must hold what the lock records."""
    files = prepared.files
    actions = []
    records = made.atlases
    claims = _Claims(prepared, lock)
    for atlas in prepared.resolved.atlases.values():
        if related is not None and not any(member in related for member in atlas.members):
            continue
        recorded = read_recorded(prepared.guard, atlas)
        exports = {path: files.digest(path) for path in atlas.exports}
        sheet = files.digest(atlas.output)
        on_disk = {atlas.output: sheet, atlas.frames: files.digest(atlas.frames), **exports}
        merged: list[str] = []
        if recorded is None and (found := merged_record(prepared.guard, atlas, sheet)):
            recorded, merged = found
        dropped = dropped_exports(prepared, atlas, recorded)
        record = records.get(atlas.name)
        old, kept = _moved_files(prepared, claims, atlas, record)
        action = plan_atlas(
            atlas,
            lock,
            sheet=sheet,
            recorded=recorded,
            changing=changing,
            renamed=renamed,
            force=force,
            known_output=prepared.store.output_files,
            exports=exports,
            dropped=[*dropped, *(path for path in old if path not in dropped)],
            written_before=[*_written_before(prepared, record, on_disk), *merged],
            frames=on_disk[atlas.frames],
            merged=bool(merged),
            unlike_lock=_unlike_lock(prepared, atlas, lock, rewriting),
        )
        if action.reason == "new atlas" and record is not None and record.output != atlas.output:
            action = dataclasses.replace(
                action,
                reason=f"output moved from {printable(record.output, 200)}",
                moved_from=record.output,
            )
        action = _copy_kept(prepared, action, {atlas.output: sheet, **exports})
        if old or kept:
            action = _with_old_files(action, old, kept)
        actions.append((action, {atlas.output: sheet, **exports}))
    if deleting:
        actions += [
            (_deleted(prepared, claims, name, record), {})
            for name, record in sorted(records.items())
            if name not in prepared.resolved.atlases
        ]
    return actions


def _unlike_lock(
    prepared: Prepared, atlas: AtlasSpec, lock: Mapping[str, LockEntry], rewriting: Collection[str]
) -> dict[str, str]:
    """The members whose file is not the bytes their lock entry records, and why: a hand
    edit in conflict, not accepted, is not the member's image (a stat per member)."""
    unlike = {}
    for member in atlas.members:
        entry = lock.get(member)
        if entry is None or member in rewriting:
            continue
        digest = prepared.files.digest(entry.output)
        if digest != entry.digest:
            unlike[member] = "(its file is missing)" if digest is None else "(changed by hand)"
    return unlike


def _written_before(
    prepared: Prepared, record: AtlasRecord | None, on_disk: Mapping[str, str | None]
) -> list[str]:
    """The atlas's files (path → digest on disk) that hold what its last build wrote
    there, as the lock records it and as only nebula-build writes it (`_written_by_us`:
    a lock naming another JSON file, digest and all, vouches for nothing)."""
    if record is None:
        return []
    return [
        path
        for path, digest in on_disk.items()
        if digest is not None
        and record.files.get(path) == digest
        and _written_by_us(prepared, path, record=record)
    ]


def _copy_kept(
    prepared: Prepared, action: FileAction, on_disk: Mapping[str, str | None]
) -> FileAction:
    """An atlas build that writes over a sheet or an export nothing shows nebula-build
    wrote (only a frame map or the lock, both a pull request's, says so: a logo drawn
    by hand, by its digest) backs it up first, and its reason says so."""
    if action.state is not FileState.BUILD or action.backup:
        return action
    unvouched = [
        path
        for path, digest in on_disk.items()
        if digest is not None
        and not prepared.store.wrote_before(path, digest)
        and not (
            _sheet_ours(prepared, path, digest)
            if path == action.output
            else _export_ours(prepared, path)
        )
    ]
    if not unvouched:
        return action
    one = len(unvouched) == 1
    named = ", ".join(printable(path, 200) for path in unvouched)
    # the copy itself is said where the action's backup is (`ui.report`)
    reason = f"{action.reason} ({named} {'does' if one else 'do'} not carry {RECORD})"
    return dataclasses.replace(action, backup=True, reason=reason)


_KEPT = "changed by hand since nebula-build wrote it, or not its file"
_CLAIMED = "the manifest writes or reads {}"
_OUTSIDE = "a link leads out of the project to {}"
#: a file that stays, and why
_Kept = list[tuple[str, str]]


def _kept(kept: _Kept) -> str:
    """'a.png, a.json stay (why); b.png stays (why)', one clause per reason."""
    clauses = []
    for why in dict.fromkeys(why for _, why in kept):
        paths = [path for path, reason in kept if reason == why]
        named = ", ".join(printable(path, 200) for path in paths)
        one = len(paths) == 1
        because = why.format("it" if one else "them")
        clauses.append(f"{named} {'stays' if one else 'stay'} ({because})")
    return "; ".join(clauses)


def _moved_files(
    prepared: Prepared,
    claims: _Claims,
    atlas: AtlasSpec,
    record: AtlasRecord | None,
) -> tuple[list[str], _Kept]:
    """The files the atlas's last build wrote (as the lock records them) that it no
    longer writes (moved, or an export dropped): those its build removes, and those
    that stay because they changed since."""
    if record is None:
        return [], []
    gone = [
        path
        for path in sorted(record.files, key=lambda path: path != record.output)
        if path not in atlas.paths
    ]
    if not gone:
        return [], []
    return _old_files(prepared, claims, record, gone, writing=atlas.paths)


def _with_old_files(action: FileAction, removes: list[str], kept: _Kept) -> FileAction:
    """The atlas's action, built where it is up to date but old files of it are left,
    naming those that stay (an export's reason may have named it already)."""
    reason = action.reason
    if action.state is FileState.NOOP and removes:
        action = dataclasses.replace(action, state=FileState.BUILD, removes=tuple(removes))
        reason = "its old files go"
    if kept := [(path, why) for path, why in kept if path not in reason]:
        reason += f"; {_kept(kept)}"
    return dataclasses.replace(action, reason=reason)


def _deleted(prepared: Prepared, claims: _Claims, name: str, record: AtlasRecord) -> FileAction:
    """An atlas gone from the manifest: its last build's files go, those changed since
    stay, named."""
    paths = sorted(record.files, key=lambda path: path != record.output)  # the sheet first
    removes, kept = _old_files(prepared, claims, record, paths, writing=())
    reason = "removed from the manifest"
    if kept:
        reason += f"; {_kept(kept)}"
    return FileAction(
        FileKind.ATLAS,
        name,
        FileState.DELETE,
        reason,
        record.output,
        removes=tuple(removes),
    )


def _old_files(
    prepared: Prepared,
    claims: _Claims,
    record: AtlasRecord,
    paths: list[str],
    *,
    writing: Collection[str],
) -> tuple[list[str], _Kept]:
    """Of `paths`, files an atlas's last build wrote (`record`, from the lock: untrusted),
    those that go and those that stay because they changed since (or are not the
    tool's)."""
    return _sorted_out(
        prepared,
        claims,
        {path: record.files[path] for path in paths},
        writing=writing,
        ours=functools.partial(_written_by_us, prepared, record=record),
    )


class _Claims:
    """What no old file of an atlas or asset manifest may be, worked out once per plan
    and only if a recorded file is there (a lock may hold 100,000 records): the files
    the manifest writes or reads and those the lock records for an image, by name as
    macOS and Windows compare names (`Out/Hero.png` there is `out/hero.png`) and,
    where one would go, as files: a record may name one through a folder link inside
    the project, or a hard link."""

    def __init__(self, prepared: Prepared, lock: Mapping[str, LockEntry]) -> None:
        self._prepared = prepared
        self._lock = lock
        self._recorded_beside = recorded_elsewhere(prepared.project)

    @functools.cached_property
    def _claimed(self) -> tuple[set[str], list[str]]:
        claimed, folders = _claimed(self._prepared)
        claimed |= {path for entry in self._lock.values() for path in entry.files()}
        return claimed, [file_key(folder) for folder in folders]

    @functools.cached_property
    def _keys(self) -> set[str]:
        return file_keys(self._claimed[0])

    @functools.cached_property
    def _files(self) -> set[tuple[int, int]]:
        project = self._prepared.project
        identities = (_identity(project.path_of(path)) for path in self._claimed[0] if path)
        return {identity for identity in identities if identity is not None}

    def names(self, path: str) -> bool:
        """Whether `path` is a claimed file's name, or in a folder posts are read from.
        A name that differs from a claimed one only as macOS and Windows do not tell
        names apart is one where this file system makes the two one file (on Linux,
        `other.json` goes when the manifest writes `OTHER.json` instead)."""
        key = file_key(path)
        if any(folder in ("", ".") or key.startswith(f"{folder}/") for folder in self._claimed[1]):
            return True
        if key not in self._keys:
            return False
        claimed = self._claimed[0]
        if path in claimed:
            return True
        project = self._prepared.project
        return any(
            _same_file(project.path_of(path), project.path_of(other))
            for other in claimed
            if file_key(other) == key
        )

    def holds(self, path: str) -> bool:
        """Whether the file `path` names (links followed) is a claimed file."""
        return _identity(self._prepared.project.path_of(path)) in self._files

    def elsewhere(self, path: str) -> str | None:
        """Why `path` stays where another manifest's lock records it (a `_Kept` reason:
        "other.lock records {} as atlas boats's"), or None: a lock may copy another
        lock's record, and the files it names are nebula-build's, but not its own."""
        found = self._recorded_beside(path)
        if found is None:
            return None
        return Recorded(_literal(found.lock), _literal(found.owner)).says("{}")


def _literal(text: str) -> str:
    """`text` as `str.format` keeps it (a `_Kept` reason is formatted)."""
    return text.replace("{", "{{").replace("}", "}}")


def _sorted_out(
    prepared: Prepared,
    claims: _Claims,
    recorded: Mapping[str, str],
    *,
    writing: Collection[str],
    ours: Callable[[str], bool],
) -> tuple[list[str], _Kept]:
    """Of the files `recorded` (path → digest, as the lock records what the tool wrote:
    untrusted), those that go and those that stay because they changed since (or do
    not read as the tool's: `ours`). A file goes only where it still holds the digest
    recorded, reads as the tool's, and nothing the manifest writes or reads (nor an
    image the lock records) claims it, by name or as a file; one missing or claimed
    is left alone."""
    files = prepared.files
    project = prepared.project
    removes: list[str] = []
    kept: _Kept = []
    for path in recorded:
        if files.digest(path) is None:
            continue
        if claims.names(path):
            kept.append((path, _CLAIMED))
        elif any(_same_file(project.path_of(path), project.path_of(p)) for p in writing):
            continue  # another name of a file written now
        elif files.digest(path) == recorded[path]:
            if claims.holds(path):
                kept.append((path, _CLAIMED))  # its name runs through a link to one
            elif (elsewhere := claims.elsewhere(path)) is not None:
                kept.append((path, elsewhere))
            elif prepared.guard.folder_problem(path) is not None:
                kept.append((path, _OUTSIDE))  # the guard would refuse to remove it
            elif ours(path):
                removes.append(path)
            else:
                kept.append((path, _KEPT))
        else:
            kept.append((path, _KEPT))
    return removes, kept


def _identity(path: Path) -> tuple[int, int] | None:
    """The file `path` names, links followed (device, inode); None if there is none."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _written_by_us(prepared: Prepared, path: str, *, record: AtlasRecord) -> bool:
    """Whether a file of the record reads as one nebula-build writes for an atlas: the
    sheet is an image (checked with the record), a frame map or an Aseprite export is
    JSON with `meta.app` "nebula-build", a Godot export a SpriteFrames resource. A
    lock from a pull request that names another JSON file, digest and all, removes
    nothing."""
    if path == record.output:
        return _sheet_ours(prepared, path, record.files[path])
    return _export_ours(prepared, path)


def _sheet_ours(prepared: Prepared, path: str, digest: str) -> bool:
    """Whether the sheet at `path`, holding `digest`, is one nebula-build built there:
    this checkout's cache marks it, or it carries the record a build writes into its
    sheet. A lock (a pull request's) may name a logo drawn by hand as a sheet."""
    if prepared.store.wrote_before(path, digest):
        return True
    try:
        data = prepared.guard.read(path, what="atlas sheet", limit=MAX_BYTES)
    except (OSError, UserError):
        return False
    return sha256_bytes(data) == digest and written_as_sheet(data, path)


def _export_ours(prepared: Prepared, path: str) -> bool:
    """Whether the frame map or export at `path` reads as one nebula-build writes."""
    try:
        data = prepared.guard.read(path, what="atlas file", limit=FRAME_MAP_LIMIT)
    except (OSError, UserError):
        return False
    if path.endswith(".tres"):
        return is_godot_export(data)
    try:
        meta = json.loads(data)["meta"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return False
    return isinstance(meta, dict) and meta.get("app") == "nebula-build"


def build_files(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    *,
    force: bool = False,
    deleting: bool = True,
    failed: Collection[str] = (),
    on_built: Callable[[FileOutcome], None] = lambda outcome: None,
    related: Collection[str] | None = None,
) -> list[FileOutcome]:
    """Build what the files need now that the images are done; one failure stops no
    other. Returns what was built or refused, and the atlases that wait for a member
    that `failed` in this run. The lock then records what each atlas wrote
    (`[atlases.NAME]`). `related`: as for `plan_files`."""
    outcomes = []
    before = read_made(prepared.project)
    records = dict(before.atlases)
    planned = _planned_atlases(
        prepared, lock, before, set(), {}, force=force, deleting=deleting, related=related
    )
    for action, seen in planned:
        if action.state is FileState.CONFLICT:
            outcome = FileOutcome(
                action, ok=False, error=f"{action.reason}; {FORCE_HINT}", conflict=True
            )
        elif action.state is FileState.BUILD:
            outcome, record = _build_atlas(prepared, lock, action, seen, records, force=force)
            if record is not None:
                records[action.name] = record
        elif action.state is FileState.DELETE:
            outcome = _delete_atlas(prepared, action, records.pop(action.name))
        else:
            atlas = prepared.resolved.atlases[action.name]
            if action.state is FileState.NOOP:
                _record_as_built(prepared, atlas, records)
            lost = [member for member in atlas.members if member in failed]
            if not lost:
                continue
            # its plan said it would be built with them: say why it was not
            error = f"not built: {some_names(lost)} failed"
            if action.state is FileState.NOOP:
                error = f"not rebuilt: {some_names(lost)} failed; the sheet keeps its last build"
            outcome = FileOutcome(action, ok=False, error=error)
        outcomes.append(outcome)
        on_built(outcome)
    written, asset_manifest = _build_asset_manifest(
        prepared, lock, before.asset_manifest, force=force, deleting=deleting
    )
    if written is not None:
        outcomes.append(written)
        on_built(written)
    made = Made(records, asset_manifest)
    if made != before:
        write_made(prepared.project, made)
    return outcomes


def _record_as_built(prepared: Prepared, atlas: AtlasSpec, records: dict[str, AtlasRecord]) -> None:
    """Record an atlas that is up to date as its frame map says it was built (a lock from
    before atlases were recorded, or a build stopped before the lock was written)."""
    recorded = read_recorded(prepared.guard, atlas)
    frames = prepared.files.digest(atlas.frames)
    sheet = None if recorded is None else recorded.get("digest")
    if recorded is None or frames is None or not isinstance(sheet, str):
        return
    exports = recorded_exports(recorded)
    files = {atlas.output: sheet, atlas.frames: frames}
    files |= {path: exports[path] for path in atlas.exports if path in exports}
    record = AtlasRecord(atlas.output, files)
    if records.get(atlas.name) != record:
        records[atlas.name] = record


def _delete_atlas(prepared: Prepared, action: FileAction, record: AtlasRecord) -> FileOutcome:
    """Remove the files the plan named, each where it still holds what the atlas's last
    build wrote; the lock stops recording the atlas."""
    try:
        _remove_dropped(prepared, list(action.removes), record.files, written=[])
    except (OSError, UserError) as exc:
        return FileOutcome(action, ok=False, error=f"could not remove {action.output}: {exc}")
    return FileOutcome(action, ok=True)


def _build_atlas(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    action: FileAction,
    seen: _Seen,
    records: Mapping[str, AtlasRecord],
    *,
    force: bool,
) -> tuple[FileOutcome, AtlasRecord | None]:
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
            for path in atlas.paths:
                guard.backup(path, prepared.project.backup_dir)
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
        record = records.get(atlas.name)
        if record is not None:  # moved, or exports dropped: as the lock recorded them
            old = [path for path in action.removes if path not in dropped]
            _remove_dropped(prepared, old, record.files, written=[*files, atlas.frames])
        _write(prepared, atlas.frames, frames, sha256_bytes(frames))  # last: records the build
    except ConflictError as exc:
        return FileOutcome(action, ok=False, error=str(exc), conflict=True), None
    except (OSError, ValueError, UserError) as exc:
        error = f"could not build {action.output}: {exc}"
        return FileOutcome(action, ok=False, error=error), None
    built = AtlasRecord(atlas.output, {**digests, atlas.frames: sha256_bytes(frames)})
    return FileOutcome(action, ok=True), built


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
    prepared.guard.backup(path, prepared.project.backup_dir)


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
    claimed, folders = _claimed(prepared)
    project = prepared.project
    return [
        path
        for path in candidates
        if path not in claimed
        and not any(folder in ("", ".") or path.startswith(f"{folder}/") for folder in folders)
        # another name of a file the atlas writes (a link, a case-insensitive disk)
        and not any(_same_file(project.path_of(path), project.path_of(p)) for p in atlas.paths)
    ]


def _claimed(prepared: Prepared) -> tuple[set[str], list[str]]:
    """The files the manifest writes or reads, and the folders its posts are read from:
    never removed as a file an atlas no longer writes."""
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
    return claimed, [folder for folder, _, _ in resolved.data_globs]


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


def _asset_manifest_action(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    old: tuple[str, str] | None,
    *,
    wanted: str | None,
    current: str | None,
    force: bool,
    deleting: bool,
) -> FileAction | None:
    """What the asset manifest needs: `wanted` is its text from the lock as it stands
    (None: images are about to change), `current` the file's (`_read`); `old` the one
    written last, as the lock records it (path, digest), which goes once the manifest
    moves it or drops it."""
    target = prepared.resolved.asset_manifest
    if target is None:
        if old is None or not deleting:
            return None
        removes, kept = _old_asset_manifest(prepared, _Claims(prepared, lock), old, writing=())
        reason = "removed from the manifest" + (f"; {_kept(kept)}" if kept else "")
        return FileAction(
            FileKind.ASSET_MANIFEST, "assets", FileState.DELETE, reason, old[0], removes=removes
        )
    # changed since the tool wrote it, as the lock records the write (a hand edit);
    # None where the lock records no write of it (lost, or older): it may hold one
    edited: bool | None = False
    if current not in (None, assetmanifest.UNREADABLE):
        if old is None or old[0] != target:
            edited = None
        else:
            edited = sha256_bytes(current.encode()) != old[1]
    action = assetmanifest.plan_asset_manifest(
        target, wanted=wanted, current=current, force=force, edited=edited
    )
    if old is None or old[0] == target:
        return action
    claims = _Claims(prepared, lock)
    removes, kept = _old_asset_manifest(prepared, claims, old, writing=(target,))
    reason = action.reason
    if action.state is FileState.NOOP and removes:
        action = dataclasses.replace(action, state=FileState.BUILD)
        reason = "its old file goes"
    if kept:
        reason += f"; {_kept(kept)}"
    if action.state not in (FileState.BUILD, FileState.CONFLICT):
        removes = ()
    return dataclasses.replace(action, reason=reason, removes=removes)


def _old_asset_manifest(
    prepared: Prepared,
    claims: _Claims,
    old: tuple[str, str],
    *,
    writing: Collection[str],
) -> tuple[tuple[str, ...], _Kept]:
    """The asset manifest written last, as the lock records it: whether it goes (it
    still holds what was written and is laid out as nebula-build writes an asset
    manifest: the lock may be a pull request's, naming a site's own JSON file) or
    stays."""

    def ours(path: str) -> bool:
        text = _read(prepared, path)
        return text is not None and assetmanifest.written_as_ours(text)

    removes, kept = _sorted_out(prepared, claims, dict([old]), writing=writing, ours=ours)
    return tuple(removes), kept


def _build_asset_manifest(
    prepared: Prepared,
    lock: Mapping[str, LockEntry],
    old: tuple[str, str] | None,
    *,
    force: bool,
    deleting: bool,
) -> tuple[FileOutcome | None, tuple[str, str] | None]:
    """Write the asset manifest if its content changed (computed once) and remove the
    one written last where it moved or went; returns what happened (None when nothing
    did) and what the lock is to record of it."""
    target = prepared.resolved.asset_manifest
    text = None if target is None else _asset_manifest_text(prepared, lock)
    current = None if target is None else _read(prepared, target)
    action = _asset_manifest_action(
        prepared, lock, old, wanted=text, current=current, force=force, deleting=deleting
    )
    if action is None:
        return None, old
    if action.state is FileState.DELETE:
        assert old is not None
        try:
            _remove_dropped(prepared, list(action.removes), dict([old]), written=[])
        except (OSError, UserError) as exc:
            return FileOutcome(action, ok=False, error=f"could not remove {old[0]}: {exc}"), old
        return FileOutcome(action, ok=True), None
    assert target is not None and text is not None
    written = (target, sha256_bytes(text.encode()))
    if action.state is FileState.NOOP:
        return None, written
    if action.state is FileState.CONFLICT:
        error = f"{target}: {action.reason}; {FORCE_HINT}"
        return FileOutcome(action, ok=False, error=error, conflict=True), old
    try:
        if action.backup:
            prepared.guard.backup(target, prepared.project.backup_dir)

        def unchanged() -> None:  # still the text planned over, just before the rename
            if not action.backup and _read(prepared, target) not in (None, current):
                _changed_since_planned(prepared, target, force=force)

        prepared.guard.write(target, text.encode(), unchanged=unchanged)
        if old is not None:
            _remove_dropped(prepared, list(action.removes), dict([old]), written=[target])
    except ConflictError as exc:
        return FileOutcome(action, ok=False, error=str(exc), conflict=True), old
    except IsADirectoryError:
        error = f"{target} is a folder: remove it or choose another path"
        return FileOutcome(action, ok=False, error=error), old
    except (OSError, UserError) as exc:
        return FileOutcome(action, ok=False, error=f"could not write {target}: {exc}"), old
    return FileOutcome(action, ok=True), written


def _asset_manifest_text(prepared: Prepared, lock: Mapping[str, LockEntry]) -> str:
    target = prepared.resolved.asset_manifest
    assert target is not None
    project = prepared.project
    data = assetmanifest.content(
        target,
        # each image as its output is: the draw picked, the pin, or made from a picked input
        candidates.picked(prepared.specs, lock).specs,
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
