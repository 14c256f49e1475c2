"""Resolve a manifest into `AssetSpec`s: defaults, styles, matrices, @ chains, checks.

This is the pure core: it reads no files. Input files reach it only as content
digests through the `digest_of` function the caller passes in, so plan can use
cached digests while apply hashes the very bytes it hands the backend. What
depends on the chosen backend and model (which parameters it takes, size
multiples) is checked here, against the backend's declaration.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, ValidationError

from nebula_build.core.atlaspack import pack, too_large
from nebula_build.core.backendsettings import Refused, parse_settings
from nebula_build.core.expand import ExpansionError, count, expand, single
from nebula_build.core.manifest import (
    DEFAULT_MAX_IMAGES,
    MAX_IMAGES,
    MAX_PATH,
    MAX_PROBLEMS,
    AtlasDecl,
    Defaults,
    ImageDecl,
    Manifest,
    StyleDecl,
    describe_setting_error,
    has_control_characters,
    images_named,
    said_once,
    written_part,
)
from nebula_build.core.manifest import shown as shown_name
from nebula_build.core.nocycles import collector_paused
from nebula_build.core.selection import Selection, known_names
from nebula_build.core.spec import (
    DEFAULT_VARIANT_PATTERN,
    NO_ROW_KEPT,
    AssetSpec,
    AtlasSpec,
    fill,
    placeholders,
)
from nebula_build.core.sprite import pairs
from nebula_build.core.spriterules import SPRITE_KEYS, SPRITE_OPTIONS, SpriteRules, sprite_steps
from nebula_build.core.written import Read, as_one_file, inside_another, read_too
from nebula_build.errors import (
    CONFLICT,
    DependencyCycleError,
    ManifestError,
    MoreProblems,
    NebulaBuildError,
    Problem,
    UnsafePathError,
    UserError,
    model_suggestion,
    one_slip_from,
)
from nebula_build.imaging import FORMATS, INPUT_SUFFIXES, format_for
from nebula_build.params import (
    BY_NAME,
    COMMON_SIZE_STEP,
    FILES,
    MAX_SIZE,
    MIN_SIZE,
    PARAMS,
    STRICT,
    Param,
)
from nebula_build.plugin.backend import BackendSettings
from nebula_build.plugin.catalog import ModelSupport
from nebula_build.plugin.manager import BackendPlugin, BackendRegistry
from nebula_build.state.guard import path_problem, unportable
from nebula_build.state.remote import url_problem
from nebula_build.text import MAX_IMAGE_NAME, escaped_value, file_key, quoted

if TYPE_CHECKING:
    from nebula_build.core.rowimages import DataFiles, RowImages, Source, Sources
    from nebula_build.core.table import DataError

BUILTIN_DEFAULTS: dict[str, Any] = {"backend": "nebula", "width": 1024, "height": 1024}
#: what every image must end up with (the sizes have built-in defaults)
REQUIRED = tuple(param.name for param in PARAMS if param.universal)
MAX_DELIVERED = 8192
#: images resolved for their other problems although their seed is no seed: past
#: them (a seed wrong in 100,000 images) resolving them all doubled `validate`'s time
SEEDLESS = 1_000
#: bytes in one file or folder name: the file system's 255, less the room a temporary
#: file beside it takes (".<name>.nebula-tmp-<process id>-<8 hex>", 32 bytes at most)
MAX_NAME_BYTES = 200
_LOSSY = ("jpeg", "webp", "avif")
_VARIANT_FIELDS = ("stem", "width", "ext")
#: a relative path that names a file as the project does (no `.`, `..` or empty part,
#: no backslash, `~` or `:`) and no device's name as a part (`con`, `NUL.png`, `com1`;
#: a few other names that look alike take the long way): all but a part that ends with
#: a dot (`a./b`), which `_plain` looks for
_PLAIN_PART = r"(?![cCpPaAnNlL](?i:on|rn|ux|ul|om[1-9]|pt[1-9])(?:\.|/|$))[\w-][\w.-]*"
_PLAIN_PATH = re.compile(rf"{_PLAIN_PART}(?:/{_PLAIN_PART})*", re.ASCII)


def _plain(path: str) -> bool:
    """Whether `path` is a plain relative path nothing below could refuse (most are)."""
    return _PLAIN_PATH.fullmatch(path) is not None and "./" not in path and path[-1] != "."


#: the options of an output's encoding and of its variants
_ENCODING_OPTIONS = ("quality", "lossless", "resize", "fit", "resample", "variant_pattern")
#: the keys `check_output_options` reads besides the format: most images set none
_OUTPUT_OPTIONS = SPRITE_OPTIONS.union(_ENCODING_OPTIONS)

DigestOf = Callable[[str], "str | None"]
#: an input image's width and height from its header, what is wrong with it as an
#: image, or None where it is not known (the core reads no file)
InputSize = Callable[[str], "tuple[int, int] | str | None"]
#: the bytes of an input file read only up to a limit (a palette), None where it cannot
#: be read; TooLargeError past the limit, from the file's size before it is read
ReadInput = Callable[[str, int], "bytes | None"]
#: whether this machine can encode an output format (AVIF needs a recent Pillow)
CanEncode = Callable[[str], bool]


@dataclass(slots=True, eq=False)
class _Found:
    """A problem found, placed at its line only if it is among those described: 100,000
    images missing a prompt were 100,000 lookups of where each is written, and a million
    unknown backend settings as many."""

    loc: tuple[str | int, ...]
    message: str
    #: where it is written (an image a declaration made: the declaration's key)
    at: tuple[str | int, ...] | None = None
    #: a problem in a data file, placed there already
    placed: Problem | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    """The specs of a manifest and the backend settings they use."""

    specs: dict[str, AssetSpec]
    settings: dict[str, BackendSettings]
    backends: dict[str, BackendPlugin]
    #: `[assets] manifest`, relative to the project
    asset_manifest: str | None = None
    atlases: dict[str, AtlasSpec] = field(default_factory=dict)
    #: `[cache] remote`, a URL the manifest may name (checked by `state.remote`)
    cache_remote: str | None = None
    #: the data files `rows` read (a catalogue, each post), relative to the project
    data_files: tuple[str, ...] = ()
    #: (folder, the pattern below it, the files it matched) of each set of posts
    data_globs: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: the declarations with `rows` (an image of theirs not made is a row gone)
    row_bases: tuple[str, ...] = ()


class _Resolver(SpriteRules):
    def __init__(
        self,
        manifest: Manifest,
        registry: BackendRegistry,
        digest_of: DigestOf,
        *,
        backend_override: str | None,
        can_encode: CanEncode,
        input_size: InputSize,
        read_input: ReadInput,
        data: DataFiles | None = None,
        judged_apart: Collection[str] = (),
    ) -> None:
        self.manifest = manifest
        self.data = data
        #: declarations whose problems (and those naming them) are not said
        self.judged_apart = frozenset(judged_apart)
        #: each source's rows, read once however many declarations read it
        self.sources: Sources | None = None
        #: how many declarations still to resolve read each source (`count_readers`):
        #: what the last one read is let go, not kept to the end of the resolve
        self.readers: dict[Source, int] = {}
        self.data_files: dict[str, None] = {}
        self.data_globs: list[tuple[str, str, tuple[str, ...]]] = []
        self.rows: dict[str, str] = {}  # image made from a data row → the row's id
        self.parts: dict[str, tuple[str, ...]] = {}  # expanded image → its name's values
        self.input_size = input_size
        self.read_input = read_input
        self.can_encode = can_encode
        self.registry = registry
        self.digest_of = digest_of
        self.override = backend_override
        self.problems: list[_Found] = []
        #: problems past those described (a backend's settings' unknown keys), counted
        self.unseen = 0
        #: how many more images whose seed is no seed are resolved for their other
        #: problems (`SEEDLESS`)
        self.seedless = SEEDLESS
        #: a problem of an image a declaration made, as the declaration's template has
        #: it (`'../x/{sku}.png' uses '..'`, not `'../x/tea.png'`): said once for them all
        self.said_as_written: dict[_Found, str] = {}
        self.settings: dict[str, BackendSettings] = {}
        self.models: dict[str, Mapping[str, ModelSupport]] = {}
        self.broken_backends: set[str] = set()
        self.plugins: dict[str, BackendPlugin] = {}
        self.outputs: dict[str, str] = {}  # file written → the image (or atlas) writing it
        #: where the manifest names each file no image writes (atlases, asset manifest)
        self.derived: dict[str, tuple[str, ...]] = {}
        #: the files and patterns of posts the manifest reads (none is ever written)
        self.reads: list[Read] = []
        self.base = {**BUILTIN_DEFAULTS, **_set_fields(manifest.model.defaults)}
        self.default_style = self.base.pop("style", None)
        self.bases: dict[str, str] = {}  # expanded image name → its declaration's name
        self.names: list[str] = []  # every image, expanded, in manifest order
        #: declarations whose images could not be made (their problem is reported):
        #: a reference to one of them is not a second problem
        self.unexpanded: set[str] = set()
        self.specs: dict[str, AssetSpec] = {}  # resolved so far (upstream images first)
        self.styles: dict[str, dict[str, Any]] = {
            name: _set_fields(style) for name, style in manifest.model.styles.items()
        }
        #: what the checks before its output found of the first image of each `_shape`
        #: that failed them (its name, each problem's place and words): 100,000 images
        #: written alike but for their outputs fail alike, and are not checked again
        self.failed_alike: dict[frozenset[tuple[str, Any]] | None, _FailedAlike] = {}

    @cached_property
    def order(self) -> dict[str, int]:
        """Each image's place in the manifest (once `names` is final)."""
        return {name: place for place, name in enumerate(self.names)}

    @cached_property
    def rows_made_none(self) -> frozenset[str]:
        """The declarations with `rows` that make no image (once `names` is final)."""
        made = {name.split("[", 1)[0] for name in self.names}
        return frozenset(
            base
            for base, decl in self.manifest.model.images.items()
            if decl.rows is not None and base not in made and base not in self.unexpanded
        )

    @cached_property
    def selection(self) -> Selection:
        """Selects among the images, indexed once for every atlas."""
        return Selection(self.names, self.parts)

    def fail(self, loc: tuple[str | int, ...], message: str) -> _Found | None:
        """Record a problem; None where it is not said (`judged_apart`)."""
        if self.judged_apart and not self._judged_here(loc, message):
            return None
        at = None
        if len(loc) > 1 and loc[0] == "images":
            base = self.bases.get(str(loc[1]))
            if base is not None and base != loc[1]:  # an image a declaration made
                at = ("images", base, *loc[2:])  # where it is written
        found = _Found(loc, message, at)
        self.problems.append(found)
        return found

    def _judged_here(self, loc: tuple[str | int, ...], message: str) -> bool:
        """Whether a problem is of an image not `judged_apart`, and names none that is."""
        if len(loc) < 2 or loc[0] != "images":
            return False
        name = str(loc[1])
        declaration = self.bases.get(name, name).split("[", 1)[0]
        return declaration not in self.judged_apart and self.judged_apart.isdisjoint(
            images_named(message)
        )

    def error(self) -> ManifestError:
        """The problems found, each once, at most MAX_PROBLEMS of them described and
        placed (and a line counting the rest, as the manifest's own problems have)."""
        found = _said_once(_once_per_declaration(self.problems, self.bases, self.said_as_written))
        described = found[:MAX_PROBLEMS]
        located = iter(
            self.manifest.problems(
                [
                    (one.loc, one.message, written_part(self.manifest.model, one.at or one.loc))
                    for one in described
                    if one.placed is None
                ]
            )
        )
        problems = [one.placed or next(located) for one in described]
        # in the order they are written, the manifest's own first, as its schema's are
        shown = self.manifest.display_path
        problems.sort(key=lambda p: (p.path != shown, p.path, p.line or 0, p.column or 0))
        rest = len(found) - len(described) + self.unseen
        if rest:
            problems.append(MoreProblems(self.manifest.display_path, rest))
        return ManifestError(problems)

    def backend(
        self, name: str, loc: tuple[str, ...], image: str | None = None
    ) -> Mapping[str, ModelSupport] | None:
        """The models of backend `name`, or None (and its problems) if it cannot be
        used. Settings that conflict (`CONFLICT`) are reported once an `image` asks
        for the backend, naming it: they fail only the images that use it."""
        if name in self.models:
            return self.models[name]
        if name in self.broken_backends:  # its problems are reported once
            return None
        try:
            plugin = self.registry.get(name)
        except NebulaBuildError as exc:
            self.fail(loc, str(exc))
            return None
        raw = self.manifest.model.backends.get(name, {})
        settings = parse_settings(plugin, raw, max(MAX_PROBLEMS - len(self.problems), 0))
        if isinstance(settings, Refused):
            errors, unseen = settings.errors, settings.unseen
            if image is None and not unseen and all(e["type"] == CONFLICT for e in errors):
                return None
            self.broken_backends.add(name)
            self.unseen += unseen
            for error in errors:
                fields = plugin.cls.settings_model.model_fields
                known = list(fields) if len(error["loc"]) == 1 else []
                message = describe_setting_error(error, known, name)
                if error["type"] == CONFLICT and image is not None:
                    message += f" (images.{image} and every other image on {name} would fail)"
                self.fail(("backends", name, *map(str, error["loc"])), message)
            return None
        self.plugins[name] = plugin
        self.settings[name] = settings
        self.models[name] = plugin.models(settings)
        return self.models[name]

    def origin(self, name: str, decl: ImageDecl, key: str) -> tuple[str, ...]:
        """Where a value comes from: the image itself, its style or [defaults]."""
        if key in decl.model_fields_set:
            return ("images", name, key)
        style = decl.style or self.default_style
        if style in self.styles and key in self.styles[style]:
            return ("styles", style, key)
        return ("defaults", key)

    def style_fields(self, name: str, decl: ImageDecl) -> dict[str, Any] | None:
        """The values of the image's style, or None (and a problem) if it is unknown."""
        style = decl.style or self.default_style
        if style is None:
            return {}
        if style not in self.styles:
            known = ", ".join(self.styles) or "none declared"
            self.fail(
                self.origin(name, decl, "style") if decl.style else ("defaults", "style"),
                f"unknown style {style!r} (known: {known})",
            )
            return None
        return self.styles[style]

    def check_path(
        self,
        loc: tuple[str | int, ...],
        value: str,
        what: str,
        *,
        output_of: str | None = None,
        written: bool = False,
    ) -> str | None:
        """`value` as the project names it (`a/b.png`), or None (and a problem).
        `output_of`: the image whose output `value` is. Where a declaration's template
        filled it in and the template itself has the problem, the problem is said of the
        template too (`said_as_written`), so that its images make one line. `written`:
        a file the apply writes (an output is one)."""
        path, problem = _checked_path(value, what, guarded=written or output_of is not None)
        if path is not None and written and value.endswith(("/", "\\")):
            problem = _a_folder_not_a_file(path, loc[-1])
        if problem is None:
            return path
        found = self.fail(loc, problem)
        base = self.bases.get(output_of) if output_of is not None else None
        if found is not None and base is not None:
            template = self.manifest.model.images[base].output
            as_written = _checked_path(template, what, guarded=True)[1]
            if as_written is not None:
                self.said_as_written[found] = as_written
        return None

    def input(self, name: str, decl: ImageDecl, key: str, value: str) -> tuple[str, str] | None:
        """(path, digest) of an input: a file, or `@image`, another image's output.

        An upstream image stands in by its output key: known before it runs, and
        changed whenever its file would change, so a new upstream re-keys this image.
        """
        loc = self.origin(name, decl, key)
        if value.startswith("@"):
            ref = value[1:]
            upstream = self.specs.get(ref)
            if ref.split("[", 1)[0] in self.unexpanded:
                return None  # its declaration's own problem is reported
            if ref not in self.order:
                self.fail(loc, f"{value!r} names no image (known: {known_names(self.names)})")
            elif upstream is not None and upstream.format not in ("png", "jpeg", "webp"):
                self.fail(
                    loc, f"{value!r}: its output {upstream.output} is not a PNG, JPEG or WebP file"
                )
            elif upstream is not None:
                return upstream.output, f"@{ref}:{upstream.output_key}"
            return None  # the upstream image's own problem is reported for it
        path = self.check_path(loc, value, "an input")
        if path is None:
            return None
        if PurePosixPath(path).suffix.lower() not in INPUT_SUFFIXES:
            self.fail(loc, f"{quoted(value)} is not a PNG, JPEG or WebP file")
            return None
        try:
            digest = self.digest_of(path)
        except UnsafePathError as refused:  # there, but a FIFO, a link out, too large…
            self.fail(loc, str(refused))
            return None
        if digest is None:
            self.fail(loc, f"file not found: {path}")
            return None
        return path, digest

    def from_rows(self, base: str, decl: ImageDecl, budget: int) -> RowImages:
        """The images of a declaration with `rows`, each named by its row's id (and its
        matrix's values); none, only counted, where they are more than `budget`."""
        # Only manifests with rows pay to import the parsers and the filter language.
        from nebula_build.core.rowimages import RowImages, Sources, images_from_rows, sources_of
        from nebula_build.core.table import DataError

        assert decl.rows is not None
        loc = ("images", base)
        if self.data is None:
            self.fail((*loc, "rows"), "rows are read only where the project's files are")
            return RowImages()
        try:
            found = sources_of(decl.rows)
            readable = [self.reading(base, source) for source in found]  # each one said
            if not all(readable):
                return RowImages()
            if self.sources is None:
                self.sources = Sources(self.data)
            try:
                made = images_from_rows(base, decl, found, self.sources, budget=budget)
            finally:
                for source in found:
                    self.done_reading(source)
        except ExpansionError as exc:
            self.fail((*loc, exc.key, *exc.at), str(exc))
            return RowImages()
        except DataError as exc:
            self.data_problem(base, exc)
            return RowImages()
        self.data_files.update(dict.fromkeys(made.files))
        self.data_globs.extend(made.matched)
        self.unseen += made.unseen
        for problem in made.problems:
            self.data_problem(base, problem)
        return made

    def count_readers(self, decls: Iterable[ImageDecl]) -> None:
        """Count the declarations that read each source, before any is resolved."""
        from nebula_build.core.rowimages import sources_of

        for decl in decls:
            if decl.rows is not None:
                with contextlib.suppress(ExpansionError):  # said when it is resolved
                    for source in sources_of(decl.rows):
                        self.readers[source] = self.readers.get(source, 0) + 1

    def done_reading(self, source: Source) -> None:
        """One declaration of `source` resolved: after the last, what it alone read goes
        (a table of millions of rows that a `limit` kept five of)."""
        left = self.readers.get(source)
        if left is None or self.sources is None:
            return
        self.readers[source] = left - 1
        if left == 1:
            self.sources.release(source, {s for s, n in self.readers.items() if n})

    def reading(self, base: str, source: Source) -> bool:
        """Record what a declaration's `rows` read (never to be written); False where
        its path is not one (the problem is reported)."""
        path: str | None = source.path  # "." : posts in the project's own folder
        if path != ".":
            loc = ("images", base, "rows", *source.written_at)
            path = self.check_path(loc, source.path, "a data file")
        if path is None:
            return False
        if source.pattern is None:
            self.reads.append(Read(f"images.{base} as its rows", path))
        else:
            reader = f"images.{base} as a post ({source.shown})"
            self.reads.append(Read(reader, path, tuple(source.pattern.split("/"))))
        return True

    def data_problem(self, base: str, exc: DataError) -> None:
        """A problem in a data file, shown at its line like one in the manifest."""
        folder = posixpath.dirname(self.manifest.display_path)
        data_path = escaped_value(exc.path)
        path = posixpath.join(folder, data_path) if folder else data_path
        if self.judged_apart and not self._judged_here(("images", base), str(exc)):
            return
        placed = Problem(path, f"images.{base}", str(exc), exc.line, exc.column)
        self.problems.append(_Found(("images", base), str(exc), placed=placed))

    def images(self) -> dict[str, ImageDecl]:
        """Every image the manifest declares, by name, in its order: each declaration's,
        its matrix and rows expanded (the problems reported, a declaration with any left
        out); raises the manifest's error where they are more than `max_images`."""
        declared = self.manifest.model.images
        cap = self.manifest.model.max_images
        images: dict[str, ImageDecl] = {}
        if any(decl.rows is not None for decl in declared.values()):
            self.count_readers(declared.values())
        for base, decl in declared.items():
            if decl.rows is None and not decl.matrix and len(images) < cap:  # as most are
                try:
                    images[base] = single(decl)
                except ExpansionError as exc:
                    self.fail(("images", base, exc.key, *exc.at), str(exc))
                    if self.seedless <= 0 or exc.key == "output":
                        self.unexpanded.add(base)
                        continue
                    # resolved (without its seed) all the same, so that its other
                    # problems are said with this one (the manifest fails anyway); one
                    # with a placeholder in its output would have it said twice
                    self.seedless -= 1
                    images[base] = decl.model_copy(update={"seed": None})
                self.bases[base] = base
                continue
            problems_before = len(self.problems)
            self.expand(base, decl, images)
            if len(self.problems) > problems_before:
                self.unexpanded.add(base)
        self.names = list(images)
        return images

    def expand(self, base: str, decl: ImageDecl, images: dict[str, ImageDecl]) -> None:
        """Add the images of a declaration with a matrix or rows to `images`."""
        budget = self.manifest.model.max_images - len(images)
        made = self.from_rows(base, decl, budget) if decl.rows is not None else None
        makes = made.count if made is not None else count(decl)
        if makes > budget:
            rows = made.rows if made is not None and decl.matrix else None
            self.fail(*_too_many(self.manifest, base, makes, len(images), rows))
            raise self.error()
        added: list[str] = []
        try:
            self.add_expanded(base, decl, made, images, added)
        except ExpansionError as exc:
            self.fail(("images", base, exc.key, *exc.at), str(exc))
            if exc.key == "seed" and made is None and makes <= self.seedless:
                self.seedless -= makes
                # expanded without the seed all the same, so that the declaration's
                # other problems are said with this one (the manifest fails anyway)
                for name in added:
                    del self.bases[name], images[name]
                    self.parts.pop(name, None)
                try:
                    seedless = decl.model_copy(update={"seed": None})
                    self.add_expanded(base, seedless, None, images, [])
                except ExpansionError as also:
                    self.fail(("images", base, also.key, *also.at), str(also))

    def add_expanded(
        self,
        base: str,
        decl: ImageDecl,
        made: RowImages | None,
        images: dict[str, ImageDecl],
        added: list[str],
    ) -> None:
        """Add a declaration's images (its matrix's, or `made` from its rows) to
        `images`, and their names to `added`."""
        for image in made.images if made is not None else expand(base, decl):
            if image.name in self.bases:
                self.fail(("images", base, "matrix"), _named_twice(image.name))
                break
            if len(image.name) > MAX_IMAGE_NAME:
                self.fail(
                    ("images", base, "matrix" if decl.matrix else "rows"),
                    f"makes an image whose name has {len(image.name):,} characters, more "
                    f"than {MAX_IMAGE_NAME:,}: use fewer or shorter values",
                )
                break
            self.bases[image.name] = base
            images[image.name] = image.decl
            added.append(image.name)
            if image.row is not None:
                self.rows[image.name] = image.row
            if image.parts:
                self.parts[image.name] = image.parts

    def resolve(self, name: str, decl: ImageDecl) -> AssetSpec | None:
        # Runs once per image on every plan: keep the happy path free of extra work.
        own = _set_fields(decl)
        if self.failed_alike and (failed := self.failed_alike.get(_shape(own))) is not None:
            self.failed_again(name, decl, failed)
            return None
        style = self.style_fields(name, decl)
        if style is None:
            return None
        merged = {**self.base, **style, **own} if style else {**self.base, **own}
        if "prompt_prefix" in merged or "prompt_suffix" in merged:
            parts = (
                merged.pop("prompt_prefix", None),
                merged.get("prompt"),
                merged.pop("prompt_suffix", None),
            )
            merged["prompt"] = ", ".join(part for part in parts if part)
        keyed = None if SPRITE_KEYS.isdisjoint(merged) else self.key_colour(name, decl, merged)
        if self.override:
            merged["backend"] = self.override
        start = len(self.problems)
        backend_known = merged["backend"] in self.models
        models = self.models.get(merged["backend"]) or self.backend(
            merged["backend"], self.origin(name, decl, "backend"), name
        )
        if models is None:
            return None
        model_id = merged.get("model")
        if model_id is None:
            self.fail(
                ("images", name, "model"),
                "is required (set it here or in [defaults]); "
                "`nebula-build models` lists the choices",
            )
            return None
        support = models.get(model_id)
        if support is None:
            self.fail(
                self.origin(name, decl, "model"),
                f"unknown model {model_id!r} for backend {merged['backend']!r} "
                f"({_known_models(models)}){model_suggestion(model_id, models)}",
            )
            return None
        rules = _rules_of(support)
        dropped = (
            ()
            if rules.rejected.isdisjoint(merged)
            else self.drop_inherited(name, decl, merged, model_id, support)
        )
        inpainting = rules.inpainting
        missing = [repr(key) for key in FILES if key not in merged] if inpainting else ()
        if missing:
            self.fail(
                ("images", name),
                f"{model_id} needs {' and '.join(missing)} (inpainting input files)",
            )
        for param in REQUIRED:
            if param not in merged:
                self.fail(("images", name, param), "is required")
        step = support.size_multiple
        # most models' step is said as the manifest's own check says it, so that a size in
        # [defaults] is one problem, not one for each model that inherits it
        model = "" if step == COMMON_SIZE_STEP else f" for {model_id}"
        for side in ("width", "height"):
            value = merged[side]
            if value % step or not MIN_SIZE <= value <= MAX_SIZE:
                self.fail(
                    self.origin(name, decl, side),
                    f"must be a multiple of {step} within {MIN_SIZE}-{MAX_SIZE}{model} "
                    f"(got {value})",
                )
        if len(self.problems) > start and backend_known and keyed is None and not inpainting:
            self.remember_failed(name, own, merged, start)
        output, fmt = self.check_output(name, decl, merged)
        inputs = self.inputs(name, decl, merged) if inpainting else {}
        if inputs is None or len(self.problems) > start or output is None or fmt is None:
            return None
        paths = {key: found[0] for key, found in inputs.items()}
        digests = {key: found[1] for key, found in inputs.items()}
        generation = {
            param.name: _typed(param, merged.get(param.name)) for param in PARAMS if not param.file
        }
        files: dict[str, Any] = {key: paths.get(key) for key in FILES}
        files |= {BY_NAME[key].key_field: digests.get(key) for key in FILES}
        spec = AssetSpec(
            name=name,
            backend=merged["backend"],
            model=model_id,
            output=output,
            format=fmt,
            **generation,
            **files,
            seed_reproducible=support.takes("seed"),
            dropped=dropped,
            quality=merged.get("quality"),
            lossless=merged.get("lossless"),
            resize=merged.get("resize"),
            fit=merged.get("fit", "cover"),
            resample=merged.get("resample", "lanczos"),
            widths=tuple(sorted(set(merged.get("widths", ())))),
            variant_pattern=merged.get("variant_pattern", DEFAULT_VARIANT_PATTERN),
            alt=decl.alt,
            metadata=merged.get("metadata", True),
            depends_on=tuple(
                sorted({d.split(":")[0][1:] for d in digests.values() if d.startswith("@")})
            ),
            candidates=merged.get("candidates") or 1,
            key_color=keyed,
            sprite=sprite_steps(merged, keyed),
            checks=pairs(merged["checks"].model_dump()) if "checks" in merged else (),
            row=self.rows.get(name),
            parts=self.parts.get(name, ()),
        )
        return spec if self.claim_paths(name, decl, spec) else None

    def check_output(
        self, name: str, decl: ImageDecl, merged: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        """(the output's path, its format), each None where it cannot be written."""
        written = decl.output
        fmt = format_for(written)
        # as most are (runs for every image): what `_checked_path` passes at once, in a
        # format written with no option to check
        if (
            fmt is not None
            and len(written) <= 50
            and _plain(written)
            and _OUTPUT_OPTIONS.isdisjoint(merged)
            and self.can_encode(fmt)
        ):
            return written, fmt
        output = self.check_path(("images", name, "output"), decl.output, "", output_of=name)
        fmt = format_for(decl.output)
        if output is not None and fmt is None:
            self.fail(("images", name, "output"), _unsupported_output(output, decl.output, name))
        if fmt is not None:
            self.check_output_options(name, decl, merged, fmt)
        return output, fmt

    def remember_failed(
        self, name: str, own: dict[str, Any], merged: Mapping[str, Any], start: int
    ) -> None:
        """Keep what the checks before its output found of an image (the problems from
        `start` on), for the images written as it is but for their outputs; only where
        those checks read nothing but its values (no output options, sprite or input
        files: the callers' conditions) and the problems name no image."""
        if not _OUTPUT_OPTIONS.isdisjoint(merged):
            return
        said = tuple((one.loc, one.message) for one in self.problems[start:])
        if any(one.placed is not None for one in self.problems[start:]) or any(
            name in message for _, message in said
        ):
            return
        shape = _shape(own)
        if shape is not None:
            self.failed_alike.setdefault(shape, _FailedAlike(name, said))

    def failed_again(self, name: str, decl: ImageDecl, failed: _FailedAlike) -> None:
        """An image written as `failed`'s was but for its output: its problems, said of
        it, and then its output's own."""
        for loc, message in failed.said:
            if len(loc) > 1 and loc[0] == "images" and loc[1] == failed.name:
                self.fail(("images", name, *loc[2:]), message)
            else:
                self.fail(loc, message)
        self.check_output(name, decl, {})  # it sets no output option: none to check

    def inputs(
        self, name: str, decl: ImageDecl, merged: Mapping[str, Any]
    ) -> dict[str, tuple[str, str]] | None:
        """(path, digest) of each input file an inpainting image sets, checked; None
        where one cannot be used (its problem is reported)."""
        inputs = {key: self.input(name, decl, key, merged[key]) for key in FILES if key in merged}
        found = {key: one for key, one in inputs.items() if one is not None}
        if len(found) < len(inputs):
            return None
        self.check_inputs(name, decl, found)
        for key, (path, digest) in found.items():
            if not digest.startswith("@"):  # `@name`: an output, written
                self.reads.append(Read(f"images.{name} as its {key}", path))
        return found

    def check_inputs(
        self, name: str, decl: ImageDecl, inputs: Mapping[str, tuple[str, str]]
    ) -> None:
        """Each input file is an image a model takes, and a mask is its image's size."""
        sizes: dict[str, tuple[int, int]] = {}
        shown: dict[str, str] = {}
        for key, (path, digest) in inputs.items():
            ref = digest[1:].partition(":")[0] if digest.startswith("@") else None
            upstream = self.specs.get(ref) if ref else None
            # an upstream's file as written (padded, extruded); a trimmed one's size
            # depends on its pixels: checked once it is made (`engine.apply`)
            size = upstream.file_size if upstream else self.input_size(path)
            shown[key] = f"@{ref}'s output {path}" if ref else path
            if isinstance(size, str):
                self.fail(self.origin(name, decl, key), f"{path} cannot be used: {size}")
            elif size is not None:
                sizes[key] = size
        image, mask = sizes.get("image"), sizes.get("mask")
        if image and mask and image != mask:
            self.fail(
                self.origin(name, decl, "mask"),
                f"{shown['mask']} is {_by(mask)} but the image {shown['image']} is "
                f"{_by(image)}: a mask must be the size of its image",
            )

    def drop_inherited(
        self,
        name: str,
        decl: ImageDecl,
        merged: dict[str, Any],
        model_id: str,
        support: ModelSupport,
    ) -> tuple[str, ...]:
        """Leave out the parameters the model does not take that a style or [defaults]
        set (they apply where a model takes them); one the image sets is an error."""
        rejected = _rules_of(support).rejected.intersection(merged)
        if not rejected:
            return ()
        dropped = []
        for param in sorted(rejected):
            loc = self.origin(name, decl, param)
            if loc[0] == "images":
                self.fail(loc, self.not_taken(decl, model_id, param, merged["backend"]))
            else:
                del merged[param]
                dropped.append(".".join(loc))
        return tuple(dropped)

    def not_taken(self, decl: ImageDecl, model_id: str, param: str, backend: str) -> str:
        """An image sets a parameter its model does not take: say which models take it,
        and where it could go."""
        style = decl.style or self.default_style
        where = f"in its style {style!r} or [defaults]" if style else "in a style or [defaults]"
        models = self.models.get(backend) or {}
        taking = [m for m, support in models.items() if param not in _rules_of(support).rejected]
        which = (
            f"{', '.join(taking[:3])}{', …' if len(taking) > 3 else ''} "
            f"{'does' if len(taking) == 1 else 'do'}"
            if taking
            else f"no model on {backend} does"
        )
        return (
            f"{model_id} does not take {param} ({which}): remove it here, or set it {where}, "
            "where it applies only to the models that take it"
        )

    def atlas(self, name: str, decl: AtlasDecl, specs: Mapping[str, AssetSpec]) -> AtlasSpec | None:
        loc = ("atlases", name)
        requested = [n for n in decl.images if n.split("[", 1)[0] not in self.unexpanded]
        if len(requested) < len(decl.images):
            return None  # a member's declaration has a problem of its own, reported
        # a declaration whose rows make no image now (all out of stock) leaves the atlas
        rowless = [n for n in requested if n.split("[", 1)[0] in self.rows_made_none]
        requested = [n for n in requested if n not in rowless]
        if rowless and not requested:
            base = rowless[0].split("[", 1)[0]
            self.fail(
                (*loc, "images"),
                f"the atlas has no member: {rowless[0]} matches no image, as images.{base} "
                f"makes none now ({NO_ROW_KEPT}); list another image, or remove the atlas",
            )
            return None
        try:
            chosen = self.selection(requested)
        except UserError as exc:
            self.fail((*loc, "images"), str(exc))
            return None
        output = self.check_path((*loc, "output"), decl.output, "an atlas", written=True)
        fmt = format_for(decl.output)
        if output is not None and fmt not in ("png", "webp"):
            self.fail((*loc, "output"), "an atlas is a .png or .webp file")
            return None
        frames_value = decl.frames or decl.output.rpartition(".")[0] + ".json"
        frames = self.check_path((*loc, "frames"), frames_value, "a frame map", written=True)
        if output is None or frames is None or fmt is None:
            return None
        exports = {
            key: self.check_path((*loc, key), value, f"an atlas's {key} file", written=True)
            for key, value in (("aseprite", decl.aseprite), ("godot", decl.godot))
            if value is not None
        }
        if None in exports.values():
            return None
        claimed = {"output": output, "frames": frames, **exports}
        keys_of: dict[str, list[str]] = {}
        for key, path in claimed.items():
            keys_of.setdefault(str(path), []).append(key)
        for path, keys in keys_of.items():
            if len(keys) > 1:  # each rebuild would overwrite the other: a conflict forever
                shown = " and ".join(keys)
                self.fail((*loc, keys[-1]), f"{shown} are the same file {path}: give each its own")
                return None
        for key, path in claimed.items():
            assert path is not None
            if path in self.outputs:
                self.fail((*loc, key), f"{path} is also written by {self.writer(path)}")
                return None
            self.outputs[path] = f"atlases.{name}"
            self.derived[path] = (*loc, key)
        members = tuple(sorted((n for n in chosen if n in specs), key=self.order.__getitem__))
        if len(members) < len(chosen) and self.problems:
            return None  # a member's problem, said: its frames and animations are unknown
        if not self.sheet_fits(loc, members, specs, decl.padding):
            return None
        tags = self.atlas_tags(name, decl, members)
        if decl.tags is not None and tags is None:
            return None  # its problem is said
        if decl.loop is not True and not exports:
            self.fail((*loc, "loop"), "applies only with `aseprite` or `godot`: their animations")
            return None
        once = self.atlas_once(name, decl, tags)
        if once is None:
            return None
        godot = exports.get("godot")
        godot_sheet = self.godot_sheet(loc, decl, output, godot) if godot is not None else None
        if godot is not None and godot_sheet is None:
            return None
        return AtlasSpec(
            name,
            members,
            output,
            frames,
            decl.padding,
            fmt,
            tags or (),
            exports.get("aseprite"),
            exports.get("godot"),
            godot_sheet,
            float(decl.fps),
            once if exports else (),
        )

    def sheet_fits(
        self,
        loc: tuple[str, ...],
        members: Iterable[str],
        specs: Mapping[str, AssetSpec],
        padding: int,
    ) -> bool:
        """Whether an atlas's sheet fits a GPU texture, packed from the sizes its
        members' files will have (said at `loc` where not); where one is trimmed, its
        size follows its pixels: apply finds out, once the members are made."""
        sizes: dict[str, tuple[int, int]] = {}
        for member in members:
            size = specs[member].file_size
            if size is None:
                return True
            sizes[member] = size
        problem = too_large(pack(sizes, padding)[1]) if sizes else None
        if problem is not None:
            self.fail(loc, problem)
        return problem is None

    def claim_paths(self, name: str, decl: ImageDecl, spec: AssetSpec) -> bool:
        """Every file belongs to one image; variants must stay inside the project."""
        ok = True
        for path in spec.paths:
            key = "output" if path == spec.output else "widths"
            if (
                path != spec.output
                and self.check_path(self.origin(name, decl, key), path, "a variant", written=True)
                is None
            ):
                return False
            other = self.outputs.setdefault(path, name)
            if other != name:
                self.fail(("images", name, key), f"{path} is also written by images.{other}")
                ok = False
        return ok

    def asset_manifest(self) -> str | None:
        """`[assets] manifest`, checked and claimed like any file written."""
        loc = ("assets", "manifest")
        value = self.manifest.model.assets.manifest
        path = (
            None
            if value is None
            else self.check_path(loc, value, "the asset manifest", written=True)
        )
        if path is not None and path in self.outputs:
            self.fail(loc, f"{path} is also written by {self.writer(path)}")
        elif path is not None:
            self.outputs[path] = "[assets]"
            self.derived[path] = loc
        return path

    def written_at(self, path: str) -> tuple[str, ...]:
        """Where the manifest names a file it writes."""
        if path in self.derived:
            return self.derived[path]
        name = self.outputs[path]
        spec = self.specs.get(name)
        return ("images", name, "widths" if spec and spec.output != path else "output")

    def writer(self, path: str) -> str:
        """What writes a file, as a message names it (`images.a`, `atlases.enemies`)."""
        loc = self.written_at(path)
        return "[assets] manifest" if loc[0] == "assets" else f"{loc[0]}.{loc[1]}"

    def check_written(self) -> None:
        """No two files written differ only in case, none is written inside another,
        nor over one the manifest reads (each would fail, or loop, only once paid for,
        on macOS and Windows, where case does not tell files apart); time linear in
        the files written."""
        folded: dict[str, str] = {}  # `file_key` → the path as written
        for path in self.outputs:
            other = folded.setdefault(file_key(path), path)
            if other != path:
                self.fail(
                    self.written_at(path),
                    f"{path} is also written by {self.writer(other)}, as {other}: paths that "
                    "differ only in case (or Unicode form) are one file on macOS and Windows",
                )
        for inner, outer in inside_another(folded):
            path, file = folded[inner], folded[outer]
            self.fail(
                self.written_at(path),
                f"{path} is inside {file}, which {self.writer(file)} writes as a file: "
                "give one of them another path",
            )
        reads = [as_one_file(read) for read in self.reads]
        for path, read in read_too(folded, reads):
            self.fail(
                self.written_at(folded[path]),
                f"{folded[path]} is read by {read.reader}: a file the manifest reads is "
                "never written; write this one elsewhere",
            )

    def check_output_options(
        self, name: str, decl: ImageDecl, merged: dict[str, Any], fmt: str
    ) -> None:
        if not self.can_encode(fmt):
            self.fail(
                self.origin(name, decl, "output"),
                f"this Pillow cannot write {fmt.upper()}; install pillow>=11.3 or use .webp",
            )
        if _OUTPUT_OPTIONS.isdisjoint(merged):
            return

        def fail(key: str, message: str) -> None:
            self.fail(self.origin(name, decl, key), message)

        # set for many images ([defaults], a style), an encoder's option goes to the
        # outputs it fits and is left out of the others; set on the image, it is a mistake
        fits = {"quality": fmt in _LOSSY, "lossless": fmt in ("webp", "avif")}
        for key in [key for key, fit in fits.items() if key in merged and not fit]:
            if self.origin(name, decl, key)[0] != "images":
                del merged[key]
            elif key == "quality":
                fail(key, f"{fmt.upper()} is lossless: quality applies to .jpg, .webp and .avif")
            else:
                fail(key, "lossless applies to .webp and .avif")
        wrong = [side for side in merged.get("resize", ()) if not 1 <= side <= MAX_DELIVERED]
        if wrong:
            fail("resize", f"each side must be within 1-{MAX_DELIVERED} pixels (got {wrong[0]})")
        self.check_sprite_options(name, decl, merged, fmt)
        if ("fit" in merged or "resample" in merged) and "resize" not in merged:
            fail("fit" if "fit" in merged else "resample", "applies only with `resize`")
        widths = merged.get("widths", [])
        if wrong := [w for w in widths if not 1 <= w <= MAX_DELIVERED]:
            fail("widths", f"each must be within 1-{MAX_DELIVERED} pixels (got {wrong[0]})")
        elif len(set(widths)) != len(widths):
            twice = next(w for w in widths if widths.count(w) > 1)
            fail("widths", f"must be distinct ({twice} is there twice)")
        pattern = merged.get("variant_pattern", DEFAULT_VARIANT_PATTERN)
        if pattern == DEFAULT_VARIANT_PATTERN:
            return
        try:
            names = placeholders(pattern)
        except ValueError as exc:
            fail("variant_pattern", str(exc))
            return
        unknown = [f"{{{name}}}" for name in names if name not in _VARIANT_FIELDS]
        if unknown:
            fail(
                "variant_pattern",
                f"may use only {{stem}}, {{width}} and {{ext}} (not {unknown[0]})",
            )
        elif has_control_characters(pattern):
            fail("variant_pattern", f"may not contain control characters ({pattern!r})")
        elif "width" not in names or "/" in pattern or "\\" in pattern:
            fail("variant_pattern", "must contain {width} and no folder")
        else:
            self.check_variant_suffix(decl.output, pattern, fail)

    @staticmethod
    def check_variant_suffix(output: str, pattern: str, fail: Callable[[str, str], None]) -> None:
        """A variant's name ends with its output's extension: the extension is what
        says which format a file holds (`{stem}-{width}.html` would be PNG bytes)."""
        stem, _, ext = output.replace("\\", "/").rpartition("/")[2].rpartition(".")
        variant = fill(pattern, {"stem": stem, "width": 1, "ext": f".{ext}"})
        if variant.rpartition(".")[2].lower() != ext.lower():
            fail("variant_pattern", f"must end with the output's extension .{ext} (use {{ext}})")


def _checked_path(value: str, what: str, *, guarded: bool = False) -> tuple[str | None, str | None]:
    """(`value` as the project names it, None), or (None, what is wrong with it).
    `guarded`: a path written to, also refused as the guard would refuse it (a
    character a terminal does not show as it is, the tool's own folders), here where
    its key and line are known. `what` is the problem's subject: "" where the key
    names it (`images.a.output: must stay inside the project`)."""
    # String operations rather than PurePosixPath: this runs for every image.
    if len(value) <= 50 and _plain(value):  # as most are: nothing to say
        return value, None
    what = f"{what} " if what else ""
    if has_control_characters(value):
        return None, f"{what}may not contain control characters ({value!r})"
    if len(value) > MAX_PATH:
        return None, f"{what}may be at most {MAX_PATH} characters long"
    parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
    long = None
    if len(value) > 50:  # no shorter path has a name of more than 200 bytes
        long = next((p for p in parts if len(p) > 50 and len(p.encode()) > MAX_NAME_BYTES), None)
    if long is not None:
        return None, (
            f"{what}has a file or folder name longer than {MAX_NAME_BYTES} bytes "
            f"({long[:20]!r}… is {len(long.encode())})"
        )
    if value.startswith(("/", "\\", "~")) or (parts and ":" in parts[0]):
        return None, f"{what}must be a path relative to the manifest's folder, not {quoted(value)}"
    if ".." in parts:
        return None, f"{what}must stay inside the project ({quoted(value)} uses '..')"
    if not parts:
        return None, f"{what}must name a file"
    path = "/".join(parts)
    if guarded and (problem := path_problem(path) or unportable(path)) is not None:
        return None, f"{what}{quoted(path)} {problem}"
    return path, None


def _set_fields(fields: BaseModel) -> dict[str, Any]:
    """The fields the manifest wrote out (never None: TOML has no null)."""
    values = fields.__dict__
    return {key: values[key] for key in fields.model_fields_set}


def _shape(own: dict[str, Any]) -> frozenset[tuple[str, Any]] | None:
    """The values an image sets but its output: images of one shape are checked alike
    before their outputs are (None where a value is a list: not compared)."""
    rest = own.copy()
    rest.pop("output", None)
    try:
        return frozenset(rest.items())
    except TypeError:
        return None


class _FailedAlike(NamedTuple):
    """The problems the checks before its output found of an image (`remember_failed`)."""

    name: str
    said: tuple[tuple[tuple[str | int, ...], str], ...]


class _ModelRules(NamedTuple):
    """What resolution asks of a model for every image, worked out once per model."""

    #: parameters that are an error on this model (see `Param.unsupported`)
    rejected: frozenset[str]
    #: whether it repaints a masked area of input images (`ModelSupport.inpainting`)
    inpainting: bool


@cache
def _rules_of(support: ModelSupport) -> _ModelRules:
    """The rules of a model, worked out for its first image only."""
    return _ModelRules(STRICT - support.params, support.inpainting)


def _by(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _typed(param: Param, value: Any) -> Any:
    """TOML writes `guidance_scale = 9` as an integer; the key must not care."""
    return float(value) if param.type is float and value is not None else value


_CYCLE = "images depend on each other in a cycle: {}; an image cannot take its own output as input"


def taken(
    decl: ImageDecl, key: str, defaults: Defaults, styles: Mapping[str, StyleDecl]
) -> str | None:
    """The `image` or `mask` an image takes, as the resolver merges it: its own, else
    its style's, else [defaults]'."""
    own: str | None = getattr(decl, key)
    if own is not None:
        return own
    style = styles.get(decl.style or defaults.style or "") if styles else None
    from_style: str | None = None if style is None else getattr(style, key)
    return from_style if from_style is not None else getattr(defaults, key)


def dependency_order(
    images: Mapping[str, ImageDecl],
    defaults: Defaults,
    styles: Mapping[str, StyleDecl],
    *,
    cycles: list[list[str]] | None = None,
) -> list[str]:
    """Image names with every `@upstream` before the images that use it (through
    their own `image` or `mask`, their style's or [defaults]').

    Raises DependencyCycleError naming the cycle; or, given `cycles`, adds each cycle
    found to it (`[a, b, a]`: a takes b's output, b takes a's) and orders the rest as
    if the step closing it were not there. Unknown references are left for
    resolution to report.
    """
    needs = {}
    # most styles give no input: then an image's own, or [defaults]', as fast as that
    styles = {n: style for n, style in styles.items() if style.image or style.mask}
    for name, decl in images.items():
        if styles:
            image, mask = (taken(decl, key, defaults, styles) for key in ("image", "mask"))
        else:
            image, mask = decl.image or defaults.image, decl.mask or defaults.mask
        if (image and image[0] == "@") or (mask and mask[0] == "@"):  # most take none
            needs[name] = [v[1:] for v in (image, mask) if v and v[0] == "@" and v[1:] in images]
    if not any(needs.values()):  # no image takes another's output: as written
        return list(images)
    order: list[str] = []
    state: dict[str, str] = {}
    for first in images:
        if state.get(first) == "done":
            continue
        # a walk of its own, not recursion: a chain of thousands of images is no error
        path = [first]
        state[first] = "active"
        pending = [iter(needs.get(first, ()))]
        while pending:
            upstream = next(pending[-1], None)
            if upstream is None:
                pending.pop()
                done = path.pop()
                state[done] = "done"
                order.append(done)
            elif state.get(upstream) == "active":
                cycle = [*path[path.index(upstream) :], upstream]
                if cycles is None:
                    raise DependencyCycleError(_CYCLE.format(" -> ".join(cycle)))
                cycles.append(cycle)
            elif state.get(upstream) != "done":
                state[upstream] = "active"
                path.append(upstream)
                pending.append(iter(needs.get(upstream, ())))
    return order


def _too_many(
    manifest: Manifest, base: str, makes: int, before: int, rows: int | None = None
) -> tuple[tuple[str, ...], str]:
    """The problem of the declaration that would take the manifest past `max_images`
    (found before a matrix's images are made; `rows`: the rows a matrix multiplies)."""
    cap = manifest.model.max_images
    how = (
        f"set `max_images` at the top of {manifest.display_path} to allow more "
        f"(default {DEFAULT_MAX_IMAGES}, at most {MAX_IMAGES})"
        if before + makes <= MAX_IMAGES
        else f"split the project: a manifest may declare at most {MAX_IMAGES}"
    )
    if makes > cap:
        declared = manifest.model.images[base]
        product = ""
        if rows:
            product = f" ({rows:,} rows × {count(declared):,} combinations of the matrix)"
        return ("images", base, "matrix" if declared.matrix else "rows"), (
            f"makes {makes:,} images{product}, more than max_images = {cap}; {how}"
        )
    return ("images", base), (
        f"brings the manifest to {before + makes:,} images, more than max_images = {cap}; {how}"
    )


def _named_twice(name: str) -> str:
    """Two combinations of a matrix make the same name: a value listed twice, or values
    with commas that join alike (["a,b", "a"] × ["c", "b,c"])."""
    return (
        f"makes two images named {shown_name(name)}: list each value once, and write values "
        "without commas where they could join alike"
    )


@collector_paused()
def resolve(
    manifest: Manifest,
    registry: BackendRegistry,
    digest_of: DigestOf,
    *,
    backend_override: str | None = None,
    can_encode: CanEncode = lambda fmt: True,
    input_size: InputSize = lambda path: None,
    read_input: ReadInput = lambda path, limit: None,
    data: DataFiles | None = None,
    judged_apart: Collection[str] = (),
) -> Resolved:
    """Every image of the manifest as an AssetSpec; all problems raised together.
    `data` reads the data files of declarations with `rows`. With `judged_apart`
    (declarations whose schema failed), only the problems of the other images that
    name none of those are said (`manifest.SchemaError`)."""
    resolver = _Resolver(
        manifest,
        registry,
        digest_of,
        backend_override=backend_override,
        can_encode=can_encode,
        input_size=input_size,
        read_input=read_input,
        data=data,
        judged_apart=judged_apart,
    )
    if backend_override:
        registry.get(backend_override, where="--backend")
    for name in manifest.model.backends:
        # a name one slip from none is a plugin not installed here, checked there
        if name in registry.plugins or one_slip_from(name, registry.plugins) is not None:
            resolver.backend(name, ("backends", name))
    images = resolver.images()
    defaults = manifest.model.defaults
    styles = manifest.model.styles
    cycles: list[list[str]] = []
    order = dependency_order(images, defaults, styles, cycles=cycles)
    for cycle in cycles:  # said where the first image takes the next one's output
        first, decl = cycle[0], images[cycle[0]]
        next_output = f"@{cycle[1]}"
        key = "image" if taken(decl, "image", defaults, styles) == next_output else "mask"
        resolver.fail(resolver.origin(first, decl, key), _CYCLE.format(" -> ".join(cycle)))
    for name in order:  # an image of a cycle finds its upstream unresolved: said above
        spec = resolver.resolve(name, images[name])
        if spec is not None:
            resolver.specs[name] = spec
    specs = {name: resolver.specs[name] for name in images if name in resolver.specs}
    asset_manifest = resolver.asset_manifest()
    atlases = {
        name: atlas
        for name, decl in manifest.model.atlases.items()
        if (atlas := resolver.atlas(name, decl, specs)) is not None
    }
    resolver.check_written()
    cache_remote = manifest.model.cache.remote
    if cache_remote is not None:
        problem = url_problem(cache_remote, from_manifest=True)
        if problem is not None:
            resolver.fail(("cache", "remote"), problem)
    if resolver.problems:
        raise resolver.error()
    return Resolved(
        specs,
        resolver.settings,
        resolver.plugins,
        asset_manifest,
        atlases,
        cache_remote,
        tuple(resolver.data_files),
        tuple(resolver.data_globs),
        tuple(base for base, decl in manifest.model.images.items() if decl.rows is not None),
    )


def idle_conflicts(
    backends: Mapping[str, Any], registry: BackendRegistry, used: Collection[str]
) -> list[tuple[tuple[str, ...], str]]:
    """Options that do not work together (`CONFLICT`) in the settings (`[backends]`, as
    written) of a backend no image uses, each as (where, message): not an error (they
    fail only the images that use the backend), but `validate` says so before the
    first such image does."""
    found = []
    for name, raw in backends.items():
        if name in used or name not in registry.plugins or not isinstance(raw, Mapping):
            continue
        try:
            registry.get(name).parse_settings(raw)
        except ValidationError as exc:
            for error in exc.errors():
                if error["type"] == CONFLICT:
                    message = describe_setting_error(error, [], name)
                    message += f" (no image uses {name} yet; the first that does will fail)"
                    found.append((("backends", name, *map(str, error["loc"])), message))
        except NebulaBuildError:
            continue
    return found


def _said_once(found: list[_Found]) -> list[_Found]:
    """`found` with each problem many images share as one line (see `said_once`)."""
    changed = said_once(
        [(one.loc, one.message) if one.placed is None else ((), "") for one in found]
    )
    kept = []
    for index, one in enumerate(found):
        if index not in changed:
            kept.append(one)
        elif (message := changed[index]) is not None:
            kept.append(_Found(one.loc, message, one.at))
    return kept


def _once_per_declaration(
    problems: list[_Found], bases: Mapping[str, str], as_written: Mapping[_Found, str]
) -> list[_Found]:
    """Each problem once: one in [defaults] or a style is found once per image that
    inherits it, and one in a matrix's or rows' declaration once per image it makes
    (300 rows, one typo: one line at the declaration, saying how many it hit), in the
    words `as_written` gives it where its message shows a value filled in (a path). A
    problem only one of its images has stays that image's."""
    if all(base == name for name, base in bases.items()):  # no image a declaration made
        once: dict[tuple[Any, ...], _Found] = {}
        for found in problems:
            once.setdefault((found.loc, found.message, found.placed and str(found.placed)), found)
        return list(once.values())
    shared_by: dict[tuple[Any, ...], _Found] = {}  # each problem as said, by its words
    first: dict[tuple[Any, ...], _Found] = {}  # the first found of each
    #: the images each has (kept only for those found twice: most are found once)
    images: dict[tuple[Any, ...], dict[tuple[str | int, ...], None]] = {}
    for found in problems:
        loc, shared = found.loc, found
        name = str(loc[1]) if len(loc) > 1 and loc[0] == "images" else None
        base = bases.get(name, name) if name is not None else None
        if base is not None and base != name:  # an image a declaration made: said there
            assert name is not None
            message = as_written.get(found) or found.message.replace(name, base)
            shared = _Found(("images", base, *loc[2:]), message, found.at)
        # where it is written follows from its key, but for a data file's own lines
        key = (shared.loc, shared.message, found.placed and str(found.placed))
        if key not in first:
            shared_by[key], first[key] = shared, found
        elif key in images:
            images[key][loc] = None
        else:
            images[key] = {first[key].loc: None, loc: None}
    result = []
    for key, shared in shared_by.items():
        made = len(images.get(key, ()))
        if made > 1:
            shared.message = _with_count(shared.message, f"for {made} of its images")
            result.append(shared)
        else:
            result.append(first[key])
    return result


def _with_count(message: str, count: str) -> str:
    """`message` with `count` in parentheses: inside its own closing one, not a second
    beside it ("(got 500; for 2 of its images)")."""
    if message.endswith(")"):
        return f"{message[:-1]}; {count})"
    return f"{message} ({count})"


#: a file name to show, by the key that names a file written beside the images
_EXAMPLE_NAMES = {"manifest": "images.json", "frames": "frames.json", "output": "sheet.png"}


def _a_folder_not_a_file(path: str, key: str | int) -> str:
    """Why a file the apply writes may not be named with a trailing slash: it would
    be written at the folder's own name."""
    example = _EXAMPLE_NAMES.get(str(key))
    if example is None:
        return "names a folder, not a file: add the file's name"
    return (
        f"names a folder, not a file: add the file's name, as in "
        f'{key} = "{shown_name(path, 200)}/{example}"'
    )


def _unsupported_output(output: str, written: str, image: str) -> str:
    """Why `image`'s output's file type is refused (`output` as checked, `written` as
    the manifest writes it), and the types it may have."""
    suffix = PurePosixPath(output).suffix
    *others, last = FORMATS
    types = f"{', '.join(others)} or {last}"
    shown = shown_name(output, 200)
    if written.endswith(("/", "\\")):
        file = image if re.fullmatch(r"[\w-]+", image) else "hero"
        return (
            f'names a folder, not a file: add the file\'s name, as in output = "{shown}/{file}.png"'
        )
    if not suffix:
        return f'has no extension; end it with {types}, as in output = "{shown}.png"'
    return f"unsupported file type {suffix!r}; use one of {', '.join(FORMATS)}"


def _known_models(models: Mapping[str, ModelSupport]) -> str:
    """The models an unknown model's error lists: `known: a, b`, or that there are none
    (a plugin whose `models` returned nothing, a backend whose settings declare none)."""
    if not models:
        return "it lists no models: `nebula-build models` shows what each backend takes"
    return f"known: {', '.join(models)}"
