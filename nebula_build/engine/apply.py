"""Run a Plan: generate what is missing, write files atomically, record the lock.

The generate step is a parameter, so ordering, concurrency, keep-going and
crash-safety are tested with a fake backend. Generations are bounded by a
semaphore per backend; encoding and file writes run in worker threads.
One image's failure never stops the others; every failure is returned.

Memory stays flat however many images the plan has: actions are started from
the plan a few at a time (at most `Applier.bound` images in flight), an image
that takes another's output (`@hero`) waits outside that bound until its
upstream is done, and each finished image leaves only counts, its failure or
warnings (and its whole outcome only where the caller asks, `apply --json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections import Counter, defaultdict, deque
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nebula_build.core.handedits import acceptable
from nebula_build.core.plan import LINK_IN_THE_WAY, Action, ActionKind, Plan
from nebula_build.core.spec import AssetSpec
from nebula_build.core.sprite import MAX_PALETTE_BYTES, palette_colours, palette_too_large
from nebula_build.engine.history import history_after, pinned_set
from nebula_build.engine.pixelbudget import PixelBudget, pixels_of
from nebula_build.engine.remotecache import ENV_REMOTE, restore_remote, upload
from nebula_build.engine.verify import Restored, Verified, restore, verify_answer
from nebula_build.errors import (
    FORCE_HINT,
    AccessDeniedError,
    BackendError,
    ChangedMeanwhileError,
    ConflictError,
    CredentialsError,
    LocalSetupError,
    NebulaBuildError,
    OutOfCreditsError,
    OutputRejectedError,
    PluginAnswerError,
    RequestRejectedError,
    SkippedError,
    StateWriteError,
    SupersededError,
    TooLargeError,
    UserError,
)
from nebula_build.fsutil import read_regular, sha256_bytes
from nebula_build.outputs.encode import encoding_for, render_checked
from nebula_build.outputs.keying import check_original
from nebula_build.params import PARAMS
from nebula_build.plugin.backend import GenerationRequest, GenerationResult
from nebula_build.state.cache import Store
from nebula_build.state.fileindex import FileIndex
from nebula_build.state.guard import Guard
from nebula_build.state.inputs import InputSnapshot
from nebula_build.state.lockfile import NONE_RECORDED, LockEntry, LockWriter, recorded
from nebula_build.state.project import Project
from nebula_build.state.remote import CONCURRENCY, Remote
from nebula_build.state.rescue import rescue
from nebula_build.text import made_by_stand_in, shell_operands

GenerateFn = Callable[[AssetSpec, GenerationRequest], Awaitable[GenerationResult]]
_IO_CONCURRENCY = 8
#: --force for a symbolic link out of the project in an output's way: nothing to back up
LINK_FORCE_HINT = (
    "re-run with --force to replace the link (what it points to outside the project is not touched)"
)
#: the largest backed-up file a move of the same run takes its bytes from
_MAX_MOVED_COPY = 1 << 30
#: images in flight per slot of the backends and the file writers: enough that none of
#: them waits for work, few enough that memory does not grow with the plan
_IN_FLIGHT_PER_SLOT = 4
_MIN_IN_FLIGHT = 64


class ProgressSink(Protocol):
    """Receives apply events; `progress.py` renders them."""

    def started(self, action: Action) -> None: ...
    def step(self, image: str, done: int, total: int) -> None: ...
    def activity(self, image: str, text: str) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...


@dataclass(slots=True)
class Outcome:
    """What happened to one image."""

    action: Action
    ok: bool
    elapsed: float = 0.0
    error: Exception | None = None
    generated: bool = False
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    peak_memory: int | None = None
    #: each acceptance check's measured value, where the image has checks
    checks: Mapping[str, Any] = field(default_factory=dict)
    #: not recorded as a name it swaps with failed: said, counted as that one's failure
    kept_back: bool = False

    @property
    def image(self) -> str:
        return self.action.image

    @property
    def counted(self) -> bool:
        """Whether apply counts it (`Action.counted`): not a name kept back by a swap."""
        return self.action.counted and not self.kept_back

    @property
    def refused(self) -> bool:
        """Whether the backend answered (and may have billed) but its bytes were refused:
        not an image nebula-build can use, or an image its checks or keying refuse.
        Before an answer, a rejection is the server's (a 4xx), never generated."""
        return self.generated and isinstance(
            self.error, RequestRejectedError | OutputRejectedError | PluginAnswerError
        )


@dataclass
class ApplyResult:
    """What a run did: counts, failures and warnings; each image's whole outcome only
    when it was asked for (`keep_outcomes`), since a 100k-image run would hold them all."""

    #: every image that failed (or was superseded), with its error
    failures: dict[str, Exception] = field(default_factory=dict)
    #: the images that finished well, in the order they did
    succeeded: list[str] = field(default_factory=list)
    #: every generation the backends answered, refused ones included
    generated: int = 0
    #: the generations whose bytes were refused (`Outcome.refused`): their images failed
    refused: int = 0
    #: generations a stand-in for the API made that the remote cache was not given
    placeholders: int = 0
    #: (image, warning), in the order they came
    warnings: list[tuple[str, str]] = field(default_factory=list)
    #: what the run says beside its images (a backend that failed to close at the end)
    notes: list[str] = field(default_factory=list)
    #: each image's outcome, in the plan's order (empty unless kept)
    outcomes: list[Outcome] = field(default_factory=list)
    #: the lock as the run left it (`execute` sets it): no need to read it back
    lock: Mapping[str, LockEntry] | None = None
    #: of `succeeded`, the old names of renamed images (not counted: `Action.counted`)
    handed_over: int = 0
    #: of `succeeded`, the images removed from the manifest whose files were deleted
    deleted: int = 0
    #: of `failures`, the old names of renamed images kept in the lock as their new
    #: name failed, and the names swapped with one that failed (`Outcome.kept_back`):
    #: said, not counted (the failure is the one that failed)
    kept_back: set[str] = field(default_factory=set)

    @property
    def done(self) -> int:
        """How many images finished well, as the plan counts them (a rename once)."""
        return len(self.succeeded) - self.handed_over

    def add(self, outcome: Outcome, *, keep: bool) -> None:
        if outcome.error is not None:
            self.failures[outcome.image] = outcome.error
            if not outcome.counted:
                self.kept_back.add(outcome.image)
        elif outcome.ok:
            self.succeeded.append(outcome.image)
            if not outcome.action.counted:
                self.handed_over += 1
            elif outcome.action.kind is ActionKind.DELETE:
                self.deleted += 1
        self.generated += outcome.generated
        self.refused += outcome.refused
        self.warnings.extend((outcome.image, warning) for warning in outcome.warnings)
        if keep:
            self.outcomes.append(outcome)


