"""Picking: make another of an image's candidate draws, or one of its earlier
generations, its output, from the cache (local or remote), for zero generations.
`nebula-build pick` and the live gallery's click both come here; the caller holds
the project lock."""

from __future__ import annotations

from dataclasses import dataclass, replace

from nebula_build.core.selection import not_one_image
from nebula_build.core.spec import AssetSpec
from nebula_build.engine.candidates import changed_since, differing, picked, recorded_pick
from nebula_build.engine.history import earlier_spec
from nebula_build.engine.lockmerge import settled
from nebula_build.engine.prepare import Prepared, prepare, recovered_lock
from nebula_build.engine.remotecache import configured
from nebula_build.engine.round import RoundListener, RoundOptions, RoundResult, apply_round
from nebula_build.errors import UserError
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state.lockfile import Entries
from nebula_build.state.project import Project
from nebula_build.state.remote import Remote
from nebula_build.text import shell_operands, shell_option


@dataclass(frozen=True)
class Pick:
    """What a pick makes the output of an image, and the images that take it."""

    name: str
    #: the draw, or None for an earlier generation or the end of a pin
    index: int | None
    count: int
    output: str
    takers: tuple[str, ...] = ()
    #: the earlier generation (`@K`), and whether it is pinned
    earlier: int | None = None
    pinned: bool = False

    @property
    def described(self) -> str:
        if self.earlier is not None:
            pinned = ", pinned" if self.pinned else ""
            return f"its earlier generation @{self.earlier} is the output{pinned}"
        if self.index is None:
            return "the pin is removed: the manifest's spec is the output"
        return f"draw {self.index} ({self.count} candidates) is the output"


def _base(prepared: Prepared, lock: Entries, name: str) -> AssetSpec:
    """The image's spec its draws are made from (its inputs' picks applied)."""
    if (why := not_one_image(name, prepared.specs, _parts(prepared))) is not None:
        raise UserError(f"{prepared.project.display_manifest}: {why}")
    return picked(prepared.specs, lock, on_disk=prepared.held_draw).bases[name]


def _picking(prepared: Prepared, name: str) -> str:
    """How an error of `pick` begins: the manifest, the command, the image."""
    return f"{prepared.project.display_manifest}: pick: images.{name}"


def _parts(prepared: Prepared) -> dict[str, tuple[str, ...]]:
    return {name: spec.parts for name, spec in prepared.specs.items()}


def choose(
    prepared: Prepared,
    lock: Entries,
    base: AssetSpec,
    *,
    index: int | None = None,
    step: int = 0,
) -> Pick:
    """The draw `index` of image `base`, or the one `step` away from the picked one."""
    name = base.name
    count = base.candidates
    if count < 2:
        raise UserError(
            f"{prepared.project.display_manifest}: images.{name} has one draw: set "
            f"`candidates = N` (or run `nebula-build apply {shell_option('--more', name)}`) "
            "to have several to pick from"
        )
    if step:
        index = (_picked_now(prepared, lock, base) + step) % count
    elif index is None:
        raise UserError("pick: give the draw's INDEX, --next or --prev")
    if not 0 <= index < count:
        raise UserError(f"{_picking(prepared, name)} has draws 0 to {count - 1} (got {index})")
    return Pick(name, index, count, base.output, _takers(prepared, name))


def _picked_now(prepared: Prepared, lock: Entries, base: AssetSpec) -> int:
    """The draw that is the output now: the lock's pick, else (a lost lock) the draw
    the image's file holds, else draw 0."""
    entry = lock.get(base.name)
    if entry is not None:
        return recorded_pick(base, entry) or 0
    return prepared.held_draw(base, base.candidates) or 0


def _takers(prepared: Prepared, name: str) -> tuple[str, ...]:
    return tuple(other for other, s in prepared.specs.items() if name in s.depends_on)


def choose_earlier(
    prepared: Prepared, lock: Entries, base: AssetSpec, earlier: int, *, pin: bool
) -> tuple[Pick, AssetSpec]:
    """Earlier generation `earlier` (1: the newest) of image `base` as the output:
    refused when the manifest now declares another spec, unless `pin`."""
    name = base.name
    entry = lock.get(name)
    history = entry.history if entry is not None else ()
    if not 1 <= earlier <= len(history):
        if not history:
            raise UserError(f"{_picking(prepared, name)} has no earlier generation yet")
        have = f"@1 to @{len(history)}" if len(history) > 1 else "@1 only"
        raise UserError(
            f"{_picking(prepared, name)} has no earlier generation @{earlier} (it has {have}: "
            f"`nebula-build history {shell_operands(name)}` lists them)"
        )
    spec = earlier_spec(base, history[earlier - 1])
    if spec is None:
        raise UserError(
            f"{_picking(prepared, name)} @{earlier} was recorded with parameters this version "
            "cannot remake its key from; it cannot be brought back"
        )
    fields = differing(base.generation_params(), spec.generation_params())
    if fields and not pin:
        manifest = prepared.project.display_manifest
        changed = changed_since(base, spec)
        verb = "differs" if len(changed) == 1 else "differ"
        raise UserError(
            f"{_picking(prepared, name)} @{earlier} was made from another spec "
            f"({', '.join(changed)} {verb} from {manifest}): edit {manifest} to match, or "
            "pass --pin to make it the output anyway (plan shows the pin)"
        )
    if fields:
        spec = replace(spec, pin=base.generation_key)
    chosen = Pick(name, None, 1, base.output, _takers(prepared, name), earlier, bool(fields))
    return chosen, spec


