"""The flow of DESIGN §1, wired once for every command (and watch mode).

load manifest → resolve specs (keys) → read lock → diff → plan; apply runs a
plan with the backends open and the project lock held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from .apply import Applier, ApplyResult, GenerateFn, ProgressSink
from .backends.base import Backend, BackendSettings, GenerationRequest, GenerationResult
from .diskstate import FileIndex
from .errors import ProjectLockedError
from .fsutil import remove_temp_files
from .inputs import InputSnapshot
from .lockfile import Entries, LockWriter, read_with_journal, recover
from .manifest import Manifest, load
from .plan import Plan, make_plan
from .plugins import BackendRegistry
from .project import Project
from .projectlock import ProjectLock
from .spec import AssetSpec, Resolved, resolve
from .store import Store

Notice = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """A project's manifest resolved against its backends, with the state views."""

    project: Project
    manifest: Manifest
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
    """Load and resolve the manifest.

    With `read_inputs`, input files are read into memory once (apply); without,
    their digests come from the stat cache (plan, status).
    """
    manifest = load(project.manifest_path, project.display_manifest)
    files = FileIndex(project.root, project.file_index_path)
    inputs = InputSnapshot(project.root) if read_inputs else None
    digest_of = inputs.digest if inputs is not None else files.digest
    resolved = resolve(manifest, registry, digest_of, backend_override=backend)
    return Prepared(project, manifest, resolved, files, Store(project.cache_dir), inputs)


def current_lock(project: Project, notice: Notice) -> Entries:
    """The lock, with a journal left by an interrupted apply folded in.

    If another apply is running right now, its journal is read but not folded.
    """
    try:
        with ProjectLock(project.project_lock_path, command="recover", on_takeover=notice):
            entries, folded = recover(project)
    except ProjectLockedError:
        return read_with_journal(project)
    if folded:
        notice("recorded the images finished by an interrupted apply (from its journal)")
    return entries


def plan_for(
    prepared: Prepared,
    lock: Entries,
    *,
    targets: Collection[str] = (),
    replace: Collection[str] = (),
    force: bool = False,
) -> Plan:
    return make_plan(
        prepared.specs,
        lock,
        digest_of=prepared.files.digest,
        has_cached=prepared.store.has,
        known_output=prepared.store.output_digest,
        targets=targets,
        replace_images=replace,
        force=force,
    )


def concurrency_limits(prepared: Prepared, parallelism: int | None) -> dict[str, int]:
    return {
        name: parallelism or settings.concurrency
        for name, settings in prepared.resolved.settings.items()
    }


class OpenBackends:
    """Backends opened on first use, kept open, and closed together.

    Opening lazily means a plan that only restores from the cache never needs a
    backend's credentials. Watch mode keeps one of these across rounds.
    """

    def __init__(
        self, classes: Mapping[str, type[Backend]], settings: Mapping[str, BackendSettings]
    ) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._classes = dict(classes)
        self._settings = dict(settings)
        self._opening = asyncio.Lock()
        self.instances: dict[str, Backend] = {}

    async def __aenter__(self) -> OpenBackends:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self.instances.clear()

    async def get(self, name: str) -> Backend:
        if name not in self.instances:
            async with self._opening:
                if name not in self.instances:
                    backend = self._classes[name](self._settings[name])
                    self.instances[name] = await self._stack.enter_async_context(backend)
        return self.instances[name]

    async def generate(self, spec: AssetSpec, request: GenerationRequest) -> GenerationResult:
        return await (await self.get(spec.backend)).generate(request)


async def execute(
    prepared: Prepared,
    plan: Plan,
    lock: Entries,
    *,
    progress: ProgressSink,
    parallelism: int | None = None,
    generate: GenerateFn | None = None,
) -> ApplyResult:
    """Run `plan`; the caller holds the project lock. images.lock is left
    consistent whatever happens, cancellation included."""
    project = prepared.project
    assert prepared.inputs is not None, "prepare(read_inputs=True) for apply"
    folders = {project.path_of(a.output).parent for a in plan.actions if a.output}
    remove_temp_files(folders | {project.root, project.state_dir})
    writer = LockWriter(project, lock)
    resolved = prepared.resolved
    try:
        async with OpenBackends(resolved.backend_classes, resolved.settings) as backends:
            applier = Applier(
                project,
                generate=generate or backends.generate,
                limits=concurrency_limits(prepared, parallelism),
                writer=writer,
                files=prepared.files,
                store=prepared.store,
                inputs=prepared.inputs,
                progress=progress,
            )
            return await applier.run(plan)
    finally:
        writer.close()
        prepared.files.save()