def request_for(spec: AssetSpec, inputs: InputSnapshot) -> GenerationRequest:
    """The backend request for a spec, with the exact input bytes that were hashed."""
    _check_mask_size(spec, inputs)
    values: dict[str, Any] = {}
    for param in PARAMS:
        value = getattr(spec, param.name)
        values[param.name] = inputs.data(value) if param.file and value else value
    return GenerationRequest(
        image_name=spec.name,
        generation_key=spec.generation_key,
        model=spec.model,
        background=spec.key_color,
        **values,
    )


def _check_mask_size(spec: AssetSpec, inputs: InputSnapshot) -> None:
    """Refuse a mask of another size than its image, from the bytes about to be sent:
    plan cannot know the size of an upstream's trimmed output before it is made."""
    if spec.image is None or spec.mask is None:
        return
    image, mask = inputs.size(spec.image), inputs.size(spec.mask)
    if isinstance(image, tuple) and isinstance(mask, tuple) and image != mask:
        raise UserError(
            f"images.{spec.name}.mask: {_input_shown(spec.mask, spec.mask_digest)} is "
            f"{_by(mask)} but the image {_input_shown(spec.image, spec.image_digest)} is "
            f"{_by(image)}: a mask must be the size of its image; nothing was sent"
        )


def _waits_for(action: Action) -> tuple[str, ...]:
    """The images that must be done before `action` starts: those whose outputs it
    takes, or, for the old name of a renamed image, its new name (which keeps its
    entry's history only while the entry is in the lock)."""
    if action.renamed_to is not None:
        return (action.renamed_to,)
    return action.spec.depends_on if action.spec else ()


def _swap_waits(changes: Sequence[Action]) -> dict[str, tuple[str, ...]]:
    """Names swapped or renamed round a cycle: each member that takes over an entry
    without generating (as it is, moved, from the cache) waits for the members that
    generate, so that where one fails, none has yet written over the entry it was to
    take over. Where every member generates, none waits: each would wait for another.
    Along a chain (a gone, b takes a's entry, new c takes b's), of two names one of
    which takes over the other's entry, the one that does not generate waits for the
    one that does.
    A wait that would close a loop with the images' own upstreams is left out. A
    waiting member is parked (`_feed`), so it holds no place in the bound."""
    taking = {a.image: a for a in changes if a.renamed_from is not None and a.spec is not None}
    if not taking:  # the common case
        return {}
    pending = {action.image: action for action in changes}
    waits: dict[str, tuple[str, ...]] = {}
    cycles = _rename_cycles(taking)
    for cycle in cycles:
        making = [name for name in cycle if taking[name].generates]
        for name in cycle:
            if making and not taking[name].generates:
                waits[name] = tuple(
                    maker for maker in making if not _reaches(maker, name, pending, waits)
                )
    in_cycles = {name for cycle in cycles for name in cycle}
    for name, action in taking.items():  # a chain (a gone, b → a's, new c → b's)
        old = action.renamed_from
        if name in in_cycles or old not in taking or action.generates == taking[old].generates:
            continue
        waiter, maker = (old, name) if action.generates else (name, old)
        if not _reaches(maker, waiter, pending, waits):
            waits[waiter] = (*waits.get(waiter, ()), maker)
    return waits


def _rename_cycles(taking: Mapping[str, Action]) -> list[list[str]]:
    """The cycles of names each taking over the next one's entry (a swap is one of two)."""
    cycles: list[list[str]] = []
    seen: set[str] = set()
    for start in taking:
        path: list[str] = []
        name: str | None = start
        while name is not None and name in taking and name not in seen:
            seen.add(name)
            path.append(name)
            name = taking[name].renamed_from
        if name is not None and name in path:
            cycles.append(path[path.index(name) :])
    return cycles


def _reaches(
    start: str, goal: str, pending: Mapping[str, Action], waits: Mapping[str, tuple[str, ...]]
) -> bool:
    """Whether `start` waits, at any depth, for `goal`."""
    todo, seen = [start], {start}
    while todo:
        name = todo.pop()
        if name == goal:
            return True
        action = pending.get(name)
        for upstream in (*_waits_for(action), *waits.get(name, ())) if action else ():
            if upstream not in seen:
                seen.add(upstream)
                todo.append(upstream)
    return False


def _input_shown(path: str, digest: str | None) -> str:
    """An input as validate names it: a file, or an upstream image's output."""
    if digest is not None and digest.startswith("@"):
        return f"@{digest[1:].partition(':')[0]}'s output {path}"
    return path


