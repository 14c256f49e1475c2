"""Diff the desired specs against the lock, the disk and the cache: a `Plan`.

Pure: the disk and the cache come in as lookup functions, so every case is a
data-driven test. Every action carries a reason, no-ops included, and a plan
printed is exactly what apply will do.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from nebula_build.core.selection import select
from nebula_build.core.spec import NO_ROW_KEPT, AssetSpec, as_declared
from nebula_build.core.sprite import ADDED_STEPS
from nebula_build.errors import LockfileError
from nebula_build.imaging import format_for
from nebula_build.state.fileindex import LEADS_OUT
from nebula_build.state.guard import path_problem
from nebula_build.state.lockfile import LockEntry
from nebula_build.text import file_key, plural, shell_operands

DigestOf = Callable[[str], "str | None"]
HasCached = Callable[[str], bool]
KnownOutput = Callable[[str], Mapping[str, str]]
#: whether nebula-build wrote these bytes (by digest) to this path before, on this account
WroteBefore = Callable[[str, str], bool]
#: the image other than the one named whose output a path is (see `_holder`), or None
HeldBy = Callable[[str, str], "str | None"]
#: the spec of the image other than the one named that declares a path, or None
DeclaredBy = Callable[[str, str], "AssetSpec | None"]
#: whether two project paths that differ (in case, in Unicode form) name one file on
#: this disk: both there, one directory entry (macOS, Windows), never on Linux
SameFile = Callable[[str, str], bool]
#: the other image whose file the lock records a path's digest as (see `_recorder`)
RecordedFor = Callable[[str, str, str], "str | None"]
#: the output options an output key was recorded with, where known
OutputParams = Callable[[str], "Mapping[str, object] | None"]
#: whether the file at a path, holding these bytes (by digest), is one nebula-build wrote
#: for this lock entry's output: a lock (a pull request's) may record any file it can
#: hash as an image's, so only such a file is removed or moved away
Vouched = Callable[[str, str, LockEntry], bool]
#: whether the file at a path, holding these bytes (by digest), carries the record
#: nebula-build writes into every file of an output key (`outputs.metadata.written_for`)
CarriesRecord = Callable[[str, str, str], bool]
#: who else records a file: the lock of another manifest in the folder ("other.lock
#: records it as b's"), or None; such a file is not this lock's to remove or move away
RecordedElsewhere = Callable[[str], "str | None"]


#: how a plan says that an image was made with other values of settings outside its
#: key than its backend has now (`Backend.made_with`)
SETTINGS_NOTE = "made with different settings"
#: why an image is made again whose lock entry records a placeholder the stand-in for
#: the API made (a dry run), in a run that cannot reach a stand-in (`engine.standins`)
PLACEHOLDER_REASON = "a placeholder the stand-in for the API made, not the real image"
#: how the note on such an image that a run that may reach a stand-in keeps begins (the
#: rest names the command that makes it for real: `engine.standins.kept_note`)
PLACEHOLDER_NOTE = (
    "a placeholder the stand-in for the API made: kept while NEBULA_BASE_URL is on "
    "loopback, even through a proxy to the real API"
)
#: the note on an image whose lock records a pin its spec no longer holds to: the next
#: apply writes the lock without it, even where nothing else changes
PIN_RELEASED = "the pin to an earlier generation is released: its spec changed"


class ActionKind(StrEnum):
    CREATE = "create"
    REGENERATE = "regenerate"
    REENCODE = "reencode"
    RESTORE = "restore"
    MOVE = "move"
    DELETE = "delete"
    CONFLICT = "conflict"
    NOOP = "noop"
    #: one more candidate of an image, kept in the cache only (`candidates = N`)
    DRAW = "draw"


_GENERATING = (ActionKind.CREATE, ActionKind.REGENERATE, ActionKind.DRAW)
#: what a file the lock records and no cache here holds adds: a checkout's likely cause
NOT_HERE = " (the lock records it: was the file committed?)"
#: what the reason of an output made again says where its original is not cached
NOT_CACHED = " (its original is not cached)"


#: why a file a lock entry records, which its image no longer writes, stays
CHANGED_BY_HAND = "changed by hand since it was made"
#: why a file a lock entry records stays where nothing shows nebula-build wrote it
RECORD = "the record nebula-build writes into the files it makes"
NOT_VOUCHED = f"it does not carry {RECORD}; delete it by hand if it is not needed"
#: the conflict of an output file edited by hand (`nebula-build accept` keeps the edit)
HAND_EDIT = "output file changed by hand"
#: why a file stays, and is copied before it is replaced: `nebula-build accept` made
#: the hand edit it holds the image's output
ACCEPTED_EDIT = "it holds a hand edit `nebula-build accept` made the output"


@dataclass(frozen=True, slots=True)
class Change:
    """One field that differs between the lock and the manifest."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Action:
    """What apply will do to one image, and why."""

    image: str
    kind: ActionKind
    reason: str
    output: str | None
    spec: AssetSpec | None = None
    entry: LockEntry | None = None
    changes: tuple[Change, ...] = ()
    from_cache: bool = False
    notes: tuple[str, ...] = ()
    #: the file written before, when it differs from `output` (move, re-encode, delete)
    old_output: str | None = None
    #: for a conflict: what --force would do
    resolution: Action | None = None
    #: overwrite a file changed by hand, after backing it up (--force)
    backup: bool = False
    #: delete: the file was changed by hand (or nothing shows nebula-build wrote it), so
    #: it stays on disk; move: the old file is copied, and stays, for the same reason
    keep_file: bool = False
    #: delete: files of the old entry that a current image now writes: they stay
    kept: frozenset[str] = frozenset()
    #: a new draw was asked for (--replace): the cache is not used
    fresh: bool = False
    #: the output file already holds exactly what this spec produces: only record it
    in_place: bool = False
    #: the remote cache holds this generation: apply downloads it instead of paying
    from_remote: bool = False
    #: files apply removes beside `output` (its old variants or output, and each file
    #: of a deleted image): they hold what nebula-build wrote there
    removes: tuple[str, ...] = ()
    #: files the lock records for it that it would remove but nothing shows nebula-build
    #: wrote (`Vouched`), or another manifest's lock records: they stay where they are
    stays: tuple[str, ...] = ()
    #: the files of `stays` another manifest's lock records, with who (`RecordedElsewhere`)
    stays_elsewhere: tuple[tuple[str, str], ...] = ()
    #: each file it writes as the plan found it (path, digest or None) where the plan
    #: accepted replacing it: apply refuses one changed since (a hand edit meanwhile)
    found: tuple[tuple[str, str | None], ...] = ()
    #: create: the image no longer declared whose output this one takes over (a rename):
    #: its history, draws and pin come along; delete: the image that takes over its output
    renamed_from: str | None = None
    renamed_to: str | None = None
    #: files the lock records for it that it leaves where they are for the image that
    #: declares them and writes or records them in this apply (path, image): apply
    #: removes each one still holding what the lock records where that image fails,
    #: since no entry would record it any more
    kept_for: tuple[tuple[str, str], ...] = ()

    @property
    def generates(self) -> bool:
        """Whether this action costs a generation."""
        return self.kind in _GENERATING and not (
            self.from_cache or self.in_place or self.from_remote
        )

    @property
    def is_change(self) -> bool:
        return self.kind is not ActionKind.NOOP

    @property
    def taking_over(self) -> str | None:
        """The name it is renamed from, in conflict or not (the rename --force makes)."""
        resolution = self.resolution
        return self.renamed_from or (resolution.renamed_from if resolution is not None else None)

    @property
    def counted(self) -> bool:
        """Whether apply counts it as an image changed (`[i/N]`, "done"): not the old name
        of a renamed image, whose new name's action is the rename (the plan's "renamed")."""
        return self.is_change and self.renamed_to is None


