"""Resolve again only the images an edit touched (watch at 100,000 images).

Given the previous resolution and a manifest that differs from it only in some
images' tables (`core.chunks`), the images whose declaration changed, was added,
or that take a changed image's output (`@name`, at any depth) are resolved again;
every other spec is the previous one. The result is what `resolve` gives for the
whole manifest, or None where this cannot be shown cheaply: a declaration with a
matrix or rows, an image an atlas takes, an image moving to a backend no other
uses, a path another image or file claims, any problem at all (the whole
resolution reports it, worded as always).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from nebula_build.core.expand import ExpansionError, expand
from nebula_build.core.manifest import ImageDecl, Manifest
from nebula_build.core.resolve import (
    CanEncode,
    DigestOf,
    InputSize,
    ReadInput,
    Resolved,
    _Resolver,
    dependency_order,
)
from nebula_build.core.spec import AssetSpec
from nebula_build.core.written import Read
from nebula_build.errors import DependencyCycleError
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.text import file_key, file_keys


@dataclass(frozen=True)
class Edit:
    """The images of the previous manifest an edit changed, added and removed."""

    changed: Collection[str]
    added: Collection[str] = ()
    removed: Collection[str] = ()


@dataclass(frozen=True)
class Rebuilt:
    """A resolution made by resolving only `resolved_again` (the rest was kept)."""

    resolved: Resolved
    resolved_again: tuple[str, ...]
    #: the image that writes each file (the next edit's `owners`)
    owners: dict[str, str]
    #: the images that take each image's output (the next edit's `takers`)
    takers: dict[str, frozenset[str]]


def _plain(decl: ImageDecl | None) -> bool:
    return decl is not None and not decl.matrix and decl.rows is None


def taker_index(specs: Mapping[str, AssetSpec]) -> dict[str, frozenset[str]]:
    """The images that take each image's output directly (`@name`)."""
    index: dict[str, set[str]] = {}
    for name, spec in specs.items():
        for upstream in spec.depends_on:
            index.setdefault(upstream, set()).add(name)
    return {upstream: frozenset(names) for upstream, names in index.items()}


def _takers(index: Mapping[str, frozenset[str]], names: Collection[str]) -> set[str]:
    """Every image that takes the output of one of `names`, at any depth."""
    found: set[str] = set()
    todo = [name for name in names if name in index]
    while todo:
        for taker in index.get(todo.pop(), ()):
            if taker not in found:
                found.add(taker)
                todo.append(taker)
    return found


def _reindexed(
    index: Mapping[str, frozenset[str]],
    before: Mapping[str, AssetSpec],
    gone: Collection[str],
    made: Mapping[str, AssetSpec],
) -> dict[str, frozenset[str]]:
    """`index` with the edges of the `gone` images' previous specs replaced by
    those of the `made` ones."""
    result = dict(index)
    for name in gone:
        spec = before.get(name)
        for upstream in spec.depends_on if spec is not None else ():
            left = result.get(upstream, frozenset()) - {name}
            if left:
                result[upstream] = left
            else:
                result.pop(upstream, None)
    for name, spec in made.items():
        for upstream in spec.depends_on:
            result[upstream] = result.get(upstream, frozenset()) | {name}
    return result


def _claimed_elsewhere(resolved: Resolved) -> set[str]:
    """The files the project writes that no image claims (atlases, asset manifest)."""
    paths = {resolved.asset_manifest} if resolved.asset_manifest else set()
    for atlas in resolved.atlases.values():
        paths |= {atlas.output, atlas.frames}
        paths |= {path for path in (atlas.aseprite, atlas.godot) if path}
    return paths