def _by(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


class Applier:
    """Executes the actions of one plan against one project."""

    def __init__(
        self,
        project: Project,
        *,
        generate: GenerateFn,
        limits: Mapping[str, int],
        writer: LockWriter,
        files: FileIndex,
        store: Store,
        inputs: InputSnapshot,
        progress: ProgressSink,
        guard: Guard,
        remote: Remote | None = None,
        planned_only: bool = False,
        unplanned_refused: frozenset[str] = frozenset(),
        keep_outcomes: bool = True,
        force: bool = False,
        lock: Mapping[str, LockEntry] | None = None,
        applied_plan: str | None = None,
    ) -> None:
        self.project = project
        #: the digest of the saved plan carried out (`apply --plan`), kept in each entry
        #: written, so that applying it again is known as such (`LockEntry.applied_plan`)
        self.applied_plan = applied_plan
        #: --force: a file changed by hand since the plan is backed up and overwritten
        self.force = force
        #: the lock the plan was made from (the writer's entries change as images finish)
        self._planned_lock = lock if lock is not None else dict(writer.entries)
        #: path → digest of every file that lock records, built on the first mismatch
        self._recorded_files: dict[str, str] | None = None
        self.remote = remote
        #: generate only what the plan counted (--locked, --max-generations): a restore
        #: that fails is that image's error, never a generation nobody agreed to pay for
        self.planned_only = planned_only
        #: the backends that make no generation the plan did not count either: the paid
        #: ones, where the plan was shown to someone who would be asked before paying
        self.unplanned_refused = unplanned_refused
        #: keep every image's `Outcome` in the result (`apply --json` lists them)
        self.keep_outcomes = keep_outcomes
        self._transfers = asyncio.Semaphore(CONCURRENCY)
        self.guard = guard
        self.generate_fn = generate
        self.writer = writer
        self.files = files
        self.store = store
        self.inputs = inputs
        self.progress = progress
        self._limits = {name: asyncio.Semaphore(n) for name, n in limits.items()}
        #: the most images in flight at once (started, not finished)
        self.bound = max(
            _MIN_IN_FLIGHT, _IN_FLIGHT_PER_SLOT * (sum(limits.values()) + _IO_CONCURRENCY)
        )
        self._io = asyncio.Semaphore(_IO_CONCURRENCY)
        #: the pixels the encodes in flight hold between them
        self._pixels = PixelBudget()
        #: moves run one at a time: one may take the file another moves over
        self._moving = asyncio.Lock()
        #: path → this run's backup copy of what was there
        self._backups: dict[str, Path] = {}
        self._halted: dict[str, BackendError] = {}
        #: the plan's images not finished yet, started or not
        self._pending: dict[str, Action] = {}
        self._acceptable: frozenset[str] = frozenset()
        #: the images in flight: started, not finished
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: names swapped that wait for the names of their swap that generate (`_swap_waits`)
        self._swap_waits: dict[str, tuple[str, ...]] = {}
        #: the names that take over another's entry (`_settled`), each with that name
        self._renaming: dict[str, str] = {}
        #: the images recorded in the lock so far
        self._recorded: set[str] = set()
        #: images waiting for an upstream in flight or not started yet, by that upstream
        self._parked: defaultdict[str, list[Action]] = defaultdict(list)
        #: parked images whose upstream finished: started before the plan's next ones
        self._unparked: deque[Action] = deque()
        self._finished = asyncio.Event()
        self._obsolete: set[str] = set()
        self._finishing: set[asyncio.Future[None]] = set()
        #: each image's write under way (`_finishing`), by image
        self._finishing_of: dict[str, asyncio.Future[None]] = {}
        self._generations: dict[str, asyncio.Future[GenerationResult]] = {}
        #: generation keys that more than one image of the plan wants: how many still do
        self._wanted: Counter[str] = Counter()
        self._result = ApplyResult()
        #: backend slots held by images whose paid original is not cached yet, by image
        self._unkept: dict[str, asyncio.Semaphore] = {}
        #: requests handed to a backend with no answer back: in flight, or cancelled
        #: in flight (Ctrl-C, a newer edit), by image, with the backend's name
        self._unanswered: dict[str, str] = {}
        #: of those, the images whose request the backend still holds back, never sent
        #: (`GenerationRequest.on_held`): no one can have billed them
        self._held: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, plan: Plan) -> ApplyResult:
        self._loop = asyncio.get_running_loop()
        changes = plan.changes
        wanted = Counter(a.spec.generation_key for a in changes if a.spec)
        self._wanted = Counter({key: n for key, n in wanted.items() if n > 1})
        del wanted
        self._pending = {action.image: action for action in changes}
        #: the hand edits in the way that `accept` can keep, which the failure says
        self._acceptable = frozenset(acceptable(plan))
        self._swap_waits = _swap_waits(changes)
        self._renaming = {
            action.image: action.renamed_from
            for action in changes
            if action.renamed_from is not None
            and action.spec is not None
            and action.renamed_from in self._planned_lock
        }
        try:
            async with asyncio.TaskGroup() as group:
                await self._feed(group, changes)
        finally:
            # Writes already under way finish and are recorded, even on Ctrl-C.
            await asyncio.gather(*self._finishing, return_exceptions=True)
            await self._settle_unfinished_renames()
        self._remove_left_for_failed([action for action in changes if action.kept_for])
        if self._result.outcomes:  # in the plan's order, as the report lists them
            order = {action.image: n for n, action in enumerate(changes)}
            self._result.outcomes.sort(key=lambda outcome: order[outcome.image])
        return self._result

    def _settled(
        self, finished: Mapping[str, LockEntry | None]
    ) -> tuple[dict[str, LockEntry | None], dict[str, str]]:
        """`finished` (what an image that finished records), with what keeps each
        earlier entry under exactly one name should the run end there: names swapped,
        renamed round a cycle or along a chain finish one at a time, and a run cut off
        (failed, Ctrl-C, killed) leaves some unfinished. An unfinished name whose old
        entry was written over (the name it came from recorded its own) takes over that
        entry as it was, history and all, to be made by the next apply; a name whose own
        entry another name took over, while the entry it was to take over stays where
        it was, is dropped (the next plan renames it again). Written with `finished`,
        in one journal write, so each lock a run leaves is whole. Also returns the
        names that took over an entry as it was, with that entry's name."""
        changes = dict(finished)
        if not self._renaming:  # the common case
            return changes, {}
        done = self._recorded | {name for name, entry in finished.items() if entry is not None}
        unfinished = {name: old for name, old in self._renaming.items() if name not in done}
        planned, entries = self._planned_lock, self.writer.entries

        def current(name: str) -> LockEntry | None:
            return changes[name] if name in changes else entries.get(name)

        taken_as_was: dict[str, str] = {}
        settling = True
        while settling:
            settling = False
            for name, old in unfinished.items():
                if name not in taken_as_was and current(old) != planned[old]:
                    if current(name) != planned[old]:
                        changes[name] = planned[old]
                    taken_as_was[name] = old
                    settling = True
        holders = done | taken_as_was.keys()
        for name, taken in self._renaming.items():
            if (
                taken in unfinished
                and taken not in taken_as_was
                and name in holders
                and current(taken) is not None
                and current(taken) == planned.get(taken)
            ):
                changes[taken] = None
        return changes, taken_as_was

    async def _settle_unfinished_renames(self) -> None:
        """Once the run ends: say which names took over an entry as it was (`_settled`)."""
        changes, taken_as_was = self._settled({})
        if changes:
            await self.writer.record(changes)
        planned = self._planned_lock
        for name, old in taken_as_was.items():
            self._result.notes.append(
                f"{name}: took over {old}'s entry as it was ({planned[old].output}, with "
                f"its history): {name} is made by the next apply"
            )

    def _remove_left_for_failed(self, leaving: Sequence[Action]) -> None:
        """The files an image that finished well left for another that failed
        (`Action.kept_for`): no entry records them now, so they go while they still
        hold what the lock recorded, as that image's removals would have."""
        if not leaving:  # the common case
            return
        done = set(self._result.succeeded)
        for action in leaving:
            if action.image not in done or action.entry is None:
                continue
            recorded = action.entry.files()
            for path, taker in action.kept_for:
                if taker not in self._result.failures:
                    continue
                try:
                    self._remove_if_ours(path, recorded[path])
                except (OSError, NebulaBuildError) as exc:
                    self._result.notes.append(f"{path} stays, left by {action.image}: {exc}")

    async def _feed(self, group: asyncio.TaskGroup, changes: Iterable[Action]) -> None:
        """Start the plan's actions in order, never more than `bound` in flight; an image
        whose upstream is not done waits aside (parked) without taking a place, so a
        downstream image never holds up the upstream it waits for."""
        upcoming = self._startable(iter(changes))
        while True:
            while len(self._tasks) >= self.bound:
                await self._one_finished()
            action = self._unparked.popleft() if self._unparked else next(upcoming, None)
            if action is not None:
                self._tasks[action.image] = group.create_task(self._run_one(action))
            elif self._unparked:  # released while the plan's last actions were looked at
                continue
            elif self._tasks:
                await self._one_finished()
            else:
                break
        stuck = [action for parked in self._parked.values() for action in parked]
        self._parked.clear()
        for action in stuck:  # only a cycle, which the plan refuses, could leave any
            self._skip(action, "its upstream never ran")

    def _startable(self, actions: Iterator[Action]) -> Iterator[Action]:
        """The plan's actions that can start now; the others are parked on the upstream
        they wait for, or skipped when they were cancelled before starting."""
        for action in actions:
            if action.image in self._obsolete:
                self._supersede(action)
                continue
            upstream = self._unfinished_upstream(action)
            if upstream is None:
                yield action
            else:
                self._parked[upstream].append(action)

    def _unfinished_upstream(self, action: Action) -> str | None:
        for upstream in (*_waits_for(action), *self._swap_waits.get(action.image, ())):
            if upstream != action.image and upstream in self._pending:
                return upstream
        return None

    async def _one_finished(self) -> None:
        self._finished.clear()
        await self._finished.wait()

    def _done(self, outcome: Outcome) -> None:
        """Count an image's outcome and release the images that waited for it."""
        name = outcome.image
        self._tasks.pop(name, None)
        self._pending.pop(name, None)
        self._result.add(outcome, keep=self.keep_outcomes)
        self.progress.finished(outcome)
        for waiting in self._parked.pop(name, ()):
            if waiting.image in self._obsolete:
                self._supersede(waiting)
                continue
            upstream = self._unfinished_upstream(waiting)
            if upstream is None:
                self._unparked.append(waiting)
            else:
                self._parked[upstream].append(waiting)
        self._finished.set()

    def _supersede(self, action: Action) -> None:
        self._done(Outcome(action, ok=False, error=SupersededError("superseded by a newer edit")))

    def _skip(self, action: Action, why: str) -> None:
        self._done(
            Outcome(action, ok=False, error=SkippedError(f"skipped: {why}", image=action.image))
        )

    def _upstream_ready(self, action: Action, outcome: Outcome) -> None:
        """The images whose output this one takes as input (`@hero`) are done: refuse to
        run on one that failed (it was never started before they finished); likewise
        the names it swaps with that generate (`_swap_waits`)."""
        for upstream in action.spec.depends_on if action.spec else ():
            if upstream in self._result.failures:
                raise SkippedError(
                    f"skipped: it takes the output of {upstream}, which failed", image=action.image
                )
        heir = action.renamed_to
        if heir is not None and heir in self._result.failures:
            raise SkippedError(
                f"skipped: kept in the lock with its history until {heir}, its new name, "
                f"takes over {action.output}",
                image=action.image,
            )
        for maker in self._swap_waits.get(action.image, ()):
            if maker in self._result.failures:
                outcome.kept_back = True
                raise SkippedError(
                    f"skipped: kept in the lock with its history until {maker} is made: "
                    "names that take over each other's entries (swapped, renamed round a "
                    "cycle or along a chain) are renamed together",
                    image=action.image,
                )

    def running(self) -> dict[str, Action]:
        """Images not finished yet (in flight or still to start), with each one's action."""
        return dict(self._pending)

    def unanswered(self) -> dict[str, str]:
        """Requests handed to a backend with no answer back (in flight, or cancelled in
        flight: a paid backend may have billed them), by image, with the backend; not
        those the backend held back, never sent."""
        return {
            image: backend for image, backend in self._unanswered.items() if image not in self._held
        }

    def _hold(self, image: str, held: bool) -> None:
        """The backend holds `image`'s request back, unsent (True), or lets it go."""
        if held and image in self._unanswered:
            self._held.add(image)
        else:
            self._held.discard(image)

    def cancel(self, images: Collection[str]) -> None:
        """Stop work a newer edit made obsolete; the rest of the run goes on."""
        for name in images:
            if name not in self._pending:
                continue
            self._obsolete.add(name)  # one not started yet is superseded when it comes up
            task = self._tasks.get(name)
            if task is not None:
                task.cancel()
            elif any(a.image == name for a in self._unparked):
                self._unparked = deque(a for a in self._unparked if a.image != name)
                self._supersede(self._pending[name])

    async def _run_one(self, action: Action) -> None:
        started = time.perf_counter()
        outcome = Outcome(action, ok=True)
        try:
            self._upstream_ready(action, outcome)
            await self._execute(action, outcome)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if action.image not in self._obsolete and current is not None and current.cancelling():
                self._done_once_written(action.image, outcome, started)
                raise
            if action.image not in self._obsolete:  # nobody cancelled it: never wait for it
                error = RuntimeError("a CancelledError that no cancel asked for (a bug)")
                outcome.ok, outcome.error = False, error
            else:
                if current is not None:
                    current.uncancel()
                outcome.ok, outcome.error = False, SupersededError("superseded by a newer edit")
        except Exception as exc:  # keep going: every failure is reported at the end
            outcome.ok, outcome.error = False, exc
        finally:
            self._release(action.image)  # kept or not, this image is done with its slot
            self._finishing_of.pop(action.image, None)
        outcome.elapsed = time.perf_counter() - started
        self._done(outcome)

    def _refused(self, conflict: Action) -> ConflictError:
        """Why a file in the way is not overwritten, and what --force (or accept) does."""
        keep = (
            f"; `nebula-build accept {shell_operands(conflict.image)}` keeps the edit"
            if conflict.image in self._acceptable
            else ""
        )
        return ConflictError(
            f"{conflict.output}: {conflict.reason}; not overwritten: {_hint(conflict)}{keep}"
        )

    async def _execute(self, action: Action, outcome: Outcome) -> None:
        kind = action.kind
        if kind is ActionKind.CONFLICT and action.resolution is None:  # --force cannot help
            raise ConflictError(action.reason)
        if kind is ActionKind.CONFLICT:
            raise self._refused(action)
        if kind is ActionKind.DELETE:
            async with self._io:
                self.progress.started(action)
                await asyncio.to_thread(self._delete_file, action)
            await self.writer.delete(action.image)
            return
        spec = action.spec
        assert spec is not None
        if action.in_place:
            await asyncio.to_thread(self._adopt, action, spec)
            digests = {path: self.files.digest(path) for path in spec.paths}
            gone = [path for path, digest in digests.items() if digest is None]
            if gone:  # removed since the plan: nothing to record
                raise ConflictError(f"{gone[0]} disappeared during the apply; run it again")
            found = dict(action.found)  # what the plan found there
            edited = [path for path, digest in digests.items() if digest != found.get(path)]
            if edited:  # never recorded as this output's: the next plan says it
                raise ChangedMeanwhileError(
                    f"{edited[0]}: changed by hand during the apply; not recorded", path=edited[0]
                )
            main = digests.pop(spec.output)
            assert main is not None
            # the files are this generation's: its cache entry says what made them
            seed, made_with = self.store.provenance(spec.generation_key)
            variants = {p: d for p, d in digests.items() if d}
            await self._record(
                spec, main, seed, variants, made_with or None, renamed_from=action.renamed_from
            )
            return
        if kind is ActionKind.MOVE and action.entry is not None:
            async with self._io, self._moving:
                self.progress.started(action)
                moved = await asyncio.to_thread(self._move, action)
            if moved:
                await self._record(spec, action.entry.digest, action.entry.seed)
                return
        original = await self._original(action, spec, outcome)
        if kind is ActionKind.DRAW:  # a candidate: kept in the cache, no file, no entry
            if outcome.generated:
                async with self._pixels.taken(pixels_of(spec, original.data)):
                    verified = await asyncio.to_thread(verify_answer, original.data, spec)
                    if spec.key_color is not None and verified.pixels is not None:
                        keying = encoding_for(spec).keying
                        assert keying is not None
                        await asyncio.to_thread(check_original, verified.pixels, keying)
                    note = await asyncio.to_thread(self._keep, spec, verified, original)
                _note_size(spec, verified, outcome)
                if note is not None:
                    outcome.warnings = (*outcome.warnings, note)
                await self._share(spec, verified, original, outcome)
            return
        # From here on the work is paid for: it finishes and is recorded even if the
        # image is cancelled meanwhile (run() waits for it), so the lock never lies.
        finishing = asyncio.ensure_future(self._finish(action, spec, original, outcome))
        self._under_way(action.image, finishing)
        await asyncio.shield(finishing)

    def _under_way(self, image: str, finishing: asyncio.Future[None]) -> None:
        """`image`'s write has begun: run() waits for it, Ctrl-C or not."""
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finishing.discard)
        self._finishing_of[image] = finishing  # until `_run_one` ends: done, maybe, as it is cut

    def _done_once_written(self, image: str, outcome: Outcome, started: float) -> None:
        """The run is being stopped (Ctrl-C) while `image`'s write is under way: it is
        finished and counted (its line, `[i/N]`, "n of N finished") once recorded."""
        finishing = self._finishing_of.get(image)
        if finishing is None:
            return

        def written(future: asyncio.Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                return
            outcome.elapsed = time.perf_counter() - started
            self._done(outcome)

        finishing.add_done_callback(written)

    async def _finish(
        self, action: Action, spec: AssetSpec, original: GenerationResult, outcome: Outcome
    ) -> None:
        if not outcome.generated and not original.made_with:
            original = dataclasses.replace(original, made_with=self._locked_made_with(spec))
        pixels = pixels_of(spec, original.data)
        try:
            async with self._pixels.taken(pixels), self._io:
                if not outcome.generated:
                    self.progress.started(action)
                # One trip to a worker thread: keep the paid-for original, then the files.
                verified, digest, variants, note, checks = await asyncio.to_thread(
                    self._persist, action, spec, original, outcome.generated
                )
        except ChangedMeanwhileError:  # kept, not written: shared all the same
            if outcome.generated:
                async with self._pixels.taken(pixels):
                    verified = await asyncio.to_thread(verify_answer, original.data, spec)
                await self._share(spec, verified, original, outcome)
            raise
        outcome.checks = checks
        if outcome.generated:
            _note_size(spec, verified, outcome)
        if note is not None:
            outcome.warnings = (*outcome.warnings, note)
        await self._record(
            spec,
            digest,
            original.seed,
            variants,
            original.made_with,
            renamed_from=action.renamed_from,
            generated=outcome.generated,
        )
        if outcome.generated:
            await self._share(spec, verified, original, outcome)

    def _locked_made_with(self, spec: AssetSpec) -> Mapping[str, str]:
        """The provenance the lock records for this generation: what a cache entry from
        before entries kept one had (the same key, so the same generation). Never a
        stand-in's mark: a placeholder's cache entry carries its own, so what came
        from a cache without it is the real image."""
        before = self.writer.entries.get(spec.name)
        if before is None or before.generation_key != spec.generation_key:
            return {}
        return {} if made_by_stand_in(before.made_with) else before.made_with

    async def _share(
        self, spec: AssetSpec, verified: Verified, original: GenerationResult, outcome: Outcome
    ) -> None:
        """Upload a paid generation to the remote cache, where there is one to write to;
        never a stand-in's placeholder, which has the real image's key."""
        if self.remote is None or not self.remote.writable:
            return
        if made_by_stand_in(original.made_with):
            self._result.placeholders += 1
            return
        async with self._transfers:
            note = await asyncio.to_thread(
                upload, self.remote, spec, verified, original.seed, original.made_with
            )
        if note is not None:
            outcome.warnings = (*outcome.warnings, note)

    async def _record(
        self,
        spec: AssetSpec,
        digest: str,
        seed: int | None,
        variants: Mapping[str, str] | None = None,
        made_with: Mapping[str, str] | None = None,
        *,
        renamed_from: str | None = None,
        generated: bool = False,
    ) -> None:
        """Record a finished image; `seed` is what the backend reported using,
        `made_with` its provenance record (None: not generated now, so the entry's
        record stands while the generation is the same). `renamed_from`: the image no
        longer declared whose output it took over, whose history and draws it keeps.
        `generated`: paid for now (never the saved plan's the entry records)."""
        # the old name's entry as planned: dropped meanwhile, maybe, or (names swapped)
        # already the other image's
        before = self._planned_lock.get(renamed_from) if renamed_from is not None else None
        if before is None:
            before = self.writer.entries.get(spec.name)
        if made_with is None:
            same = before is not None and before.generation_key == spec.generation_key
            made_with = before.made_with if same and before is not None else NONE_RECORDED
        # a pin keeps the set it was made over, for --unpin to come back to
        same_set = before is not None and (
            spec.pin is not None or spec.generation_key in {d.key for d in before.draws}
        )
        entry = LockEntry(
            backend=spec.backend,
            model=spec.model,
            output=spec.output,
            digest=digest,
            generation_key=spec.generation_key,
            output_key=spec.output_key,
            params=spec.entry_params(),
            seed=None if seed == spec.seed else seed,
            variants=recorded(variants),
            draws=before.draws if before is not None and same_set else (),
            history=history_after(before, spec.generation_key, self.store),
            pin=spec.pin,
            pinned_draws=pinned_set(before, spec) if spec.pin is not None else (),
            made_with=recorded(made_with),
            applied_plan=self.applied_plan or _kept_plan(before, spec, digest, generated),
            # the accepted hand edit, moved with its bytes; anything written over it is not
            edited_from=before.edited_from
            if before is not None and before.digest == digest
            else None,
        )
        changes, _ = self._settled({spec.name: entry})
        self._recorded.add(spec.name)
        await self.writer.record(changes)

    async def _original(
        self, action: Action, spec: AssetSpec, outcome: Outcome
    ) -> GenerationResult:
        """The generation's original bytes: from the cache, or from the backend."""
        warning = None
        if not action.fresh:  # the plan counts only our own entries: try any (a miss is a stat)
            # checked against its digest and verified like a backend's answer
            restored, warning = await asyncio.to_thread(restore, self.store, spec)
            # a placeholder the plan did not count as cached is a miss here too
            if restored is not None and not self.store.placeholder(restored.made_with):
                return restored
        if action.from_remote and not action.fresh and self.remote is not None:
            async with self._transfers:
                self.progress.activity(action.image, "downloading from the remote cache")
                restored, why = await asyncio.to_thread(
                    restore_remote, self.remote, self.store, spec
                )
            if restored is not None:
                return restored
            warning = f"{why}; generated the image instead"
        if spec.pin is not None:
            why = (warning or "its cache entry is gone").partition(";")[0]
            raise UserError(
                f"not generated: {why}, and a pinned earlier generation is never made "
                "again (the lock chose it): "
                f"`nebula-build pick --unpin {shell_operands(spec.name)}`"
            )
        if not action.generates and (self.planned_only or spec.backend in self.unplanned_refused):
            why = (warning or "its cache entry is gone").partition(";")[0]
            raise UserError(f"not generated: {why}, {self._unplanned(action, spec)}")
        try:
            return await self._generate(action, spec, outcome)
        finally:
            if warning is not None:  # a bad entry is a miss, said once
                outcome.warnings = (*outcome.warnings, warning)

    def _unplanned(self, action: Action, spec: AssetSpec) -> str:
        """Why an image the plan counted as restored is not generated instead, and how
        to have it made."""
        if self.planned_only:
            why = (
                "and this apply may only make the generations its plan counted "
                "(--plan, --locked, --max-generations, --max-cost)"
            )
        else:
            why = f"and generating it on {spec.backend} would cost what the plan you saw did not"
        if not action.from_remote:
            return f"{why}; run it again"  # the bad entry is gone: the plan counts it
        # the remote still lists it: a plan without the remote counts it
        return f"{why}; `{ENV_REMOTE}= nebula-build apply` plans without the remote cache"

    def _check_halted(self, backend: str) -> None:
        if backend in self._halted:
            cause = self._halted[backend]
            named = f"image {cause.image}" if cause.image else "an earlier image"
            raise SkippedError(
                f"not attempted: {backend} stopped sending requests after {named} failed "
                f"({_halted_because(cause)})",
                backend=backend,
            )

    async def _generate(
        self, action: Action, spec: AssetSpec, outcome: Outcome
    ) -> GenerationResult:
        """One generation per key per run: images with the same spec share it."""
        key = spec.generation_key
        shared = self._generations.get(key)
        if shared is None or shared.cancelled():
            shared = self._generations[key] = asyncio.ensure_future(
                self._request(action, spec, outcome)
            )
            try:
                return await shared  # cancelling this image cancels its request
            finally:
                self._taken(key)
        self.progress.started(action)
        try:
            result = await asyncio.shield(shared)  # another image's request: never cancel it
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return await self._generate(action, spec, outcome)  # its owner gave up: take over
        self._taken(key)
        outcome.timings, outcome.warnings = result.timings, result.warnings
        outcome.peak_memory = result.peak_memory
        return result

    def _taken(self, key: str) -> None:
        """Release a shared generation once every image that wants it has it: holding
        every result's bytes until the end would grow with the run."""
        self._wanted[key] -= 1
        if self._wanted[key] <= 0:
            del self._wanted[key]
            self._generations.pop(key, None)

    async def _request(self, action: Action, spec: AssetSpec, outcome: Outcome) -> GenerationResult:
        self._check_halted(spec.backend)
        request = dataclasses.replace(
            request_for(spec, self.inputs),
            on_step=self._from_thread(self.progress.step, action.image),
            on_activity=self._from_thread(self.progress.activity, action.image),
            on_held=self._from_thread(self._hold, action.image),
            retry_after_send=not self.planned_only,
        )
        slot = self._limits.setdefault(spec.backend, asyncio.Semaphore(1))
        await slot.acquire()
        try:
            self._check_halted(spec.backend)
            self.progress.started(action)
            self._unanswered[action.image] = spec.backend
            result = await self.generate_fn(spec, request)
        except BaseException as exc:
            slot.release()
            if not isinstance(exc, asyncio.CancelledError):
                self._unanswered.pop(action.image, None)
                self._held.discard(action.image)
            if isinstance(exc, BackendError) and exc.halts:  # every later request would fail
                self._halted.setdefault(spec.backend, exc)
            outcome.generated = isinstance(exc, PluginAnswerError)  # answered, then refused
            raise
        del self._unanswered[action.image]
        self._held.discard(action.image)
        # Paid for: the slot stays taken until the original is cached (`_keep`), so a
        # crash loses at most the generations in flight, never a queue of answers
        # waiting for a file writer.
        self._unkept[action.image] = slot
        outcome.generated = True
        outcome.timings = result.timings
        outcome.warnings = result.warnings
        outcome.peak_memory = result.peak_memory
        return result

    def _from_thread(self, event: Callable[..., None], image: str) -> Callable[..., None]:
        """A progress callback that backends may call from any thread."""
        loop = asyncio.get_running_loop()

        def report(*details: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is watching
                loop.call_soon_threadsafe(event, image, *details)

        return report

    # --- blocking file work, run in threads ---------------------------------

    def _write(self, relative: str, data: bytes, unchanged: Callable[[], None]) -> None:
        try:
            self.guard.write(relative, data, unchanged=unchanged)
        except OSError as exc:
            raise StateWriteError(f"could not write {relative}: {exc.strerror or exc}") from None

    def _backup(self, relative: str) -> None:
        made = len(self.guard.backups)
        self.guard.backup(relative, self.project.backup_dir)
        if len(self.guard.backups) > made:
            self._backups[relative] = self.guard.backups[-1]

    def _persist(
        self, action: Action, spec: AssetSpec, original: GenerationResult, generated: bool
    ) -> tuple[Verified, str, dict[str, str], str | None, dict[str, Any]]:
        """Verify the original once (a restore was verified when read), render its files,
        keep it if it was paid for now, then write the files. Returns the verified
        original, the files' digests, a warning if the cache could not keep the
        original, and the acceptance checks' values.

        An original its transparency refuses is not kept (it is no good for any output
        of this key); one that any other output step fails (an acceptance check, a
        palette file) is kept, so that fixing the output costs no generation, but its
        files are not written."""
        # its metadata records take a while: made once
        encoding = encoding_for(spec, seed=original.seed, made_with=original.made_with)
        if isinstance(original, Restored):
            verified = original.verified
        else:
            verified = verify_answer(original.data, spec, encoding)  # nothing unverified is kept
        # Kept before the files are rendered, so that a crash meanwhile loses nothing
        # paid for; only a transparent image waits, since its keying may refuse it.
        kept_first = generated and spec.key_color is None
        rescued = self._keep(spec, verified, original) if kept_first else None
        refused = False
        try:
            if spec.palette_file is not None:  # the bytes whose digest is in the output key
                encoding = dataclasses.replace(encoding, palette=self._palette(spec.palette_file))
            files, checks = render_checked(verified.data, encoding, pixels=verified.pixels)
        except OutputRejectedError as exc:
            refused = not exc.checks  # a transparency refusal: no good for this key
            raise
        finally:  # whatever step fails, what was paid for is kept (unless refused)
            if generated and not kept_first and not refused:
                rescued = self._keep(spec, verified, original)
        try:
            return (verified, *self._write_files(action, spec, files), rescued, checks)
        except (StateWriteError, ChangedMeanwhileError) as exc:
            if rescued is None:
                raise
            if isinstance(exc, ChangedMeanwhileError):
                raise ChangedMeanwhileError(f"{exc}; {rescued}", path=exc.path) from None
            raise StateWriteError(f"{exc}; {rescued}") from None

    def _palette(self, path: str) -> tuple[str, ...]:
        try:
            data = self.inputs.read_small(path, MAX_PALETTE_BYTES)
        except TooLargeError as large:
            raise UserError(palette_too_large(path, large.size)) from None
        if data is None:
            raise UserError(f"palette file not found: {path}")
        try:
            return palette_colours(data, path)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def _keep(self, spec: AssetSpec, verified: Verified, original: GenerationResult) -> str | None:
        """Cache a paid generation with its provenance; if the cache cannot take it (a
        full disk), keep it outside the project instead. Returns what to tell the user
        then, or None."""
        key = spec.generation_key
        seed, made_with = original.seed, original.made_with
        try:
            self.store.put(
                key,
                verified.data,
                seed=seed,
                digest=verified.digest,
                image=spec.name,
                made_with=made_with,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            try:
                folder = rescue(
                    key, verified.data, seed=seed, digest=verified.digest, made_with=made_with
                )
            except OSError:
                return f"could not cache the generation either ({reason}); it is lost"
            return (
                f"the cache could not take the generation ({reason}): it is kept in "
                f"{folder}, and the next apply takes it from there"
            )
        finally:  # in a worker thread: the backend's next request may start now
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._release, spec.name)
        return None

    def _release(self, image: str) -> None:
        """Give back the backend slot an image held while its original was not cached."""
        slot = self._unkept.pop(image, None)
        if slot is not None:
            slot.release()

    def _write_files(
        self, action: Action, spec: AssetSpec, files: list[bytes]
    ) -> tuple[str, dict[str, str]]:
        """Write the output and its variants (`render_checked`'s files); returns their
        digests."""
        rendered = dict(zip(spec.paths, files, strict=True))
        digests = {path: sha256_bytes(data) for path, data in rendered.items()}
        # Before any rename: a run killed between the renames and the journal line leaves
        # files the next plan recognises as this output's, not a stranger's.
        with contextlib.suppress(OSError):  # only a help after a crash: never a failure
            self.store.record_output(spec.output_key, digests, spec.output_params())
        if not self.force:  # none is written when one changed since the plan
            for path in rendered:
                self._check_unchanged(action, spec, path)
        for path, data in rendered.items():
            if action.backup:
                self._backup(path)
            self._write(path, data, functools.partial(self._check_unchanged, action, spec, path))
            self.files.record(path, digest=digests[path])
        self._remove_planned(action)
        main = digests.pop(spec.output)
        return main, digests

    def _check_unchanged(self, action: Action, spec: AssetSpec, path: str) -> None:
        """Refuse to replace `path` unless it still holds what the plan accepted there:
        nothing, or bytes nebula-build wrote (`_ours`). A stat against the file index;
        the file is hashed only when its stat changed. With --force a file changed
        since is backed up, as a conflict the plan saw would be (`action.backup`)."""
        if action.backup:  # backed up just before the write, whatever it holds
            return
        current = self.files.digest(path)
        if current is None or self._ours(action, spec, path, current):
            return
        if self.force:  # checked once: `_write_files` looks first only without --force
            self._backup(path)
            return
        raise ChangedMeanwhileError(
            f"{path}: changed by hand during the apply; not overwritten: {FORCE_HINT}", path=path
        )

    def _ours(self, action: Action, spec: AssetSpec, path: str, current: str) -> bool:
        """Whether `current` is a digest the plan accepts at `path` (`core.plan._guard`):
        the one it found there and let through, the one this image's entry records
        there, the one the lock records for the image that wrote the path before (a
        rename), or this output's own bytes left by a killed run. The last two are
        looked up only when the others do not match."""
        if (path, current) in action.found:  # as the plan found it, and let it through
            return True
        entry = action.entry
        if entry is not None:
            recorded = entry.digest if entry.output == path else entry.variants.get(path)
            # the second: an output moved by hand (a move the plan lets through)
            if current == recorded or (path == spec.output and current == entry.digest):
                return True
        if self._recorded_files is None:
            self._recorded_files = {
                file: digest
                for locked in self._planned_lock.values()
                for file, digest in locked.files().items()
            }
        if self._recorded_files.get(path) == current:
            return True
        return not action.fresh and self.store.output_files(spec.output_key).get(path) == current

    def _adopt(self, action: Action, spec: AssetSpec) -> None:
        """The files already hold this output: keep them, tidy the old ones."""
        self._remove_planned(action)

    def _move(self, action: Action) -> bool:
        """Rename the old file into place if it is ours and unchanged; copy it where the
        plan could not tell it is ours (`keep_file`): that file stays. The file moved
        over is backed up first where the plan says so (`--force`); an old file another
        move of this run went over is copied from that backup (two images swapping
        outputs)."""
        assert action.old_output and action.output and action.entry and action.spec
        digest = action.entry.digest
        check = functools.partial(self._check_unchanged, action, action.spec, action.output)
        if self.files.digest(action.old_output) != digest:
            kept = self._backed_up_copy(action.old_output, digest)
            if kept is None:
                return False
            self._replace_with(action, kept, check)
            return True
        if action.keep_file:
            data = self.guard.read(action.old_output, what="file to copy")
            if sha256_bytes(data) != digest:  # changed since it was hashed
                return False
            self._replace_with(action, data, check)
            return True
        check()
        if action.backup:
            self._backup(action.output)
        self.guard.move(action.old_output, action.output)
        self.files.forget(action.old_output)
        self.guard.prune_empty(action.old_output.rpartition("/")[0])
        return True

    def _replace_with(self, action: Action, data: bytes, check: Callable[[], None]) -> None:
        """Write a moved output's bytes at its new path, backing up what is there first
        where the plan says so."""
        assert action.output and action.entry
        if action.backup:
            self._backup(action.output)
        self._write(action.output, data, check)
        self.files.record(action.output, digest=action.entry.digest)

    def _backed_up_copy(self, relative: str, digest: str) -> bytes | None:
        """The bytes of `relative` as this run backed them up, if they are `digest`."""
        copy = self._backups.get(relative)
        data = None if copy is None else read_regular(copy, limit=_MAX_MOVED_COPY)
        return data if data is not None and sha256_bytes(data) == digest else None

    def _remove_planned(self, action: Action) -> None:
        """Remove the files the plan said this image no longer writes (`removes`): never
        one it did not name, such as another image's output a lock records as this
        image's too."""
        if action.entry is None:
            return
        recorded = action.entry.files()
        for path in action.removes:
            self._remove_if_ours(path, recorded[path])

    def _remove_if_ours(self, relative: str, digest: str) -> None:
        """Delete a file only if it still holds the bytes nebula-build wrote there."""
        if self.files.digest(relative) != digest:
            return
        self.guard.remove(relative)
        self.files.forget(relative)
        self.guard.prune_empty(relative.rpartition("/")[0])

    def _delete_file(self, action: Action) -> None:
        """Remove the files of an image no longer declared that the plan said it removes:
        its output unless it stays (`keep_file`), and `removes`."""
        assert action.entry is not None
        if not action.keep_file:
            self._remove_if_ours(action.entry.output, action.entry.digest)
        self._remove_planned(action)


def _hint(conflict: Action) -> str:
    """What --force would do with the file in a conflict's way."""
    return LINK_FORCE_HINT if conflict.reason.startswith(LINK_IN_THE_WAY) else FORCE_HINT


def _note_size(spec: AssetSpec, verified: Verified, outcome: Outcome) -> None:
    """A backend's image of another size than the request's is kept, and said: the
    files are made from it at the declared size, its shape changed where it differs."""
    width, height = verified.size
    if (width, height) == (spec.width, spec.height):
        return
    note = (
        f"{spec.backend} returned {width}x{height} for a {spec.width}x{spec.height} "
        "request; the original is cached and the output is resized to the declared size"
    )
    outcome.warnings = (*outcome.warnings, note)


def maybe_billed(cut_off: Mapping[str, str], paid: Collection[str]) -> str:
    """What a line about requests cut off (image → backend: a run stopped, a watch
    round superseded) adds for those on a paid backend: their answers are lost, but
    the provider may have billed them ("" if none)."""
    by_backend: dict[str, list[str]] = {}
    for image, backend in cut_off.items():
        if backend in paid:
            by_backend.setdefault(backend, []).append(image)
    if not by_backend:
        return ""
    counted = sum(len(images) for images in by_backend.values())
    request = "the request" if counted == 1 else "the requests"
    each = ", ".join(
        f"{len(images)} to {backend} ({_some(sorted(images))})"
        for backend, images in sorted(by_backend.items())
    )
    return f"; {request} in flight may have been billed: {each}"


def _some(names: Sequence[str], shown: int = 3) -> str:
    """The first few `names`, and how many more."""
    more = f" +{len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _kept_plan(
    before: LockEntry | None, spec: AssetSpec, digest: str, generated: bool
) -> str | None:
    """The saved plan an entry records having carried out, kept where the output is
    the same one, not `generated` now (a restore): a saved plan applied again is still
    known as such, and the lock is left as it was. A generation is never that plan's,
    whatever bytes it made (a seeded `--replace`)."""
    if generated or before is None:
        return None
    if before.output_key != spec.output_key or before.digest != digest:
        return None
    return before.applied_plan


def _halted_because(cause: BackendError) -> str:
    """Why a backend's failure stopped every later request to it, in words."""
    if isinstance(cause, OutOfCreditsError):
        return "out of credits"
    if isinstance(cause, AccessDeniedError):
        return "the key may not make these requests"
    if isinstance(cause, CredentialsError):
        return "the key is missing or was refused"
    if isinstance(cause, LocalSetupError):
        return "it cannot run on this machine"
    return "every later request would fail the same way"
