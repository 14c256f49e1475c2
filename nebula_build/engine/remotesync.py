"""`nebula-build cache push | pull | status`: the whole project's generations moved
between the local cache and the remote one explicitly.

Push offers the generations of the manifest's images (each one's output, its pick
or its pin, every candidate draw, and the earlier generations its history lists, for
a teammate's `pick NAME @K`) that the local cache holds, if
this tool wrote them on this account, each verified as an image on the way out; pull
fetches what the manifest wants and the local cache lacks, each entry verified like
any restore.
Per-entry problems are collected, never raised: one bad entry stops no other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from nebula_build.core.spec import AssetSpec
from nebula_build.engine import candidates
from nebula_build.engine.history import earlier_spec
from nebula_build.engine.lockmerge import settled
from nebula_build.engine.prepare import Prepared
from nebula_build.engine.remotecache import new_record, restore_remote
from nebula_build.engine.remotesaid import remote_failure
from nebula_build.engine.verify import verify
from nebula_build.imaging import ImageError
from nebula_build.outputs.encode import encoding_for
from nebula_build.state.cache import CorruptEntryError
from nebula_build.state.lockfile import read_with_journal
from nebula_build.state.remote import CONCURRENCY, Remote, RemoteError
from nebula_build.text import made_by_stand_in

#: called with (entries done, entries in all) as a transfer goes
OnProgress = Callable[[int, int], None]


@dataclass
class Sync:
    """What a push or pull did."""

    #: entries moved
    moved: int = 0
    #: entries the other side had already
    present: int = 0
    #: (generation key, why) for each entry that could not be moved
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: (generation key, why) for each entry left alone on purpose
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: entries a stand-in for the API made, never pushed (`placeholders_stay_local`)
    placeholders: int = 0


@dataclass(frozen=True)
class Status:
    """Where the project's generations are (by generation key of the manifest's images)."""

    images: int
    generations: int
    in_local: int
    in_remote: int
    only_local: int
    only_remote: int
    in_neither: int
    #: the earlier generations the histories list (for `pick NAME @K`) that the local
    #: cache holds and the remote lacks: `push` shares them too
    earlier_only_local: int = 0


def _run(items: list[str], work: Callable[[str], None], on_progress: OnProgress) -> None:
    total = len(items)
    on_progress(0, total)
    with ThreadPoolExecutor(CONCURRENCY // 2) as pool:
        for done, _ in enumerate(pool.map(work, items), start=1):
            on_progress(done, total)


def generations(prepared: Prepared, *, earlier: bool = False) -> list[AssetSpec]:
    """Every generation the project keeps: each image's output (its picked draw, or its
    pin) and every draw of its set; with `earlier`, the earlier generations each
    image's history lists too (what `pick NAME @K` brings back)."""
    wanted, listed = _kept(prepared)
    return wanted + listed if earlier else wanted


def _kept(prepared: Prepared) -> tuple[list[AssetSpec], list[AssetSpec]]:
    """(each image's output and every draw of its set, the earlier generations each
    image's history lists)."""
    lock, _ = settled(prepared, read_with_journal(prepared.project), lambda message: None)
    chosen = candidates.picked(prepared.specs, lock)
    specs = list(chosen.specs.values())
    listed: list[AssetSpec] = []
    for name, base in chosen.bases.items():
        specs += [base.drawn(index) for index in range(base.candidates)]
        entry = lock.get(name)
        if entry is not None:
            made = (earlier_spec(base, generation) for generation in entry.history)
            listed += [spec for spec in made if spec is not None]
    return specs, listed


