"""Load a project: its manifest resolved against the backends (or taken from the spec
cache), with views of its state, and its lock with any crashed run's journal folded in.

The first steps of the flow (docs/architecture.md), shared by every command;
`planning.py` diffs, and `round.py` applies, so `plan` never imports asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from nebula_build.core.manifest import Manifest, SchemaError, from_bytes, read_bytes, utf8_text
from nebula_build.core.resolve import Resolved, resolve
from nebula_build.core.spec import AssetSpec
from nebula_build.engine import speccache
from nebula_build.engine.ondisk import Outside
from nebula_build.engine.standins import StandIns
from nebula_build.errors import ManifestError, ProjectLockedError, UnsafePathError, UserError
from nebula_build.imaging import pillow_writes
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state.cache import Store
from nebula_build.state.datafiles import DataReader, Signature
from nebula_build.state.fileindex import FileIndex
from nebula_build.state.guard import Guard
from nebula_build.state.inputs import MAX_INPUT_BYTES, InputSnapshot
from nebula_build.state.project import Project
from nebula_build.state.projectlock import ProjectLock

if TYPE_CHECKING:  # what only watch's edits and the lock need: not loaded for the others
    from nebula_build.core.chunks import Parsed
    from nebula_build.state.lockfile import Entries

Notice = Callable[[str], None]


@dataclass(frozen=True)
class Loaded:
    """What the next edit's `prepare` starts from (watch): the manifest, its
    resolution, and what that resolution read."""

    parsed: Parsed
    resolved: Resolved
    backend: str | None
    #: digest of each input file the resolution read (an edit to one: resolve all)
    inputs: Mapping[str, str]
    #: the image that writes each file (None: found from the specs when needed)
    owners: Mapping[str, str] | None = None
    #: the images that take each image's output (likewise)
    takers: Mapping[str, frozenset[str]] | None = None
    #: images whose files changed on disk since (watch): planned again with the edit
    recheck: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Prepared:
    """A project's manifest resolved against its backends, with the state views."""

    project: Project
    resolved: Resolved
    files: FileIndex
    store: Store
    inputs: InputSnapshot | None
    guard: Guard
    #: stat signatures of the data files and folders of posts read while preparing,
    #: taken before reading them (the spec cache's checks are in `files.seen()`)
    data_seen: Mapping[str, Signature] = field(default_factory=dict)
    #: what the next edit can start from (None where the spec cache answered)
    loaded: Loaded | None = None
    #: the images an edit to `previous` may have changed (see `prepare`): resolved
    #: again, removed, or named by `previous.recheck`; the plan looks at these
    #: alone. None where every image was resolved (or taken from the spec cache).
    changed_only: frozenset[str] | None = None
    #: every folder the patterns of posts walked ("." for the project's own), as they
    #: were walked this time: each is observed in `data_seen`, and a post added to
    #: any of them is a change (the no-op plan, watch); with the fingerprint of the
    #: names it held (`Listing.fingerprint`), for watch to tell an event of one
    #: already read
    data_folders: Mapping[str, str] = field(default_factory=dict)
    #: what the plan found outside the project (a local model's weights, see
    #: `engine.ondisk`): the no-op snapshot watches it
    outside: Outside = field(default_factory=Outside)
    #: the sha256 of each data file's bytes as they were parsed, by project path (none
    #: where the spec cache answered): what watch compares a later save with
    data_digests: Mapping[str, str] = field(default_factory=dict)

    @property
    def specs(self) -> dict[str, AssetSpec]:
        return self.resolved.specs

    def held_draw(self, base: AssetSpec, count: int) -> int | None:
        """The draw after the first of `base`'s set (of `count`) whose output the image's
        files hold, as this checkout's cache made it: the pick of a lost lock. None
        where the output is not there (a new image: no cache is asked) or holds draw 0."""
        if self.files.digest(base.output) is None or self._holds(base.drawn(0)):
            return None
        return next((draw for draw in range(1, count) if self._holds(base.drawn(draw))), None)

    def _holds(self, spec: AssetSpec) -> bool:
        """Whether each file `spec` writes is there and holds what its output key wrote."""
        known = self.store.output_files(spec.output_key)
        for path in spec.paths:
            digest = self.files.digest(path)
            if digest is None or digest != known.get(path):
                return False
        return True


