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

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from nebula_build.core.handedits import output_size, takers_of, why_not_accepted
from nebula_build.core.plan import HAND_EDIT, Action, ActionKind
from nebula_build.core.spec import AssetSpec
from nebula_build.engine.lockmerge import settled
from nebula_build.engine.planning import named, plan_for
from nebula_build.engine.prepare import Notice, Prepared, prepare, recovered_lock
from nebula_build.errors import OutputRejectedError, UnsafePathError, UserError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import MAX_BYTES, ImageError, decode, verify_image
from nebula_build.outputs import checks as acceptance
from nebula_build.outputs.metadata import recorded_output_key
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
    again: bool = False
    #: the file is already the one the lock records: nothing was written for it
    already: bool = False
    #: the atlases that pack it, which the next apply builds again with the edit
    atlases: tuple[str, ...] = ()


def accept_edits(
    project: Project,
    registry: BackendRegistry,
    names: Collection[str],
    *,
    notice: Notice,
) -> list[Accepted]:
    """Record the hand-edited output of each image `names` selects in images.lock;
    raises UserError, writing nothing, where one of them cannot be accepted (saying
    each). An image whose file is already the one the lock records is `already`
    accepted: accepting twice is no error. Where `names` is empty, every output
    changed by hand that can be is accepted, and each other one is said; none at all
    is nothing to do. Call it holding the project lock."""
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
    takers = takers_of(prepared.specs.values())
    said: list[Accepted] = []
    accepted: dict[str, LockEntry] = {}
    refused: list[UserError] = []
    for name in chosen:
        action = actions.get(name)
        if action is not None and action.kind is ActionKind.NOOP and action.entry is not None:
            said.append(Accepted(name, action.entry.output, already=True))
            continue
        try:
            entry = _accepted_entry(prepared, lock, action, name, takers)
        except UserError as exc:
            refused.append(exc)
            continue
        accepted[name] = entry
        again = lock[name].edited_from is not None
        packed = tuple(a.name for a in prepared.resolved.atlases.values() if name in a.members)
        said.append(Accepted(name, entry.output, again=again, atlases=packed))
    if refused and (names or not accepted):  # named: all or nothing, every reason said
        raise UserError("\n".join(str(exc) for exc in refused))
    for refusal in refused:  # --all: the others are accepted
        notice(f"{refusal}; left in conflict")
    if accepted:
        lockfile.write(project, {**lock, **accepted})
    return said


def _hand_edit(action: Action) -> bool:
    return action.kind is ActionKind.CONFLICT and action.reason == HAND_EDIT


def _accepted_entry(
    prepared: Prepared,
    lock: Entries,
    action: Action | None,
    name: str,
    takers: Mapping[str, Collection[str]],
) -> LockEntry:
    """The lock entry that records the file at the output of `name` as it is now
    (`takers`: the images that take each as input, `takers_of`)."""
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
    if entry.generation_key != spec.generation_key or entry.output_key != spec.output_key:
        raise UserError(
            f"accept: images.{name}: {manifest} changed since its last apply "
            f"(`nebula-build plan` says what), and an edit is accepted only as the output "
            f"of what the lock records: move {output} elsewhere, apply, then edit the new one"
        )
    if (why := why_not_accepted(spec, takers)) is not None:
        raise UserError(f"accept: images.{name} {why}")
    path = prepared.project.path_of(spec.output)
    if path.is_symlink():
        raise UserError(f"accept: images.{name}: {output} is a symbolic link: accept takes a file")
    if path.exists() and not path.is_file():
        raise UserError(
            f"accept: images.{name}: {output} is not a regular file: accept takes an image "
            "file an editor saved"
        )
    if not _hand_edit(action):
        raise UserError(
            f"accept: images.{name}: {action.reason}; accept takes an output file changed "
            "by hand, and nothing else"
        )
    data = _read(prepared, spec.output, name)
    _check(spec, data, f"accept: images.{name}: {output}")
    digest = sha256_bytes(data)
    # the file nebula-build wrote stays the one an accepted edit is an edit of
    return replace(entry, digest=digest, edited_from=entry.edited_from or entry.digest)


def _check(spec: AssetSpec, data: bytes, where: str) -> None:
    """The edit is an image of the output's format and size that passes its checks,
    as a generated one must."""
    try:
        found, size = verify_image(data)
    except ImageError as exc:
        raise UserError(f"{where}: {exc}") from None
    if found != spec.format:
        raise UserError(
            f"{where} holds a {found.upper()} image, not the {spec.format.upper()} its name "
            f"asks for: save it as {spec.format.upper()}"
        )
    wanted = output_size(spec)
    if size != wanted:
        raise UserError(
            f"{where} is {size[0]}×{size[1]}, and the image's output is {wanted[0]}×"
            f"{wanted[1]}: an edit keeps the size"
        )
    if (key := recorded_output_key(data)) is not None and key != spec.output_key:
        raise UserError(
            f"{where} carries the record of a file nebula-build made for another output: "
            "accept takes an edit of this image's own"
        )
    if spec.checks:
        try:
            acceptance.run(dict(spec.checks), data, decode(data))
        except OutputRejectedError as exc:
            raise UserError(f"{where}: {exc}") from None


def _read(prepared: Prepared, path: str, name: str) -> bytes:
    try:
        return prepared.guard.read(path, what="output", limit=MAX_BYTES)
    except FileNotFoundError:
        raise UserError(f"accept: images.{name}: {printable(path)} is missing") from None
    except (OSError, UnsafePathError) as exc:
        raise UserError(f"accept: images.{name}: {printable(path)}: {exc}") from None