def _draw_of_the_set(lock: Entries, base: AssetSpec, earlier: int) -> int | None:
    """The draw of the image's current set that earlier generation `earlier` is, if any
    (draw 0 reads as None: it is the output when nothing is picked)."""
    entry = lock.get(base.name)
    if entry is None or not 1 <= earlier <= len(entry.history):
        return None
    key = entry.history[earlier - 1].generation_key
    return next((i for i in range(1, base.candidates) if base.drawn(i).generation_key == key), None)


async def pick_draw(
    project: Project,
    registry: BackendRegistry,
    name: str,
    *,
    listener: RoundListener,
    index: int | None = None,
    step: int = 0,
    earlier: int | None = None,
    pin: bool = False,
    unpin: bool = False,
    offline: bool = False,
    force: bool = False,
    shown: str | None = None,
) -> tuple[Pick, RoundResult]:
    """Make draw `index` (or the one `step` away, or the earlier generation `earlier`)
    of `name` its output, or end its pin (`unpin`); refused when what it needs is in no
    cache here, or when draw `index` is not the generation `shown` (a page showed the
    draws of a spec the manifest no longer declares). The round is `locked`: a pick
    never pays, and a cache entry that fails its check is an error, not a generation.
    `force`: an output changed by hand is replaced (backed up), as `apply --force` does."""
    lock = recovered_lock(project, listener.notice)
    prepared = prepare(project, registry)
    lock, _ = settled(prepared, lock, lambda message: None)  # the apply round says it
    options = RoundOptions(targets=[name], draws=False, locked=True, offline=offline, force=force)
    base = _base(prepared, lock, name)
    if unpin:
        entry = lock.get(name)
        if entry is None or entry.pin is None:
            raise UserError(f"{_picking(prepared, name)} is not pinned")
        chosen = Pick(name, None, 1, prepared.specs[name].output, _takers(prepared, name))
        options = replace(options, unpin={name})
        return chosen, await apply_round(project, registry, options, listener=listener)
    if earlier is not None and (draw := _draw_of_the_set(lock, base, earlier)):
        index, earlier = draw, None  # a draw of the set the manifest declares: a plain pick
    if earlier is not None:
        chosen, spec = choose_earlier(prepared, lock, base, earlier, pin=pin)
        options = replace(options, pins={name: spec})
        key = spec.generation_key
        what = f"{name} @{earlier}"
    else:
        chosen = choose(prepared, lock, base, index=index, step=step)
        assert chosen.index is not None
        options = replace(options, picks={name: chosen.index})
        key = base.drawn(chosen.index).generation_key
        what = f"draw {chosen.index} of {name}"
        if shown is not None and key != shown:
            raise UserError(
                f"{name}: the page showed draws of what {prepared.project.display_manifest} "
                "declared before it changed: pick again among the draws it shows now"
            )
    if not prepared.store.has_ours(key):
        remote = configured(prepared.resolved, offline=offline, notice=listener.notice)
        if not (remote and key in remote.lookup([key])):
            raise UserError(_not_here(what, _made_elsewhere(lock, name, key), remote))
    return chosen, await apply_round(project, registry, options, listener=listener)


def _made_elsewhere(lock: Entries, name: str, key: str) -> bool:
    """Whether the lock records generation `key` of image `name` as made: a draw of its
    set, or an earlier generation its history lists."""
    entry = lock.get(name)
    if entry is None:
        return False
    return any(draw.key == key for draw in entry.draws) or any(
        earlier.generation_key == key for earlier in entry.history
    )


def _not_here(what: str, made: bool, remote: Remote | None) -> str:
    """Why a pick cannot be made from any cache here, and what brings it."""
    if not made:
        return (
            f"{what} is not in the cache here: `nebula-build apply` makes the candidates "
            "of an image it changes, `nebula-build cache pull` fetches them from a remote cache"
        )
    if remote is None:
        return (
            f"{what} is not in the cache here: it was made in another checkout (the lock "
            "records it); name the team's shared cache (NEBULA_BUILD_CACHE_REMOTE, or "
            "[cache] remote in images.toml), then `nebula-build cache pull` fetches it"
        )
    return (
        f"{what} is not in the cache here, nor in the remote cache {remote.shown}: "
        "`nebula-build cache push` in the checkout that made it shares it"
    )