def prepare(
    project: Project,
    registry: BackendRegistry,
    *,
    backend: str | None = None,
    read_inputs: bool = False,
    previous: Loaded | None = None,
    incremental: bool = False,
) -> Prepared:
    """Load and resolve the manifest (or take the resolution from the spec cache).

    With `read_inputs`, input files are read into memory once (apply); without,
    their digests come from the stat cache (plan, status). With `previous` (the
    last round's `Prepared.loaded`, in watch), an edit to some images' tables is
    parsed and resolved for those images only (`changed_only`); anything else takes
    the whole path. With `incremental` (watch), `loaded` is always set where the
    manifest allows edits to be resolved alone (the spec cache is not read: it keeps
    no parse).
    """
    registry = replace(registry, recorded_by=lambda name: _recorded_plugin(project, name))
    files = FileIndex(project.root, project.file_index_path)
    guard = Guard(project.root, reserved=project.own_files)
    inputs = InputSnapshot(guard) if read_inputs else None
    unchecked = inputs.digest if inputs is not None else files.digest
    headers = inputs or InputSnapshot(guard)  # plan reads an input only to check its header

    def checked_digest(path: str) -> str | None:
        """An input's digest (None: missing). One refused (a FIFO, a link out, too
        large) raises UnsafePathError saying what is wrong with it, which the
        resolution says at the image and key that read it."""
        problem = guard.input_problem(path, limit=MAX_INPUT_BYTES)
        if problem is not None:
            raise UnsafePathError(f"{path!r} {problem}")
        return unchecked(path)

    def digest_of(path: str) -> str | None:
        """As `checked_digest`, a refused input read as missing: the spec cache's
        checks miss, and the resolution that follows says why."""
        try:
            return checked_digest(path)
        except UnsafePathError:
            return None

    raw = read_bytes(project.manifest_path, project.display_manifest)  # read once
    if previous is not None and previous.backend == backend:
        quick = _edited(project, registry, raw, previous, checked_digest, headers=headers)
        if quick is not None:
            edited, touched, removed = quick
            changed_only = touched | removed | previous.recheck
            _check_paths(
                project,
                edited.resolved,
                guard,
                raw,
                only=touched,
                owners=edited.owners or {},
            )
            store = Store(project.cache_dir, placeholder=StandIns(edited.resolved).refused)
            return Prepared(
                project, edited.resolved, files, store, inputs, guard, {}, edited, changed_only
            )
    key = speccache.cache_key(raw, registry, backend)
    data = DataReader(guard)
    resolved = None
    if previous is None and not incremental:
        resolved = speccache.load(project, key, registry, digest_of, data.matching)
    loaded: Loaded | None = None
    if resolved is None:
        data = DataReader(guard)  # what the cache's checks listed is not what was read
        used: dict[str, str] = {}

        def recording(path: str) -> str | None:
            digest = checked_digest(path)
            if digest is not None:  # a missing input fails resolution: nothing is cached
                used[path] = digest
            return digest

        def resolved_from(
            manifest: Manifest,
            digest_of: Callable[[str], str | None],
            judged_apart: Collection[str] = (),
        ) -> Resolved:
            return resolve(
                manifest,
                registry,
                digest_of,
                backend_override=backend,
                can_encode=pillow_writes,
                input_size=headers.size,
                read_input=headers.read_small,
                data=data,
                judged_apart=judged_apart,
            )

        try:
            manifest = from_bytes(raw, project.manifest_path, project.display_manifest)
        except SchemaError as exc:
            raise _with_resolution_problems(
                exc, lambda rest, cut: resolved_from(rest, checked_digest, cut)
            ) from None
        resolved = resolved_from(manifest, recording)
        speccache.save(project, key, resolved, used | data.digests)
        if incremental and not resolved.data_files and not resolved.data_globs:
            from nebula_build.core.chunks import parsed

            loaded = Loaded(parsed(manifest), resolved, backend, used)
    _check_paths(project, resolved, guard, raw)
    store = Store(project.cache_dir, placeholder=StandIns(resolved).refused)
    return Prepared(
        project,
        resolved,
        files,
        store,
        inputs,
        guard,
        data.signatures,
        loaded,
        data_folders=dict(data.folders),
        data_digests=data.digests,
    )


