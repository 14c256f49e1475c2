"""One apply round, the same for `apply`, every `watch` round and `watch --once`.

recover the journal → load → plan → refuse (--locked, --max-generations) →
preflight → estimate the cost (fetching a stale price list) → refuse (--max-cost,
a balance short of the estimate) → review (apply shows the plan and may ask) →
execute → record failures → atlases and the asset manifest.

The caller holds the project lock and renders the `RoundResult`; problems that
stop the round before any work (a broken manifest, a missing key, missing
weights, too many generations) are raised, so every caller stops where `apply`
does. Failures during the work are collected in the result, never raised.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from nebula_build.core.plan import Action, ActionKind, FileKind, FileState, Plan, file_label
from nebula_build.core.spec import AssetSpec
from nebula_build.engine import candidates, cost
from nebula_build.engine.apply import Applier, ApplyResult, GenerateFn, ProgressSink
from nebula_build.engine.derived import FileOutcome, build_files
from nebula_build.engine.execute import OpenBackends, execute
from nebula_build.engine.freememory import release_freed_memory
from nebula_build.engine.gc import remove_leftovers
from nebula_build.engine.lockmerge import settled
from nebula_build.engine.planning import more_images, plan_for
from nebula_build.engine.prepare import Loaded, Prepared, prepare, recovered_lock
from nebula_build.engine.remotecache import configured, unshared
from nebula_build.engine.runstate import record_failures, record_file_failures
from nebula_build.errors import SupersededError, UserError
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state import fileindex
from nebula_build.state.lockfile import Entries, LockEntry, read, retain, write
from nebula_build.state.project import Project
from nebula_build.state.rescue import adopt
from nebula_build.text import plural, printable


@dataclass(frozen=True)
class RoundOptions:
    """What the command line asked of the round."""

    backend: str | None = None
    targets: Collection[str] = ()
    replace: Collection[str] = ()
    force: bool = False
    parallelism: int | None = None
    #: generate nothing: a plan that would is refused (exit 2)
    locked: bool = False
    max_generations: int | None = None
    #: leave the remote cache alone (--offline)
    offline: bool = False
    #: the draw to make each image's output, over the lock's pick (`nebula-build pick`)
    picks: Mapping[str, int] = field(default_factory=dict)
    #: make the candidates the cache lacks (`pick` only switches between those it has)
    draws: bool = True
    #: images to make one more draw of (`apply --more`)
    more: Collection[str] = ()
    #: earlier generations to make images' outputs (`pick NAME @K`)
    pins: Mapping[str, AssetSpec] = field(default_factory=dict)
    #: images whose pin ends (`pick NAME --unpin`)
    unpin: Collection[str] = ()
    #: refuse a run whose estimated cost is over this, or cannot be shown not to be
    max_cost: Decimal | None = None
    #: what those refusals call the run: an "apply", or one of watch's rounds
    run_name: str = "apply"
    #: keep each image's outcome for the report (`apply --json` lists them); without,
    #: the result holds counts, failures and warnings only, so memory stays flat
    outcomes: bool = True
    #: the digest of the saved plan carried out (`apply --plan`): each entry written
    #: keeps it (`LockEntry.applied_plan`)
    applied_plan: str | None = None
    #: someone at a terminal consents to the plan's paid generations (asked when there
    #: are any): a paid backend makes none it did not count (a restore that fails)
    reviewed: bool = False


class RoundProgress(ProgressSink, Protocol):
    """Receives the round's events: the images' (see `ProgressSink`), then each file
    built from them."""

    def built(self, outcome: FileOutcome) -> None: ...
    def close(self) -> None: ...


class RoundListener(Protocol):
    """The caller's side of a round: notes to show, the project as soon as it is
    loaded (watch follows its input files from then on), and the progress display
    once the work is about to start."""

    def notice(self, message: str) -> None: ...
    def loaded(self, prepared: Prepared) -> None: ...
    def starting(self, prepared: Prepared, plan: Plan) -> RoundProgress: ...


#: shown the plan and its cost once nothing stands in the way, before any work:
#: False stops the round (apply's confirmation)
Review = Callable[[Prepared, Plan, cost.Estimate], bool]


@dataclass(repr=False)
class RoundResult:
    """What one round did."""

    prepared: Prepared
    plan: Plan
    #: the lock as the round left it
    lock: Entries
    applied: ApplyResult | None = None
    files: list[FileOutcome] = field(default_factory=list)
    #: why nothing was done (--locked and something would be generated)
    refused: str | None = None
    #: what the plan's generations cost, as estimated before the work
    estimate: cost.Estimate = field(default_factory=cost.Estimate)
    elapsed: float = 0.0

    @property
    def failures(self) -> dict[str, Exception]:
        """Every image and file that failed, by name ("atlas enemies" for a sheet)."""
        failures = dict(self.applied.failures) if self.applied else {}
        for outcome in self.files:
            if not outcome.ok:
                failures[outcome.action.label] = UserError(outcome.error or "failed")
        return failures

    @property
    def counted_failures(self) -> dict[str, Exception]:
        """`failures` as the plan counts images: a renamed image once, by its new name
        (its old name, kept in the lock as it failed, is said but not counted)."""
        kept_back = self.applied.kept_back if self.applied else set()
        return {name: e for name, e in self.failures.items() if name not in kept_back}

    @property
    def generated(self) -> int:
        return self.applied.generated if self.applied else 0

    def __repr__(self) -> str:
        # Short on purpose: on Python 3.11, asyncio.run builds the repr of its main
        # task's result when it exits, and a dataclass repr of every spec of a 10k
        # project is a 60 MB string.
        return (
            f"<RoundResult: {len(self.plan.actions)} images, {self.generated} generated, "
            f"{len(self.failures)} failed>"
        )


async def apply_round(
    project: Project,
    registry: BackendRegistry,
    options: RoundOptions,
    *,
    listener: RoundListener,
    backends: OpenBackends | None = None,
    on_start: Callable[[Applier], None] | None = None,
    generate: GenerateFn | None = None,
    review: Review | None = None,
    on_plan: Callable[[RoundResult], None] | None = None,
    previous: Loaded | None = None,
    incremental: bool = False,
    before_removing: Callable[[frozenset[str]], Awaitable[bool]] | None = None,
    before_paying: Callable[[frozenset[str]], Awaitable[bool]] | None = None,
    check_plan: Callable[[Plan], None] | None = None,
) -> RoundResult:
    """Bring the project in line with its manifest once; the caller holds the project
    lock. `backends` stays open across rounds (watch); `on_start` receives the Applier
    (to cancel images); `generate` replaces the backends (tests); `review` sees the
    plan before any work and may stop the round. `on_plan` receives the result as soon
    as a plan with changes is estimated, before the guards that may refuse it (so a
    refusal can still be reported with its plan); the result is filled in as the round
    goes on. `previous` and `incremental`: see `prepare` (watch resolves and plans an
    edit's images alone). `before_removing` is awaited with what a plan removes (the
    images, then the files) before it removes anything, and False stops the round with
    a SupersededError (watch: a newer save came, the one read was only part of it);
    `before_paying` likewise, with the generation keys, before a plan that a paid
    backend generates (a seed cut short by a save in pieces is a paid image).
    `check_plan` sees the plan before anything is written, and may stop the round by
    raising (`apply --plan`: a saved plan that is no longer the plan); with it, the
    round makes only the generations the plan counts (a cache entry found corrupt at
    its restore fails that image instead of paying for it)."""
    started = time.perf_counter()
    prepared, lock, options = _loaded(
        project, registry, options, listener, previous=previous, incremental=incremental
    )
    remote = configured(prepared.resolved, offline=options.offline, notice=listener.notice)
    plan = plan_for(
        prepared,
        lock,
        targets=options.targets,
        replace=options.replace,
        force=options.force,
        remote=remote,
        notice=listener.notice,
        picks=options.picks,
        draws=options.draws,
        more=options.more,
        pins=options.pins,
        unpin=options.unpin,
    )
    if check_plan is not None:
        check_plan(plan)
    result = RoundResult(prepared, plan, lock)
    if not plan.has_changes:
        return _nothing_to_change(result, options)
    removed = _removed(plan) if before_removing is not None else frozenset()
    if before_removing is not None and removed and not await before_removing(removed):
        raise SupersededError("the manifest changed again before what it dropped was removed")
    result.estimate = cost.planned(prepared, plan)
    if before_paying is not None and result.estimate.paid_generations:
        keys = frozenset(a.spec.generation_key for a in plan.generations if a.spec)
        if not await before_paying(keys):
            raise SupersededError("the manifest changed again before its images were generated")
    if on_plan is not None:
        on_plan(result)
    result.refused = _refusal(plan, options)
    if result.refused is not None:
        return result
    preflight(prepared, plan)
    result.estimate = await cost.refreshed(prepared, plan, listener.notice)
    cost.refuse_over(result.estimate, options.max_cost, options.run_name)
    await cost.check_balance(prepared, result.estimate, listener.notice)
    if review is not None and not review(prepared, plan, result.estimate):
        raise UserError("apply cancelled: nothing was generated")
    progress = listener.starting(prepared, plan)
    try:
        if plan.changes:
            if (
                prepared.changed_only is None
            ):  # the whole manifest was loaded: give back what that freed
                release_freed_memory()
            result.applied = await execute(
                prepared,
                plan,
                lock,
                progress=progress,
                parallelism=options.parallelism,
                generate=generate,
                backends=backends,
                on_start=on_start,
                remote=remote,
                # a reviewed plan (apply --plan) pays for what it counted, never a miss
                planned_only=options.locked
                or options.max_generations is not None
                or options.max_cost is not None
                or check_plan is not None,
                paid_as_planned=options.reviewed,
                keep_outcomes=options.outcomes,
                force=options.force,
                applied_plan=options.applied_plan,
            )
            record_failures(project, result.applied, prepared.specs)
            applied = result.applied
            for note in [
                *applied.notes,
                *unshared(remote, applied.generated, applied.placeholders),
            ]:
                listener.notice(note)
            result.lock = _with_draws_recorded(
                project, prepared, plan, options, lock, written=result.applied.lock
            )
            result.applied.lock = None  # result.lock has it
        result.lock = _with_pins_released(project, prepared, plan, result.lock)
        result.files = build_files(
            prepared,
            result.lock,
            force=options.force,
            deleting=not options.targets,
            failed=_failed_to_change(plan, result.applied),
            on_built=progress.built,
            # --target: the atlases its plan showed
            related={a.image for a in plan.actions} if options.targets else None,
        )
        record_file_failures(project, result.files, _file_labels(prepared))
    finally:
        progress.close()
        prepared.files.save()
    result.elapsed = time.perf_counter() - started
    return result


def _nothing_to_change(result: RoundResult, options: RoundOptions) -> RoundResult:
    """A round whose plan changes nothing: what it records all the same."""
    prepared, plan, lock = result.prepared, result.plan, result.lock
    project = prepared.project
    record_file_failures(project, (), _file_labels(prepared))
    if options.more:  # the draw asked for was in the cache already: record it
        result.lock = _with_draws_recorded(project, prepared, plan, options, lock)
    result.lock = _with_pins_released(project, prepared, plan, result.lock)
    prepared.files.save()
    return result


def _file_labels(prepared: Prepared) -> set[str]:
    """The labels of the files made from the images the manifest declares now."""
    labels = {file_label(FileKind.ATLAS, name) for name in prepared.resolved.atlases}
    if prepared.resolved.asset_manifest is not None:
        labels.add(file_label(FileKind.ASSET_MANIFEST, "assets"))
    return labels


def _failed_to_change(plan: Plan, applied: ApplyResult | None) -> set[str]:
    """The images whose new output failed: one kept because its file was changed by
    hand was never to change, so its atlas, up to date, did not fail with it."""
    if applied is None:
        return set()
    kept = {a.image for a in plan.actions if a.kind is ActionKind.CONFLICT}
    return set(applied.failures) - kept


def _loaded(
    project: Project,
    registry: BackendRegistry,
    options: RoundOptions,
    listener: RoundListener,
    *,
    previous: Loaded | None,
    incremental: bool,
) -> tuple[Prepared, Entries, RoundOptions]:
    """The project prepared for a round, its lock (a journal folded in, a merge's
    conflicts written resolved) and the options with the images `--more` names."""
    if incremental:  # watch: the lock and file index stay in memory between rounds
        retain(project)
        fileindex.retain(project.file_index_path)
    lock = recovered_lock(project, listener.notice)
    prepared = prepare(
        project,
        registry,
        backend=options.backend,
        read_inputs=True,
        previous=previous,
        incremental=incremental,
    )
    # a lock a merge left conflict markers in is written resolved, whatever else happens
    lock, _ = settled(prepared, lock, listener.notice, write=True)
    # every use below (the draws recorded after the run too) sees the images it names
    options = dataclasses.replace(options, more=more_images(prepared, options.more))
    only = prepared.changed_only
    if only is None:  # else the round before tidied, and this process holds the project
        remove_leftovers(prepared)  # a killed run's temp files
    specs = prepared.specs
    keys = (specs[name] for name in (specs if only is None else only) if name in specs)
    adopt(prepared.store, {spec.generation_key for spec in keys})
    listener.loaded(prepared)
    return prepared, lock, options


def _with_draws_recorded(
    project: Project,
    prepared: Prepared,
    plan: Plan,
    options: RoundOptions,
    before: Entries,
    *,
    written: Mapping[str, LockEntry] | None = None,
) -> Entries:
    """The lock, with the draws of each image this round touched recorded (key and
    digest of each) where the cache now holds its whole set; the draws are those the
    plan was made for (from the lock `before` the round). `written`: the lock as the
    run just wrote it (reading a 100k-entry lock back would hold it twice)."""
    touched = candidates.touched(plan.actions) | set(options.more)
    if not touched:
        return dict(written) if written is not None else read(project)
    chosen = candidates.picked(
        prepared.specs,
        before,
        options.picks,
        more=options.more,
        pins=options.pins,
        unpin=options.unpin,
        only=touched,
        on_disk=prepared.held_draw,
    )
    lock = dict(written) if written is not None else read(project)
    recorded = candidates.recorded_draws(chosen, touched, prepared.store, before)
    changed = False
    for name, draws in recorded.items():
        entry = lock.get(name)
        if entry is None or entry.draws == draws:
            continue
        if entry.generation_key in {draw.key for draw in draws}:  # the set the output is of
            lock[name] = dataclasses.replace(entry, draws=draws)
            changed = True
    if not changed:
        return lock
    write(project, lock)
    return read(project)


def _with_pins_released(project: Project, prepared: Prepared, plan: Plan, lock: Entries) -> Entries:
    """The lock without the pins an edit ended where the output stayed what it was (the
    manifest now declares the pinned generation's spec), written so: of the images the
    plan shows (`--target`: not the others; watch: an edited image's only)."""
    only = prepared.changed_only
    planned = {a.image for a in plan.actions if only is None or a.image in only}
    specs = {name: prepared.specs[name] for name in planned if name in prepared.specs}
    released = candidates.released_pins(specs, lock)
    if not released:
        return lock
    lock = {
        **lock,
        **{name: dataclasses.replace(lock[name], pin=None, pinned_draws=()) for name in released},
    }
    write(project, lock)
    return lock


def _removed(plan: Plan) -> frozenset[str]:
    """The images whose files the plan removes, and the files made from the images it
    removes."""
    images = {a.image for a in plan.actions if a.kind is ActionKind.DELETE}
    return frozenset(images | {f.output for f in plan.files if f.state is FileState.DELETE})


def _refusal(plan: Plan, options: RoundOptions) -> str | None:
    """--locked and --max-generations: refuse before anything is spent."""
    generations = len(plan.generations)
    if options.locked and generations:
        which, them = ("that generation", "it") if generations == 1 else ("those", "them")
        stale = [a for a in plan.generations if _unrecorded(a)]
        if stale and not options.replace and not options.more:
            first = stale[0]
            more = ", …" if len(stale) > 1 else ""
            which = them if len(stale) == generations else plural(len(stale), "image")
            declared = "it" if len(stale) == 1 else "them"
            return (
                f"--locked: {plan.generating().said()} would need generating: images.lock "
                f"does not record {which} as the manifest declares {declared} "
                f"({printable(first.image)}: {printable(first.reason)}{more}): run apply, and "
                f"commit images.lock with the files it makes; without --locked, apply "
                f"generates {them}"
            )
        if options.offline:
            why = "--offline: the remote cache is not read"
        elif options.replace:
            why = "--replace asks for new draws"
        else:
            why = (
                "a fresh checkout reads the team's remote cache where [cache] remote or "
                "NEBULA_BUILD_CACHE_REMOTE names it"
            )
        return (
            f"--locked: {plan.generating().said()} would need generating: no cache this run "
            f"reads holds {which} ({why}); without --locked, apply generates {them}"
        )
    limit = options.max_generations
    if limit is not None and generations > limit:
        raise UserError(
            f"this {options.run_name} would generate {plan.generating().said()}, more than "
            f"--max-generations {limit}; nothing was generated"
        )
    return None


def _unrecorded(action: Action) -> bool:
    """Whether a generation is of a spec the lock does not record for its image (the
    manifest changed, and the lock was not brought along), not one a cache lacks."""
    spec, entry = action.spec, action.entry
    return spec is not None and (entry is None or entry.generation_key != spec.generation_key)


def preflight(prepared: Prepared, plan: Plan) -> None:
    """Ask every backend that will generate whether it can run here, before any work."""
    resolved = prepared.resolved
    for name in sorted({a.spec.backend for a in plan.generations if a.spec}):
        resolved.backends[name].preflight(resolved.settings[name], prepared.project.root)
