"""A lock that a git merge (or rebase, or pull) left conflict markers in: each image
both sides record differently gets one side's entry, and the commands say so.

`state.lockfile` reads both sides, each checked as a whole lock, and takes their
union. Where both sides record an image differently, the entry kept is the one whose
output holds the digest it records (git leaves "ours" of a binary file in the working
tree); where neither or both do, the one whose keys are the manifest's now, then the
one naming the output the manifest declares, else "ours". Whichever is kept, the
plan shows what apply does with it: an entry never makes apply touch a file the plan
does not name. The side not kept loses nothing: its output joins the kept entry's
history (or, a draw of the same set, stays one of its draws), and where it was a pick
or a generation the plan does not bring back, the commands say which image lost it
and the `pick` that brings it back.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nebula_build.core.spec import AssetSpec
from nebula_build.engine import candidates
from nebula_build.engine.history import history_after
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import UserError
from nebula_build.state import gitstate, lockfile
from nebula_build.state.cache import Store
from nebula_build.state.lockfile import MAX_HISTORY, DrawRecord, Entries, LockEntry
from nebula_build.text import printable, shell_operands

SIDES = ("ours", "theirs")


@dataclass(frozen=True)
class Dropped:
    """An image's output that the side of the merge not kept had made it."""

    image: str
    #: "ours" or "theirs"
    side: str
    #: what each side's output was ("draw 1", "output 1b3645b6b871"): kept, dropped
    kept: str
    dropped: str
    #: the command that makes it the output again
    command: str

    def line(self, lock: str) -> str:
        other = SIDES[1 - SIDES.index(self.side)]
        return (
            f"{lock}: {printable(self.image)}: the merge kept {other} ({self.kept}), not "
            f"{self.side} ({self.dropped}): `{self.command}` brings {self.side} back"
        )


@dataclass(frozen=True)
class LockMerge:
    """What the two sides of a conflicted lock held."""

    lock: str
    ours: int
    theirs: int
    #: the images both sides recorded differently
    contested: tuple[str, ...]
    #: the outputs of the side not kept that the plan does not bring back
    dropped: tuple[Dropped, ...] = ()
    #: what is left to do once the lock is written resolved, as apply says it
    #: (`next_step`) and as the commands before apply do (`to_do`); "" outside git
    then: str = ""
    todo: str = ""

    def lines(self, *, written: bool) -> list[str]:
        """The note on the merge, then one per output dropped."""
        return [self.line(written=written), *(one.line(self.lock) for one in self.dropped)]

    def line(self, *, written: bool) -> str:
        counts = f"read both sides ({self.ours} + {self.theirs} entries)"
        if written:
            then = f"; {self.then}" if self.then else ""
            return f"{self.lock} had merge conflicts: {counts} and wrote it resolved{then}"
        then = f", then {self.todo}" if self.todo else ""
        return f"{self.lock} has git's conflict markers: {counts}; apply writes it resolved{then}"


def settled(
    prepared: Prepared,
    lock: Entries,
    notice: Callable[[str], None],
    *,
    write: bool = False,
) -> tuple[Entries, LockMerge | None]:
    """The lock with each image both sides of a merge conflict record differently
    settled (see the module), and what the merge held; None where the lock has no
    conflict markers. With `write` (apply, holding the project lock), the lock is
    written resolved and a killed apply's journal, folded into `lock`, emptied."""
    project = prepared.project
    merged = lockfile.merged(project)
    if merged is None:
        return lock, None
    resolved = dict(lock)
    others: dict[str, tuple[str, LockEntry]] = {}
    for name, sides in merged.contested.items():
        if resolved.get(name) in sides:  # else a journal recorded it since
            kept = _chosen(prepared, prepared.specs.get(name), sides)
            side = 1 if kept is sides[0] else 0
            resolved[name] = _joined(kept, sides[side], prepared.store)
            others[name] = (SIDES[side], sides[side])
    dropped = _dropped(prepared, resolved, others)
    lock_name = project.lock_path.name
    git, under_way = _git_state(project.root)
    unmerged = (gitstate.unmerged(project.root) or []) if under_way is not None else []
    marked: list[str] = []
    if unmerged:
        ours = _ours(prepared)
        marked = [p for p in unmerged if p not in ours and _has_markers(project.root / p)]
        unmerged = [path for path in unmerged if path not in marked]
    add = _to_add(lock_name, unmerged, marked) if under_way is not None else lock_name
    if not write:  # before apply, which would generate it
        for line in _in_git(prepared, resolved, others, unmerged):
            notice(f"{lock_name}: {line}")
    note = LockMerge(
        lock_name,
        merged.ours,
        merged.theirs,
        tuple(merged.contested),
        dropped,
        then=next_step(git, under_way, add),
        todo=to_do(git, under_way, add),
    )
    if write:
        lockfile.write(project, resolved)
        project.journal_path.unlink(missing_ok=True)  # a killed apply's: folded in above
    for line in note.lines(written=write):
        notice(line)
    return resolved, note