def _with_resolution_problems(
    error: SchemaError, resolved_from: Callable[[Manifest, frozenset[str]], Resolved]
) -> ManifestError:
    """The schema's problems, and those resolving the rest of the manifest finds."""
    if error.rest is None:
        return error
    try:
        resolved_from(error.rest, error.cut)
    except ManifestError as later:
        return error.beside_resolution(later)
    except (UserError, RecursionError):  # said as they are once the schema's are fixed
        return error
    return error


def _edited(
    project: Project,
    registry: BackendRegistry,
    raw: bytes,
    previous: Loaded,
    digest_of: Callable[[str], str | None],
    *,
    headers: InputSnapshot,
) -> tuple[Loaded, frozenset[str], frozenset[str]] | None:
    """(what the next edit starts from, the images resolved again, those removed)
    where `raw` differs from `previous` only in images' tables and no input file it
    read changed; None where the whole path must run (it also reports problems)."""
    from nebula_build.core.chunks import reparse
    from nebula_build.core.incremental import Edit, resolve_edit

    try:
        text = utf8_text(raw)
    except UnicodeDecodeError:
        return None
    if text == previous.parsed.manifest.text:
        edit = None
    else:
        edit = reparse(previous.parsed, text, project.manifest_path, project.display_manifest)
        if edit is None or edit.reordered:
            return None
    if not all(_unchanged(path, digest, digest_of) for path, digest in previous.inputs.items()):
        return None
    if edit is None:
        return replace(previous, recheck=frozenset()), frozenset(), frozenset()
    used = dict(previous.inputs)

    def recording(path: str) -> str | None:
        digest = digest_of(path)
        if digest is not None:
            used[path] = digest
        return digest

    rebuilt = resolve_edit(
        previous.resolved,
        previous.parsed.manifest.model.images,
        edit.parsed.manifest,
        Edit(edit.changed, edit.added, edit.removed),
        registry=registry,
        digest_of=recording,
        backend_override=previous.backend,
        can_encode=pillow_writes,
        input_size=headers.size,
        read_input=headers.read_small,
        owners=previous.owners,
        takers=previous.takers,
    )
    if rebuilt is None:
        return None
    loaded = Loaded(
        edit.parsed, rebuilt.resolved, previous.backend, used, rebuilt.owners, rebuilt.takers
    )
    return loaded, frozenset(rebuilt.resolved_again), edit.removed


def _unchanged(path: str, digest: str, digest_of: Callable[[str], str | None]) -> bool:
    """Whether an input the last resolution read is as it was (one unsafe now: no,
    and the whole path says whether an image still reads it)."""
    try:
        return digest_of(path) == digest
    except UnsafePathError:
        return False


