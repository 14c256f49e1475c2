"""Load a project: its manifest resolved against the backends (or taken from the spec
cache), with views of its state, and its lock with any crashed run's journal folded in.

The first steps of the flow (docs/architecture.md), shared by every command;
`planning.py` diffs, and `round.py` applies, so `plan` never imports asyncio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nebula_build.core.manifest import from_bytes, read_bytes
from nebula_build.core.resolve import Resolved, resolve
from nebula_build.core.spec import AssetSpec
from nebula_build.engine import speccache
from nebula_build.errors import ProjectLockedError
from nebula_build.imaging import pillow_writes
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state.cache import Store
from nebula_build.state.fileindex import FileIndex
from nebula_build.state.inputs import InputSnapshot
from nebula_build.state.lockfile import Entries, read_with_journal, recover
from nebula_build.state.project import Project
from nebula_build.state.projectlock import ProjectLock

Notice = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """A project's manifest resolved against its backends, with the state views."""

    project: Project
    resolved: Resolved
    files: FileIndex
    store: Store
    inputs: InputSnapshot | None

    @property
    def specs(self) -> dict[str, AssetSpec]:
        return self.resolved.specs


def prepare(
    project: Project,
    registry: BackendRegistry,
    *,
    backend: str | None = None,
    read_inputs: bool = False,
) -> Prepared:
    """Load and resolve the manifest (or take the resolution from the spec cache).

    With `read_inputs`, input files are read into memory once (apply); without,
    their digests come from the stat cache (plan, status).
    """
    files = FileIndex(project.root, project.file_index_path)
    inputs = InputSnapshot(project.root) if read_inputs else None
    digest_of = inputs.digest if inputs is not None else files.digest
    raw = read_bytes(project.manifest_path, project.display_manifest)  # read once
    key = speccache.cache_key(raw, registry, backend)
    resolved = speccache.load(project, key, registry, digest_of)
    if resolved is None:
        used: dict[str, str] = {}

        def recording(path: str) -> str | None:
            digest = digest_of(path)
            if digest is not None:  # a missing input fails resolution: nothing is cached
                used[path] = digest
            return digest

        manifest = from_bytes(raw, project.manifest_path, project.display_manifest)
        resolved = resolve(
            manifest, registry, recording, backend_override=backend, can_encode=pillow_writes
        )
        speccache.save(project, key, resolved, used)
    return Prepared(project, resolved, files, Store(project.cache_dir), inputs)


def recovered_lock(project: Project, notice: Notice) -> Entries:
    """The lock with a crashed apply's journal folded in; the caller holds the
    project lock."""
    entries, folded = recover(project)
    if folded:
        notice("recorded the images finished by an interrupted apply (from its journal)")
    return entries


def current_lock(project: Project, notice: Notice) -> Entries:
    """The lock, with a journal left by an interrupted apply folded in.

    If another apply is running right now, its journal is read but not folded.
    """
    try:
        with ProjectLock(project.project_lock_path, command="recover", on_takeover=notice):
            return recovered_lock(project, notice)
    except ProjectLockedError:
        return read_with_journal(project)