class FileKind(StrEnum):
    """Files made from the images' outputs rather than generated."""

    ATLAS = "atlas"
    ASSET_MANIFEST = "asset manifest"


def file_label(kind: FileKind, name: str) -> str:
    """How the plan names a file made from the images: "atlas enemies", "asset
    manifest"."""
    return f"atlas {name}" if kind is FileKind.ATLAS else str(kind)


class FileState(StrEnum):
    BUILD = "build"
    NOOP = "noop"
    #: a member has no output yet: built once it has
    WAITING = "waiting"
    CONFLICT = "conflict"
    #: an atlas gone from the manifest: the files its last build wrote go
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class FileAction:
    """What apply will do to one file made from the images (an atlas sheet and its
    frame map, the asset manifest), and why. Planned with the images, built after
    them, from the lock as the images left it."""

    kind: FileKind
    name: str
    state: FileState
    reason: str
    output: str
    #: what the file is made from (an atlas: its members' digests), recorded in it
    key: str = ""
    #: overwrite a file changed by hand, after backing it up (--force)
    backup: bool = False
    #: the file is not there yet
    new: bool = False
    #: an atlas's frame map, written with its sheet
    frames: str | None = None
    #: an atlas's engine exports (Aseprite JSON, Godot resource), written with it
    exports: tuple[str, ...] = ()
    #: where its last build wrote it, for one built elsewhere now (its output moved)
    moved_from: str | None = None
    #: files the build removes (an atlas's exports dropped from the manifest, its old
    #: files once moved; every file of a deleted atlas): they hold what its last build
    #: wrote there
    removes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How the plan names it: "atlas enemies", "asset manifest"."""
        return file_label(self.kind, self.name)

    @property
    def is_change(self) -> bool:
        return self.state in (FileState.BUILD, FileState.CONFLICT, FileState.DELETE)


@dataclass(frozen=True, slots=True)
class Generating:
    """The images and candidate draws a plan's generations make, and how many
    generations make them: every count of them (the summary line, `--locked`,
    `--max-generations`, apply's question) words them here, so none drifts."""

    images: int
    draws: int
    generations: int

    @property
    def shared(self) -> str:
        """How many generations make them where that is fewer than there are (images of
        one spec share theirs): " in 1 generation"; else ""."""
        if self.generations < self.images + self.draws:
            return f" in {plural(self.generations, 'generation')}"
        return ""

    def said(self) -> str:
        """What they make, in words: "3 images", "2 images in 1 generation", "1 image
        and 2 candidate draws"."""
        parts = [plural(self.images, "image")] if self.images else []
        if self.draws:
            parts.append(plural(self.draws, "candidate draw"))
        if not parts:
            return plural(self.generations, "generation")
        return " and ".join(parts) + self.shared


@dataclass(frozen=True)
class Plan:
    """Every image's action, no-ops included, in manifest order then deletions; then
    the files made from the images."""

    actions: tuple[Action, ...]
    files: tuple[FileAction, ...] = ()

    @property
    def changes(self) -> list[Action]:
        """The images' actions that change something."""
        return [a for a in self.actions if a.is_change]

    @property
    def counted_changes(self) -> int:
        """How many images apply counts as it changes them (`Action.counted`)."""
        return sum(1 for a in self.actions if a.counted)

    @property
    def generations(self) -> list[Action]:
        """The actions that cost a generation, one per generation key: images with the
        same spec share one request (engine/apply.py), and are counted and priced once."""
        unique = {
            a.spec.generation_key: a for a in reversed(self.actions) if a.generates and a.spec
        }
        return [a for a in self.actions if a.spec and unique.get(a.spec.generation_key) is a]

    @property
    def has_changes(self) -> bool:
        return any(a.is_change for a in self.actions) or any(f.is_change for f in self.files)

    def generating(self, *, draws: bool = True) -> Generating:
        """What the plan's generations make, and in how many generations (images of one
        spec share one); with `draws`, the candidate draws counted beside the images."""
        made = [a for a in self.actions if a.generates and a.spec is not None]
        if not draws:
            made = [a for a in made if a.kind is not ActionKind.DRAW]
        drawn = sum(1 for a in made if a.kind is ActionKind.DRAW)
        keys = {a.spec.generation_key for a in made if a.spec is not None}
        return Generating(len(made) - drawn, drawn, len(keys))

    def summary(self) -> dict[str, int]:
        counts = Counter(a.kind.value for a in self.actions)
        summary = {kind.value: counts.get(kind.value, 0) for kind in ActionKind}
        summary["renamed"] = self.renamed()
        return summary

    def renamed(self) -> int:
        """The images renamed (the plan's "renamed"): the old names the deletions drop,
        and the names still declared that another takes over (names swapped)."""
        dropped = {a.image for a in self.actions if a.renamed_to is not None}
        swapped = (a.renamed_from for a in self.actions if a.kind is ActionKind.CREATE)
        return len(dropped) + sum(1 for old in swapped if old is not None and old not in dropped)


#: the output options `AssetSpec.output_params` records, beside `sprite` and `checks`
_OUTPUT_OPTIONS = frozenset(
    ("size", "quality", "lossless", "fit", "resample", "variants", "metadata")
)
_STEP_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _output_fields(params: Mapping[str, object] | None) -> dict[str, Any] | None:
    """Output options as fields to compare (each sprite step and check on its own);
    None for a record that is not one `output_params` makes."""
    if params is None or not _plain(params):
        return None
    if not set(params) <= _OUTPUT_OPTIONS | {"format", "sprite", "checks"}:
        return None
    fields = {k: v for k, v in params.items() if k in _OUTPUT_OPTIONS}
    for group, prefix in (("sprite", ""), ("checks", "checks.")):
        pairs = params.get(group, [])
        if not isinstance(pairs, list):
            return None
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                return None
            if not _STEP_NAME.fullmatch(pair[0]) or pair[0] in _OUTPUT_OPTIONS:
                return None
            fields[prefix + pair[0]] = pair[1]
    return fields


def _plain(value: object, depth: int = 0) -> bool:
    """JSON of short printable strings, finite numbers and booleans, shallowly nested."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) < 1 << 53
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= 300 and value.isprintable()
    if depth > 3:
        return False
    if isinstance(value, list):
        return len(value) <= 64 and all(_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return len(value) <= 64 and all(
            _plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items()
        )
    return False


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Change, ...]:
    keys = sorted(set(old) | set(new))
    return tuple(Change(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k))


#: the output options recorded only beside `resize`, at their defaults unless written
_RESIZE_DEFAULTS = {
    name: field.default
    for name, field in AssetSpec.__dataclass_fields__.items()
    if name in ("fit", "resample")
}


def _a_default_coming_or_going(change: Change) -> bool:
    """Whether a change is only `fit` or `resample` at its default, recorded as
    `resize` is added or removed: the size's change says it."""
    default = _RESIZE_DEFAULTS.get(change.field)
    return (
        default is not None
        and None in (change.old, change.new)
        and default
        in (
            change.old,
            change.new,
        )
    )


@dataclass(frozen=True)
class _Context:
    digest_of: DigestOf
    has_cached: HasCached
    known_output: KnownOutput
    replace: frozenset[str]
    force: bool
    #: the files the lock recorded for images no longer declared: path → (image, digest)
    left: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    output_params: OutputParams = lambda output_key: None
    wrote_before: WroteBefore = lambda path, digest: False
    held_by: HeldBy = lambda path, image: None
    recorded_for: RecordedFor = lambda path, digest, image: None
    #: the paths of `left` by the digest the lock records there
    left_by_digest: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    vouched: Vouched = lambda path, digest, entry: False
    #: the images whose lock entry records a placeholder this run may not keep
    placeholders: frozenset[str] = frozenset()
    elsewhere: RecordedElsewhere = lambda path: None
    #: the lock's entries, by image
    entries: Mapping[str, LockEntry] = field(default_factory=dict)
    #: the images new to the lock that take over the output of one no longer declared
    renamed: Mapping[str, str] = field(default_factory=dict)
    #: the image other than the one named that declares a path, whatever it holds
    declared_by: DeclaredBy = lambda path, image: None
    carries_record: CarriesRecord = lambda path, digest, output_key: False
    same_file: SameFile = lambda path, other: False

    def why_it_stays(self, path: str, digest: str, entry: LockEntry) -> str | None:
        """Why a file the lock records for `entry`, holding what it records, is not
        removed or moved away: another manifest's lock records it, or nothing shows
        nebula-build wrote it for that entry; None where it may go."""
        if (problem := path_problem(path)) is not None:  # written before such names were
            return f"its name {problem}; delete it by hand if it is not needed"
        recorded = self.elsewhere(path)
        if recorded is not None:
            return recorded
        if entry.edited_from is not None and path == entry.output and digest == entry.digest:
            return ACCEPTED_EDIT
        return None if self.vouched(path, digest, entry) else NOT_VOUCHED

    def earlier_output(self, path: str, digest: str, image: str) -> bool:
        """Whether the file at `path` holds bytes nebula-build wrote there for an earlier
        spec, and not another image's file the lock still records (two images swapping
        outputs: taking it would lose that image's file)."""
        return self.wrote_before(path, digest) and self.recorded_for(path, digest, image) is None

    def moved_here(self, path: str, digest: str, image: str) -> bool:
        """Whether the file at `path` is the file of an image no longer declared, moved
        here by hand (a Hugo page bundle's folder renamed, its cover inside): the bytes
        nebula-build wrote at the path the lock records, where they are no more. A copy
        leaves them there, and stays a hand edit; a file the lock records as another
        image's stays that image's (a lock may name any path for an image it invents)."""
        return self.recorded_for(path, digest, image) is None and any(
            old != path and self.wrote_before(old, digest) and self.digest_of(old) is None
            for old in self.left_by_digest.get(digest, ())
        )


def _recorder(lock: Mapping[str, LockEntry]) -> RecordedFor:
    """Which other image the lock records a file of this digest at a path for."""
    recorded: dict[str, list[tuple[str, str]]] = {}

    def recorded_for(path: str, digest: str, image: str) -> str | None:
        if not recorded:  # asked only for a file nebula-build wrote before
            for name, entry in lock.items():
                for file, file_digest in entry.files().items():
                    recorded.setdefault(file, []).append((name, file_digest))
        return next(
            (name for name, d in recorded.get(path, ()) if name != image and d == digest), None
        )

    return recorded_for


def _declarer(specs: Mapping[str, AssetSpec], same_file: SameFile) -> DeclaredBy:
    """Which other image declares a path as one of its files (as it is, or under another
    case where this disk keeps one file for both: `same_file`). The file there is that
    image's to write over, take as it is or refuse: no other image's action removes it
    (names swapped, one image would take in place the very file the other removes)."""
    declared: dict[str, tuple[str, AssetSpec]] = {}  # by `file_key`: its name, its image

    def declared_by(path: str, image: str) -> AssetSpec | None:
        if not declared:  # asked only for a file an image leaves: most plans never do
            declared.update((file_key(p), (p, spec)) for spec in specs.values() for p in spec.paths)
        found = declared.get(file_key(path))
        if found is None or found[1].name == image:
            return None
        return found[1] if found[0] == path or same_file(path, found[0]) else None

    return declared_by


def _holder(lock: Mapping[str, LockEntry], digest_of: DigestOf, declared_by: DeclaredBy) -> HeldBy:
    """Which other image a path is the output of: one that declares it and whose own
    lock entry records what the file holds. A lock (a pull request's, a merge's side)
    may record another image's file as an image's own: apply must not take it."""

    def held_by(path: str, image: str) -> str | None:
        declarer = declared_by(path, image)
        other = declarer.name if declarer is not None else None
        entry = lock.get(other) if other is not None else None
        if entry is None:
            return None
        current = digest_of(path)
        return other if current in (entry.digest, *entry.variants.values()) else None

    return held_by


def _seed_notes(spec: AssetSpec) -> tuple[str, ...]:
    notes = (*dropped_notes(spec), *_wide_notes(spec), *_upscale_notes(spec))
    if spec.seed is None or spec.seed_reproducible:
        return notes
    return (
        *notes,
        f"{spec.model} does not take a seed: the seed marks a draw, "
        f"but {spec.backend} will not reproduce it",
    )


def _wide_notes(spec: AssetSpec) -> tuple[str, ...]:
    """A note for the `widths` no variant is made at: not narrower than the image."""
    width = spec.delivered_size[0]
    wide = [str(target) for target in spec.widths if target >= width]
    if not wide:
        return ()
    said = ", ".join(wide)
    return (
        f"widths {said}: no file, not narrower than the image ({width} px; variants are "
        "never upscaled)",
    )


def _upscale_notes(spec: AssetSpec) -> tuple[str, ...]:
    """A note where `resize` enlarges the image made: it adds pixels, not detail."""
    if spec.resize is None or (spec.resize[0] <= spec.width and spec.resize[1] <= spec.height):
        return ()
    wide, high = spec.resize
    return (
        f"resize = [{wide}, {high}] enlarges the {spec.width}x{spec.height} image the model "
        "makes: more pixels, no more detail",
    )


def dropped_notes(spec: AssetSpec) -> tuple[str, ...]:
    """One note per image for the inherited parameters its model does not take."""
    if not spec.dropped:
        return ()
    params = ", ".join(where.rpartition(".")[2] for where in spec.dropped)
    return (f"{spec.model} does not take {params}: left out ({', '.join(spec.dropped)})",)


def _desired(spec: AssetSpec, entry: LockEntry | None, ctx: _Context) -> Action:
    """The action for an image the manifest declares, before conflict checks."""
    if (  # the common case first, cheapest tests first
        entry is not None
        and entry.generation_key == spec.generation_key
        and entry.output_key == spec.output_key
        and entry.output == spec.output
        and spec.name not in ctx.replace
        and spec.name not in ctx.placeholders
        and ctx.digest_of(spec.output) == entry.digest
        and all(ctx.digest_of(path) == digest for path, digest in entry.variants.items())
    ):
        return _noop(spec, entry)
    return _changed(spec, entry, ctx)


def _noop(spec: AssetSpec, entry: LockEntry | None, old_output: str | None = None) -> Action:
    """An up-to-date image; also the template every other action is made from."""
    return Action(
        image=spec.name,
        kind=ActionKind.NOOP,
        reason="up to date",
        output=spec.output,
        spec=spec,
        entry=entry,
        notes=_seed_notes(spec),
        old_output=old_output,
    )


def _changed(spec: AssetSpec, entry: LockEntry | None, ctx: _Context) -> Action:
    """The action for an image that is not simply up to date."""
    moved = entry.output if entry is not None and entry.output != spec.output else None
    base = _noop(spec, entry, moved)

    def act(kind: ActionKind, reason: str, **extra: Any) -> Action:
        return replace(base, kind=kind, reason=reason, **extra)

    def cached() -> bool:  # a stat per call: only asked where the answer matters
        return ctx.has_cached(spec.generation_key)

    def reencode(reason: str, **extra: Any) -> Action:
        """Made again from the cached original; where this machine's cache does not
        have it, a generation (counted, priced, or restored from a remote cache)."""
        if cached():
            return act(ActionKind.REENCODE, reason, **extra)
        return act(ActionKind.REGENERATE, reason + NOT_CACHED, **extra)

    if entry is None:
        return _created(spec, ctx, base)
    if spec.name in ctx.replace:
        return act(ActionKind.REGENERATE, "replacement requested (--replace)", fresh=True)
    if entry.generation_key != spec.generation_key:
        changes = _changes(*as_declared(entry.generation_params(), spec.generation_params()))
        fields = ", ".join(c.field for c in changes) or "key scheme"
        return act(ActionKind.REGENERATE, f"{fields} changed", changes=changes, from_cache=cached())
    if spec.name in ctx.placeholders:  # a hand edit of its file is still a conflict (_guard)
        # the cache counts no placeholder: what it holds under the key is the real image
        return act(ActionKind.RESTORE if cached() else ActionKind.REGENERATE, PLACEHOLDER_REASON)
    if entry.output_key != spec.output_key:
        old = {"output": entry.output, "format": format_for(entry.output)}
        new = {"output": spec.output, "format": spec.format}
        recorded = _output_fields(ctx.output_params(entry.output_key))
        if recorded is not None:  # this machine wrote the old files: it can say more
            old |= recorded
            new |= _output_fields(spec.output_params()) or {}
        changes = tuple(c for c in _changes(old, new) if not _a_default_coming_or_going(c))
        added = _added_steps(spec, entry.output_key)
        if added:
            return reencode("; ".join(ADDED_STEPS[step] for step in added), changes=changes)
        fields = ", ".join(c.field for c in changes) or "output options"
        return reencode(f"{fields} changed", changes=changes)
    if moved:
        if spec.variants or entry.variants:  # the variants' names follow the output's
            return reencode(f"output moved from {moved}")
        if (holder := ctx.held_by(moved, spec.name)) is not None:
            why = f"the lock records it at {moved}, which is the output of {holder}"
            if cached():
                return act(ActionKind.RESTORE, why)
            return act(ActionKind.REGENERATE, why + NOT_CACHED)
        if (taker := ctx.declared_by(moved, spec.name)) is not None and ctx.known_output(
            taker.output_key
        ).get(moved) == ctx.digest_of(moved):
            # the file already holds the other image's output, which takes it as it is
            return act(
                ActionKind.MOVE, f"output copied from {moved}, now {taker.name}'s", keep_file=True
            )
        if ctx.digest_of(moved) == entry.digest and (
            stays := ctx.why_it_stays(moved, entry.digest, entry)
        ):
            return act(
                ActionKind.MOVE, f"output copied from {moved}, which stays: {stays}", keep_file=True
            )
        return act(ActionKind.MOVE, f"output moved from {moved}")
    states = {path: ctx.digest_of(path) for path in spec.paths}
    other = [p for p, d in states.items() if d is not None and d != _recorded(entry, p)]
    # an output of another spec that nebula-build wrote (the lock went back, as with
    # `git checkout -- .` after watch's rounds) is not a hand edit
    earlier = [
        p
        for p in other
        if ctx.earlier_output(p, str(states[p]), spec.name)
        or (p == spec.output and _in_history(entry, str(states[p]), spec.name, ctx))
    ]
    edited = [p for p in other if p not in earlier]
    missing = [p for p, d in states.items() if d is None]
    if edited:
        what = "output file" if edited[0] == spec.output else f"variant {edited[0]}"
        overwrite = act(
            ActionKind.RESTORE if cached() else ActionKind.REGENERATE,
            "overwrite the hand-edited file",
        )
        reason = HAND_EDIT if edited[0] == spec.output else f"{what} changed by hand"
        return act(ActionKind.CONFLICT, reason, resolution=overwrite)
    if missing:
        what = "output file" if missing[0] == spec.output else f"variant {missing[0]}"
        if cached():
            return act(ActionKind.RESTORE, f"{what} missing")
        return act(ActionKind.REGENERATE, f"{what} missing and not cached{NOT_HERE}")
    if earlier:
        what = "output file" if earlier[0] == spec.output else f"variant {earlier[0]}"
        reason = f"{what} holds another output nebula-build wrote, not this one"
        kept = _kept_by(spec.name, entry, str(states[earlier[0]]))
        # put back from git on purpose, maybe: a copy is kept, as of a hand edit --force replaces
        if cached():
            return act(ActionKind.RESTORE, f"{reason}{kept and f' ({kept})'}", backup=True)
        said = "; ".join(filter(None, (kept, NOT_CACHED.strip(" ()"))))
        return act(ActionKind.REGENERATE, f"{reason} ({said})", backup=True)
    return base


def _created(spec: AssetSpec, ctx: _Context, base: Action) -> Action:
    """An image new to the lock; one that takes over the output of an image no longer
    declared is that image renamed, and says what else changed since its output."""
    cached = ctx.has_cached(spec.generation_key)
    renamed = ctx.renamed.get(spec.name)
    if renamed is None:
        return replace(base, kind=ActionKind.CREATE, reason="new image", from_cache=cached)
    was = ctx.entries[renamed]  # its history takes the old name's current output
    changes = _changes(*as_declared(was.generation_params(), spec.generation_params()))
    fields = ", ".join(c.field for c in changes)
    return replace(
        base,
        kind=ActionKind.CREATE,
        reason=f"renamed from {renamed}" + (f"; {fields} changed" if fields else ""),
        from_cache=cached,
        renamed_from=renamed,
        changes=changes,
    )


def _carry_its_record(currents: Mapping[str, str | None], spec: AssetSpec, ctx: _Context) -> bool:
    """Whether every file of `spec` is there, no other image's (of this lock or
    another's), and carries the record nebula-build writes into the files of its
    output key (read only for files the plan would otherwise call changed by hand)."""
    return all(
        digest is not None
        and ctx.recorded_for(path, digest, spec.name) is None
        and ctx.elsewhere(path) is None
        and ctx.carries_record(path, digest, spec.output_key)
        for path, digest in currents.items()
    )


def _in_history(entry: LockEntry, digest: str, name: str, ctx: _Context) -> bool:
    """Whether an output file holds an earlier generation of its image, as the lock's
    history records it (a commit of the lock that left out the new file), and no other
    image's file the lock records."""
    return any(earlier.digest == digest for earlier in entry.history) and (
        ctx.recorded_for(entry.output, digest, name) is None
    )


def _kept_by(name: str, entry: LockEntry, digest: str) -> str:
    """How to keep a file that holds an earlier generation of image `name` the history
    lists (`git checkout OLD -- FILE`) as its output, rather than have it replaced."""
    found = [i for i, earlier in enumerate(entry.history, 1) if earlier.digest == digest]
    if not found:
        return ""
    pick = f"nebula-build pick --pin {shell_operands(name, f'@{found[0]}')}"
    return f"its earlier generation @{found[0]}: `{pick}` keeps it"


def _added_steps(spec: AssetSpec, recorded_key: str) -> tuple[str, ...]:
    """The steps this version of the tool adds to `spec` that are all that differs from
    the output the lock recorded (its key is the spec's without them), if any: any
    machine can tell so, not only the one that wrote the files. A transparent sprite
    resized with a palette count gets both at once."""
    present = [step for step in ADDED_STEPS if any(pair[0] == step for pair in spec.sprite)]
    for count in range(1, len(present) + 1):
        for steps in itertools.combinations(present, count):
            without = tuple(pair for pair in spec.sprite if pair[0] not in steps)
            if replace(spec, sprite=without, output_key="").output_key == recorded_key:
                return steps
    return ()


def _recorded(entry: LockEntry | None, path: str) -> str | None:
    """The digest the lock recorded for a file of this image, if it wrote one there."""
    if entry is None:
        return None
    return entry.digest if entry.output == path else entry.variants.get(path)


def _guard(action: Action, ctx: _Context) -> Action:
    """Turn a write over a file nebula-build did not write into a conflict. One over a
    file that only the lock says it wrote (a lock may name a logo drawn by hand by its
    digest) is backed up first, and the reason says so: the `vouched` test, as for a
    removal, but the write still happens (a fresh checkout's `metadata = false`)."""
    if action.kind in (ActionKind.NOOP, ActionKind.CONFLICT, ActionKind.DELETE):
        if action.kind is ActionKind.CONFLICT and ctx.force and action.resolution:
            return _copy_kept(action.resolution, _theirs(action.resolution, ctx))
        return action
    spec, entry = action.spec, action.entry
    assert spec is not None
    # What this output key wrote before (a run killed before its journal line, a lost
    # lock): files holding exactly that are ours, not a stranger's.
    # a placeholder's files are what its output key wrote, and are to be made again
    fresh = action.fresh or spec.name in ctx.placeholders
    known = {} if fresh else ctx.known_output(spec.output_key) or _renamed_files(action, ctx)
    currents = {path: ctx.digest_of(path) for path in spec.paths}
    if not fresh and (edit := _renamed_edit(action, ctx)) and edit.items() <= currents.items():
        known = edit  # the hand edit the old name's entry accepted goes with the name
    found = tuple(currents.items())
    if known and all(d is not None and d == known.get(p) for p, d in currents.items()):
        what = "the file already holds" if len(currents) == 1 else "the files already hold"
        if entry is None and spec.output in ctx.left and action.renamed_from is None:
            what = f"takes over {spec.output} from {ctx.left[spec.output][0]}: {what}"
        reason = f"{action.reason} ({what} this output)"
        return replace(action, in_place=True, reason=reason, found=found)
    # the files only the lock says are this image's, which nothing shows are: why each
    claimed: dict[str, str] = {}
    earlier_kept = False  # an earlier generation only the lock's history names: backed up
    for path, current in currents.items():
        if current is None or current == known.get(path):
            continue
        # a file an image no longer declared wrote is ours to take over (a rename)
        recorder, recorded = _recording(entry, path, ctx)
        if current == recorded and recorder is not None:
            if (why := ctx.why_it_stays(path, current, recorder)) is not None:
                claimed[path] = why
            continue
        if ctx.earlier_output(path, current, spec.name) or ctx.moved_here(path, current, spec.name):
            continue
        if (
            path == spec.output
            and entry is not None
            and _in_history(entry, current, spec.name, ctx)
            and ctx.elsewhere(path) is None
        ):
            earlier_kept = True  # a lock may list any digest in its history
            continue
        moved = action.kind is ActionKind.MOVE and entry is not None and current == entry.digest
        if path == spec.output and moved:
            # the paths after this one are not looked at: apply checks them on its own
            return replace(action, reason=f"{action.reason} (already moved by hand)")
        links_alone = current == LEADS_OUT and _links_alone(currents, known, entry)
        if ctx.force:
            if links_alone:  # nothing to keep: the link goes, what it points to is not opened
                reason = f"{action.reason} ({_link_replaced(path)})"
                return replace(action, reason=reason, found=found)
            if (elsewhere := ctx.elsewhere(path)) is not None:
                claimed[path] = elsewhere
            return _copy_kept(action, claimed)
        if (
            recorded is not None
            and not links_alone
            and not fresh
            and not known
            and _carry_its_record(currents, spec, ctx)
        ):
            # made for this very spec where no cache says so: a fresh checkout of a
            # commit that left out images.lock (the files, not the lock, were added)
            what = "the file already holds" if len(currents) == 1 else "the files already hold"
            reason = f"{action.reason} ({what} this output, as its record in it says)"
            return replace(action, in_place=True, reason=reason, found=found)
        reason = _why_in_conflict(
            path,
            current,
            spec,
            ctx,
            recorded=recorded,
            links_alone=links_alone,
        )
        if path != spec.output:
            reason = f"{reason}: {path}"
        return Action(
            image=action.image,
            kind=ActionKind.CONFLICT,
            reason=reason,
            output=action.output,
            spec=spec,
            entry=entry,
            resolution=action,
        )
    checked = replace(action, found=found)
    return _copy_kept(checked, claimed) if claimed or earlier_kept else checked


def _why_in_conflict(
    path: str,
    current: str,
    spec: AssetSpec,
    ctx: _Context,
    *,
    recorded: str | None,
    links_alone: bool,
) -> str:
    """Why the file at `path` stops a write to it (`recorded`: the digest the lock
    records there for this image)."""
    if links_alone:
        return LINK_IN_THE_WAY
    if recorded is not None:
        return HAND_EDIT if path == spec.output else "changed by hand"
    return _in_the_way(ctx.recorded_for(path, current, spec.name), ctx.elsewhere(path))


def _renamed_files(action: Action, ctx: _Context) -> Mapping[str, str]:
    """The files the lock records for the old name of a renamed image that made the same
    output (`output_key`): where the index of outputs written is gone (`.nebula-build/`
    deleted, a fresh CI checkout), the lock's record says the file is already this one."""
    old = ctx.entries.get(action.renamed_from) if action.renamed_from is not None else None
    if old is None or action.spec is None or old.output_key != action.spec.output_key:
        return {}
    return old.files()


def _renamed_edit(action: Action, ctx: _Context) -> Mapping[str, str]:
    """The files of the image renamed from, where its output is a hand edit `accept`
    kept: a rename takes them as they are, as it takes the files nebula-build wrote."""
    old = ctx.entries.get(action.renamed_from) if action.renamed_from is not None else None
    if old is None or old.edited_from is None:
        return {}
    return _renamed_files(action, ctx)


def _links_alone(
    currents: Mapping[str, str | None], known: Mapping[str, str], entry: LockEntry | None
) -> bool:
    """Whether the only files in the way of an image's write are symbolic links out of
    the project: --force then replaces them, and has no file to back up."""
    return all(
        current in (None, LEADS_OUT)
        for path, current in currents.items()
        if current != known.get(path) and current != _recorded(entry, path)
    )


def _link_replaced(path: str) -> str:
    """What --force does to a symbolic link out of the project in an image's way."""
    return (
        f"the symbolic link {path} is replaced; what it points to outside the project "
        "is not touched"
    )


def _theirs(action: Action, ctx: _Context) -> dict[str, str]:
    """The files another manifest's lock records among those `action` writes over: who
    records each (asked only of what --force overwrites)."""
    paths = action.spec.paths if action.spec is not None else ()
    found = {path: ctx.elsewhere(path) for path in paths if ctx.digest_of(path) is not None}
    return {path: why for path, why in found.items() if why is not None}


def _recording(
    entry: LockEntry | None, path: str, ctx: _Context
) -> tuple[LockEntry | None, str | None]:
    """The lock entry that records a file at `path` for this image (its own, or that of
    the image no longer declared whose file it takes over), and the digest recorded."""
    recorded = _recorded(entry, path)
    if recorded is not None:
        return entry, recorded
    left = ctx.left.get(path)
    if left is None:
        return None, None
    return ctx.entries.get(left[0]), left[1]


def _copy_kept(action: Action, claimed: Mapping[str, str]) -> Action:
    """The action, backing up the files it writes over first; its reason says why, for
    the files the lock alone says are this image's (`claimed`: path → why not)."""
    if not claimed:
        return replace(action, backup=True)
    unrecorded = [path for path, why in claimed.items() if why == NOT_VOUCHED]
    clauses = [
        f"{path} holds a hand edit kept with `nebula-build accept`"
        if why == ACCEPTED_EDIT
        else f"{path} is another manifest's ({why})"
        for path, why in claimed.items()
        if why != NOT_VOUCHED
    ]
    if unrecorded:
        metadata = action.spec is None or action.spec.metadata
        clauses.insert(0, _unrecorded(unrecorded, metadata=metadata))
    # the copy itself is said where the action's backup is (`ui.report.BACKED_UP`)
    return replace(action, backup=True, reason=f"{action.reason} ({'; '.join(clauses)})")


def _unrecorded(paths: list[str], *, metadata: bool) -> str:
    """That nothing shows nebula-build wrote these files, in the words of the option that
    leaves its record out of them (`metadata = false`) where the image sets it."""
    named = ", ".join(paths)
    one = len(paths) == 1
    if metadata:
        return f"{named} {'does' if one else 'do'} not carry {RECORD}"
    it = "it" if one else "them"
    return (
        f"{named} {'carries' if one else 'carry'} no record of what wrote {it} "
        f"(metadata = false), and this checkout did not write {it}"
    )


#: why an image's write is refused where symbolic links out of the project are all
#: that stands in its way: --force backs up no file (`ui.report` says so)
LINK_IN_THE_WAY = "a symbolic link out of the project is in the way"


def _in_the_way(owner: str | None, elsewhere: str | None) -> str:
    """Why a file not recorded for this image is in its way: another image's output
    (`owner`), a file another manifest's lock records (`elsewhere`), or a stranger."""
    if owner is not None:
        return f"the file in the way is {owner}'s output: move one image at a time"
    if elsewhere is not None:
        return (
            f"the file in the way is another manifest's ({elsewhere}): give this image "
            "another output"
        )
    return "a file nebula-build did not write is in the way"


def _named_by(
    entry: LockEntry, names: Mapping[str, tuple[str, str]], ctx: _Context
) -> dict[str, tuple[str, str]]:
    """The files of `entry` that `names` (by `file_key`: an image, and its name for the
    file) names: as they are, or under another case where the disk keeps one file."""
    found = {}
    for path in entry.files():
        named = names.get(file_key(path))
        if named is not None and (named[1] == path or ctx.same_file(path, named[1])):
            found[path] = named
    return found


def _removed(
    name: str,
    entry: LockEntry,
    ctx: _Context,
    gone: str,
    owners: Mapping[str, tuple[str, str]],
    *,
    heir: str | None = None,
    inputs: Mapping[str, tuple[str, str]] | None = None,
) -> Action:
    owned = _named_by(entry, owners, ctx)
    read = _named_by(entry, inputs or {}, ctx)  # a lock may name any file, an input too
    current = ctx.digest_of(entry.output)
    owner = owned.get(entry.output)
    reader = read.get(entry.output)
    if heir is not None:
        reason, keep = f"renamed to {heir}, which takes over {entry.output}", True
    elif reader is not None and owner is None:
        reason, keep = f"{gone}; {entry.output} stays: it is an input of {reader[0]}", True
    elif owner is not None and owner[1] == entry.output:
        reason, keep = f"{gone}; {entry.output} now belongs to {owner[0]}", True
    elif owner is not None:  # one file where case is ignored: removing it removes theirs
        reason, keep = (
            (
                f"{gone}; {entry.output} stays: on macOS and Windows it is {owner[1]}, "
                f"which {owner[0]} declares"
            ),
            True,
        )
    elif current is None:
        reason, keep = f"{gone} (file already gone)", False
    elif current == entry.digest and (stays := ctx.why_it_stays(entry.output, current, entry)):
        reason, keep = f"{gone}; {entry.output} stays: {stays}", True
    elif current == entry.digest:
        reason, keep = gone, False
    else:
        reason, keep = f"{gone}; {entry.output} was changed by hand, so it stays", True
    for path in sorted(read.keys() - {entry.output}):  # a variant another image reads
        reason += f"; {path} stays: it is an input of {read[path][0]}"
    return Action(
        image=name,
        kind=ActionKind.DELETE,
        reason=reason,
        output=entry.output,
        entry=entry,
        keep_file=keep,
        kept=frozenset(owned) | frozenset(read),
        renamed_to=heir,
        kept_for=tuple((path, (owned | read)[path][0]) for path in sorted({*owned, *read})),
    )


def _with_dependents(names: set[str], specs: Mapping[str, AssetSpec]) -> set[str]:
    """A new draw of an image must reach every image that takes its output (`@name`):
    their keys name the upstream's spec, not its pixels, so nothing else would."""
    grown = set(names)
    while True:
        more = {n for n, s in specs.items() if n not in grown and grown & set(s.depends_on)}
        if not more:
            return grown
        grown |= more


def _with_upstreams(names: set[str], specs: Mapping[str, AssetSpec]) -> set[str]:
    """A targeted image needs the images whose output it takes (at any depth) made
    first, as Terraform's -target takes a resource's dependencies along."""
    grown = set(names)
    todo = list(grown)
    while todo:
        spec = specs.get(todo.pop())
        for upstream in spec.depends_on if spec is not None else ():
            if upstream not in grown:
                grown.add(upstream)
                todo.append(upstream)
    return grown


def make_plan(
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    *,
    digest_of: DigestOf,
    has_cached: HasCached,
    known_output: KnownOutput = lambda output_key: {},
    output_params: OutputParams = lambda output_key: None,
    wrote_before: WroteBefore = lambda path, digest: False,
    vouched: Vouched = lambda path, digest, entry: False,
    carries_record: CarriesRecord = lambda path, digest, output_key: False,
    elsewhere: RecordedElsewhere = lambda path: None,
    same_file: SameFile = lambda path, other: False,
    targets: Collection[str] = (),
    replace_images: Collection[str] = (),
    force: bool = False,
    row_bases: Collection[str] = (),
    placeholders: Collection[str] = (),
) -> Plan:
    """The actions that bring the disk and the lock in line with `specs`. `row_bases`:
    the declarations with `rows`, even those that keep no row. A deleted image's file
    that a current image writes stays; one an atlas or the asset manifest now writes
    goes (they are built after the images, from scratch). A file the lock records is
    removed or moved away only where `vouched` says nebula-build wrote it for that
    entry and no other manifest's lock records it (`elsewhere`); otherwise it stays,
    and the action says so. `placeholders`: the images whose lock entry records a
    placeholder the run may not keep: made again."""
    known = [*specs, *(name for name in lock if name not in specs)]
    parts = {name: spec.parts for name, spec in specs.items() if spec.parts}
    chosen = select(targets, known, parts)
    replaced = _with_dependents(select(replace_images, known, parts), specs)
    left = {
        path: (name, digest)
        for name in lock
        if name not in specs
        for path, digest in lock[name].files().items()
    }
    ctx = _Context(
        digest_of,
        has_cached,
        known_output,
        frozenset(replaced),
        force,
        left,
        output_params,
        wrote_before,
        _holder(lock, digest_of, declared := _declarer(specs, same_file)),
        _recorder(lock),
        _by_digest(left),
        vouched,
        frozenset(placeholders),
        elsewhere,
        lock,
        renames(specs, lock),
        declared,
        carries_record,
        same_file,
    )
    wanted = _with_upstreams(chosen | replaced, specs) if targets else None
    along: dict[str, str] = {}
    if wanted is not None and ctx.renamed:
        wanted, along = _with_swapped(wanted, ctx.renamed, specs)
    actions = [
        _guard(_desired(spec, None if name in ctx.renamed else lock.get(name), ctx), ctx)
        for name, spec in specs.items()
        if wanted is None or name in wanted
    ]
    if along:
        actions = [_taken_along(action, along) for action in actions]
    if ctx.renamed:
        actions = _held_by_conflicts(_with_own_entries(actions, ctx), ctx)
    heirs = {old: new for new, old in ctx.renamed.items() if wanted is None or new in wanted}
    # the old name of a targeted rename goes with it: left, two entries would record
    # one output, and the next rename would be refused as a forged lock
    removed = [
        n for n in sorted(lock) if n not in specs and (wanted is None or n in wanted or n in heirs)
    ]
    from_rows = set()
    owners: dict[str, tuple[str, str]] = {}  # by `file_key`: the image and its name
    # a file is kept for the image that declares it only where that image writes or
    # records it in this apply: one targeted out or in conflict would leave it recorded
    # by no entry, and nothing would ever remove it
    takers = _Takers(actions)
    inputs: dict[str, tuple[str, str]] = {}  # by `file_key`: the image that reads it, its name
    if removed:
        owners = {file_key(p): (n, p) for n, s in specs.items() for p in s.paths if n in takers}
        inputs = {
            file_key(p): (n, p)
            for n, s in specs.items()
            for p in (s.image, s.mask, s.palette_file)
            if p is not None
        }
        # declarations with `rows`: an image of theirs left with its row
        from_rows = {n.split("[", 1)[0] for n, s in specs.items() if s.row is not None}
        from_rows |= set(row_bases)
    renamed = _renamed_rows(removed, specs, lock) if from_rows else {}
    made_none = {n.split("[", 1)[0] for n in removed} - {n.split("[", 1)[0] for n in specs}
    actions += [
        _removed(
            name,
            lock[name],
            ctx,
            renamed.get(name) or _why_removed(name.split("[", 1)[0], from_rows, made_none),
            owners,
            heir=heirs.get(name),
            inputs=inputs,
        )
        for name in removed
    ]
    return Plan(tuple(_with_removals(action, ctx, takers) for action in actions))


def _with_swapped(
    wanted: set[str], renamed: Mapping[str, str], specs: Mapping[str, AssetSpec]
) -> tuple[set[str], dict[str, str]]:
    """The targeted images with every name they swap with (names swapped, or renamed
    round a cycle), and the upstreams of those: one renamed alone would take the
    other's entry over its own, which no image then takes, its history and pin lost.
    Each name added, with a targeted one it swaps with."""
    links: dict[str, set[str]] = {}
    for new, old in renamed.items():
        if old in specs:  # still declared: it takes another's entry in turn
            links.setdefault(new, set()).add(old)
            links.setdefault(old, set()).add(new)
    along: dict[str, str] = {}
    grown = set(wanted)
    while True:
        todo = [(name, along.get(name, name)) for name in grown if name in links]
        while todo:
            name, target = todo.pop()
            for other in links[name] - grown:
                along[other] = target
                grown.add(other)
                todo.append((other, target))
        # an upstream of a name added may swap names in turn
        more = _with_upstreams(grown, specs) if along else grown
        if more == grown:
            return grown, along
        grown = more


def _taken_along(action: Action, along: Mapping[str, str]) -> Action:
    """An image the targets did not name, taken along as it swaps names with one."""
    target = along.get(action.image)
    if target is None:
        return action
    note = (
        f"taken along with {target}: names that take over each other's entries (swapped, "
        "renamed round a cycle or along a chain) are renamed together, each keeping its entry"
    )
    return replace(action, notes=(*action.notes, note))


def _with_own_entries(actions: list[Action], ctx: _Context) -> list[Action]:
    """Each renamed image whose own name the lock records for a file no image takes
    over (`b` deleted, `a` renamed to `b`): that entry is the action's, so its files
    go (`removes`) or stay (`stays`) as a moved image's old output does; it was
    dropped from the lock with the file left behind, untracked."""
    taken = set(ctx.renamed.values())

    def own(action: Action) -> Action:
        name = action.image
        if action.renamed_from is None or name in taken or name not in ctx.entries:
            return action
        entry = ctx.entries[name]
        if action.resolution is not None:
            return replace(action, entry=entry, resolution=replace(action.resolution, entry=entry))
        return replace(action, entry=entry)

    return [own(action) for action in actions]


def _held_by_conflicts(actions: list[Action], ctx: _Context) -> list[Action]:
    """Names swapped or renamed round a cycle, one of them in conflict (its file edited
    by hand): the name whose entry that one was to take over keeps it, in conflict too,
    and so on round the cycle. Renamed on its own, it would overwrite the entry, the
    history and pin of its old file lost, with two entries recording one output."""
    by_name = {action.image: action for action in actions}
    held = [a for a in actions if a.kind is ActionKind.CONFLICT and a.taking_over]
    while held:
        heir = held.pop()
        action = by_name.get(heir.taking_over or "")
        if action is None or action.renamed_from is None or action.kind is ActionKind.CONFLICT:
            continue
        entry = ctx.entries[action.image]
        by_name[action.image] = _held(
            action,
            f"renamed from {action.renamed_from}, but {heir.image}, which takes over its "
            f"file {entry.output}, is in conflict: {action.image} keeps its entry until "
            "both can be renamed",
            entry,
        )
        held.append(by_name[action.image])
    _hold_takers(by_name, ctx)
    return [by_name[action.image] for action in actions]


def _hold_takers(by_name: dict[str, Action], ctx: _Context) -> None:
    """Along a chain (a gone, b takes a's declaration, c takes b's), a name in conflict
    keeps its entry: the name that takes that entry over is held too, and so on down
    the chain. Renamed on its own, it would copy the entry, two entries recording one
    output, and the next rename refused as a forged lock."""
    taken_by = {a.taking_over: a.image for a in by_name.values() if a.taking_over}
    held = [a.image for a in by_name.values() if a.kind is ActionKind.CONFLICT]
    while held:
        name = held.pop()
        action = by_name.get(taken_by.get(name, ""))
        if action is None or action.renamed_from != name:
            continue
        by_name[action.image] = _held(
            action,
            f"renamed from {name}, but {name} is in conflict and keeps its entry: "
            f"{action.image} takes it over once {name} can be renamed",
            ctx.entries.get(action.image),
        )
        held.append(action.image)


def _held(action: Action, reason: str, entry: LockEntry | None) -> Action:
    """`action`, a rename, held in conflict for `reason`: its entry stays as the lock
    records it, and `--force` carries the rename out (`resolution`)."""
    return Action(
        image=action.image,
        kind=ActionKind.CONFLICT,
        reason=reason,
        output=action.output,
        spec=action.spec,
        entry=entry,
        resolution=action,
    )


def renames(
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    lock_name: str = "images.lock",
) -> dict[str, str]:
    """The images that take over the output of an image the lock records elsewhere,
    each with that image's name: a rename (`[images.mob]` → `[images.monster]`, a
    data file's id column). The new name takes over the old one's history, draws and
    pin. Names still declared are renamed too where the spec followed the file (two
    names swapped, a cycle a → b → c → a): an image the lock records that now declares
    another output, and is made from what the lock records for another image at it.
    Two entries claiming one output (a lock forged or broken) is refused: which one's
    history and pin go on must not hang on the lock's order."""
    new = [name for name in specs if name not in lock]
    moved = [
        name
        for name, spec in specs.items()
        if name in lock and lock[name].output != spec.output and not _made_from(spec, lock[name])
    ]
    if not new and not moved:  # the common case: not a look at the lock
        return {}
    left: dict[str, list[str]] = {}
    for name, entry in lock.items():
        if name not in specs or specs[name].output != entry.output:
            left.setdefault(entry.output, []).append(name)
    if not left:
        return {}
    found = {}
    for name in (*new, *moved):
        olds = [old for old in left.get(specs[name].output, ()) if _renames(name, old, specs, lock)]
        if len(olds) > 1:
            both = " and ".join(f"images.{old}" for old in sorted(olds)[:2])
            raise LockfileError(
                f"{lock_name}: {both} both record {specs[name].output}, which images.{name} "
                "now writes: which one it is renamed from is unclear; restore the lock from "
                "version control or delete the entry that is not its"
            )
        if olds:
            found[name] = olds[0]
    return found


def _renames(
    name: str, old: str, specs: Mapping[str, AssetSpec], lock: Mapping[str, LockEntry]
) -> bool:
    """Whether image `name` is `old` renamed: a name new to the lock takes over the file
    of one no longer declared whatever else changed; otherwise its spec must be what
    the lock records for `old` (a swap, not two outputs swapped)."""
    if old == name:
        return False
    if name not in lock and old not in specs:
        return True
    return _made_from(specs[name], lock[old])


def _made_from(spec: AssetSpec, entry: LockEntry) -> bool:
    """Whether the lock's entry was made from `spec`: its generation, a draw of it, or
    an earlier generation pinned against it."""
    key = spec.generation_key
    return key in (entry.generation_key, entry.pin) or any(d.key == key for d in entry.draws)


def _by_digest(left: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    paths: dict[str, list[str]] = {}
    for path, (_, digest) in left.items():
        paths.setdefault(digest, []).append(path)
    return {digest: tuple(found) for digest, found in paths.items()}


def _why_removed(base: str, from_rows: Collection[str], made_none: Collection[str]) -> str:
    """Why an image is deleted: its declaration is gone, its row is, or every row is."""
    if base not in from_rows:
        return "removed from the manifest"
    if base in made_none:
        return f"images.{base} makes no image now ({NO_ROW_KEPT})"
    return "its row is gone from the data, or filtered out"


def _renamed_rows(
    removed: Collection[str], specs: Mapping[str, AssetSpec], lock: Mapping[str, object]
) -> dict[str, str]:
    """Why an image of a row that is still there left: its declaration gained a matrix
    (product[tea] → product[tea,hero], new to the lock), lost one, or lost one of its
    values. A row's id may hold commas where there is no matrix: a name is matched
    against the rows there are, never split and believed."""
    rows: dict[tuple[str, str], AssetSpec] = {}  # (declaration, row id) → an image of it
    new: dict[tuple[str, str], str] = {}  # (declaration, generation key) → an image new to the lock
    for name, spec in specs.items():
        if spec.row is not None:
            rows.setdefault((name.split("[", 1)[0], spec.row), spec)
            if name not in lock:
                new.setdefault((name.split("[", 1)[0], spec.generation_key), name)
    gone: dict[tuple[str, str | None], int] = {}  # (declaration, generation key) → images
    for name in removed:
        shared = (name.split("[", 1)[0], getattr(lock.get(name), "generation_key", None))
        gone[shared] = gone.get(shared, 0) + 1
    reasons = {}
    for name in removed:
        base, _, inside = name.partition("[")
        if not inside.endswith("]"):
            continue
        inside = inside[:-1]
        entry = lock.get(name)
        key = getattr(entry, "generation_key", None)
        renamed = new.get((base, key)) if key is not None else None
        # of two images gone with one generation, nothing says which took the new id
        if renamed is not None and gone[base, key] == 1:
            reasons[name] = f"its image is now {renamed}: the same generation under another id"
            continue
        now = rows.get((base, inside))
        if now is not None:  # the row's whole id: it had no matrix
            if len(now.parts) > 1 and now.name not in lock:
                reasons[name] = f"its declaration now has a matrix: its row makes {now.name} …"
            continue
        commas = [i for i, c in enumerate(inside) if c == ","]
        now = next((rows[k] for i in commas if (k := (base, inside[:i])) in rows), None)
        if now is None:
            continue
        if len(now.parts) == 1 and now.name not in lock:
            reasons[name] = f"its declaration no longer has a matrix: its row makes {now.name}"
        elif len(now.parts) > 1:  # with a matrix, an id has no comma
            reasons[name] = "its matrix no longer has these values"
    return reasons


def _with_removals(action: Action, ctx: _Context, takers: Mapping[str, bool]) -> Action:
    """Name the files apply removes beside the one the action names (`removes`): files
    the lock records for the image that it no longer writes (a variant dropped, an
    output moved while it is made again, every file of a deleted image) and that
    still hold what it wrote there; those nothing shows it wrote, and those another
    manifest's lock records, stay (`stays`). A file another image of this apply
    (`takers`: whether it changes) declares stays for it (`kept_for`), and is said."""
    entry = action.entry
    if entry is None:
        return action
    if action.kind is ActionKind.CONFLICT and action.resolution is not None:
        resolution = _with_removals(action.resolution, ctx, takers)  # --force's
        return replace(action, resolution=resolution)
    if action.kind is ActionKind.DELETE:
        keep = action.kept | {entry.output}
    elif action.kind is ActionKind.MOVE and action.spec is not None:
        keep = frozenset(action.spec.paths) | {entry.output}  # renamed, not removed
    elif action.spec is not None and action.kind not in (ActionKind.NOOP, ActionKind.CONFLICT):
        keep = frozenset(action.spec.paths)
    else:
        return action
    if not entry.variants and entry.output in keep:
        return action  # the common case: not a stat more
    files = entry.files()
    current = {path: ctx.digest_of(path) for path in files if path not in keep}
    left = [path for path, digest in current.items() if digest == files[path]]
    edited = [
        path
        for path, digest in current.items()
        if digest not in (None, files[path]) and ctx.declared_by(path, action.image) is None
    ]
    if not left and not edited:
        return action
    taken = _taken_by(left, action.image, ctx, takers)
    left = [path for path in left if path not in taken]
    why = {path: ctx.why_it_stays(path, files[path], entry) for path in left}
    why.update((path, CHANGED_BY_HAND) for path in edited)
    return replace(
        action,
        removes=tuple(path for path in left if why[path] is None),
        stays=tuple(path for path in why if why[path] is not None),
        stays_elsewhere=tuple(
            (path, reason) for path, reason in why.items() if reason and reason != NOT_VOUCHED
        ),
        kept_for=(*action.kept_for, *taken.items()),
        notes=(*action.notes, *(_kept_note(p, image, takers[image]) for p, image in taken.items())),
    )


class _Takers(Mapping[str, bool]):
    """The images of a plan that write or record their files in this apply (all but
    those in conflict), each with whether it changes: built on the first look, since
    most plans never look (a dict of 100,000 actions costs some 40 ms)."""

    def __init__(self, actions: Sequence[Action]) -> None:
        self._actions = actions
        self._takers: dict[str, bool] | None = None

    def _built(self) -> dict[str, bool]:
        if self._takers is None:
            self._takers = {
                a.image: a.is_change for a in self._actions if a.kind is not ActionKind.CONFLICT
            }
        return self._takers

    def __getitem__(self, image: str) -> bool:
        return self._built()[image]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


def _taken_by(
    paths: Collection[str], image: str, ctx: _Context, takers: Mapping[str, bool]
) -> dict[str, str]:
    """Of the files `image` leaves, those another image of this apply declares (names
    swapped: it takes the very file this one would remove), with that image."""
    taken = {}
    for path in paths:
        declarer = ctx.declared_by(path, image)
        if declarer is not None and declarer.name in takers:
            taken[path] = declarer.name
    return taken


def _kept_note(path: str, taker: str, changes: bool) -> str:
    """What the plan says of a file an image leaves for another that declares it."""
    if not changes:  # its entry records it already
        return f"keeps {path} for {taker}"
    return f"keeps {path} for {taker}, which writes it (removed if {taker} fails)"