def _declared_paths(
    resolved: Resolved, only: Collection[str] | None = None
) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """(where in the manifest as said, the key path it is written at, path) of every
    file the project writes (with `only`, every file those images write)."""
    specs = resolved.specs
    for name in specs if only is None else only:
        spec = specs[name]
        declared = name.partition("[")[0]  # a matrix's or rows' image: its declaration
        yield f"images.{name}.output", ("images", declared, "output"), spec.output
        for path in spec.paths[1:]:
            yield f"images.{name} (variant)", ("images", declared, "widths"), path
    if only is not None:
        return
    for name, atlas in resolved.atlases.items():
        yield f"atlases.{name}.output", ("atlases", name, "output"), atlas.output
        yield f"atlases.{name}.frames", ("atlases", name, "frames"), atlas.frames
        for key, export in (("aseprite", atlas.aseprite), ("godot", atlas.godot)):
            if export is not None:
                yield f"atlases.{name}.{key}", ("atlases", name, key), export
    if resolved.asset_manifest is not None:
        yield "assets.manifest", ("assets", "manifest"), resolved.asset_manifest


def _check_paths(
    project: Project,
    resolved: Resolved,
    guard: Guard,
    raw: bytes,
    *,
    only: Collection[str] | None = None,
    owners: Mapping[str, str] = {},
) -> None:
    """Refuse a manifest (or a cached resolution of one) that would write outside the
    project, over the tool's own files or over an input, also through a symbolic
    link in its folders: plan, status and validate refuse what apply would (before
    anything is paid). With `only`, the files of those images alone are checked (the
    others were, by the round before; `owners` holds every image's files). `raw`:
    the manifest's bytes, parsed again only to place a problem at its line."""
    declared = list(_declared_paths(resolved, only))
    written = {path for _, _, path in declared}
    guard.protect(
        path
        for spec in resolved.specs.values()
        for path in (spec.image, spec.mask, spec.palette_file)
        if path and path not in written and path not in owners
    )
    guard.protect(resolved.data_files, what="a data file (rows)")  # `core.written` refuses them
    real_folders: dict[str, str | None] = {}
    for where, at, path in declared:
        problem = guard.problem(path) or guard.folder_problem(path, real_folders)
        if problem is not None:
            raise _refused(project, raw, where, at, f"{path!r} {problem}")


def _refused(
    project: Project, raw: bytes, where: str, at: tuple[str, ...], message: str
) -> ManifestError:
    """The manifest's error for a file it declares at key path `at`, at its line."""
    placed = from_bytes(raw, project.manifest_path, project.display_manifest).problem(at, message)
    return ManifestError.single(placed.path, where, message, placed.line, placed.column)


def _recorded_plugin(project: Project, backend: str) -> str | None:
    """The plugin distribution (`nebula-solid 0.1.0`) the lock records as having made
    an image on `backend`, for the error of a backend not installed here; None where
    the lock names none, or cannot be read (its own error comes from its own command)."""
    from nebula_build.plugin.manager import PLUGIN_RECORD
    from nebula_build.state.lockfile import read
    from nebula_build.text import printable

    try:
        entries = read(project)
    except UserError:
        return None
    for entry in entries.values():
        made = entry.made_with.get(PLUGIN_RECORD) if entry.backend == backend else None
        if made:
            return printable(made, limit=120)
    return None


def recovered_lock(project: Project, notice: Notice) -> Entries:
    """The lock with a crashed apply's journal folded in; the caller holds the
    project lock."""
    from nebula_build.state.lockfile import recover

    entries, folded = recover(project)
    if folded:
        notice("recorded the images finished by an interrupted apply (from its journal)")
    return entries


def current_lock(project: Project, notice: Notice) -> Entries:
    """The lock, with a journal left by an interrupted apply folded in.

    If another apply is running right now, its journal is read but not folded.
    Folding takes the project lock, which an apply starting meanwhile would find
    held and be refused: with no journal, the lock is read without taking it.
    """
    from nebula_build.state.lockfile import read, read_with_journal

    if not project.journal_path.exists():
        return read(project)
    try:
        with ProjectLock(project.project_lock_path, command="recover", on_takeover=notice):
            return recovered_lock(project, notice)
    except ProjectLockedError:
        return read_with_journal(project)