def _git_state(root: Path) -> tuple[Path | None, str | None]:
    """The git folder of the checkout holding `root` (None outside one) and what is
    under way in it (`gitstate.under_way`)."""
    git = gitstate.git_folder(root)
    return git, None if git is None else gitstate.under_way(git)


#: the unmerged files a note names, past which it says how many more
_NAMED = 8


def _ours(prepared: Prepared) -> set[str]:
    """The files of the project the manifest declares: the manifest and its lock, the
    images' outputs, the atlases' and the asset manifest, which apply leaves resolved
    (or which hold markers apply is left to resolve)."""
    project, resolved = prepared.project, prepared.resolved
    files = {project.manifest_path.name, project.lock_path.name}
    files.update(path for spec in prepared.specs.values() for path in spec.paths)
    files.update(path for atlas in resolved.atlases.values() for path in atlas.paths)
    if resolved.asset_manifest is not None:
        files.add(resolved.asset_manifest)
    return files


#: a line git's conflict markers begin or end a conflict with
_MARKER = re.compile(rb"^(<{7}|>{7})(?: |$)", re.MULTILINE)
#: a file larger than this is not read for conflict markers (it is taken to hold none)
_MARKED_LIMIT = 32 << 20


def _has_markers(path: Path) -> bool:
    """Whether a file git left unmerged still holds its conflict markers (a file of the
    project's own the user has yet to resolve: not for the note's `git add`). A file
    apply removed, or one unreadable, holds none."""
    try:
        with path.open("rb") as handle:
            return _MARKER.search(handle.read(_MARKED_LIMIT)) is not None
    except OSError:
        return False


def _to_add(lock: str, unmerged: Sequence[str], marked: Sequence[str] = ()) -> str:
    """What `git add` settles: the lock and the files of the project git marks
    `unmerged` (an output both sides made, the asset manifest, an atlas apply removed),
    which apply has written or left as the merge made them; the lock alone where the
    index cannot be read. `marked`: those still holding conflict markers, named apart."""
    others = [path for path in unmerged if path != lock]
    named = shell_operands(lock, *others[:_NAMED])
    if len(others) > _NAMED:
        named += f" (and {len(others) - _NAMED} more unmerged files: git status lists them)"
    if marked:
        files = ", ".join(shell_operands(path) for path in marked[:3])
        files += ", …" if len(marked) > 3 else ""
        has, it = ("has", "it") if len(marked) == 1 else ("have", "them")
        named += f" ({files} still {has} conflict markers: resolve and add {it} too)"
    return named


def next_step(git: Path | None, under_way: str | None, lock: str) -> str:
    """What to do with the `lock` apply wrote resolved: `git add` it where a merge
    (rebase, cherry-pick, revert) is `under_way` in the checkout whose git folder is
    `git`; commit it where none is (a runner checked out a commit that holds the
    markers); nothing outside a git checkout."""
    if git is None:
        return ""
    if under_way == "merge":
        return f"git add {lock} to finish the merge"
    if under_way is not None:
        return f"git add {lock}, then git {under_way} --continue"
    return f"no merge is under way, so they were committed: commit {lock}"


def to_do(git: Path | None, under_way: str | None, lock: str) -> str:
    """`next_step` as the commands before apply say it, after "then"."""
    if git is None:
        return ""
    if under_way == "merge":
        return f"git add {lock}"
    if under_way is not None:
        return f"git add {lock} and git {under_way} --continue"
    return f"commit {lock} (no merge is under way: the markers were committed)"


def _joined(kept: LockEntry, other: LockEntry, store: Store) -> LockEntry:
    """`kept` with what `other` (the side not kept) made: its output first in the
    history, then its history after kept's own; the draws of their set, where both
    are draws of one set, as many as either made."""
    history = history_after(other, kept.generation_key, store)
    first = 1 if history and history[0].generation_key == other.generation_key else 0
    joined = [*history[:first], *kept.history, *history[first:]]
    seen: set[str] = {kept.generation_key}
    unique = []
    for earlier in joined:
        if earlier.generation_key not in seen:
            seen.add(earlier.generation_key)
            unique.append(earlier)
    return replace(
        kept, history=tuple(unique[:MAX_HISTORY]), draws=_more_draws(kept.draws, other.draws)
    )


