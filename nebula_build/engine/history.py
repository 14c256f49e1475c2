"""An image's history: the generations it had before its current one, newest first,
kept in its lock entry (at most `MAX_HISTORY`) while their originals stay in the cache.
`nebula-build history NAME` lists them; `pick NAME @K` brings one back."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from nebula_build.core.spec import AssetSpec, as_declared
from nebula_build.state.cache import Store
from nebula_build.state.guard import Guard
from nebula_build.state.lockfile import MAX_HISTORY, EarlierGeneration, LockEntry
from nebula_build.state.project import Project


def _stamp(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def history_after(
    before: LockEntry | None, generation_key: str, store: Store
) -> tuple[EarlierGeneration, ...]:
    """The history of an image whose output becomes `generation_key`: the generation
    it replaces goes first, unless it is a draw of the same set (the draws keep it) and
    no hand edit `accept` made the output.
    One coming back from the history trades places with it, so every other one keeps
    its number (`pick NAME @K`, then @K again, goes back)."""
    if before is None:
        return ()
    history = before.history
    previous = before.generation_key
    same_set = {draw.key for draw in before.draws}
    # another draw of the set keeps the one it replaces, but not an accepted hand edit of
    # it: the history says where apply backed the edit up
    among_draws = previous in same_set and generation_key in same_set
    if previous != generation_key and not (among_draws and before.edited_from is None):
        params = dict(before.params)
        made = store.made(previous)
        # a pinned output leaves as a draw of the set it was picked from, not of the
        # manifest's set the entry keeps for the pin's end
        drawn = before.pinned_draws if previous in before.pinned_draws else ()
        if not drawn and previous in same_set:
            drawn = tuple(draw.key for draw in before.draws)
        earlier = EarlierGeneration(
            previous,
            # the file that generation made: an accepted hand edit of it is not in the
            # cache, and `pick @K` brings back what the cache holds (the edit is backed up)
            before.edited_from or before.digest,
            _stamp(made if made is not None else time.time()),
            before.backend,
            before.model,
            params,
            len(drawn),
            drawn,
            before.digest if before.edited_from is not None else None,
        )
        keys = [other.generation_key for other in history]
        at = keys.index(generation_key) if generation_key in keys else None
        # the last output of a set stays before its other draws: an unpin, or an undone
        # edit, comes back to the draw picked last (see candidates.earlier_pick)
        if at is None or any(_same_set(earlier, other) for other in history[:at]):
            history = (earlier, *history)
        else:
            history = (*history[:at], earlier, *history[at + 1 :])
    kept: list[EarlierGeneration] = []
    for earlier in history:
        if earlier.generation_key != generation_key and all(
            earlier.generation_key != other.generation_key for other in kept
        ):
            kept.append(earlier)
    return tuple(kept[:MAX_HISTORY])


def pinned_set(before: LockEntry | None, pinned: AssetSpec) -> tuple[str, ...]:
    """The draws of the set `pinned` (an earlier generation made the output by a pin)
    was picked from: as its history record names them, or as the entry kept them while
    it was already the output."""
    if before is None:
        return ()
    if before.generation_key == pinned.generation_key:
        return before.pinned_draws
    for earlier in before.history:
        if earlier.generation_key == pinned.generation_key:
            return earlier.draw_keys
    return ()


def _same_set(one: EarlierGeneration, other: EarlierGeneration) -> bool:
    """Whether two generations may be draws of one set: alike but for the draw and its
    seed (two sets that differ only by their seed count as one: the old order stands)."""
    if (one.backend, one.model) != (other.backend, other.model):
        return False
    ignored = ("draw", "seed")
    return {k: v for k, v in one.params.items() if k not in ignored} == {
        k: v for k, v in other.params.items() if k not in ignored
    }


@dataclass(frozen=True)
class Change:
    """How one parameter of an earlier generation differs from the current one."""

    name: str
    earlier: object
    current: object


def changes(
    earlier: Mapping[str, Any], current: Mapping[str, Any], declared: Collection[int] = ()
) -> list[Change]:
    """The parameters that differ, prompt first (a draw's index and derived seed are
    not an edit: see `as_declared`, and `declared`, the seeds they may derive from)."""
    earlier, current = as_declared(earlier, current, declared)
    names = sorted(
        (k for k in earlier.keys() | current.keys() if earlier.get(k) != current.get(k)),
        key=lambda name: (name != "prompt", name),
    )
    return [Change(name, earlier.get(name), current.get(name)) for name in names]


def word_diff(earlier: str, current: str) -> str:
    """`current` with the words it lacks from `earlier` as [-old-] and its new ones as
    {+new+} (git's --word-diff)."""
    import difflib

    # a lock's prompt is untrusted: the diff of two long ones is quadratic
    old, new = earlier[:2000].split(), current[:2000].split()
    parts: list[str] = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(a=old, b=new).get_opcodes():
        if op == "equal":
            parts.extend(old[a1:a2])
            continue
        if a2 > a1:
            parts.append("[-" + " ".join(old[a1:a2]) + "-]")
        if b2 > b1:
            parts.append("{+" + " ".join(new[b1:b2]) + "+}")
    return " ".join(parts)


#: the run folders `history` looks through for an accepted edit's copy, newest first
BACKUPS_LOOKED_AT = 50


def backed_up_edits(
    project: Project, guard: Guard, output: str, digests: Collection[str]
) -> dict[str, str]:
    """Where apply's newest copy of each hand edit at `output` whose bytes are one of
    `digests` lies, as a project path, by digest; one not among the newest
    `BACKUPS_LOOKED_AT` run folders (removed by `gc --backups`, say, or never copied:
    an edit is left where it is when the image's output moves) is not in it."""
    from nebula_build.fsutil import sha256_bytes
    from nebula_build.imaging import MAX_BYTES

    wanted = set(digests)
    found: dict[str, str] = {}
    if not wanted:
        return found
    backups = project.backup_dir.relative_to(project.root).as_posix()
    copies = guard.backup_copies(
        project.backup_dir, output, limit=MAX_BYTES, newest=BACKUPS_LOOKED_AT
    )
    for folder, data in copies:
        digest = sha256_bytes(data)
        if digest in wanted:
            found.setdefault(digest, f"{backups}/{folder}/{output}")
            if found.keys() >= wanted:
                break
    return found


def earlier_spec(base: AssetSpec, earlier: EarlierGeneration) -> AssetSpec | None:
    """The image made as `earlier` was, with today's output settings; None when the
    recorded parameters no longer make its key (recorded by another version)."""
    spec = base.with_generation(earlier.backend, earlier.model, earlier.params)
    return spec if spec.generation_key == earlier.generation_key else None


@dataclass(frozen=True)
class Row:
    """One generation as `nebula-build history` lists it: @0 is the current output."""

    index: int
    generation_key: str
    digest: str
    made: str | None
    in_cache: bool
    #: how it differs from the current output's parameters
    changes: tuple[Change, ...]
    params: Mapping[str, Any]
    #: the digest of the hand edit `accept` kept as its output (`digest` is then the
    #: file the generation made, which the edit replaced)
    edited: str | None = None


def rows(entry: LockEntry, store: Store, declared: Collection[int] = ()) -> list[Row]:
    """The current output, then each earlier generation, newest first; `declared`: the
    seed the manifest declares (draws of its sets show it, not their derived ones)."""
    current = entry.generation_params()
    made = store.made(entry.generation_key)
    result = [
        Row(
            0,
            entry.generation_key,
            entry.edited_from or entry.digest,
            _stamp(made) if made is not None else None,
            store.has(entry.generation_key),
            (),
            entry.params,
            entry.digest if entry.edited_from is not None else None,
        )
    ]
    for index, earlier in enumerate(entry.history, start=1):
        result.append(
            Row(
                index,
                earlier.generation_key,
                earlier.digest,
                earlier.made,
                store.has(earlier.generation_key),
                tuple(changes(earlier.generation_params(), current, declared)),
                earlier.params,
                earlier.edited,
            )
        )
    return result