def resolve_edit(
    previous: Resolved,
    before: Mapping[str, ImageDecl],
    manifest: Manifest,
    edit: Edit,
    *,
    registry: BackendRegistry,
    digest_of: DigestOf,
    backend_override: str | None = None,
    can_encode: CanEncode = lambda fmt: True,
    input_size: InputSize = lambda path: None,
    read_input: ReadInput = lambda path, limit: None,
    owners: Mapping[str, str] | None = None,
    takers: Mapping[str, frozenset[str]] | None = None,
) -> Rebuilt | None:
    """The resolution of `manifest`, whose images differ from `before` (the
    declarations `previous` was resolved from) only as `edit` says; None where the
    whole manifest must be resolved. `owners` is the image that writes each file in
    `previous` (the last `Rebuilt.owners`; found from the specs where None), and
    `takers` its `taker_index` (likewise)."""
    images = manifest.model.images
    if len(images) > manifest.model.max_images:
        return None
    touched = [*edit.changed, *edit.added]
    if not all(_plain(before.get(n)) for n in (*edit.changed, *edit.removed)):
        return None
    if not all(_plain(images.get(n)) for n in touched):
        return None
    specs = previous.specs
    if len(specs) + len(edit.added) - len(edit.removed) > manifest.model.max_images:
        return None  # matrices expanded, as the whole resolve counts (it says which)
    if any(name in specs for name in edit.added) or any(n not in specs for n in edit.changed):
        return None
    if (edit.added or edit.removed) and previous.atlases:
        return None  # an atlas's pattern may take an image added or lose one removed
    in_atlases = {member for atlas in previous.atlases.values() for member in atlas.members}
    index = taker_index(specs) if takers is None else takers
    taking = _takers(index, [*edit.changed, *edit.removed])
    if taking & set(edit.removed) or taking - images.keys():
        return None
    again = {*touched, *taking}
    if again & in_atlases or any(not _plain(images.get(n)) for n in taking):
        return None
    try:
        order = dependency_order(
            {name: images[name] for name in again},
            manifest.model.defaults,
            manifest.model.styles,
        )
    except DependencyCycleError:
        return None
    resolver = _Resolver(
        manifest,
        registry,
        digest_of,
        backend_override=backend_override,
        can_encode=can_encode,
        input_size=input_size,
        read_input=read_input,
    )
    if edit.added or edit.removed:
        removed = set(edit.removed)
        names = [n for n in _names(previous, before, images) if n not in removed]
    else:
        names = list(specs)
    resolver.names = names
    resolver.specs = dict(specs)
    for name in edit.removed:
        del resolver.specs[name]
    made: dict[str, AssetSpec] = {}
    for name in order:
        try:
            (expanded,) = expand(name, images[name])
        except ExpansionError:
            return None
        spec = resolver.resolve(name, expanded.decl)
        if spec is None or resolver.problems:
            return None
        resolver.specs[name] = made[name] = spec
    if not _same_backends(previous, specs, made, edit):
        return None
    claims = _claims(specs) if owners is None else owners
    gone = {*edit.removed, *again}
    taken = _claimed_elsewhere(previous)
    if not _claimable(made, claims, gone, taken, specs):
        return None
    claims = dict(claims)
    for name in gone:
        if name in specs:
            for path in specs[name].paths:
                if claims.get(path) == name:
                    del claims[path]
    for name, spec in made.items():
        claims.update(dict.fromkeys(spec.paths, name))
    if _written_over(resolver.reads, claims.keys() | taken):
        return None  # the whole path says where
    new_specs = resolver.specs
    if edit.added or edit.removed:
        new_specs = {name: new_specs[name] for name in names}
    index = _reindexed(index, specs, gone, made)
    return Rebuilt(replace(previous, specs=new_specs), tuple(order), claims, index)


def _written_over(reads: Collection[Read], written: Collection[str]) -> bool:
    """Whether a file the images resolved again read is written, case aside (as on
    macOS and Windows)."""
    if not reads:
        return False
    keys = file_keys(written)
    return any(file_key(read.path) in keys for read in reads)


def _claimable(
    made: Mapping[str, AssetSpec],
    claims: Mapping[str, str],
    gone: Collection[str],
    taken: Collection[str],
    specs: Mapping[str, AssetSpec],
) -> bool:
    """Whether the files of the images resolved again are theirs to write: no other
    image's, no atlas's or asset manifest's, none clashing (`_clashes`)."""
    for spec in made.values():
        for path in spec.paths:
            owner = claims.get(path)
            if path in taken or (owner is not None and owner not in gone):
                return False
    fresh = {path for name, spec in made.items() for path in spec.paths if claims.get(path) != name}
    return not fresh or not _clashes(fresh, claims.keys() | set(taken), specs)


def _clashes(fresh: set[str], written: Collection[str], specs: Mapping[str, AssetSpec]) -> bool:
    """Whether a file newly written is another's in other case, inside another written
    file, holds one, or is read as an input (`core.written`, where case does not tell
    files apart either; the whole path says where). Runs only when an edit writes a
    new path, never for a prompt edit."""
    folded = file_keys(written)
    new = file_keys(fresh)
    if len(new) < len(fresh) or any(
        file_key(path) in folded and path not in written for path in fresh
    ):
        return True  # two new files, or a new one and an old, that are one file there
    for path in new:
        folder = path.rpartition("/")[0]
        while folder:
            if folder in folded or folder in new:
                return True
            folder = folder.rpartition("/")[0]
    folders = tuple(f"{path}/" for path in new)
    if any(path.startswith(folders) for path in folded):
        return True
    for spec in specs.values():
        if spec.image is None and spec.mask is None and not spec.sprite:
            continue  # most images read no file
        inputs = ((spec.image, spec.image_digest), (spec.mask, spec.mask_digest))
        if file_key(spec.palette_file or "") in new or any(
            path is not None and file_key(path) in new and not (digest or "").startswith("@")
            for path, digest in inputs
        ):
            return True
    return False


def _claims(specs: Mapping[str, AssetSpec]) -> dict[str, str]:
    """The image that writes each file."""
    return {path: name for name, spec in specs.items() for path in spec.paths}


def _names(
    previous: Resolved, before: Mapping[str, ImageDecl], images: Mapping[str, ImageDecl]
) -> list[str]:
    """Every image's name, expanded, in the order the manifest now declares them."""
    made_by: dict[str, list[str]] = {}
    for name in previous.specs:
        made_by.setdefault(name.split("[", 1)[0], []).append(name)
    names: list[str] = []
    for base in images:
        names.extend(made_by.get(base, [base]) if base in before else [base])
    return names


def _same_backends(
    previous: Resolved,
    specs: Mapping[str, AssetSpec],
    made: Mapping[str, AssetSpec],
    edit: Edit,
) -> bool:
    """Whether the backends in use are the same set (their settings are then the
    previous ones)."""
    for name, spec in made.items():
        old = specs.get(name)
        if spec.backend not in previous.settings or (old and old.backend != spec.backend):
            return False
    if edit.removed:
        left = {specs[name].backend for name in edit.removed}
        left -= {spec.backend for n, spec in specs.items() if n not in edit.removed}
        if left:
            return False
    return True
