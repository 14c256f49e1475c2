"""`nebula-build accept NAME…`: make the file at an image's output, edited by hand, the
output images.lock records, so that plan calls it up to date.

Only images.lock is written: nothing is generated and no image file is touched. The
entry keeps the digest of the file nebula-build wrote, which the edit replaced
(`LockEntry.edited_from`): apply then copies the edit to `.nebula-build/backup/`
before it ever replaces it (the image's spec changed, `--replace`), and never removes
it (the image no longer declared). An edit is accepted only where the manifest still
declares what the lock records: an edit of an older spec's image would be recorded as
the new one's.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from nebula_build.core.plan import HAND_EDIT, Action, ActionKind
from nebula_build.engine.lockmerge import settled
from nebula_build.engine.planning import named, plan_for
from nebula_build.engine.prepare import Notice, Prepared, prepare, recovered_lock
from nebula_build.errors import UnsafePathError, UserError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import MAX_BYTES, ImageError, verify_image
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state import lockfile
from nebula_build.state.lockfile import Entries, LockEntry
from nebula_build.state.project import Project
from nebula_build.text import printable

__all__ = ["Accepted", "accept_edits"]


@dataclass(frozen=True)
class Accepted:
    """An image whose output file is now the one the lock records."""

    name: str
    output: str
    #: the lock recorded an accepted edit of it before (this one replaces it)
    again: bool


def accept_edits(
    project: Project,
    registry: BackendRegistry,
    names: Collection[str],
    *,
    notice: Notice,
) -> list[Accepted]:
    """Record the hand-edited output of each image `names` selects (every image whose
    output was changed by hand where `names` is empty) in images.lock; raises UserError,
    writing nothing, where one of them cannot be accepted. Call it holding the project
    lock."""
    lock = recovered_lock(project, notice)
    prepared = prepare(project, registry)
    lock, merge = settled(prepared, lock, notice)
    if merge is not None:
        raise UserError(
            f"accept: {project.lock_path.name} still has a merge's conflict markers: "
            "run `nebula-build apply` first, which settles them"
        )
    actions = {action.image: action for action in plan_for(prepared, lock).actions}
    chosen = (
        sorted(named(prepared, lock, "accept", names))
        if names
        else [name for name, action in actions.items() if _hand_edit(action)]
    )
    if not chosen:
        raise UserError("accept: no output file is changed by hand: nothing to accept")
    accepted: dict[str, LockEntry] = {}
    for name in chosen:
        entry = _accepted_entry(prepared, lock, actions.get(name), name)
        accepted[name] = entry
    lockfile.write(project, {**lock, **accepted})
    return [
        Accepted(name, entry.output, lock[name].edited_from is not None)
        for name, entry in accepted.items()
    ]


def _hand_edit(action: Action) -> bool:
    return action.kind is ActionKind.CONFLICT and action.reason == HAND_EDIT


def _accepted_entry(
    prepared: Prepared, lock: Entries, action: Action | None, name: str
) -> LockEntry:
    """The lock entry that records the file at the output of `name` as it is now."""
    # the action's spec: the draw picked, or the generation pinned, not draw 0 of the
    # declaration
    spec = action.spec if action is not None else None
    entry = lock.get(name)
    manifest = prepared.project.display_manifest
    if spec is None or action is None:
        raise UserError(f"accept: images.{name} is no longer in {manifest}: nothing to accept")
    if entry is None:
        raise UserError(
            f"accept: images.{name} has not been generated yet, so no file of it was edited: "
            "run `nebula-build apply`"
        )
    output = printable(spec.output, limit=200)
    if action.kind is ActionKind.NOOP:
        raise UserError(
            f"accept: images.{name}: {output} is what images.lock records: nothing to accept"
        )
    if entry.generation_key != spec.generation_key or entry.output_key != spec.output_key:
        raise UserError(
            f"accept: images.{name}: {manifest} changed since its last apply "
            f"(`nebula-build plan` says what), and an edit is accepted only as the output "
            f"of what the lock records: move {output} elsewhere, apply, then edit the new one"
        )
    if spec.variants:
        raise UserError(
            f"accept: images.{name} has responsive variants, made from the generated "
            "image: an edit of its output would leave them showing the old one"
        )
    if not _hand_edit(action):
        raise UserError(
            f"accept: images.{name}: {action.reason}; accept takes an output file changed "
            "by hand, and nothing else"
        )
    data = _read(prepared, spec.output, name)
    try:
        found, _ = verify_image(data)
    except ImageError as exc:
        raise UserError(f"accept: images.{name}: {output}: {exc}") from None
    if found != spec.format:
        raise UserError(
            f"accept: images.{name}: {output} holds a {found.upper()} image, not the "
            f"{spec.format.upper()} its name asks for: save it as {spec.format.upper()}"
        )
    digest = sha256_bytes(data)
    # the file nebula-build wrote stays the one an accepted edit is an edit of
    return replace(entry, digest=digest, edited_from=entry.edited_from or entry.digest)


def _read(prepared: Prepared, path: str, name: str) -> bytes:
    try:
        return prepared.guard.read(path, what="output", limit=MAX_BYTES)
    except FileNotFoundError:
        raise UserError(f"accept: images.{name}: {printable(path)} is missing") from None
    except (OSError, UnsafePathError) as exc:
        raise UserError(f"accept: images.{name}: {printable(path)}: {exc}") from None
