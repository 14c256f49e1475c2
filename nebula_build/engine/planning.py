"""The whole plan: each image's action (the pure diff of `core.plan`) and the files
made from the images (atlases, the asset manifest)."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from pathlib import Path

from nebula_build.core.plan import (
    PLACEHOLDER_REASON,
    SETTINGS_NOTE,
    Action,
    ActionKind,
    Plan,
    make_plan,
    renames,
)
from nebula_build.core.selection import select
from nebula_build.core.spec import NO_ROW_KEPT, AssetSpec
from nebula_build.engine import candidates, ondisk
from nebula_build.engine.derived import plan_files
from nebula_build.engine.prepare import Prepared
from nebula_build.engine.standins import kept_note
from nebula_build.engine.vouching import record_carried, vouching
from nebula_build.errors import LockfileError, PluginError, UserError
from nebula_build.plugin import OnDisk
from nebula_build.state.lockfile import Entries, LockEntry
from nebula_build.state.remote import Remote
from nebula_build.state.siblings import recorded_elsewhere, unread_beside
from nebula_build.text import file_key, made_by_stand_in, printable, shell_operands, shell_option


def plan_for(
    prepared: Prepared,
    lock: Entries,
    *,
    targets: Collection[str] = (),
    replace: Collection[str] = (),
    force: bool = False,
    remote: Remote | None = None,
    notice: Callable[[str], None] = lambda message: None,
    picks: Mapping[str, int] = {},
    draws: bool = True,
    more: Collection[str] = (),
    pins: Mapping[str, AssetSpec] = {},
    unpin: Collection[str] = (),
) -> Plan:
    """The plan; with `remote`, the generations it holds are marked as restores from it.
    Each image is its picked draw (`picks` overrides the lock's); with `draws`, the
    candidates the cache lacks are `draw` actions. After an edit resolved alone
    (`prepared.changed_only`, watch) and nothing else asked, only the images it may
    have changed are planned (with the images they take outputs from)."""
    every_lock = lock
    specs = prepared.specs
    if prepared.changed_only is None:  # a watch round: its first plan checked the lock
        refuse_other_names(prepared, lock)
    only = prepared.changed_only
    if only is not None and not (targets or replace or more or picks or pins or unpin):
        specs, lock = _view(specs, lock, only)
    more = more_images(prepared, more)
    # a renamed image keeps the draws, pick and pin of the image whose output it takes over
    drawn = _with_renames(specs, lock, prepared.project.lock_path.name)
    chosen = candidates.picked(
        specs, drawn, picks, more=more, pins=pins, unpin=unpin, on_disk=prepared.held_draw
    )
    if not all(name in prepared.specs or name in every_lock for name in targets):
        named(prepared, every_lock, "--target", targets)
    # `--replace product` or `product[*,thumb]` names a pinned image as surely as its name
    replaced = named(prepared, every_lock, "--replace", replace)
    for option, names in (("--more", more), ("--replace", replaced)):
        pinned = sorted(n for n in names if n in chosen.specs and chosen.specs[n].pin is not None)
        if pinned:
            raise UserError(
                f"{option}: images.{pinned[0]} is pinned to an earlier generation: "
                f"`nebula-build pick --unpin {shell_operands(pinned[0])}` first"
            )

    unread_beside(prepared.project)  # what a plan that failed left unsaid is not this one's
    vouched = vouching(prepared.guard, prepared.store)
    carries_record = record_carried(prepared.guard)
    refused = prepared.store.placeholder
    placeholders = {n for n, e in lock.items() if e.made_with and refused(e.made_with)}
    recorded = recorded_elsewhere(prepared.project)

    def elsewhere(path: str) -> str | None:
        found = recorded(path)
        return None if found is None else found.says()

    def diff(chosen: candidates.Picked) -> Plan:
        return make_plan(
            chosen.specs,
            lock,
            digest_of=prepared.files.digest,
            same_file=lambda path, other: _same_file(prepared.project.root, path, other),
            has_cached=prepared.store.has_ours,
            known_output=prepared.store.output_files,
            output_params=prepared.store.output_params,
            wrote_before=prepared.store.wrote_before,
            vouched=vouched,
            carries_record=carries_record,
            elsewhere=elsewhere,
            targets=targets,
            replace_images=replace,
            force=force,
            row_bases=prepared.resolved.row_bases,
            placeholders=placeholders,
        )

    images = diff(chosen)
    images = Plan(_placeholders_not_adopted(images.actions, prepared))
    lost = _lost_pins(images, pins, remote)
    if lost:  # a pin never pays: the manifest's spec is made instead
        chosen = candidates.picked(
            specs,
            drawn,
            picks,
            more=more,
            pins=pins,
            unpin={*unpin, *lost},
            on_disk=prepared.held_draw,
        )
        chosen.notes.update(
            (name, "its pinned earlier generation is in no cache here: the pin is released")
            for name in lost
        )
        images = Plan(_placeholders_not_adopted(diff(chosen).actions, prepared))
    actions = candidates.with_notes(images.actions, chosen.notes)
    actions = candidates.with_notes(actions, other_settings(prepared, images, lock, notice))
    actions = candidates.with_notes(actions, kept_placeholders(images, lock, placeholders))
    if draws:
        actions += tuple(candidates.draw_actions(actions, chosen, drawn, prepared.store))
    if more:
        to_record = candidates.draws_to_record(actions, chosen, prepared.store, drawn, more)
        actions = candidates.with_notes(actions, to_record)
    images = Plan(_folders_in_the_way(actions, prepared))
    if remote is not None:
        from nebula_build.engine.remotecache import mark

        images = mark(images, remote, notice)
    # --target: only the atlases of the images it plans
    related = {a.image for a in images.actions} if targets else None
    files = plan_files(
        prepared, every_lock, images.actions, force=force, deleting=not targets, related=related
    )
    for note in unread_beside(prepared.project):  # asked about for this plan's removals
        notice(note)
    for base in _rows_made_none(prepared, every_lock):
        notice(f"images.{base} makes no image ({NO_ROW_KEPT})")
    return Plan(images.actions, files)


def _rows_made_none(prepared: Prepared, lock: Entries) -> list[str]:
    """The declarations with `rows` that make no image, and made none the lock holds
    (one whose images go says so as each one's reason)."""
    if not prepared.resolved.row_bases:
        return []
    made = {name.split("[", 1)[0] for name in (*prepared.specs, *lock)}
    return [base for base in prepared.resolved.row_bases if base not in made]


def _with_renames(specs: Mapping[str, AssetSpec], lock: Entries, lock_name: str) -> Entries:
    """The lock with each renamed image's entry under its new name as well (`renames`)."""
    renamed = renames(specs, lock, lock_name)
    if not renamed:
        return lock
    return {**lock, **{new: lock[old] for new, old in renamed.items()}}


def named(prepared: Prepared, lock: Entries, option: str, names: Collection[str]) -> set[str]:
    """The images `option` (--target, --replace) names among those declared and those
    only the lock still knows; an unknown one is an error naming the manifest and the
    option, as for --more."""
    if not names:
        return set()
    specs = prepared.specs
    known = [*specs, *(name for name in lock if name not in specs)]
    try:
        return select(names, known, {name: spec.parts for name, spec in specs.items()})
    except UserError as exc:
        raise UserError(f"{prepared.project.display_manifest}: {option}: {exc}") from None


def more_images(prepared: Prepared, more: Collection[str]) -> frozenset[str]:
    """The images `--more` asks one more draw of: each NAME an image, a declaration or a
    pattern (`enemy[*,idle]`), as for --target and --replace."""
    if not more:
        return frozenset()
    specs = prepared.specs
    try:
        return frozenset(select(more, specs, {name: spec.parts for name, spec in specs.items()}))
    except UserError as exc:
        raise UserError(f"{prepared.project.display_manifest}: --more: {exc}") from None


def _view(
    specs: Mapping[str, AssetSpec], lock: Entries, names: Collection[str]
) -> tuple[dict[str, AssetSpec], Entries]:
    """The specs and lock entries of `names` and of every image whose output they take
    (at any depth), in manifest order."""
    wanted = {name for name in names if name in specs}
    todo = list(wanted)
    while todo:
        for upstream in specs[todo.pop()].depends_on:
            if upstream in specs and upstream not in wanted:
                wanted.add(upstream)
                todo.append(upstream)
    if len(wanted) * 8 > len(specs):  # a large part: order the whole
        view = {name: spec for name, spec in specs.items() if name in wanted}
    else:
        order = {name: index for index, name in enumerate(specs)} if len(wanted) > 1 else {}
        view = {name: specs[name] for name in sorted(wanted, key=lambda n: order.get(n, 0))}
    entries = {name: lock[name] for name in (*view, *names) if name in lock}
    return view, entries


def _same_file(root: Path, path: str, other: str) -> bool:
    """Whether two project paths are one directory entry on this disk (a name in another
    case on macOS or Windows, or a hard link): two stats, asked only of names that differ
    in case or Unicode form alone."""
    try:
        first = (root / path).stat(follow_symlinks=False)
        second = (root / other).stat(follow_symlinks=False)
    except (OSError, ValueError):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def other_settings(
    prepared: Prepared,
    images: Plan,
    lock: Entries,
    notice: Callable[[str], None] = lambda message: None,
) -> dict[str, str]:
    """A note for each image the plan keeps whose lock entry records other values of
    the settings its backend records (`Backend.made_with`) or of what files outside
    the project decide (`Backend.made_with_on_disk`: the weights): not in the key, so
    no regeneration by itself; `apply --replace` makes it again with today's. A
    plugin whose `made_with` fails gets no notes, and `notice` says so once: the plan
    goes on."""
    now = _MadeWithNow(prepared, notice)
    notes = {}
    for action in images.actions:
        spec, entry = action.spec, lock.get(action.image)
        if spec is None or entry is None or action.generates or not entry.made_with:
            continue
        if spec.generation_key != entry.generation_key:
            continue
        expected = now.values(spec.backend, spec.model, entry.made_with.keys())
        changed = [
            f"{name} {_shown(entry.made_with[name])}, now {_shown(value)}"
            for name, value in sorted(expected.items())
            if name in entry.made_with and entry.made_with[name] != value
        ]
        if changed:
            notes[action.image] = (
                f"{SETTINGS_NOTE} ({'; '.join(changed)}): "
                f"`nebula-build apply {shell_option('--replace', action.image)}` makes it again"
            )
    now.save()
    return notes


def _placeholders_not_adopted(
    actions: tuple[Action, ...], prepared: Prepared
) -> tuple[Action, ...]:
    """The actions, where one would record as its image the files a placeholder this run
    may not keep left (a lock lost after a dry run) made again instead."""

    def placeholder(action: Action) -> bool:
        if not action.in_place or action.spec is None:
            return False
        _, made_with = prepared.store.provenance(action.spec.generation_key)
        return prepared.store.placeholder(made_with)

    return tuple(
        replace(action, in_place=False, from_cache=False, reason=PLACEHOLDER_REASON)
        if placeholder(action)
        else action
        for action in actions
    )


def kept_placeholders(images: Plan, lock: Entries, refused: Collection[str]) -> dict[str, str]:
    """A note for each image the plan keeps whose lock entry records a placeholder the
    stand-in for the API made (a run that may reach the stand-in keeps them); none
    for the `refused` ones, which the plan replaces, from a cache or not."""
    return {
        action.image: kept_note([action.image])
        for action in images.actions
        if action.kind is not ActionKind.DELETE
        and not action.generates
        and action.image not in refused
        and (entry := lock.get(action.image)) is not None
        and made_by_stand_in(entry.made_with)
    }


class _MadeWithNow:
    """What each backend says would make an image of a model now: its settings'
    part, and the on-disk part the lock entries ask about, each found once."""

    def __init__(self, prepared: Prepared, notice: Callable[[str], None]) -> None:
        self._notice = notice
        self._resolved = prepared.resolved
        self._root = prepared.project.root
        self._on_disk = ondisk.Values(prepared.project, prepared.outside)
        self._settings: dict[tuple[str, str], dict[str, str]] = {}
        self._found: dict[tuple[str, str], Mapping[str, OnDisk]] = {}
        self._asked: set[tuple[str, str, str]] = set()
        self._failed: set[tuple[str, str]] = set()

    def values(self, backend: str, model: str, names: Collection[str]) -> dict[str, str]:
        """The values known now, of the settings and of those of `names` on disk."""
        if backend not in self._resolved.backends:
            return {}
        key = (backend, model)
        if key not in self._settings:
            plugin = self._resolved.backends[backend]
            settings = self._resolved.settings[backend]
            try:
                self._settings[key] = dict(plugin.made_with(settings, model))
                self._found[key] = plugin.made_with_on_disk(settings, model, self._root)
            except ondisk.UNREADABLE:
                self._found[key] = {}
                self._on_disk.unreadable()
            except PluginError as exc:  # the plugin's bug: no note, never a failed plan
                self._settings[key], self._found[key] = {}, {}
                if not any(asked[0] == backend for asked in self._failed):
                    self._notice(f"{exc}; the plan cannot say which images were made otherwise")
                self._failed.add(key)
            if key in self._failed:
                return {}
        values = self._settings[key]
        for name in self._found[key].keys() & set(names):
            if (backend, model, name) not in self._asked:
                self._asked.add((backend, model, name))
                found = self._on_disk.value(backend, model, name, self._found[key][name])
                if found is not None:
                    values[name] = found
        return values

    def save(self) -> None:
        self._on_disk.save()


def _shown(value: str) -> str:
    """A value as a note shows it: a long one (a revision) by its start."""
    return value if len(value) <= 24 else value[:15] + "…"


def _lost_pins(images: Plan, pins: Mapping[str, AssetSpec], remote: Remote | None) -> set[str]:
    """The images the lock pins to an earlier generation whose output must be made
    again while no cache here holds it. The lock chose those parameters, not the
    manifest: they are never generated."""
    lost = {
        action.image: action.spec.generation_key
        for action in images.actions
        if action.spec is not None
        and action.spec.pin is not None
        and action.image not in pins
        and action.generates
    }
    if lost and remote is not None:
        held = remote.lookup(lost.values())
        return {name for name, key in lost.items() if key not in held}
    return set(lost)


def refuse_other_names(prepared: Prepared, lock: Mapping[str, LockEntry]) -> None:
    """Refuse, in one line, a lock entry naming under another name (through a folder
    link inside the project) a file another image writes or reads: a pull request's
    `alias/coin.png`, `alias` leading to `sprites/`, would have the plan delete or
    move coin's output, as the names differ. One realpath per folder; nothing more
    where no folder is a link. An entry whose folder a link leads out of the project
    is refused too: the plan would read (hash) a file outside it."""
    specs = prepared.specs.values()
    named = {spec.output.rpartition("/")[0] for spec in specs}
    named |= {p.rpartition("/")[0] for s in specs for p in (s.image, s.mask, s.palette_file) if p}
    named |= {p.rpartition("/")[0] for s in specs if s.widths for p, _, _ in s.variants}
    # a lock's variants are beside its output (`state.lockfile` checks)
    named |= {entry.output.rpartition("/")[0] for entry in lock.values()}
    folders = {folder: prepared.guard.real_folder(folder) for folder in named}
    if all(found == folder for folder, found in folders.items()):
        return
    for image, entry in lock.items():
        if folders[entry.output.rpartition("/")[0]] is None:
            raise LockfileError(
                f"{prepared.project.lock_path.name}: images.{printable(image, 80)}: "
                f"{printable(entry.output, 200)} is outside the project (a link leads out "
                "of it); restore the lock from version control or delete the entry"
            )
    claimed = {
        path: image
        for image, spec in prepared.specs.items()
        for path in (*spec.paths, spec.image, spec.mask, spec.palette_file)
        if path
    }
    recorded = [(path, image) for image, entry in lock.items() for path in entry.files()]
    for path in (*claimed, *(path for path, _ in recorded)):
        folder = path.rpartition("/")[0]
        if folder not in folders:
            folders[folder] = prepared.guard.real_folder(folder)

    def real(path: str) -> str | None:
        folder, _, name = path.rpartition("/")
        found = folders[folder]
        return None if found is None else f"{found}/{name}" if found else name

    owners: dict[str, tuple[str, str]] = {}  # the file, as a key → (image, its name)
    for path, image in claimed.items():
        if (found := real(path)) is not None:
            owners.setdefault(file_key(found), (image, path))
    for path, image in recorded:
        found = real(path)
        owner = None if found is None else owners.get(file_key(found))
        if owner is None or owner[0] == image or file_key(owner[1]) == file_key(path):
            continue
        raise LockfileError(
            f"{prepared.project.lock_path.name}: images.{printable(image, 80)}: "
            f"{printable(path, 200)} is {printable(owner[1], 200)} of "
            f"{printable(owner[0], 80)} under another name (a link); restore the lock "
            "from version control or delete the entry"
        )


#: the actions that write an image's files
_WRITING = (
    ActionKind.CREATE,
    ActionKind.REGENERATE,
    ActionKind.REENCODE,
    ActionKind.RESTORE,
    ActionKind.MOVE,
)


def _folders_in_the_way(actions: tuple[Action, ...], prepared: Prepared) -> tuple[Action, ...]:
    """The actions, with each that would write a file where a folder is, or under a file
    where a folder should be, made a conflict that --force does not resolve: apply would
    generate (and pay) for nothing. Only a path the plan found no file at is looked at (a
    stat each, and one for each of its folders not looked at yet)."""
    root = str(prepared.project.root)
    folders: dict[str, str | None] = {"": None}

    def in_the_way(action: Action) -> str | None:
        if action.kind not in _WRITING or action.spec is None:
            return None
        found = dict(action.found)
        for path in action.spec.paths:
            if found.get(path) is not None:
                continue
            if os.path.isdir(os.path.join(root, path)):  # noqa: PTH112, PTH118
                return f"{path} is a folder"
            if (blocking := _file_for_a_folder(root, path, folders)) is not None:
                return blocking
        return None

    def checked(action: Action) -> Action:
        problem = in_the_way(action)
        if problem is None:
            return action
        return Action(
            image=action.image,
            kind=ActionKind.CONFLICT,
            reason=f"{problem}: remove it or give this image another output",
            output=action.output,
            spec=action.spec,
            entry=action.entry,
        )

    return tuple(checked(action) for action in actions)


def _file_for_a_folder(root: str, path: str, folders: dict[str, str | None]) -> str | None:
    """What stands where a folder of `path` must be (`out` a file, for out/a.png), or None."""
    found = _not_a_folder(root, os.path.dirname(path), folders)  # noqa: PTH120
    return None if found is None else f"{found}, where {path} needs a folder"


def _not_a_folder(root: str, folder: str, folders: dict[str, str | None]) -> str | None:
    """'out is a file' where `folder` or a folder above it is something else than a
    folder, else None; `folders` keeps what each folder looked at was found to be."""
    if folder not in folders:
        full = os.path.join(root, folder)  # noqa: PTH118
        if os.path.isdir(full):  # noqa: PTH112
            folders[folder] = None
        elif os.path.lexists(full):
            kind = "a file" if os.path.isfile(full) else "not a folder"  # noqa: PTH113
            folders[folder] = f"{folder} is {kind}"
        else:  # not made yet: what the folder above it is decides
            folders[folder] = _not_a_folder(root, os.path.dirname(folder), folders)  # noqa: PTH120
    return folders[folder]
