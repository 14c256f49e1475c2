"""The sprite rules of resolution: transparency and its key colour, palettes, the
options that do not go together, and the tags and Godot paths of an atlas's engine
exports. A part of `resolve._Resolver`, kept apart to keep each module to one job;
pure like the rest of the core."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from nebula_build.core.manifest import AtlasDecl, ImageDecl, Manifest
from nebula_build.core.selection import LISTED, known_names
from nebula_build.core.sprite import (
    ALPHA_FLOOR,
    ALPHA_FLOOR_STEP,
    DEFAULT_SOFTNESS,
    EXTRUDE_FIRST_STEP,
    MAX_PALETTE,
    MAX_PALETTE_BYTES,
    PALETTE_SUFFIX,
    PALETTES,
    STEPS,
    VISIBLE_PALETTE_STEP,
    choose_key,
    key_suffix,
    matrix_values,
    pairs,
    palette_colours,
    palette_too_large,
    rows_matrix_values,
)
from nebula_build.core.written import Read
from nebula_build.errors import TooLargeError, UnsafePathError, did_you_mean
from nebula_build.plugin.manager import BackendPlugin
from nebula_build.text import printable


class SpriteRules:
    """The sprite checks of `_Resolver`, which provides what is declared here."""

    manifest: Manifest
    bases: dict[str, str]
    #: the backends the images use, by name
    plugins: dict[str, BackendPlugin]
    digest_of: Callable[[str], str | None]
    #: the files the manifest reads, never written (`core.written`)
    reads: list[Read]
    #: an input file's bytes up to a limit (read once with its digest), None when it
    #: cannot be read; TooLargeError past the limit, checked from its size first
    read_input: Callable[[str, int], bytes | None]

    def fail(self, loc: tuple[str | int, ...], message: str) -> object:
        """Record a problem at `loc` (what the resolver keeps of it is its own)."""
        raise NotImplementedError

    def origin(self, name: str, decl: ImageDecl, key: str) -> tuple[str, ...]:
        raise NotImplementedError

    def check_path(self, loc: tuple[str, ...], value: str, what: str) -> str | None:
        raise NotImplementedError

    def key_colour(self, name: str, decl: ImageDecl, merged: dict[str, Any]) -> str | None:
        """The key colour of a transparent background, with the prompt's suffix asking
        for it added (both shape the generation); None for an opaque image."""
        if merged.get("background") != "transparent":
            for option in ("key", "key_softness", "despill"):
                where = self.origin(name, decl, option)
                # a style's keying applies where the style's images are transparent
                if option in merged and (where[0] == "images" or "background" not in merged):
                    self.fail(where, 'applies only with background = "transparent"')
            return None
        key = str(merged.get("key") or choose_key(merged.get("prompt", ""))).upper()
        if "prompt" in merged:
            merged["prompt"] = f"{merged['prompt']}, {key_suffix(key)}"
        return key

    def check_sprite_options(
        self, name: str, decl: ImageDecl, merged: dict[str, Any], fmt: str
    ) -> None:
        """Transparency needs a format with alpha; cleanup that changes the size leaves
        no room for responsive widths (each width's height would depend on the pixels)."""
        palette = merged.get("palette")
        if isinstance(palette, int) and not 2 <= palette <= MAX_PALETTE:
            self.fail(self.origin(name, decl, "palette"), f"a colour count is 2-{MAX_PALETTE}")
        elif isinstance(palette, str) and palette not in PALETTES:
            self.palette_file(name, decl, merged, palette)
        self.check_grid(name, decl, merged)
        wants_alpha = merged.get("background") == "transparent"
        checks = merged.get("checks")
        if fmt == "jpeg" and (wants_alpha or (checks is not None and checks.alpha)):
            self.clash(
                name,
                decl,
                "background" if wants_alpha else "checks",
                "a JPEG has no transparency: write the image as .png, .webp or .avif",
            )
        if checks is not None and checks.alpha and not wants_alpha and not merged.get("pad"):
            plugin = self.plugins.get(str(merged.get("backend")))
            if plugin is not None and plugin.builtin:  # whose models make opaque images
                self.clash(
                    name,
                    decl,
                    "checks",
                    'checks.alpha = "required" fails every image a model makes opaque, as '
                    f'{plugin.name}\'s do: set background = "transparent" (or pad, which adds '
                    "transparent pixels)",
                )
        if fmt == "jpeg" and merged.get("pad"):
            self.clash(
                name,
                decl,
                "pad",
                "pad adds transparent pixels and a JPEG has none (they would be black): "
                "write the image as .png, .webp or .avif",
            )
        resizing = [step for step in ("trim", "pad", "extrude") if merged.get(step)]
        if resizing and merged.get("widths"):
            self.clash(
                name,
                decl,
                resizing[0],
                f"{resizing[0]} changes the image's size: it does not go with `widths`",
                at=self.origin(name, decl, "widths"),
            )

    def clash(
        self,
        name: str,
        decl: ImageDecl,
        key: str,
        message: str,
        at: tuple[str, ...] | None = None,
    ) -> None:
        """`key` does not go with this image's own output (or `at`): said at `key` where
        the image sets it, else at the image's output, naming the style or [defaults]
        that sets it (shared by images it suits), so the message names the image."""
        where = self.origin(name, decl, key)
        if where[0] == "images":
            self.fail(where, message)
            return
        source = "[defaults]" if where[0] == "defaults" else f"{where[0]}.{where[1]}"
        loc = at if at is not None and at[0] == "images" else ("images", name, "output")
        self.fail(loc, f"{message} (its {key} is set in {source})")

    def check_grid(self, name: str, decl: ImageDecl, merged: dict[str, Any]) -> None:
        """`pixel_grid` must divide the generated size: cells cut at an edge would be
        stretched, and a cell larger than the image would make it one colour."""
        cell, width, height = merged.get("pixel_grid"), merged["width"], merged["height"]
        if not cell or (width % cell == 0 and height % cell == 0):
            return
        size = f"the generated {width}×{height} image"
        if cell > min(width, height):
            self.fail(self.origin(name, decl, "pixel_grid"), f"{cell} is larger than {size}")
            return
        common = math.gcd(width, height)
        fits = [n for n in range(2, min(cell, common) + 1) if common % n == 0]
        hint = f"; {fits[-1]} does" if fits else ""
        self.fail(self.origin(name, decl, "pixel_grid"), f"{cell} does not divide {size}{hint}")

    def palette_file(self, name: str, decl: ImageDecl, merged: dict[str, Any], value: str) -> None:
        """A palette given as a file: its path checked, its content digest recorded (it
        enters the output key, so editing the file re-processes the image)."""
        loc = self.origin(name, decl, "palette")
        if not value.lower().endswith(PALETTE_SUFFIX):
            known = ", ".join(PALETTES)
            self.fail(loc, f"{value!r} is neither a palette name ({known}) nor a .hex file")
            return
        path = self.check_path(loc, value, "a palette")
        if path is None:
            return
        try:  # before its digest: a file larger than a palette is never read whole
            data = self.read_input(path, MAX_PALETTE_BYTES)
            digest = self.digest_of(path)
        except TooLargeError as large:
            self.fail(loc, palette_too_large(path, large.size))
            return
        except UnsafePathError as refused:  # there, but a FIFO, a link out…
            self.fail(loc, str(refused))
            return
        if digest is None:
            self.fail(loc, f"file not found: {path}")
            return
        if data is not None:  # a reader that cannot read leaves it to apply
            try:
                palette_colours(data, path)
            except ValueError as exc:
                self.fail(loc, str(exc))
                return
        merged["palette"], merged["palette_digest"] = path, digest
        self.reads.append(Read(f"images.{name} as its palette", path))

    def atlas_tags(
        self, name: str, decl: AtlasDecl, members: tuple[str, ...]
    ) -> tuple[tuple[str, str], ...] | None:
        """(member, its tag) for every member: its value of the `tags` dimension, or of
        each of them joined by "_" ("slime_idle")."""
        if decl.tags is None:
            return None
        dimensions = [decl.tags] if isinstance(decl.tags, str) else decl.tags
        values: dict[str, dict[str, str]] = {}
        for base in dict.fromkeys(self.bases[member] for member in members):
            declared = self.manifest.model.images[base]
            matrix = declared.matrix or {}
            if declared.rows is not None and matrix:
                of_base = (m for m in members if self.bases[m] == base)
                values |= rows_matrix_values(base, matrix, of_base)
            else:
                values |= matrix_values(base, matrix)
        for dimension in dimensions:
            missing = [m for m in members if dimension not in values.get(m, {})]
            if missing:
                self.fail(
                    ("atlases", name, "tags"),
                    f"{missing[0]} has no matrix dimension {dimension!r} to tag its frame by "
                    f"{_dimensions(dimension, values.get(missing[0], {}))}",
                )
                return None
        tagged = []
        combinations: dict[str, tuple[str, ...]] = {}  # what made each tag
        for member in members:
            values_of = tuple(str(values[member][d]) for d in dimensions)
            tag = "_".join(values_of)
            tagged.append((member, tag))
            if combinations.setdefault(tag, values_of) != values_of:
                self.fail(
                    ("atlases", name, "tags"),
                    f"{printable(' + '.join(combinations[tag]), 60)!r} and "
                    f"{printable(' + '.join(values_of), 60)!r} both make the tag "
                    f"{printable(tag, 60)!r}: rename a value so that no tag has two",
                )
                return None
        return tuple(tagged)

    def atlas_once(
        self, name: str, decl: AtlasDecl, tags: tuple[tuple[str, str], ...] | None
    ) -> tuple[str, ...] | None:
        """The tags whose animation plays once (`loop`); None where `loop` names a tag
        there is not (said)."""
        named = list(dict.fromkeys(tag for _, tag in tags or ())) or ["default"]
        if decl.loop is True:
            return ()
        if decl.loop is False:
            return tuple(named)
        unknown = [tag for tag in decl.loop if tag not in named]
        if unknown:
            self.fail(
                ("atlases", name, "loop"),
                f"no animation is named {printable(unknown[0], 60)!r} "
                f"(the atlas's are {known_names(named)})",
            )
            return None
        return tuple(tag for tag in named if tag not in decl.loop)

    def godot_sheet(
        self, loc: tuple[str, ...], decl: AtlasDecl, output: str, resource: str
    ) -> str | None:
        """The sheet's res:// path: relative to `godot_root` (the Godot project), which
        holds the sheet and the `.tres` resource that names it."""
        if not resource.lower().endswith(".tres"):
            suffix = posixpath.splitext(resource)[1] or "no extension"
            self.fail(
                (*loc, "godot"),
                f"Godot reads a text resource only from a .tres file (got {suffix}): "
                "end the path with .tres",
            )
            return None
        root: str | None = "."
        if decl.godot_root not in (None, "."):
            root = self.check_path((*loc, "godot_root"), str(decl.godot_root), "godot_root")
            if root is None:
                return None
        sheet = "res://" + posixpath.relpath(output, root)
        if sheet == "res://.":
            self.fail(
                (*loc, "godot_root"), f"{root} is the sheet itself: name the Godot project's folder"
            )
            return None
        if sheet.startswith("res://.."):
            self.fail((*loc, "godot_root"), f"the sheet {output} is outside {root}")
            return None
        if posixpath.relpath(resource, root).startswith(".."):
            self.fail(
                (*loc, "godot"),
                f"{resource} is outside the Godot project {root} (godot_root), which loads "
                "only its own files: put it in that folder",
            )
            return None
        return sheet


#: the manifest keys that make an image a sprite (transparency, cleanup, checks)
SPRITE_KEYS = frozenset(("background", "key", "key_softness", "despill", *STEPS, "checks"))
#: the keys `check_sprite_options` reads: an image that sets none of them has none of
#: its problems
SPRITE_OPTIONS = frozenset((*STEPS, "background", "checks", "widths"))


def sprite_steps(merged: Mapping[str, Any], key: str | None) -> tuple[tuple[str, Any], ...]:
    """The output steps an image asks for, as the spec stores them."""
    # false and 0 are the defaults: left out of the key like any unset option
    steps: dict[str, Any] = {step: merged.get(step) or None for step in STEPS}
    steps["palette_digest"] = merged.get("palette_digest")
    if steps["extrude"] and steps["pad"]:
        steps[EXTRUDE_FIRST_STEP] = True
    if key is not None:
        steps["key_softness"] = float(merged.get("key_softness", DEFAULT_SOFTNESS))
        steps["despill"] = merged.get("despill", True)
        if _resampled_smoothly(merged):
            steps[ALPHA_FLOOR_STEP] = ALPHA_FLOOR
        if isinstance(merged.get("palette"), int):
            steps[VISIBLE_PALETTE_STEP] = True
    return pairs(steps)


def _resampled_smoothly(merged: Mapping[str, Any]) -> bool:
    """Whether a file of the image is resampled with a filter that rings (lanczos): it
    has a `resize` (to its own size too: a backend may return another) or `widths`."""
    if merged.get("resample", "lanczos") == "nearest":
        return False
    return merged.get("resize") is not None or bool(merged.get("widths"))


def _dimensions(tags: str, values: Mapping[str, str]) -> str:
    """'(its dimensions: kind, pose; did you mean 'pose'?)', or that it has none: the
    first LISTED of a matrix of many (thousands of one-value dimensions, each atlas's
    error listing them all and comparing each with the typo, made 40 MB of errors)."""
    if not values:
        return "(it has no matrix)"
    close = did_you_mean(tags, values) if len(values) <= LISTED else None
    hint = f"; did you mean {close!r}?" if close else ""
    return f"(its dimensions: {known_names([printable(key, 60) for key in values])}{hint})"
