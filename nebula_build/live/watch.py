"""`nebula-build watch`: apply, then apply again whenever the manifest, an input or a
data file (`rows`) changes.

The loop takes its change source as a parameter (an async iterator of path
sets): `filesystem_changes()` watches the disk with watchfiles, tests feed
scripted sets. A change that lands while images are generating cancels the
work it made obsolete (an image whose key changed again, or that was removed)
and lets the rest finish; the next round then builds what is wanted now. A pick
from the live gallery runs between rounds, never during one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import stat
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from nebula_build.core.handedits import acceptable
from nebula_build.core.plan import Action, ActionKind, Plan
from nebula_build.core.spec import AssetSpec
from nebula_build.engine import candidates
from nebula_build.engine.apply import Applier, Outcome, maybe_billed
from nebula_build.engine.derived import FileOutcome
from nebula_build.engine.execute import OpenBackends
from nebula_build.engine.picking import pick_draw
from nebula_build.engine.planning import plan_for
from nebula_build.engine.prepare import Loaded, Prepared, prepare
from nebula_build.engine.round import RoundOptions, RoundProgress, RoundResult, apply_round
from nebula_build.errors import (
    ChangedMeanwhileError,
    NebulaBuildError,
    SupersededError,
    UserError,
    error_lines,
)
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state import globs
from nebula_build.state.fileindex import FileIndex
from nebula_build.state.lockfile import Entries
from nebula_build.state.project import Project
from nebula_build.state.projectlock import ProjectLock
from nebula_build.state.siblings import UnreadNote
from nebula_build.text import escaped, escaped_value, plural, printable, shell_operands
from nebula_build.ui.progress import Progress
from nebula_build.ui.report import backups_line, done_text, failed_text
from nebula_build.ui.style import Style

Changes = AsyncIterator[set[Path]]

#: seconds between looks at whether the project lock file is still there
LOCK_CHECK_S = 1.0
#: a save is often several writes seen apart (truncate then write; rename away then
#: write anew): seconds without a change before what it made obsolete is cancelled
SETTLE_S = 0.3
#: and before a round removes what the manifest dropped, or says its error (a newer
#: change within them: the round read part of a save, and stops without a word)
WHOLE_S = 1.0
#: a watched file larger than this is compared by its stat, not by its bytes
HASH_LIMIT = 16 << 20


@dataclass
class Round:
    """What one round did, for the terminal and the live gallery."""

    number: int
    elapsed: float = 0.0
    changed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    #: images whose file was changed by hand: kept, not overwritten (without --force)
    conflicts: list[str] = field(default_factory=list)
    #: images whose picked draw the edit replaced with draw 0 of its new draws, and
    #: what the note says (as `plan` notes it)
    picks_dropped: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    #: the error as the terminal says it, a line each (for the gallery's banner)
    error_lines: list[str] = field(default_factory=list)
    prepared: Prepared | None = None
    #: the plan as the round left things (for the gallery)
    plan: Plan | None = None
    result: RoundResult | None = None


class Watcher:
    """Runs rounds of plan + apply for one project, with backends kept open."""

    def __init__(
        self,
        project: Project,
        registry: BackendRegistry,
        *,
        out: TextIO,
        style: Style,
        options: RoundOptions | None = None,
        on_round: Callable[[Round], None] | None = None,
        project_lock: ProjectLock | None = None,
    ) -> None:
        self.project = project
        self.registry = registry
        self.out = out
        self.style = style
        #: what the command line asked of every round (`--backend`, `--target`, `--force`,
        #: `--max-cost`, …): a round over `max_generations` or `max_cost` is refused, and
        #: the next save tried
        self.options = options or RoundOptions()
        self.on_round = on_round
        #: held for as long as watch runs: locked again should `.nebula-build/` go
        self.project_lock = project_lock
        self._relocking = asyncio.Lock()
        #: why the project could not be locked again, as said last
        self._lock_problem: str | None = None
        self.rounds = 0
        self._paths: set[Path] = {project.manifest_path}
        #: each watched file's stat as the rounds read it: a save no event reported
        #: (made before the files were watched, or while they were armed again) differs
        self._as_read: dict[Path, _Stat | None] = {}
        #: each watched file's content (`_content`) as the latest round read it: a save
        #: that leaves it so starts no round (an autosave, `touch`, the same bytes again)
        self._read: dict[Path, str | None] = {}
        #: watched files saved with other content since the latest round started
        self._heard: set[Path] = set()
        #: the fingerprint of each folder of posts as the latest full round walked it
        #: (`Listing.fingerprint`): an event that leaves it so starts no round (a new
        #: folder's, heard again once it is watched)
        self._listed: dict[Path, str] = {}
        #: the contents and the load the latest round that was said left: saves undone
        #: before the next round starts (edited, then reverted) start none
        self._said_read: dict[Path, str | None] = {}
        self._said_load: Loaded | _NotLoaded | None = _NOT_LOADED
        #: whether what is waiting for a round is only saves of watched files
        self._saves_only = False
        #: (folder, the pattern below it) of each set of posts: a post added there counts
        self._globs: set[tuple[Path, str]] = set()
        #: every folder those patterns walked: each is watched, so a post added to any
        #: (or a subfolder made where the pattern looks) starts a round
        self._post_folders: set[Path] = set()
        self._last_error: str | None = None
        #: the last good load: the next edit is parsed, resolved and planned alone
        self._loaded: Loaded | None = None
        #: each file the images write (relative, POSIX) → its image
        self._owners: dict[str, str] = {}
        #: the folders those files are in, and the files made from the images
        self._output_folders: set[Path] = set()
        #: each file made from the images (an atlas's sheet, frame map and exports, the
        #: asset manifest; relative, POSIX) → its stat as the last round or pick left it
        self._derived: dict[str, _Stat | None] = {}
        #: those of them changed while a round or pick ran: looked at once it ends
        self._derived_suspects: set[str] = set()
        #: images whose files changed on disk since the last round (planned by the next)
        self._recheck: set[str] = set()
        #: the lock as the last round or pick left it, and the file index it used: what
        #: each file the images write should hold (a round's own writes are in both)
        self._recorded: Entries = {}
        self._files: FileIndex | None = None
        #: the images' files (relative, POSIX → image) changed while a round or pick
        #: ran: compared with the lock it leaves once it ends
        self._suspects: dict[str, str] = {}
        #: images whose conflict (a file changed by hand) was said: said once, not per round
        self._conflicts_said: set[str] = set()
        #: the same for the files made from the images ("atlas sheet")
        self._file_conflicts_said: set[str] = set()
        #: the locks beside that could not be read, as said (each lock and reason once)
        self._unread_said: set[str] = set()
        #: the images the running round planned (None: all), once it has loaded
        self._planning: frozenset[str] | _NotLoaded | None = _NOT_LOADED
        self._applier: Applier | None = None
        #: the running round's progress, once it starts on its images
        self._progress: Progress | None = None
        #: (finished, planned) images of the round Ctrl-C stopped, if one was under way
        self.stopped_with: tuple[int, int] | None = None
        #: the requests a round stopped in the middle had handed to a backend and got no
        #: answer to, by image, with the backend (`Applier.unanswered`)
        self.cut_off: dict[str, str] = {}
        #: the same for the round that just ended, which a newer edit cut them off
        self._superseded_in_flight: dict[str, str] = {}
        #: the generation key the manifest declared for each image the running round
        #: works on (None: not declared, a deletion), as the round planned it
        self._declared: dict[str, str | None] = {}
        #: images whose hand edit `accept` could keep (the plan of the round's start)
        self._acceptable: set[str] = set()
        self._backends: OpenBackends | None = None
        #: held by a round or a pick: they never run at once
        self._busy = asyncio.Lock()
        self._dirty: asyncio.Event | None = None
        #: when the last change that starts a round came (the loop's clock)
        self._last_change = -math.inf
        self._canceller: asyncio.Task[None] | None = None
        #: what the rounds stopped by newer changes were about to do (remove these
        #: images and files, or say this error), and when the first of them read it
        self._superseded: tuple[frozenset[str] | str, float] | None = None
        #: the loop the rounds run on, while they do (picks come from other threads)
        self.loop: asyncio.AbstractEventLoop | None = None

    def watched_paths(self) -> set[Path]:
        """The manifest, every input and data file it references, as of the last good
        load."""
        return set(self._paths)

    def watched_patterns(self) -> set[tuple[Path, str]]:
        """(folder, the pattern below it) of every set of posts, as of the last good load."""
        return set(self._globs)

    def unheard(self) -> set[Path]:
        """The watched files changed since a round read them, as no event said: saves
        made while no watch was armed (watch starting, its folders armed again)."""
        return {path for path, read in self._as_read.items() if _stat(path) != read}

    def _reading(self, paths: Collection[Path]) -> None:
        """A round reads these now (or did just now)."""
        self._as_read.update((path, _stat(path)) for path in paths)

    def post_folders(self) -> set[Path]:
        """Every folder the patterns of posts walked (and each pattern's own folder)."""
        return self._post_folders | {folder for folder, _ in self._globs}

    def wants(self, path: Path) -> bool:
        """Whether a change to `path` starts a round: a watched file, a post a pattern
        matches, a folder it walked (removed or renamed), or a new folder where it
        looks for posts."""
        if path in self._paths:
            return True
        folders = self.post_folders()
        if path in folders:
            return True
        if path.parent not in folders:
            return False
        return any(_wanted_by(path, folder, pattern) for folder, pattern in self._globs)

    def made_from_images(self, path: Path) -> bool:
        """Whether `path` is a file made from the images (an atlas's, the asset manifest)."""
        return path.parent in self._output_folders and self._relative(path) in self._derived

    def _relative(self, path: Path) -> str | None:
        try:
            return path.relative_to(self.project.root).as_posix()
        except ValueError:
            return None

    def written_by(self, path: Path) -> str | None:
        """The image that writes `path`, if one does (a change to it starts no round,
        but the next round plans that image again: deleted or edited by hand)."""
        if path.parent not in self._output_folders:
            return None
        relative = self._relative(path)
        return None if relative is None else self._owners.get(relative)

    def output_folders(self) -> set[Path]:
        return set(self._output_folders)

    def working(self) -> bool:
        """Whether a round or a pick is running (its images are being written)."""
        return self._busy.locked()

    def missing_outputs(self, folders: Collection[Path]) -> set[Path]:
        """The files the images write into `folders` that are not there."""
        root = self.project.root
        within = set()
        for folder in folders:
            try:
                within.add(folder.relative_to(root).as_posix())
            except ValueError:
                continue
        return {
            root / path
            for path in self._owners
            if path.rpartition("/")[0] in within and not (root / path).exists()
        }

    async def run(self, changes: Changes | None, *, once: bool = False) -> Round | None:
        """Rounds until cancelled; with `once`, a single round whose problems are raised
        as `apply` raises them, and its report returned."""
        backends = OpenBackends({}, {}, root=self.project.root)
        try:
            return await self._run_with(backends, changes, once=once)
        finally:
            for failure in backends.closing_failures:
                self.notice(failure)

    async def _run_with(
        self, backends: OpenBackends, changes: Changes | None, *, once: bool
    ) -> Round | None:
        async with backends:
            self._backends = backends
            self._busy = asyncio.Lock()  # of this loop
            dirty = self._dirty = asyncio.Event()
            dirty.set()
            consumer = keeper = None
            if not once and changes is not None:
                consumer = asyncio.create_task(self._consume(changes, dirty))
            if not once and self.project_lock is not None:
                keeper = asyncio.create_task(self._keep_project_lock())
            self.loop = asyncio.get_running_loop()
            try:
                while True:
                    await _changed(dirty, consumer)
                    dirty.clear()
                    if self._saves_undone():
                        continue
                    async with self._busy:
                        await self._hold_project_lock()
                        report = await self.round(once=once)
                        self._note_derived()
                    if once:
                        return report
                    self._check_suspects()
            finally:
                self.loop = None
                for task in (consumer, keeper, self._canceller):
                    if task is not None:
                        task.cancel()

    async def _keep_project_lock(self) -> None:
        """Lock the project again soon after its lock file is removed, not only at the
        next round: a command started meanwhile would run alongside watch."""
        while True:
            await asyncio.sleep(LOCK_CHECK_S)
            await self._hold_project_lock()

    async def _hold_project_lock(self) -> None:
        """Lock the project again where its lock file was removed, waiting for a
        command that locked it meanwhile."""
        lock = self.project_lock
        async with self._relocking:
            if lock is None or not lock.lost():
                return
            if self._lock_problem is None:
                where = os.path.relpath(lock.path, self.project.root)
                self.notice(f"{where} was removed: locking the project again")
            try:
                holder = lock.try_regain()
                if holder is not None:
                    self.notice(f"waiting for {holder}, which locked the project meanwhile")
                while holder is not None:
                    await asyncio.sleep(0.05)
                    holder = lock.try_regain()
            except NebulaBuildError as exc:  # a folder made read-only: the next look tries again
                if str(exc) != self._lock_problem:
                    self.notice(str(exc))
                self._lock_problem = str(exc)
                return
            self._lock_problem = None

    async def _consume(self, changes: Changes, dirty: asyncio.Event) -> None:
        """Mark every change; an error watching the files ends watch (`_changed`)."""
        async for heard in changes:
            self._reading(heard & self._as_read.keys())
            paths = self._without_same_content(heard)
            if not self._starts_a_round(paths):
                continue  # only files the images write: checked by the next round
            self._saves_only = (self._saves_only or not dirty.is_set()) and paths <= self._paths
            self._last_change = asyncio.get_running_loop().time()
            if self._canceller is None or self._canceller.done():
                self._canceller = asyncio.create_task(self._cancel_once_settled())
            dirty.set()

    def _without_same_content(self, paths: set[Path]) -> set[Path]:
        """`paths` less the watched files that hold what the latest round read (saved
        with the same bytes, touched, deleted and made again alike)."""
        same = set()
        for path in paths & self._paths:
            if path in self._read and _content(path) == self._read[path]:
                same.add(path)
            else:
                self._heard.add(path)
        for folder in paths & self._listed.keys():
            if self._listing(folder) == self._listed[folder]:
                same.add(folder)
        return paths - same

    def _listing(self, folder: Path) -> str | None:
        """The fingerprint of what a folder of posts holds now, as a walk lists it;
        None where it cannot be listed (removed, say)."""
        from nebula_build.state.datafiles import MAX_FOLDER_FILES
        from nebula_build.state.guard import Guard

        if folder.is_symlink():  # a walk never follows one
            return None
        relative = folder.relative_to(self.project.root).as_posix()
        guard = Guard(self.project.root, reserved=self.project.own_files)
        try:
            listing = guard.listing("" if relative == "." else relative, limit=MAX_FOLDER_FILES)
        except (OSError, NebulaBuildError):
            return None
        return listing.fingerprint()

    def _saves_undone(self) -> bool:
        """Whether what waits for a round is only saves that each left its file as the
        latest round that was said read it (a change then its revert, a file deleted
        then made again the same), and that round left nothing undone (an image a
        newer save cancelled): no round, and nothing said."""
        if not self._saves_only or self._loaded is not self._said_load or self._recheck:
            return False
        said = self._said_read
        if any(path not in said or _content(path) != said[path] for path in self._heard):
            return False
        self._read.update((path, said[path]) for path in self._heard)
        self._heard.clear()
        return True

    def _reading_contents(self) -> None:
        """A round is about to read the watched files: their contents now are the ones
        later saves are compared with (taken before it reads: a save meanwhile is seen
        as a change, never lost as one it read)."""
        for path in self._paths:
            if path in self._heard or path not in self._read:
                self._read[path] = _content(path)
        self._heard.clear()
        self._listed = {}  # until the round has walked them (`loaded`)

    def _mark_dirty(self) -> None:
        """Start a round for something other than a save of a watched file."""
        if self._dirty is not None:
            self._saves_only = False
            self._dirty.set()

    async def _settled(self) -> None:
        """Wait until no change has come for `SETTLE_S`."""
        loop = asyncio.get_running_loop()
        while (left := self._last_change + SETTLE_S - loop.time()) > 0:
            await asyncio.sleep(left)

    async def _cancel_once_settled(self) -> None:
        """Cancel what the save made obsolete once it is whole: an empty or half-written
        manifest seen between its writes would cancel images it still declares."""
        await self._settled()
        self._cancel_obsolete()

    def _no_newer_save(self, began: float) -> Callable[..., Awaitable[bool]]:
        """Whether no change came within `WHOLE_S` of the one at `began` (and
        `SETTLE_S` of the question), after which a round read the files: else it read
        part of a save. With `within=SETTLE_S` (before paying for images): no change
        within `SETTLE_S` of the one at `began`. A round that reads what rounds stopped
        this way read `WHOLE_S` before goes on at once: files rewritten without a pause
        (a script, an autosave) would stop every round, and what reads alike a second
        apart is no piece."""
        loop = asyncio.get_running_loop()
        read_at = loop.time()
        seen, self._superseded = self._superseded, None

        async def settled_unchanged(about: frozenset[str] | str, within: float = WHOLE_S) -> bool:
            if seen is not None and seen[0] == about and read_at - seen[1] >= WHOLE_S:
                return True
            until = began + within
            if within >= WHOLE_S:  # a round that started late still hears of writes after it read
                until = max(until, loop.time() + SETTLE_S)
            while self._last_change == began and (left := until - loop.time()) > 0:
                await asyncio.sleep(min(left, 0.05))
            if self._last_change == began:
                return True
            self._superseded = seen if seen is not None and seen[0] == about else (about, read_at)
            return False

        return settled_unchanged

    def _starts_a_round(self, paths: set[Path]) -> bool:
        """Whether a change set starts a round. The images whose files it holds are
        planned again by the next round; a file deleted or edited by hand starts one
        (it restores the file from the cache, or shows the conflict), the round's own
        writes do not."""
        starts = False
        for path in paths:
            owner = None if self.wants(path) else self.written_by(path)
            if owner is not None:
                self._recheck.add(owner)
                starts |= self._changed_by_hand(path, owner)
            elif self.made_from_images(path):
                starts |= self._derived_changed(path)
            elif path not in self._output_folders or self.wants(path) or self._holds_read(path):
                starts = True
        return starts

    def _holds_read(self, folder: Path) -> bool:
        """Whether a file the rounds read (a data file, an input) lies in `folder`, a
        folder of outputs too: renamed back, say, it is read again."""
        return any(path.is_relative_to(folder) for path in self._paths)

    def _changed_by_hand(self, path: Path, owner: str) -> bool:
        """Whether `owner`'s file at `path` no longer holds what the lock records; one
        changed while a round works is checked once it ends (it may be the round's)."""
        relative = path.relative_to(self.project.root).as_posix()
        if self.working():
            self._suspects[relative] = owner
            return False
        return self._differs(relative, owner)

    def _derived_changed(self, path: Path) -> bool:
        """Whether a file made from the images is not as the last round left it (deleted
        or edited by hand: the next round builds it again, or shows the conflict); one
        changed while a round works is checked once it ends."""
        relative = path.relative_to(self.project.root).as_posix()
        if self.working():
            self._derived_suspects.add(relative)
            return False
        return _stat(path) != self._derived.get(relative)

    def _note_derived(self) -> None:
        """Remember the files made from the images as a round or pick leaves them."""
        root = self.project.root
        self._derived = {relative: _stat(root / relative) for relative in self._derived}

    def _differs(self, relative: str, owner: str) -> bool:
        if owner in self._conflicts_said:
            return True  # the user is resolving it: plan it again
        entry = self._recorded.get(owner)
        recorded = entry.files().get(relative) if entry is not None else None
        if recorded is None or self._files is None:
            return False  # never made: nothing to restore or to keep
        return self._files.digest(relative) != recorded  # stat-cached for our own writes

    def _check_suspects(self) -> None:
        """After a round or pick: start the next round if a file changed while it ran
        is not what it left (deleted or edited by hand meanwhile)."""
        suspects, self._suspects = self._suspects, {}
        changed = any(self._differs(path, owner) for path, owner in suspects.items())
        derived, self._derived_suspects = self._derived_suspects, set()
        changed |= any(self._derived_changed_meanwhile(path) for path in derived)
        if changed:
            self._mark_dirty()

    def _derived_changed_meanwhile(self, relative: str) -> bool:
        """Whether a file made from the images, changed while a round or pick ran, is
        gone or not as the round wrote it (a hand edit after its build)."""
        if relative not in self._derived:
            return False
        if _stat(self.project.root / relative) is None:
            return True
        return self._files is not None and bool(self._files.changed_since_seen(relative))

    def _cancel_obsolete(self) -> None:
        applier = self._applier
        if applier is None:
            return
        try:
            wanted = prepare(
                self.project,
                self.registry,
                backend=self.options.backend,
                previous=self._loaded,
            ).specs
        except NebulaBuildError:
            return  # a half-typed manifest says nothing about what is obsolete
        # Compared as declared, not with the running action's spec: a picked draw, a
        # candidate draw (`hero#2`) or a pin is made from another spec than the
        # manifest's, and is obsolete only when the manifest's changed.
        now = _declared_keys(wanted, applier.running().values())
        obsolete = [
            name
            for name, action in applier.running().items()
            if action.spec is not None and now[_base(name)] != self._declared.get(_base(name))
        ]
        if obsolete:
            applier.cancel(obsolete)

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def round(self, *, once: bool = False) -> Round:
        """One apply round; a problem that stops it before any work (a broken manifest,
        a missing key) is reported once and skipped until the next save, or raised
        with `once`."""
        self.rounds += 1
        report = Round(self.rounds)
        options = self.options if once else dataclasses.replace(self.options, run_name="round")
        previous = self._loaded
        if previous is not None and self._recheck:
            previous = dataclasses.replace(previous, recheck=frozenset(self._recheck))
        self._planning = _NOT_LOADED
        self._reading_contents()
        unchanged = self._no_newer_save(self._last_change)
        made: list[RoundResult] = []  # the plan, before a guard may refuse it
        try:
            result = await apply_round(
                self.project,
                self.registry,
                options,
                listener=self,
                backends=self._backends,
                on_start=self._started,
                on_plan=made.append,
                previous=None if once else previous,
                incremental=not once,
                before_removing=None if once else unchanged,
                before_paying=None if once else functools.partial(unchanged, within=SETTLE_S),
            )
        except SupersededError:  # what it read was part of a save: the next round reads it
            self._left_undone(None)
            self.rounds -= 1
            return report
        except NebulaBuildError as exc:
            self._left_undone(None)
            if once:
                raise
            return await self._failed(report, exc, unchanged, made[0] if made else None)
        finally:
            self._round_ended()
        self._last_error = None
        report.prepared, report.result = result.prepared, result
        self._recorded, self._files = result.lock, result.prepared.files
        self._conflicts_said -= {
            a.image for a in result.plan.actions if a.kind is not ActionKind.CONFLICT
        } - _changed_meanwhile(result)
        self._file_conflicts_said &= {file.action.label for file in result.files if file.conflict}
        self._left_undone(result)
        if not result.plan.has_changes:
            planned = result.plan.actions if result.prepared.changed_only is None else ()
            images = plural(len(planned) or len(result.prepared.specs), "image")
            self._say(self.style(f"round {report.number}: up to date ({images})", "dim"))
            report.plan = result.plan
            if self.on_round is not None and result.prepared.changed_only is not None:
                report.plan = self._whole_plan(result)
            return self._publish(report)
        report.elapsed = result.elapsed
        self._summarise(report, result)
        if self.on_round is not None:  # the whole plan, for the gallery
            report.plan = self._whole_plan(result)
        return self._publish(report)

    async def _failed(
        self,
        report: Round,
        exc: NebulaBuildError,
        unchanged: Callable[..., Awaitable[bool]],
        planned: RoundResult | None,
    ) -> Round:
        """A round that an error stopped before any work: said once until the next
        save; `planned`: its plan, where a guard refused it (the gallery shows what it
        would have made, pending, under the error)."""
        report.error, said = str(exc), error_lines(exc)
        report.error_lines = said
        self._watch_declared_data()
        if not await unchanged(report.error):  # an empty or half-written save: unsaid
            self.rounds -= 1
            return report
        if report.error != self._last_error:
            # as a command's error is said: a line break its own, a value escaped
            for line in said:
                self._say(
                    self.style(f"round {report.number}: ", "bold")
                    + self.style("error: ", "red", "bold")
                    + escaped(line)
                )
            self._say(self.style("waiting for the next save…", "dim"))
        self._last_error = report.error
        if planned is not None and self.on_round is not None:
            report.prepared, report.result = planned.prepared, planned
            report.plan = self._whole_plan(planned)
        return self._publish(report)

    def _left_undone(self, result: RoundResult | None) -> None:
        """Plan again, with the next edit, what this round planned and did not finish
        (`result` None or refused: nothing; else the images whose action failed, was
        cancelled or never ran): the next round's text is compared with this one's."""
        planned = self._planning
        if isinstance(planned, _NotLoaded):
            return  # stopped before the manifest loaded: the baseline did not move
        if result is None or result.refused is not None:
            if planned is None:
                self._loaded = None  # the next round resolves and plans the whole
            else:
                self._recheck |= planned
            return
        done = {o.image for o in result.applied.outcomes if o.ok} if result.applied else set()
        self._recheck |= {action.image for action in result.plan.changes} - done

    async def pick(self, name: str, index: int, *, shown: str | None = None) -> str:
        """Make draw `index` of `name` its output, between rounds, and publish the page
        that shows it; returns the line saying so. `shown`: the draw's generation key
        as the page showed it (refused if the manifest now declares another). Raises
        what `pick_draw` raises, and a UserError when the pick's round fails. The images
        that take its output are made again by the round that follows, as after a save."""
        backend = self.options.backend
        if backend is not None:  # pick_draw keys the draws by the manifest's backends
            raise UserError(
                f"watch --backend {backend} shows draws the manifest does not name: "
                "run watch without --backend to pick in the gallery"
            )
        try:
            async with self._busy:
                await self._hold_project_lock()
                try:
                    chosen, result = await pick_draw(
                        self.project,
                        self.registry,
                        name,
                        index=index,
                        shown=shown,
                        listener=self,
                        offline=self.options.offline,
                    )
                except NebulaBuildError:
                    raise
                except Exception:  # a bug: shown where watch's errors are
                    self._say(traceback.format_exc().rstrip())
                    raise
                self.rounds += 1
                self._recorded, self._files = result.lock, result.prepared.files
                report = Round(self.rounds, changed=[name], prepared=result.prepared, result=result)
                report.plan = self._whole_plan(result)
                problem = result.refused or next(iter(result.failures.values()), None)
                message = f"{name}: {chosen.described} ({chosen.output})"
                if problem is None:
                    self._say(self.style(f"round {report.number}: ", "bold") + f"picked {message}")
                    self._say_backups(report, result)
                else:
                    self._summarise(report, result)
                self._publish(report)
                self._note_derived()
        finally:  # a pick that failed may have written some files too
            self._check_suspects()
        if problem is not None:
            raise UserError(f"{name}: draw {index} could not be made the output: {problem}")
        if chosen.takers:
            self._mark_dirty()  # they take its output: the next round makes them again
        return message

    def _whole_plan(self, result: RoundResult) -> Plan:
        """The plan of every image as the round left things (for the gallery); a note
        it gives (a lock beside that could not be read) is said as the round's are."""
        return plan_for(
            _whole(result.prepared), result.lock, force=self.options.force, notice=self.notice
        )

    def notice(self, message: str) -> None:
        if isinstance(message, UnreadNote):  # each plan asks again: said once per watch
            if message in self._unread_said:
                return
            self._unread_said.add(message)
        shown = "\n".join(escaped(line) for line in message.split("\n"))
        self._say(self.style(f"note: {shown}", "yellow"))

    def starting(self, prepared: Prepared, plan: Plan) -> RoundProgress:
        self._declared = _declared_keys(prepared.specs, plan.changes)
        self._acceptable = set(acceptable(plan))
        progress = self._progress = Progress(
            self.out, plan.counted_changes, live=False, style=self.style
        )
        return _ConflictsOnce(progress, self)

    def conflict(self, outcome: Outcome) -> None:
        """Say once that an image's file was changed by hand and is kept."""
        image = outcome.action.image
        if image in self._conflicts_said:
            return
        self._conflicts_said.add(image)
        path, reason = outcome.action.output, outcome.action.reason
        if isinstance(outcome.error, ChangedMeanwhileError):  # the plan did not see it
            path, reason = outcome.error.path, "changed by hand while the round ran"
        # accept waits for the project lock watch holds
        accept = (
            f"; or stop watch and keep it as the output: nebula-build accept "
            f"{escaped(shell_operands(image))}"
            if image in self._acceptable
            else ""
        )
        self._say(
            self.style("conflict: ", "magenta", "bold")
            + f"{image}: {escaped_value(str(path))}: {escaped(reason)}: kept, not "
            "overwritten; delete it to have it made again, or restart watch with --force "
            f"to replace it (a copy goes to .nebula-build/backup/){accept}"
        )

    def file_conflict(self, outcome: FileOutcome) -> None:
        """Say once that a file made from the images was changed by hand and is kept."""
        label = outcome.action.label
        if label in self._file_conflicts_said:
            return
        self._file_conflicts_said.add(label)
        self._say(
            self.style("conflict: ", "magenta", "bold")
            + f"{escaped_value(label)}: {escaped_value(outcome.action.output)}: changed by hand: "
            "kept, not overwritten; delete it to have it built again, or restart watch with "
            "--force to replace it (a copy goes to .nebula-build/backup/)"
        )

    def loaded(self, prepared: Prepared) -> None:
        """Watch the manifest, every input and data file it names (and each folder of
        posts, for a post added), and what backends ask for, from the moment the round
        has read them: an edit while it works starts the next one. After an edit
        resolved alone, only its images' files are added (one no image reads any more
        is still watched: a change to it starts a round with nothing to do)."""
        root = self.project.root
        only = prepared.changed_only
        self._loaded = prepared.loaded
        self._planning = only
        if only is None:
            self._recheck.clear()
        else:
            self._recheck -= only
        specs = prepared.specs
        names = specs.keys() if only is None else (n for n in only if n in specs)
        touched = [specs[name] for name in names]
        owners = prepared.loaded.owners if prepared.loaded else None
        if owners is not None:
            self._owners = dict(owners) if only is None else self._owners
        if owners is None or only is not None:
            if only is None:
                self._owners = {}
            self._owners.update((path, spec.name) for spec in touched for path in spec.paths)
        resolved = prepared.resolved
        derived = {path for atlas in resolved.atlases.values() for path in atlas.paths}
        derived |= {resolved.asset_manifest} if resolved.asset_manifest else set()
        self._derived = {path: self._derived.get(path) for path in derived}
        if only is None:
            self._output_folders = {(root / path).parent for path in self._owners}
        else:
            self._output_folders |= {(root / path).parent for s in touched for path in s.paths}
        self._output_folders |= {(root / path).parent for path in derived}
        inputs = {
            root / path: digest
            for spec in touched
            for path, digest in _read_inputs(spec)
            if path and digest and not digest.startswith("@")  # not another image's output
        }
        # as the round read them: no input is read again, and a save since is a change
        inputs |= {root / path: digest for path, digest in prepared.data_digests.items()}
        self._read.update(inputs)
        paths = set(inputs)
        paths |= {root / path for spec in touched if (path := spec.palette_file)}
        if only is not None:
            self._reading(paths - self._paths)
            self._paths |= paths
            return
        before, self._paths = self._paths, {self.project.manifest_path} | paths
        self._paths |= {root / path for path in prepared.resolved.data_files}
        walked = prepared.resolved.data_globs
        self._globs = {(root / folder, pattern) for folder, pattern, _ in walked}
        self._post_folders = {root / folder for folder in prepared.data_folders}
        self._listed = {root / folder: seen for folder, seen in prepared.data_folders.items()}
        for name, plugin in prepared.resolved.backends.items():
            self._paths |= set(plugin.watched_files(prepared.resolved.settings[name], root))
        self._read_now(self._paths - before - inputs.keys())
        self._as_read = {}
        self._reading(self._paths)

    def _watch_declared_data(self) -> None:
        """After a round that stopped before its images (a broken row, say), watch the
        data files the manifest names too, so that fixing one starts the next round."""
        from nebula_build.core.expand import ExpansionError
        from nebula_build.core.manifest import load
        from nebula_build.core.rowimages import sources_of

        try:
            declared = load(self.project.manifest_path).model.images.values()
        except NebulaBuildError:
            return  # the manifest itself is being edited: it is watched
        from nebula_build.state.datafiles import DataReader
        from nebula_build.state.guard import Guard

        root = self.project.root
        # one reader: the patterns of a list walk the same folders, each read once
        reader = DataReader(Guard(root, reserved=self.project.own_files))
        for decl in declared:
            try:
                found = sources_of(decl.rows) if decl.rows is not None else ()
            except ExpansionError:
                continue
            for source in found:
                if source.pattern is None:
                    self._reading({root / source.path} - self._paths)
                    # what the failed round read is not known: any save starts a round
                    self._read.pop(root / source.path, None)
                    self._paths.add(root / source.path)
                else:
                    self._globs.add((root / source.path, source.pattern))
                    # as far as it gets: a round that failed may have failed there
                    with contextlib.suppress(NebulaBuildError, OSError):
                        reader.matching(source.path, source.pattern)
        self._post_folders |= {root / walked for walked in reader.folders}

    def _read_now(self, paths: Collection[Path]) -> None:
        """Files watched from now on, which the round has just read: their contents."""
        self._read.update((path, _content(path)) for path in paths)

    def _started(self, applier: Applier) -> None:
        self._applier = applier

    def _round_ended(self) -> None:
        """Let go of the round's Applier; where watch is being stopped (Ctrl-C), keep
        what it cut off, to be said."""
        applier, self._applier = self._applier, None
        progress, self._progress = self._progress, None
        task = asyncio.current_task()
        stopping = task is not None and task.cancelling() > 0
        if stopping and progress is not None:
            self.stopped_with = (progress.done, progress.total)
        if applier is not None and stopping:
            self.cut_off = applier.unanswered()
        else:
            self._superseded_in_flight = {} if applier is None else applier.unanswered()

    def _summarise(self, report: Round, result: RoundResult) -> None:
        for outcome in result.applied.outcomes if result.applied else []:
            if outcome.ok:
                report.changed.append(outcome.image)
            elif _is_conflict(outcome):
                report.conflicts.append(outcome.image)
            elif isinstance(outcome.error, SupersededError):
                report.cancelled.append(outcome.image)
            elif outcome.counted:  # not a name kept back by another's failure (a rename)
                report.failed[outcome.image] = str(outcome.error)
        for file in result.files:
            if file.conflict:
                report.conflicts.append(file.action.label)
            elif not file.ok:
                report.failed[file.action.label] = file.error or "failed"
        report.picks_dropped = candidates.dropped_picks(result.plan.changes)
        parts = [done_text(result)]
        if report.cancelled:
            parts.append(f"{len(report.cancelled)} superseded")
        if report.conflicts:
            parts.append(self.style(f"{len(report.conflicts)} in conflict", "magenta"))
        if report.failed:
            parts.append(self.style(failed_text(result, report.failed), "red"))
        self._say(
            self.style(f"round {report.number}: ", "bold")
            + ", ".join(parts)
            + f" in {report.elapsed:.2f}s"
            + self._maybe_billed(report.cancelled)
        )
        for image, note in report.picks_dropped.items():  # plan notes it under the image
            self._say(
                self.style(f"round {report.number}: ", "bold")
                + self.style(f"note: {printable(image)}: {printable(note)}", "yellow")
            )
        self._say_backups(report, result)

    def _maybe_billed(self, superseded: Collection[str]) -> str:
        """What the round's line adds about the requests to a paid backend that a newer
        edit cut off in flight: their answers are lost, but they may have been billed."""
        cut_off = {
            image: backend
            for image, backend in self._superseded_in_flight.items()
            if image in superseded
        }
        paid = {backend for backend in cut_off.values() if self.registry.get(backend).paid}
        return maybe_billed(cut_off, paid)

    def _say_backups(self, report: Round, result: RoundResult) -> None:
        """Where the round copied the files it replaced (as apply says it)."""
        if (backed_up := backups_line(result.prepared)) is not None:
            self._say(self.style(f"round {report.number}: ", "bold") + backed_up)

    def _publish(self, report: Round) -> Round:
        self._said_read = dict(self._read)
        self._said_load = self._loaded
        if self.on_round is not None:
            self.on_round(report)
        return report


def _changed_meanwhile(result: RoundResult) -> set[str]:
    """The images a round kept because their file changed by hand after its plan."""
    failures = result.applied.failures if result.applied is not None else {}
    return {name for name, error in failures.items() if isinstance(error, ChangedMeanwhileError)}


def _is_conflict(outcome: Outcome) -> bool:
    """A file changed by hand, whether the plan saw it or the write found it."""
    return outcome.action.kind is ActionKind.CONFLICT or isinstance(
        outcome.error, ChangedMeanwhileError
    )


class _ConflictsOnce:
    """The round's progress, where a file changed by hand is the watcher's to say
    (once, not as a failure every round that plans it)."""

    def __init__(self, progress: Progress, watcher: Watcher) -> None:
        self._progress = progress
        self._watcher = watcher

    def started(self, action: Action) -> None:
        self._progress.started(action)

    def step(self, image: str, done: int, total: int) -> None:
        self._progress.step(image, done, total)

    def activity(self, image: str, text: str) -> None:
        self._progress.activity(image, text)

    def finished(self, outcome: Outcome) -> None:
        if outcome.ok or not _is_conflict(outcome):
            self._progress.finished(outcome)
            return
        self._progress.done += 1
        self._watcher.conflict(outcome)

    def built(self, outcome: FileOutcome) -> None:
        if outcome.conflict:
            self._watcher.file_conflict(outcome)
        else:
            self._progress.built(outcome)

    def close(self) -> None:
        self._progress.close()


class _NotLoaded:
    """A round that has not loaded the manifest (yet)."""


_NOT_LOADED = _NotLoaded()


def _base(image: str) -> str:
    """The image a plan's action is about (`hero#2`, a candidate draw: `hero`)."""
    return image.partition("#")[0]


def _declared_keys(
    specs: Mapping[str, AssetSpec], actions: Iterable[Action]
) -> dict[str, str | None]:
    """The generation key the manifest declares for each image the actions are about
    (None where it declares none: a deletion)."""
    declared = {}
    for action in actions:
        spec = specs.get(_base(action.image))
        declared[_base(action.image)] = None if spec is None else spec.generation_key
    return declared


def _whole(prepared: Prepared) -> Prepared:
    """`prepared` planned whole (the gallery shows every image)."""
    if prepared.changed_only is None:
        return prepared
    return dataclasses.replace(prepared, changed_only=None)


async def _changed(dirty: asyncio.Event, consumer: asyncio.Task[None] | None) -> None:
    """Wait for the next change; UserError when watching the files failed (a round
    would never come again)."""
    if dirty.is_set():  # no wait: the round starts before the watch arms its folders
        return
    if consumer is None or consumer.done():
        if consumer is not None and not consumer.cancelled() and consumer.exception():
            raise UserError(f"watch stopped: cannot watch the files: {consumer.exception()}")
        await dirty.wait()
        return
    waiting = asyncio.ensure_future(dirty.wait())
    try:
        await asyncio.wait({waiting, consumer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if not dirty.is_set():
        await _changed(dirty, consumer)


async def filesystem_changes(
    watcher: Watcher, *, step_ms: int = 30, debounce_ms: int = 400
) -> Changes:
    """Saves to the watched files, as watchfiles reports them.

    Folders are watched (editors save by writing a temp file and renaming it), and
    events are kept only for the watched paths and the images' own files, which
    never start a round (`Watcher.written_by`). A burst of events within `step_ms`
    of each other is one change set. The folders are re-read when the manifest adds
    an input elsewhere or a round writes into a new folder (checked every second);
    the images' files missing from a newly watched folder once no round runs count
    as deleted (the next round plans them again).
    """
    import watchfiles

    def folders_of(watcher: Watcher) -> set[Path]:
        paths = watcher.watched_paths()
        return {path.parent for path in paths} | watcher.post_folders()

    def armed(watcher: Watcher) -> set[Path]:
        """The folders to watch: an output folder not made yet through its parent."""
        return {_existing(folder) for folder in folders_of(watcher)} | {
            _existing(folder) for folder in watcher.output_folders()
        }

    appeared: set[Path] = set()
    #: whether saves may have gone unheard (no watch armed) since the files were read
    look_again = True
    #: output folders watched since the last look for files deleted before they were
    unseen: set[Path] = set()
    folders: set[Path] = set()
    polling = False  # the system's limit on watches was reached: ask by polling
    while True:
        if appeared:  # what was saved in a new folder before it was watched: one more round
            yield appeared
        wished = folders_of(watcher)
        # a folder not made yet (`rows = "nodir/x.csv"`): its nearest existing parent
        # is watched for the folder's creation, which re-arms the watch (one the
        # images write into is re-armed without a round, by the check every second)
        missing = {folder for folder in wished if not folder.is_dir()}
        on_the_way = {parent for folder in missing for parent in (folder, *folder.parents)}
        before, folders = folders, armed(watcher)
        unseen |= (folders - before) & watcher.output_folders()
        # a folder of outputs renamed or removed whole: no event named its files
        unseen |= {folder for folder in before & watcher.output_folders() if not folder.is_dir()}
        # folders of posts watched from now on (a subfolder made since): once they are
        # armed, one more round reads what was saved in them before
        fresh = (folders - before) & watcher.post_folders() if before else set()
        identities = {folder: _identity(folder) for folder in folders}

        def wanted(
            _change: watchfiles.Change, path: str, on_the_way: set[Path] = on_the_way
        ) -> bool:
            changed = Path(path)
            return (
                changed in on_the_way
                or watcher.wants(changed)
                or watcher.written_by(changed) is not None
                or watcher.made_from_images(changed)
            )

        try:
            async for batch in watchfiles.awatch(
                *folders,
                watch_filter=wanted,
                recursive=False,
                step=step_ms,
                debounce=debounce_ms,
                rust_timeout=1000,
                yield_on_timeout=True,  # a round may have added folders of outputs: re-arm
                force_polling=True if polling else None,
            ):
                heard = {Path(path) for _, path in batch} | fresh
                if look_again:  # armed now: what was saved before it was
                    heard |= watcher.unheard()
                look_again, fresh = False, set()
                if heard:
                    yield heard
                if unseen and not watcher.working():  # deleted before its folder was watched
                    deleted, unseen = watcher.missing_outputs(unseen), set()
                    if deleted:
                        yield deleted
                appeared = {folder for folder in missing if folder.is_dir()}
                # a folder replaced under its watch (renamed away and made anew, a mount
                # point unmounted): the watch follows the one that went
                replaced = {f for f, identity in identities.items() if _identity(f) != identity}
                unseen |= replaced & watcher.output_folders()
                if replaced - watcher.output_folders():
                    yield replaced - watcher.output_folders()
                if (
                    folders_of(watcher) != wished
                    or appeared
                    or replaced
                    or armed(watcher) != folders
                ):
                    look_again = True
                    break  # start again with the new set of folders
        except OSError as exc:
            if polling or "watch limit" not in str(exc):
                raise
            polling = True  # the same folders, armed again and polled
            watcher.notice(
                f"the system's limit on watched folders is reached ({len(folders_of(watcher))} "
                "wanted here): watching by polling instead, a little slower; raise "
                "fs.inotify.max_user_watches for events again"
            )


def _wanted_by(path: Path, folder: Path, pattern: str) -> bool:
    """Whether `path`, changed in a folder the pattern walked, is a post it matches
    (one removed, or a file: a link is never read, as Emacs's lock `.#post.md` is
    not) or a folder (not a link) it would walk."""
    try:
        relative = path.relative_to(folder).parts
        parts = globs.checked_parts(pattern)
    except (ValueError, globs.GlobError):
        return False
    if globs.matches(parts, relative):
        return not path.is_symlink()
    return globs.may_hold(parts, relative) and path.is_dir() and not path.is_symlink()


#: what a stat says of a file: (inode, size, modified ns)
_Stat = tuple[int, int, int]


def _stat(path: Path) -> _Stat | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def _read_inputs(spec: AssetSpec) -> tuple[tuple[str | None, str | None], ...]:
    """Each file an image reads as its input (image, mask, palette), with the digest
    of the bytes its spec was resolved from."""
    digest = dict(spec.sprite).get("palette_digest")
    palette = (spec.palette_file, digest if isinstance(digest, str) else None)
    return (spec.image, spec.image_digest), (spec.mask, spec.mask_digest), palette


def _content(path: Path) -> str | None:
    """What the file at `path` holds: the sha256 of its bytes, or its stat where it is
    larger than `HASH_LIMIT`; None where there is none to read."""
    try:  # never blocked by a FIFO, nor read from one
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            found = os.fstat(file.fileno())
            if found.st_size > HASH_LIMIT or not stat.S_ISREG(found.st_mode):
                return f"stat {found.st_mode} {found.st_ino} {found.st_size} {found.st_mtime_ns}"
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


def _identity(folder: Path) -> tuple[int, int] | None:
    """Which folder is at `folder` now (None: none is)."""
    try:
        found = folder.stat()
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


def _existing(folder: Path) -> Path:
    """`folder`, or its nearest parent that exists."""
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    return folder