def _more_draws(
    kept: tuple[DrawRecord, ...], other: tuple[DrawRecord, ...]
) -> tuple[DrawRecord, ...]:
    """The longer of two records of one set's draws (one side ran `--more`)."""
    shorter, longer = sorted((kept, other), key=len)
    return longer if shorter and longer[: len(shorter)] == shorter else kept


def _dropped(
    prepared: Prepared, resolved: Entries, others: Mapping[str, tuple[str, LockEntry]]
) -> tuple[Dropped, ...]:
    """The outputs of the sides not kept that the plan does not make the output again,
    each with the `pick` that does."""
    names = [n for n, (_, e) in others.items() if e.generation_key != resolved[n].generation_key]
    declared = [name for name in names if name in prepared.specs]
    if not declared:
        return ()
    chosen = candidates.picked(prepared.specs, resolved, only=declared)
    found = []
    for name in sorted(declared):
        side, entry = others[name]
        if chosen.specs[name].generation_key == entry.generation_key:
            continue  # the plan makes it the output: it says so
        command = _bringing_back(chosen.bases[name], resolved[name], entry.generation_key)
        if command is not None:
            found.append(Dropped(name, side, _output(resolved[name]), _output(entry), command))
    return tuple(found)


def _in_git(
    prepared: Prepared,
    resolved: Entries,
    others: Mapping[str, tuple[str, LockEntry]],
    unmerged: Sequence[str],
) -> list[str]:
    """The images the plan makes again that the side not kept made as the manifest now
    declares them, whose file git holds (unmerged: both sides changed it, and ours is
    in the working tree): `git checkout --SIDE` puts it back, where no cache can."""
    found = []
    for name, (side, entry) in sorted(others.items()):
        spec = prepared.specs.get(name)
        if spec is None or entry.output not in unmerged or entry.output != spec.output:
            continue
        same = (entry.generation_key, entry.output_key) == (spec.generation_key, spec.output_key)
        if not same or resolved[name].digest == entry.digest:
            continue
        if prepared.store.has_ours(spec.generation_key):
            continue  # restored from the cache: free as it is
        command = f"git checkout --{side} -- {shlex.quote(entry.output)}"
        found.append(
            f"{printable(name)}: git holds the file {side} made of the output the manifest "
            f"declares: `{command}` before apply, and it is not generated again"
        )
    return found


def _output(entry: LockEntry) -> str:
    """An entry's output as a person tells it from the other side's: its draw, or the
    start of its digest (as `history` shows it)."""
    draw = entry.params.get("draw")
    return f"draw {draw}" if type(draw) is int and entry.draws else f"output {entry.digest[:12]}"


def _bringing_back(base: AssetSpec, entry: LockEntry, key: str) -> str | None:
    """The `pick` that makes generation `key` the output of `base`'s image: a draw of
    the set the manifest declares, or an earlier generation, pinned (it was made
    from another spec)."""
    draw = next((i for i in range(base.candidates) if base.drawn(i).generation_key == key), None)
    if draw is not None:
        return f"nebula-build pick {shell_operands(base.name, draw)}"
    keys = [earlier.generation_key for earlier in entry.history]
    if key not in keys:
        return None
    return f"nebula-build pick --pin {shell_operands(base.name, f'@{keys.index(key) + 1}')}"


def _chosen(prepared: Prepared, spec: AssetSpec | None, sides: Sequence[LockEntry]) -> LockEntry:
    on_disk = [entry for entry in sides if _on_disk(prepared, entry)]
    pool = on_disk or list(sides)
    if spec is not None:
        tests: tuple[Callable[[LockEntry], bool], ...] = (
            lambda e: (e.generation_key, e.output_key) == (spec.generation_key, spec.output_key),
            lambda e: e.generation_key == spec.generation_key,
            lambda e: e.output == spec.output,
        )
        for fits in tests:
            if len(pool) > 1 and len(fitting := [e for e in pool if fits(e)]) == 1:
                pool = fitting
    return pool[0]


def _on_disk(prepared: Prepared, entry: LockEntry) -> bool:
    """Whether the entry's output holds the digest it records (reached by no link)."""
    folder = entry.output.rpartition("/")[0]
    if prepared.guard.real_folder(folder) != folder:
        return False
    return prepared.files.digest(entry.output) == entry.digest


def refuse_while_merged(prepared: Prepared, command: str) -> None:
    """Refuse `command` (gc) on a lock with merge conflicts: the side it does not keep
    for an image would lose its cache entry."""
    if lockfile.merged(prepared.project) is not None:
        name = prepared.project.lock_path.name
        todo = to_do(*_git_state(prepared.project.root), name)
        then = f" (then {todo})" if todo else ""
        raise UserError(
            f"{command}: {name} has merge conflicts; run `nebula-build apply` to write it "
            f"resolved{then}, then {command} again"
        )
