"""Picking: make another of an image's candidate draws its output, from the cache
(local or remote), for zero generations. `nebula-build pick` and the live gallery's
click both come here; the caller holds the project lock."""

from __future__ import annotations

from dataclasses import dataclass

from nebula_build.engine.candidates import picked, recorded_pick
from nebula_build.engine.prepare import Prepared, prepare, recovered_lock
from nebula_build.engine.remotecache import configured
from nebula_build.engine.round import RoundListener, RoundOptions, RoundResult, apply_round
from nebula_build.errors import UserError
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state.lockfile import Entries
from nebula_build.state.project import Project


@dataclass(frozen=True)
class Pick:
    """The draw chosen for an image, and the images that take its output."""

    name: str
    index: int
    count: int
    output: str
    takers: tuple[str, ...] = ()


def choose(
    prepared: Prepared, lock: Entries, name: str, *, index: int | None = None, step: int = 0
) -> Pick:
    """The draw `index` of image `name`, or the one `step` away from the picked one."""
    manifest = prepared.project.display_manifest
    spec = prepared.specs.get(name)
    if spec is None:
        raise UserError(f"{manifest}: no image named {name!r}")
    count = spec.candidates
    if count < 2:
        raise UserError(
            f"{manifest}: images.{name} has one draw: set `candidates = N` to "
            "have several to pick from"
        )
    base = picked(prepared.specs, lock).bases[name]  # its inputs' picks applied
    if step:
        index = ((recorded_pick(base, lock.get(name)) or 0) + step) % count
    elif index is None:
        raise UserError("pick: give the draw's INDEX, --next or --prev")
    if not 0 <= index < count:
        raise UserError(f"pick: images.{name} has draws 0 to {count - 1} (got {index})")
    takers = tuple(other for other, s in prepared.specs.items() if name in s.depends_on)
    return Pick(name, index, count, spec.output, takers)


async def pick_draw(
    project: Project,
    registry: BackendRegistry,
    name: str,
    *,
    listener: RoundListener,
    index: int | None = None,
    step: int = 0,
    offline: bool = False,
) -> tuple[Pick, RoundResult]:
    """Make draw `index` (or the one `step` away) of `name` its output; refused when
    the draw is in no cache here. The round is `locked`: a pick never pays, and a
    cache entry that fails its check is an error, not a generation."""
    lock = recovered_lock(project, listener.notice)
    prepared = prepare(project, registry)
    chosen = choose(prepared, lock, name, index=index, step=step)
    base = picked(prepared.specs, lock).bases[name]
    key = base.drawn(chosen.index).generation_key
    if not prepared.store.has_ours(key):
        remote = configured(prepared.resolved, offline=offline, notice=listener.notice)
        if not (remote and key in remote.lookup([key])):
            raise UserError(
                f"draw {chosen.index} of {name} is not in the cache here: `nebula-build apply` "
                "makes the candidates of an image it changes, `nebula-build cache pull` "
                "fetches them from a remote cache"
            )
    options = RoundOptions(
        targets=[name], picks={name: chosen.index}, draws=False, locked=True, offline=offline
    )
    return chosen, await apply_round(project, registry, options, listener=listener)
