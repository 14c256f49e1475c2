"""A lock that a git merge (or rebase, or pull) left conflict markers in: each image
both sides record differently gets one side's entry, and the commands say so.

`state.lockfile` reads both sides, each checked as a whole lock, and takes their
union. Where both sides record an image differently, the entry kept is the one whose
output holds the digest it records (git leaves "ours" of a binary file in the working
tree); where neither or both do, the one whose keys are the manifest's now, then the
one naming the output the manifest declares, else "ours". Whichever is kept, the
plan shows what apply does with it: an entry never makes apply touch a file the plan
does not name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nebula_build.core.spec import AssetSpec
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import UserError
from nebula_build.state import lockfile
from nebula_build.state.lockfile import Entries, LockEntry


@dataclass(frozen=True)
class LockMerge:
    """What the two sides of a conflicted lock held."""

    lock: str
    ours: int
    theirs: int
    #: the images both sides recorded differently
    contested: tuple[str, ...]

    def line(self, *, written: bool) -> str:
        counts = f"read both sides ({self.ours} + {self.theirs} entries)"
        if written:
            return (
                f"{self.lock} had merge conflicts: {counts} and wrote it resolved; "
                f"git add {self.lock} to finish the merge"
            )
        return (
            f"{self.lock} had merge conflicts: {counts}; apply writes it resolved, "
            f"then git add {self.lock}"
        )


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
    for name, sides in merged.contested.items():
        if resolved.get(name) in sides:  # else a journal recorded it since
            resolved[name] = _chosen(prepared, prepared.specs.get(name), sides)
    note = LockMerge(project.lock_path.name, merged.ours, merged.theirs, tuple(merged.contested))
    if write:
        lockfile.write(project, resolved)
        project.journal_path.unlink(missing_ok=True)  # a killed apply's: folded in above
    notice(note.line(written=write))
    return resolved, note


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
        raise UserError(
            f"{command}: {name} has merge conflicts; run `nebula-build apply` to write it "
            f"resolved (then git add {name}), then {command} again"
        )