def push(prepared: Prepared, remote: Remote, on_progress: OnProgress) -> Sync:
    """Upload the generations of the manifest's images that the local cache holds and
    the remote lacks (or holds broken: a record without its bytes is repaired). Only
    entries this tool wrote on this account are offered (a checkout can carry cache
    files of anyone's making), each verified as an image first: a shared cache is
    only as good as what is put in it. A stand-in's placeholder is never offered."""
    if not remote.writable:
        raise RemoteError(f"remote cache {remote.shown} is read-only here: {remote.why_read_only}")
    specs: dict[str, AssetSpec] = {}
    for spec in generations(prepared, earlier=True):
        if prepared.store.has(spec.generation_key):
            specs.setdefault(spec.generation_key, spec)
    recorded = sorted(remote.lookup(specs))
    with ThreadPoolExecutor(CONCURRENCY // 2) as pool:  # a broken entry is pushed again
        sound = pool.map(remote.sound, recorded)
        there = {key for key, ok in zip(recorded, sound, strict=True) if ok}
    result = Sync(present=len(there))

    def one(key: str) -> None:
        spec = specs[key]
        try:
            cached = prepared.store.get(key)
        except CorruptEntryError as exc:
            result.failed.append((key, f"the local entry was corrupt ({exc}); removed it"))
            return
        if cached is None or cached.digest is None or not cached.ours:
            result.skipped.append((key, "not written by nebula-build on this account"))
            return
        if made_by_stand_in(cached.made_with):
            result.placeholders += 1
            return
        try:
            verified = verify(cached.data, encoding_for(spec), digest=cached.digest)
        except ImageError as exc:
            result.failed.append((key, f"the local entry is not a sound image ({exc})"))
            return
        record = new_record(
            key,
            backend=spec.backend,
            model=spec.model,
            data=verified.data,
            digest=verified.digest,
            seed=cached.seed,
            made_with=cached.made_with,
        )
        try:
            pushed = remote.push(record, verified.data)
        except RemoteError as exc:
            result.failed.append((key, remote_failure(exc)))
            return
        if pushed == "uploaded":
            result.moved += 1
        else:
            result.present += 1

    _run([key for key in specs if key not in there], one, on_progress)
    return result


def _held(prepared: Prepared, key: str) -> bool:
    """Whether the local cache holds a generation this run may take: a stand-in's
    placeholder that a real run makes again is no more than a miss."""
    store = prepared.store
    return store.has(key) and not store.placeholder(store.provenance(key)[1])


def pull(prepared: Prepared, remote: Remote, on_progress: OnProgress) -> Sync:
    """Download what the manifest's images need that the local cache lacks."""
    missing: dict[str, AssetSpec] = {}
    wanted = generations(prepared)
    for spec in wanted:
        if not _held(prepared, spec.generation_key):
            missing.setdefault(spec.generation_key, spec)
    result = Sync(present=len({spec.generation_key for spec in wanted}) - len(missing))

    def one(key: str) -> None:
        restored, warning = restore_remote(remote, prepared.store, missing[key])
        if restored is not None:
            result.moved += 1
        elif warning is not None:
            result.failed.append((key, warning))

    _run(sorted(remote.lookup(missing)), one, on_progress)
    return result


def status(prepared: Prepared, remote: Remote | None) -> Status:
    """Where the project's generations are: here, in `remote` (None: there is none)."""
    wanted, listed = _kept(prepared)
    keys = {spec.generation_key for spec in wanted}
    local = {key for key in keys if _held(prepared, key)}
    earlier = {spec.generation_key for spec in listed} - keys
    earlier_local = {key for key in earlier if prepared.store.has(key)}
    if remote is None:
        there, earlier_there = set[str](), earlier_local
    else:
        found = remote.lookup(keys | earlier_local)
        there, earlier_there = found & keys, found & earlier_local
    return Status(
        images=len(prepared.specs),
        generations=len(keys),
        in_local=len(local),
        in_remote=len(there),
        only_local=len(local - there),
        only_remote=len(there - local),
        in_neither=len(keys - local - there),
        earlier_only_local=len(earlier_local - earlier_there),
    )


def failed_lines(failures: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{key[:12]}…: {why}" for key, why in failures]
