"""`nebula-build gc`: prune cache entries that no lock entry or declared image uses,
and the gallery's thumbnails of outputs the lock no longer records; count the copies
under `.nebula-build/backup/`, which it removes only when asked (`--backups`: they are
the only copy of a file someone drew)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nebula_build.engine import candidates
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import UnsafePathError
from nebula_build.outputs.atlas import members_key, record_key
from nebula_build.outputs.thumbnails import Thumbnails, file_name
from nebula_build.state.guard import BackupFolder, Guard, remove_temp_files
from nebula_build.state.lockfile import Entries


def remove_leftovers(prepared: Prepared) -> int:
    """Delete the temp files a killed run left: everywhere under the tool's state, and
    in the folders the project writes to. Returns how many."""
    project, resolved = prepared.project, prepared.resolved
    written = [path for spec in resolved.specs.values() for path in spec.paths]
    for atlas in resolved.atlases.values():
        written += atlas.paths
    if resolved.asset_manifest is not None:
        written.append(resolved.asset_manifest)
    # a folder the guard refuses (a link out of the project) is not ours to tidy
    folders = {
        project.path_of(path).parent
        for path in written
        if prepared.guard.folder_problem(path) is None
    } | {project.root}
    # another manifest's state lives under the default's: its own applies tidy it
    skip = () if not project.is_default else ("manifests",)
    removed = remove_temp_files(project.state_dir, recursive=True, skip=skip)
    return removed + sum(remove_temp_files(folder) for folder in folders)


def _for_pick(prepared: Prepared, lock: Entries) -> tuple[set[str], set[str]]:
    """The cache keys `pick` may bring back that are not an output: the candidate
    draws (the manifest's sets and those the lock records) and the earlier generations
    the lock's histories name, with every draw of a set one of them was picked from
    (undoing the edit that replaced the set brings them all back)."""
    chosen = candidates.picked(prepared.specs, lock)
    outputs = {entry.generation_key for entry in lock.values()}
    draws = {draw.key for entry in lock.values() for draw in entry.draws}
    for base in chosen.bases.values():
        draws.update(base.drawn(index).generation_key for index in range(base.candidates))
    history = {earlier.generation_key for entry in lock.values() for earlier in entry.history}
    for name, entry in lock.items():
        history.update(entry.pinned_draws)
        for earlier in entry.history:
            history.update(candidates.set_draw_keys(prepared.specs.get(name), earlier))
    return draws - outputs, history - outputs - draws


def kept_for_pick(prepared: Prepared, lock: Entries) -> dict[str, tuple[int, int]]:
    """What the cache keeps for `pick` beside the outputs, by kind ("draws", "history"):
    (entries, bytes)."""
    store = prepared.store
    result = {}
    for kind, keys in zip(("draws", "history"), _for_pick(prepared, lock), strict=True):
        present = [key for key in keys if store.has(key)]
        result[kind] = (len(present), sum(store.size(key) for key in present))
    return result


@dataclass(frozen=True, slots=True)
class Unreferenced:
    """A cache entry nothing refers to: what gc removes (or would)."""

    key: str
    bytes: int
    #: the image it was made for, where its metadata says (older entries do not)
    image: str | None
    #: when it was stored (a timestamp), where known
    made: float | None


def collect(prepared: Prepared, lock: Entries, *, dry_run: bool = False) -> list[Unreferenced]:
    """Remove unreferenced cache entries (or, with `dry_run`, only find them)."""
    keep = {entry.generation_key for entry in lock.values()}
    keep |= {key for keys in _for_pick(prepared, lock) for key in keys}
    store = prepared.store
    found = []
    for key in sorted(store.keys()):
        if key in keep:
            continue
        image, made = store.image(key), store.made(key)
        size = store.size(key) if dry_run else store.remove(key)
        found.append(Unreferenced(key, size, image, made))
    if not dry_run:
        remove_leftovers(prepared)
        live_outputs = {entry.output_key for entry in lock.values()}
        live_outputs |= {spec.output_key for spec in prepared.specs.values()}
        for atlas in prepared.resolved.atlases.values():
            members = members_key(atlas, lock)
            if members is not None:
                live_outputs.add(record_key(atlas, members))
        for output_key in list(store.output_keys()):
            if output_key not in live_outputs:
                store.remove_output(output_key)
        live_files = {pair for entry in lock.values() for pair in entry.files().items()}
        live_files |= {(e.output, h.digest) for e in lock.values() for h in e.history}
        live_markers = store.written_marker_names(live_files)
        for marker in list(store.written_markers()):
            if marker not in live_markers:
                store.forget_written(marker)
        # the gallery's thumbnails of outputs the lock no longer records
        Thumbnails(prepared.project.state_dir).prune(
            {name for entry in lock.values() if (name := file_name(entry.digest)) is not None}
        )
    return found


@dataclass(frozen=True, slots=True)
class Backups:
    """What `.nebula-build/backup/` holds in the folders runs made: how many, how many
    files, how many bytes."""

    folders: int = 0
    files: int = 0
    bytes: int = 0


def totals(folders: list[BackupFolder]) -> Backups:
    return Backups(len(folders), sum(f.files for f in folders), sum(f.bytes for f in folders))


def backups_kept(guard: Guard, backup_dir: Path) -> list[BackupFolder]:
    """The run folders under `backup_dir`, with their regular files; a link is neither
    followed nor counted, nor anything not named as a run names its folder, and a
    `backup_dir` behind a link holds none of the project's."""
    try:
        return guard.backup_folders(backup_dir)
    except UnsafePathError:
        return []


@dataclass(frozen=True, slots=True)
class BackupsRemoved:
    """What `gc --backups` removed (or, with --dry-run, would), what it left, and the
    folders it could not remove, each with why."""

    removed: list[BackupFolder]
    kept: list[BackupFolder]
    failed: list[tuple[BackupFolder, str]]


def remove_backups(
    guard: Guard, backup_dir: Path, *, older_than: float | None, dry_run: bool
) -> BackupsRemoved:
    """Remove the run folders under `backup_dir` (those made more than `older_than`
    seconds ago, where given), through the guard: never through a link, never
    anything outside them. A `backup_dir` behind a link is refused (UnsafePathError)."""
    folders = guard.backup_folders(backup_dir)
    if older_than is None:
        chosen, kept = folders, []
    else:
        now = time.time()
        chosen = [f for f in folders if f.made is not None and now - f.made > older_than]
        kept = [f for f in folders if f not in chosen]
    if dry_run:
        return BackupsRemoved(chosen, kept, [])
    removed, failed = [], []
    for folder in chosen:
        try:
            guard.remove_backup_folder(backup_dir, folder.name)
        except OSError as exc:
            failed.append((folder, exc.strerror or str(exc)))
        else:
            removed.append(folder)
    return BackupsRemoved(removed, kept + [f for f, _ in failed], failed)
