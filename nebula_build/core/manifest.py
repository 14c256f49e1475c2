"""Load and validate `images.toml` into typed models.

Validation here is structural (types, ranges, unknown keys). What depends on
the chosen backend and model (which parameters it takes, size multiples) is
checked when specs are resolved (`spec.py`), against the backend's declaration.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from nebula_build.core import sourcemap
from nebula_build.core.encoding import not_utf8, saved_as_wide, without_utf8_bom
from nebula_build.core.nocycles import collector_paused
from nebula_build.core.spritedecl import COLOUR_PATTERN, SpriteFields
from nebula_build.errors import CONFLICT, ManifestError, MoreProblems, Problem, did_you_mean
from nebula_build.params import BY_NAME, COMMON_SIZE_STEP, MAX_SEED, MAX_SIZE, MIN_SIZE
from nebula_build.state.conflicts import marker_on, opened_conflict
from nebula_build.text import escaped, escaped_value, model_id_problem, shows_as_it_is
from nebula_build.tomlparse import (
    TableHeaders,
    dotted_tables,
    marks_over,
    unquoted,
    values_over,
    weight,
)

SCHEMA_VERSION = 1

# Limits on what a manifest may ask for. A manifest can come from a pull request: it
# must not be able to crash the tool or make it exhaust the machine's memory.
#: tables and arrays inside each other; images.toml itself needs 5 (images.a.matrix.k)
MAX_DEPTH = 16
#: a manifest of 100,000 images is a few MB; anything far larger is refused unread
MAX_MANIFEST_BYTES = 64 << 20
#: what tomllib may be asked for (`tomlparse.weight`: a value 1, a table 8), counted
#: before it parses: 100,000 images written out one table each, with eight keys, weigh
#: 3.2 million; 64 MiB of `[t1]`, `[t2]`, … (67 million) took 95 s and 5.8 GB
MAX_MANIFEST_WEIGHT = 8_000_000
#: a manifest heavier than this (30,000 images written one table each) has its tables
#: counted and named before it is parsed: 990,000 `[t1]`, `[t2]`, … (7.9 million) took
#: 91 s and 1.9 GB to parse and describe, one "unknown key" at a time
MAX_WHOLE_WEIGHT = 1_000_000
#: keys, and the values of arrays and inline tables (`=`, `,`, `{` outside strings): a
#: key costs tomllib up to 10 µs, so 8 million took minutes; 100,000 images of eight
#: keys each hold 800,000
MAX_MANIFEST_VALUES = 1_200_000
_VALUE_MARKS = ("=", ",", "{")
#: tables (`[…]` and `[[…]]` headers, and dotted keys: `a.b = 1` makes table a) in a
#: heavy manifest: 100,000 images, each with a table of its own and another
#: (`[images.NAME.rows]`, a style…); 880,000 `t1.a = 1`, … took 52 s and 1.7 GB
MAX_TABLES = 200_000
#: problems described one by one (`validate --json` lists them): describing one takes
#: up to 0.2 ms (its "did you mean"), so a million of them took minutes
MAX_PROBLEMS = 10_000
#: images with one problem, at one key and in the same words, that make one line naming
#: them (50,000 images with `seed = "x"`: "…; the same for 49,999 other images (b, c, …)")
GROUPED_FROM = 10
#: the other images a line of a problem they share names
_NAMED = 5
#: characters in any string, wherever it is (a backend's settings included)
MAX_STRING = 100_000
#: characters in any key (image names, settings)
MAX_KEY = 256
#: digits in any integer: a seed takes 10; Python prints none of more than 4,300
#: (a message or a JSON record of one was a traceback)
MAX_DIGITS = 300
_MAX_INTEGER: int = 10**MAX_DIGITS
#: an integer Python does not read (`tomllib` raises ValueError, not its own error)
_LONG_INTEGER = re.compile(r"(?:=|\[|,)[ \t]*[+-]?([0-9_]{4301,})")
#: characters in a prompt, negative prompt, alt text or prompt prefix/suffix: far more
#: than any model reads (CLIP takes 77 tokens, T5 512), and small enough that a
#: matrix of MAX_IMAGES images cannot fill the memory with copies of it
MAX_TEXT = 10_000
#: characters in a path (output, input, atlas, asset manifest, variant pattern)
MAX_PATH = 1024
#: characters in a seed expression ("{index} * 7 + 100")
MAX_SEED_EXPRESSION = 200
#: characters in a matrix value (each becomes part of an image's name)
MAX_MATRIX_VALUE = 128
#: entries in an atlas's `images` (a matrix's name or `enemy[*]` stands for all of it)
MAX_ATLAS_ENTRIES = 1000
#: images a manifest may declare, matrices expanded, unless `max_images` says more
DEFAULT_MAX_IMAGES = 10_000
#: the most `max_images` may allow
MAX_IMAGES = 100_000

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
ImageName = Annotated[str, StringConstraints(pattern=_NAME.pattern)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# defer_build: a `plan` served from the spec cache never validates a manifest, so it
# should not pay to build these validators at import.
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character (0x00-0x1f, 0x7f): never part of a path
    or a name, and a NUL in a path crashes the call that uses it."""
    return _CONTROL.search(text) is not None


#: why a name is refused that `shows_as_it_is` says no to
UNSHOWN = (
    "has characters a terminal does not show as they are (invisible, a line break, two spaces)"
)


def shown(text: str, limit: int = 60) -> str:
    """A key or value from the manifest as an error message shows it: `escaped_value`
    (a control, a bidirectional override written as its escape, told apart from the
    same escape typed), at most `limit` characters."""
    return _cut(escaped_value(text[: limit + 1]), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _param(name: str) -> Any:
    """The pydantic field of a generation parameter, as `params.PARAMS` defines it."""
    param = BY_NAME[name]
    constraints: dict[str, Any] = {"ge": param.minimum, "le": param.maximum}
    if param.nonempty:
        constraints["min_length"] = 1
    if param.type is str:
        constraints["max_length"] = MAX_PATH if param.file else MAX_TEXT
    if param.type is float:
        constraints["allow_inf_nan"] = False
    return Field(
        None,
        description=param.description,
        **{key: value for key, value in constraints.items() if value is not None},
    )


class GenerationFields(BaseModel):
    """Parameters that shape the pixels; allowed both in [defaults] and per image."""

    model_config = _STRICT

    backend: str | None = Field(
        None,
        min_length=1,
        description="Backend that generates the image: nebula, preview, diffusers or a plugin's.",
    )
    model: str | None = Field(
        None,
        min_length=1,
        description="Model id, e.g. black-forest-labs/FLUX.1-schnell (see `nebula-build models`).",
    )
    prompt: str | None = _param("prompt")
    negative_prompt: str | None = _param("negative_prompt")
    width: int | None = _param("width")
    height: int | None = _param("height")
    num_steps: int | None = _param("num_steps")
    guidance_scale: float | None = _param("guidance_scale")
    seed: int | None = _param("seed")
    image: str | None = _param("image")
    mask: str | None = _param("mask")

    @field_validator("model")
    @classmethod
    def _model_is_an_id(cls, value: str | None) -> str | None:
        """A model id is printed in CI logs and summaries: only a safe alphabet."""
        if value is not None and (problem := model_id_problem(value)) is not None:
            raise ValueError(problem)
        return value


class DrawFields(BaseModel):
    """How many draws an image gets; allowed in [defaults], a style and per image."""

    model_config = _STRICT

    candidates: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Draws to generate for the image (default 1): all are kept in the "
        "cache, the output is the one picked (`nebula-build pick NAME INDEX`; the first "
        "until then). On a model that takes a seed, draw i uses a seed derived from the "
        "image's seed and i, so the set is reproducible.",
    )


class OutputFields(BaseModel):
    """How the generated image becomes files; changing these never regenerates."""

    model_config = _STRICT

    quality: int | None = Field(
        None, ge=1, le=100, description="Quality of lossy formats (.jpg, .webp, .avif), 1-100."
    )
    lossless: bool | None = Field(None, description="Encode .webp or .avif losslessly.")
    resize: list[int] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Deliver at [width, height] instead of the generated size.",
    )
    fit: Literal["cover", "contain", "exact"] | None = Field(
        None,
        description="How `resize` fits the image: cover (crop, default), contain (pad) "
        "or exact (stretch).",
    )
    resample: Literal["lanczos", "nearest"] | None = Field(
        None, description="Resampling filter: lanczos (default) or nearest (crisp pixel art)."
    )
    widths: list[int] | None = Field(
        None,
        description="Responsive variants: one more file per width, never upscaled.",
    )
    metadata: bool | None = Field(
        None,
        description="Embed the generation parameters in each file (default true); false "
        "strips all metadata.",
    )
    variant_pattern: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="File name of each variant from {stem}, {width} and {ext}, ending "
        "with the output's extension; default '{stem}-{width}{ext}'.",
    )


class StyleDecl(GenerationFields, DrawFields, OutputFields, SpriteFields):
    """`[styles.<name>]`: a preset an image takes with `style = "<name>"`."""

    prompt_prefix: str | None = Field(
        None, max_length=MAX_TEXT, description="Put before the image's prompt (joined with ', ')."
    )
    prompt_suffix: str | None = Field(
        None, max_length=MAX_TEXT, description="Put after the image's prompt (joined with ', ')."
    )


class Defaults(GenerationFields, DrawFields, OutputFields, SpriteFields):
    """Values every image takes unless it sets its own."""

    style: str | None = Field(None, min_length=1, description="Style every image takes.")


#: entries in `rows.columns` or `rows.defaults`: far more than any data file needs named
MAX_ROW_NAMES = 1000
#: words of the `where` language: a column named so could not be read there
_WHERE_WORDS = frozenset({"and", "or", "not", "in", "true", "false"})


def _placeholder_name(name: str) -> str:
    """A name `rows.columns` gives a column: one a template, `id` and `where` can all use."""
    if not name.isidentifier() or not name.isascii():
        raise ValueError(
            f"{shown(name)!r} is not a placeholder name (letters, digits and _, not starting "
            f"with a digit); the placeholder comes first: {_columns_example(name)}"
        )
    if name in _WHERE_WORDS:
        raise ValueError(f"{name!r} is a word of `where`, so it cannot name a column there")
    return name


def _columns_example(header: str) -> str:
    """`columns = { item_name = "Item Name" }`: the entry that names the column `header`
    (the one written the wrong way round, as a rule), or a made-up one."""
    name = re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")
    if not (header.isascii() and header.isprintable() and len(header) <= 60):
        name = ""
    if not name.isidentifier() or name in _WHERE_WORDS:
        name, header = "product_name", "Product Name"
    return f"columns = {{ {name} = {json.dumps(header)} }}"


def _plain_value(value: Any) -> Any:
    """A default a row takes: text, a number, true/false, or a list of these, as a
    template or `where` reads a data file's values (never a table, a date or NaN)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, str | int | float | bool):
            raise ValueError("must be text, a number, true or false, or a list of these")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("must be a finite number")
    if sum(len(str(item)) + 2 for item in items) > MAX_TEXT + 2:
        raise ValueError(f"may be at most {MAX_TEXT:,} characters as text")
    return value


ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY)]
#: the most matrix dimensions an atlas's `tags` joins
MAX_TAG_DIMENSIONS = 4


def _names(value: Any, most: int, one: bool) -> Any:
    """A name, or (`one` aside) a list of at most `most` names, each 1-MAX_KEY long."""
    names = [value] if one and isinstance(value, str) else value
    if not isinstance(names, list) or not names or len(names) > most:
        return None
    if all(isinstance(name, str) and 0 < len(name) <= MAX_KEY for name in names):
        return value
    return None


def _tag_names(value: Any) -> Any:
    """`tags`: a dimension, or a list of them, in one message for any other value."""
    if value is None or _names(value, MAX_TAG_DIMENSIONS, one=True) is not None:
        return value
    raise ValueError(
        'must be a matrix dimension in quotes (tags = "pose"), or a list of up to '
        f'{MAX_TAG_DIMENSIONS} (tags = ["kind", "pose"])'
    )


def _looping(value: Any) -> Any:
    """`loop`: true, false, or a list of tags, in one message for any other value."""
    if isinstance(value, bool) or _names(value, MAX_ATLAS_ENTRIES, one=False) is not None:
        return value
    raise ValueError('must be true, false, or the tags that loop (loop = ["idle", "walk"])')


PlaceholderName = Annotated[
    str,
    StringConstraints(max_length=MAX_KEY),
    AfterValidator(_placeholder_name),  # its own message: what a placeholder name is
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}),
]
Scalar = str | int | float | bool
DefaultValue = Annotated[Scalar | list[Scalar], BeforeValidator(_plain_value)]


#: patterns of posts one declaration's `files` may list
MAX_PATTERNS = 32
_EXAMPLE_PATTERN = '"content/posts/*.md"'
PatternText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH)]
#: the branches of `files`, as pydantic names them in an error's location
_ONE_PATTERN, _PATTERNS = "one pattern", "patterns"


def _one_or_more_patterns(value: Any) -> Any:
    """One error for `files` of the wrong type, not one per branch of the union."""
    if isinstance(value, list) and not value:
        raise ValueError(f"names no pattern: give one, such as {_EXAMPLE_PATTERN}")
    if isinstance(value, list) and len(value) > MAX_PATTERNS:
        raise ValueError(f"lists {len(value):,} patterns, more than {MAX_PATTERNS}")
    if not isinstance(value, str | list):
        raise ValueError(f"must be a pattern such as {_EXAMPLE_PATTERN}, or a list of them")
    return value


Patterns = Annotated[
    Annotated[PatternText, Tag(_ONE_PATTERN)] | Annotated[list[PatternText], Tag(_PATTERNS)],
    Discriminator(lambda value: _PATTERNS if isinstance(value, list) else _ONE_PATTERN),
    BeforeValidator(_one_or_more_patterns),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_PATH},
                {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": MAX_PATH},
                    "minItems": 1,
                    "maxItems": MAX_PATTERNS,
                    "uniqueItems": True,
                },
            ]
        }
    ),
]


class RowsDecl(BaseModel):
    """`rows = { … }`: where a declaration's rows come from, when a path is not enough."""

    model_config = _STRICT

    file: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="A data file: .csv (with a header), .json, .jsonl; one row per record.",
    )
    files: Patterns | None = Field(
        None,
        description='Posts, one row each: a pattern such as "content/posts/*.md", '
        '"content/**/*.md" (** for any number of folders) or "content/posts/*/index.md" '
        "(page bundles, named after their folder), or a list of them (each file once, in "
        "the order of their paths); each row has the front matter's fields, slug, path "
        "and excerpt.",
    )
    front_matter: bool | None = Field(
        None,
        description="With `files`: read each file's front matter (YAML between --- lines "
        "or TOML between +++ lines); the default, and the only way yet.",
    )
    at: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_KEY,
        description="With a .json file: the dotted path of the array of rows inside it, "
        'e.g. "data.products".',
    )
    columns: dict[PlaceholderName, ColumnName] | None = Field(
        None,
        max_length=MAX_ROW_NAMES,
        description='Placeholder names for columns, e.g. { name = "Product Name", price = '
        '"unit-price" }: {name} in a template, `id` and `where` read the column "Product '
        "Name\". A name may not be another column's.",
    )
    defaults: dict[ColumnName, DefaultValue] | None = Field(
        None,
        max_length=MAX_ROW_NAMES,
        description='Values for optional columns, e.g. { subtitle = "", stock = 0 }: a row '
        "that lacks the column, or has it empty, takes this value in templates and `where`. "
        "A key is a column (a name from `columns` too); not the `id`.",
    )


class ImageDecl(GenerationFields, DrawFields, OutputFields, SpriteFields):
    """One image the project wants."""

    alt: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description="Alt text for the asset manifest; defaults to the prompt.",
    )
    style: str | None = Field(None, min_length=1, description="A [styles.<name>] preset to apply.")
    matrix: (
        dict[
            Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], list[str | int]
        ]
        | None
    ) = Field(
        None,
        description='Expand into one image per combination, e.g. {kind = ["slime", '
        '"bat"]}; {kind} and {index} work in prompt, negative_prompt, output and alt; '
        "images are named like enemy[slime,idle]. With `rows` too, each row makes every "
        "combination: product[<id>,hero]. The images of all matrices together count "
        "towards `max_images`.",
    )
    rows: str | RowsDecl | None = Field(
        None,
        description="One image per row of a data file: a path (.csv, .json, .jsonl) or a "
        "table {file, at} / {files, front_matter}, either with `columns` (placeholder "
        "names for headers) and `defaults` (values for optional columns). Each column is a "
        "{placeholder}; images are named like product[<id>] after the `id` column. See "
        "docs/data.md.",
    )
    id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_KEY,
        description="With `rows`: the column whose value names each row's image "
        "(product[<id>]); required, except for posts, where it defaults to slug.",
    )
    where: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="With `rows`: keep only the rows that pass this filter, e.g. "
        "\"category == 'tea' and price < 10\" (comparisons, in, and/or/not).",
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=MAX_IMAGES,
        description="With `rows`: at most this many images, the first rows that pass `where`.",
    )
    seed: int | str | None = Field(  # type: ignore[assignment]
        None,
        description="Random seed, or with a matrix or rows an expression such as "
        '"{index} + 100" or "{seed}".',
    )

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_is_a_number_or_expression(cls, value: Any) -> Any:
        """One error for a seed of the wrong type, not one per branch of the union."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(
                'must be an integer, or with a matrix an expression such as "{index} + 100"'
            )
        return value

    @field_validator("rows", mode="before")
    @classmethod
    def _rows_is_a_path_or_a_table(cls, value: Any) -> Any:
        """One error for a value of the wrong type, not one per branch of the union."""
        if isinstance(value, str | dict | RowsDecl):
            return value
        raise ValueError(
            "must be a data file's path, or a table such as "
            '{ file = "data/x.json", at = "items" } or { files = "content/posts/*.md" }'
        )

    @field_validator("seed")
    @classmethod
    def _seed_in_range(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 0 <= value <= MAX_SEED:
            raise ValueError(f"must be within 0-{MAX_SEED}")
        if isinstance(value, str) and len(value) > MAX_SEED_EXPRESSION:
            raise ValueError(f"a seed expression may be at most {MAX_SEED_EXPRESSION} characters")
        return value

    @field_validator("matrix")
    @classmethod
    def _matrix_values_are_short_names(
        cls, value: dict[str, list[str | int]] | None
    ) -> dict[str, list[str | int]] | None:
        for key, choices in (value or {}).items():
            for choice in choices:
                if not isinstance(choice, str):
                    continue
                if len(choice) > MAX_MATRIX_VALUE:
                    raise ValueError(
                        f"{key!r}: a value may be at most {MAX_MATRIX_VALUE} characters long "
                        "(it becomes part of an image's name)"
                    )
                if has_control_characters(choice):
                    raise ValueError(
                        f"{key!r}: {choice!r} contains a control character (a value becomes "
                        "part of an image's name)"
                    )
                if choice != choice.strip():
                    raise ValueError(
                        f"{key!r}: {choice!r} starts or ends with a space (a value becomes "
                        "part of an image's name)"
                    )
                if not shows_as_it_is(choice):
                    raise ValueError(
                        f"{key!r}: {choice!r} {UNSHOWN} (a value becomes part of an image's name)"
                    )
        return value

    output: str = Field(
        min_length=1,
        max_length=MAX_PATH,
        description="Where the image is written, relative to the manifest; the extension "
        "(.png, .webp, .jpg) picks the format.",
    )


class AtlasDecl(BaseModel):
    """`[atlases.<name>]`: images packed into one sheet, with a frame map."""

    model_config = _STRICT

    images: list[str] = Field(
        min_length=1,
        max_length=MAX_ATLAS_ENTRIES,
        description='Members: image names, a matrix\'s name, or "enemy[*]" for all of it.',
    )
    output: str = Field(
        min_length=1, max_length=MAX_PATH, description="The sheet: a .png or .webp path."
    )
    frames: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="The frame map (TexturePacker/Phaser JSON hash); default: the "
        "output's path with .json.",
    )
    padding: int = Field(2, ge=0, le=64, description="Pixels between frames.")
    tags: Annotated[str | list[str] | None, BeforeValidator(_tag_names)] = Field(
        None,
        description='A matrix dimension of the members (e.g. "pose"): one Aseprite frame '
        'tag and one Godot animation per value of it; or several (["kind", "pose"]): one '
        'per combination of their values, named so ("slime_idle").',
    )
    loop: Annotated[bool | list[str], BeforeValidator(_looping)] = Field(
        True,
        description="Whether the animations loop: true, false, or the tags that do "
        '(["idle", "walk"]: "attack" plays once).',
    )
    aseprite: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="Also write an Aseprite JSON (array form, frameTags) here, e.g. "
        "sprites/enemies.aseprite.json: Phaser's load.aseprite + anims.createFromAseprite.",
    )
    godot: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="Also write a Godot 4 SpriteFrames resource here (a .tres file), one "
        "animation per tag.",
    )
    godot_root: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="The Godot project's folder (where project.godot is), relative to the "
        "manifest; res:// paths start there. Default: the manifest's folder.",
    )
    fps: float = Field(
        8, ge=0.1, le=240, allow_inf_nan=False, description="Frames per second of the animations."
    )


class AssetsSettings(BaseModel):
    """`[assets]`: machine-readable output for templates and engines."""

    model_config = _STRICT

    manifest: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="Write a JSON list of every image and variant here (path, size, format, "
        "bytes, alt), e.g. static/images.json. See schema/assets.schema.json.",
    )


class CacheSettings(BaseModel):
    """`[cache]`: where generations are shared beyond this checkout."""

    model_config = _STRICT

    remote: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description="A remote cache on object storage shared by a team and its CI, e.g. "
        "s3://bucket/prefix (also gs://, az://). Credentials come from the store's own "
        "environment; NEBULA_BUILD_CACHE_REMOTE overrides this.",
    )


class ManifestModel(BaseModel):
    """The whole of images.toml."""

    model_config = _STRICT

    version: Literal[1] = Field(description="Manifest format version; always 1.")

    max_images: int = Field(
        DEFAULT_MAX_IMAGES,
        ge=1,
        le=MAX_IMAGES,
        description=f"The most images this manifest may declare, matrices expanded "
        f"(default {DEFAULT_MAX_IMAGES}, at most {MAX_IMAGES}): a guard against a matrix "
        "that would make far more images than meant.",
    )
    defaults: Defaults = Field(
        default_factory=Defaults,
        description="Values applied to every image before hashing.",
    )
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-backend settings (concurrency, timeout, …); never secrets.",
    )
    images: dict[ImageName, ImageDecl] = Field(
        default_factory=dict,
        description="The images, by name (letters, digits, - and _).",
    )
    styles: dict[ImageName, StyleDecl] = Field(
        default_factory=dict, description='Presets images take with `style = "<name>"`.'
    )
    atlases: dict[ImageName, AtlasDecl] = Field(
        default_factory=dict, description="Sprite sheets packed from images' outputs."
    )
    assets: AssetsSettings = Field(
        default_factory=AssetsSettings,
        description="Files written about the images for the site or game that uses them.",
    )
    cache: CacheSettings = Field(
        default_factory=CacheSettings,
        description="The cache of generations: a remote shared by a team and its CI.",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_the_integer_1(cls, value: Any) -> Any:
        """`version = true` and `version = 1.0` equal 1 in Python, not in the format."""
        if type(value) is not int:
            raise PydanticCustomError("literal_error", "Input should be 1")
        return value


@dataclass(frozen=True)
class Manifest:
    """A validated manifest and where it came from, for locating later errors."""

    path: Path
    display_path: str
    text: str
    model: ManifestModel

    @property
    def root(self) -> Path:
        return self.path.parent

    @cached_property
    def _positions(self) -> dict[tuple[str, ...], tuple[int, int]]:
        return sourcemap.key_positions(self.text)

    def problems(
        self, found: Sequence[tuple[tuple[str | int, ...], str, tuple[str | int, ...] | None]]
    ) -> list[Problem]:
        """Each (key path, message, where it is written) as a problem at its line, placed
        reading only the lines that can hold them (unless every key is mapped already):
        describing a few problems of a manifest of a million keys need not map them all."""
        if "_positions" in self.__dict__:
            positions = self._positions
        else:
            within = [tuple(str(part) for part in at or loc) for loc, _, at in found]
            positions = sourcemap.key_positions(self.text, within)
        return [self._placed(positions, loc, message, at) for loc, message, at in found]

    def problem(
        self, loc: tuple[str | int, ...], message: str, at: tuple[str | int, ...] | None = None
    ) -> Problem:
        """A problem at a key path, with the line and column where it is written (or
        where `at` is, for keys that are not written out, like expanded images)."""
        return self._placed(self._positions, loc, message, at)

    def _placed(
        self,
        positions: Mapping[tuple[str, ...], tuple[int, int]],
        loc: tuple[str | int, ...],
        message: str,
        at: tuple[str | int, ...] | None,
    ) -> Problem:
        path = tuple(str(part) for part in at or loc)
        position = next(
            (positions[path[:end]] for end in range(len(path), 0, -1) if path[:end] in positions),
            None,
        )
        line, column = position if position else (None, None)
        key = ".".join(_key_part(str(part)) for part in loc)
        return Problem(self.display_path, key, message, line, column)


def _key_part(part: str) -> str:
    """One part of a key path as a problem shows it: in quotes where it holds a dot, as
    TOML writes it (`images."hero.png"`), so the path reads as the parts it has (an
    image a declaration made is told apart by its brackets: `product[v1.2]`)."""
    return f'"{shown(part, 100)}"' if "." in part.partition("[")[0] else shown(part, 100)


def written_part(model: BaseModel, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """`path` as far as the validated `model` says its text writes it out: a problem
    with a key left unset (`images.i0.prompt: is required`) is placed at its table, and
    looking for the key itself would read the whole text to its end for nothing."""
    node: Any = model
    for end, part in enumerate(path):
        if isinstance(node, BaseModel):
            if part in type(node).model_fields and part not in node.model_fields_set:
                return path[:end]
            node = getattr(node, str(part), None)
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            break
    return path


def _known_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the table holding `loc`'s last key takes, found by walking the
    manifest's model along the path (`images.hero.checks` → the checks' keys)."""
    table: Any = ManifestModel
    for part in loc[:-1]:
        table = _inside(table, part)
    return list(_tables(table)[0].model_fields) if _tables(table) else []


def _tables(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation allows (`ChecksDecl | None` → [ChecksDecl])."""
    if get_origin(annotation) is Annotated:
        return _tables(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [model for arg in get_args(annotation) for model in _tables(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _inside(annotation: Any, part: str | int) -> Any:
    """What a key (or index) of a value of this annotation holds; None if unknown."""
    for model in _tables(annotation):
        if isinstance(part, str) and part in model.model_fields:
            return model.model_fields[part].annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    for candidate in (annotation, *options):
        if get_origin(candidate) in (dict, Mapping) and isinstance(part, str):
            return get_args(candidate)[1]
        if get_origin(candidate) in (list, tuple) and isinstance(part, int):
            return get_args(candidate)[0]
    return None


#: pydantic's names for the branches of a union, as they end an error's location
_BRANCHES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def _one_per_value(exc: ValidationError) -> list[Any]:
    """The errors of a validation, with a value that fits no branch of a union (`int |
    str`) reported once at its key, not once per branch under the branch's type name."""
    errors: list[Any] = []
    branches: dict[tuple[str | int, ...], list[Any]] = {}
    for error in exc.errors():
        loc = _without_branches(error["loc"])
        error["loc"] = loc
        if loc[2:] == ("rows", "str") and isinstance(error.get("input"), dict):
            continue  # `rows` takes a path or a table: a table's own errors say more
        if len(loc) > 1 and loc[-1] in _BRANCHES and error["type"].endswith(("_type", "_parsing")):
            if loc[:-1] not in branches:
                errors.append(loc[:-1])  # a placeholder, keeping the order
            branches.setdefault(loc[:-1], []).append(error)
        else:
            errors.append(error)
    return [
        _union_error(item, branches[item]) if isinstance(item, tuple) else item for item in errors
    ]


def _without_branches(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """An error's location as the manifest writes it: without the branches of `rows`
    (a table) and of its `files` (a pattern, or a list of them) that pydantic adds."""
    kept: list[str | int] = []
    for part in loc:
        if part == "RowsDecl" or (kept[-1:] == ["files"] and part in (_ONE_PATTERN, _PATTERNS)):
            continue
        kept.append(part)
    return tuple(kept)


def _union_error(loc: tuple[str | int, ...], errors: list[Any]) -> Any:
    kinds = " or ".join(_BRANCHES[str(error["loc"][-1])] for error in errors)
    return {
        "loc": loc,
        "type": "union_type",
        "msg": f"must be {kinds}",
        "input": errors[0]["input"],
    }


def _describe(error: Any) -> tuple[tuple[str | int, ...], str]:
    """A pydantic error as (key path, message a user can act on)."""
    loc = tuple(error["loc"])
    if loc and loc[-1] == "[key]":
        if loc[-4:-2] in (("rows", "columns"), ("rows", "defaults")):
            named = {key: value for key, value in error.items() if key != "input"}
            return loc[:-1], describe_error(named, [])  # the message names the key
        noun = {"styles": "style", "atlases": "atlas"}.get(str(loc[0]), "image")
        return loc[:-1], f"{noun} names may contain only ASCII letters, digits, '-' and '_'"
    if loc == ("version",) and error["type"] == "missing":
        return loc, f"is required; put `version = {SCHEMA_VERSION}` at the top of the file"
    if loc == ("version",) and error["type"] == "literal_error":
        got = json.dumps(error.get("input"), default=str)
        return loc, f"unsupported manifest version (got {got}); this nebula-build reads version 1"
    if error["type"] == "model_type":  # a value where a table belongs: name its keys
        return loc, describe_error(error, _known_keys((*loc, "")))
    return loc, describe_error(error, _known_keys(loc))


#: the key a secret would be written under, by mistake, in a backend's settings
_SECRET_KEY = re.compile(r"(?i)(?:^|_)(?:api_?key|key|token|secret|password|passwd|credentials?)$")


#: the longest text a backend's setting is said back with: a word ("gpu", "fast"),
#: shorter than any API key
_SAID_BACK = 12
#: what a setting that names an environment variable (`api_key_env`) is said back as
_VARIABLE_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def _said_back(key: str, error: Any) -> bool:
    """Whether an error in a backend's settings may say the value it was given: not
    text longer than a word, nor, where a variable's name belongs, anything but one
    (the key itself written there)."""
    given = error.get("input")
    if not isinstance(given, str):
        return True
    if key.endswith("_env"):
        return _VARIABLE_NAME.fullmatch(given) is not None
    return len(given) <= _SAID_BACK


#: the keys of `rows = { … }` a newcomer writes beside it, in the image's table
_OF_ROWS = frozenset({"at", "files", "columns", "front_matter"})
#: what other tools, or plain words, call a key: "did you mean" by meaning, not spelling
#: (`filter` is not `fit`, nor a `path` `at`)
_MEANT = {
    "path": "file",
    "csv": "file",
    "json": "file",
    "filter": "where",
    "filters": "where",
    "query": "where",
    "when": "where",
    "if": "where",
    "source": "rows",
    "data": "rows",
    "name": "id",
    "key": "id",
    "steps": "num_steps",
    "num_inference_steps": "num_steps",
    "cfg": "guidance_scale",
    "cfg_scale": "guidance_scale",
    "guidance": "guidance_scale",
    "negative": "negative_prompt",
    "file": "output",
    "out": "output",
    "path_out": "output",
    "count": "candidates",
    "variants": "candidates",
    "n": "candidates",
    "frames": "images",
    "members": "images",
    "sprites": "images",
}


def describe_setting_error(error: Any, known: list[str], backend: str) -> str:
    """An error in a backend's settings (`[backends.NAME]`) as `describe_error` says
    it, but never with a text value longer than a word: that may be a secret written
    there by mistake (an API key in `api_key_env`, a password in `base_url`), and
    errors reach CI logs. A key named like a secret (`api_key`, `token`) says where
    secrets go."""
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and len(loc) == 1 and _SECRET_KEY.search(str(loc[0])):
        where = (
            "NEBULA_API_KEY, or another NEBULA_ variable that `api_key_env` names"
            if backend == "nebula"
            else "the variable the backend's documentation names"
        )
        return (
            "a secret never goes in images.toml, which is committed and which a pull "
            f"request can change: set it in the environment ({where})"
        )
    return describe_error(error, known, echo=_said_back(str(loc[-1]) if loc else "", error))


def describe_error(error: Any, known: list[str], *, echo: bool = True) -> str:
    """One pydantic error as a message a user can act on; `known` are the keys
    allowed where it happened (for "did you mean"); `echo`: with the value given."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        if str(loc[-1]) in _OF_ROWS and "rows" in known:
            return f'goes inside rows, with the file: rows = {{ file = "…", {loc[-1]} = … }}'
        meant = _MEANT.get(str(loc[-1]).lower())
        close = meant if meant in known else did_you_mean(str(loc[-1]), known)
        if close:  # the list only where there is no better guess
            return f"unknown key (did you mean {close!r}?)"
        if len(loc) == 1 and loc[0] in ImageDecl.model_fields:
            return (
                "is an image's key, written above every table: put it under "
                "[images.<name>] (one image), or [defaults] (every image)"
            )
        return f"unknown key; expected one of: {', '.join(known)}"
    if kind == "missing":
        return "is required"
    if kind == CONFLICT:
        return str(error["msg"])
    if kind == "model_type":
        known_keys = f" of {', '.join(known)}" if known else ""
        return f"must be a table{known_keys} (got {_shown_value(error.get('input'))})"
    if kind == "dict_type":
        value = error.get("input")
        tables = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        if len(loc) == 1 and tables:
            return (
                f"[[{loc[0]}]] makes a list; write each as a table of its own, named: "
                f"[{loc[0]}.NAME]"
            )
        return f"must be a table (got {_shown_value(value)})"
    got = f" (got {_shown_value(error['input'])})" if echo and "input" in error else ""
    plain = _in_plain_words(error, got)
    if plain is not None:
        return plain
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[0].lower() + message[1:] + got


#: pydantic's error types of a value out of range, and the bound's words
_BOUNDS = {
    "less_than_equal": ("le", "at most"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "greater_than": ("gt", "more than"),
}
#: an image's size, where the manifest sets it (a backend's settings may have their own)
_SIZES = frozenset({"width", "height"})
_SIZED = frozenset({"images", "defaults", "styles"})
#: a value of these types written in quotes: what it is, and how TOML writes it
_INTEGER = ("an integer", re.compile(r"[+-]?[0-9]+"))
_NUMBER = ("a number", re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"))
_UNQUOTED = {
    "int_type": _INTEGER,
    "int_parsing": _INTEGER,  # a backend's settings, read less strictly
    "float_type": _NUMBER,
    "float_parsing": _NUMBER,
}


#: a size as people write it in text: `32x32`, `1920 × 1080`
_WIDTH_BY_HEIGHT = re.compile(r"(\d{1,5})\s*[x×X]\s*(\d{1,5})")


def _in_plain_words(error: Any, got: str) -> str | None:
    """pydantic's message for a value out of range, empty, or a number in quotes, in
    the words of what to write; None for any other error."""
    kind, loc, context = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    # a list's item is written in the list: `widths = [480]`, not `0 = 480`
    item = bool(loc) and isinstance(loc[-1], int)
    key = next((str(part) for part in reversed(loc) if not isinstance(part, int)), "")
    if kind in _BOUNDS and key in _SIZES and loc[0] in _SIZED:
        return f"must be a multiple of {COMMON_SIZE_STEP} within {MIN_SIZE}-{MAX_SIZE}{got}"
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        limit = context[bound]
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # 3600, not 3600.0
        return f"must be {words} {limit}{got}"
    if kind in ("string_too_short", "too_short") and context.get("min_length") == 1:
        return "must not be empty"
    value = error.get("input")
    if key == "resize" and kind in ("list_type", "too_short", "tuple_type"):
        side = value[0] if isinstance(value, list) and value else value
        side = side if type(side) is int and 0 < side < 100_000 else 64
        sides = [side, side]
        if isinstance(value, str) and (written := _WIDTH_BY_HEIGHT.fullmatch(value.strip())):
            sides = [int(written[1]), int(written[2])]  # "32x32"
        return f"must be a width and a height in brackets (resize = [{sides[0]}, {sides[1]}]){got}"
    if kind in ("list_type", "tuple_type") and isinstance(value, str | int | float | bool):
        return f"must be a list, in brackets ({shown(key)} = [{_as_toml(value)}])"
    if kind == "too_short":
        least = context.get("min_length")
        return f"must have at least {least} values{got}"
    if kind == "string_type" and isinstance(value, list) and value:
        first = value[0] if isinstance(value[0], str) else "…"
        return f"takes one value in quotes, not a list ({shown(key)} = {_as_toml(first)})" + (
            "; an image takes one style: make one that sets what both do" if key == "style" else ""
        )
    if kind in ("int_type", "int_from_float") and isinstance(error.get("input"), float):
        value = error["input"]
        if value.is_integer() and abs(value) < 1e15:
            return f"must be a whole number, without a decimal point ({shown(key)} = {int(value)})"
        return f"must be a whole number{got}"
    if kind in _UNQUOTED and isinstance(error.get("input"), str):
        what, number = _UNQUOTED[kind]
        written = error["input"].strip()
        if number.fullmatch(written) is None:
            return f"must be {_WHOLE.get(what, what)}{got}"
        example = f"[{shown(written)}]" if item else shown(written)
        return f"must be {what}, without quotes ({shown(key)} = {example})"
    if kind in ("literal_error", "enum") and "expected" in context:  # one of a few words
        return f"must be {context['expected']}{got}"
    if kind == "string_pattern_mismatch" and context.get("pattern") == COLOUR_PATTERN:
        return f'must be a colour written #RRGGBB ({shown(key)} = "#00FF00"){got}'
    return None


def _as_toml(value: Any) -> str:
    """A short scalar as TOML writes it, for an example (`"pixel"`, `64`, `true`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _cut(escaped(json.dumps(value[:40])), 42)
    return str(value)[:40]


#: how a number of a kind is said where the value given is no number at all
_WHOLE = {"an integer": "a whole number"}


def _shown_value(value: Any) -> str:
    """A wrong value in an error message: as JSON, cut short (a 10 MB prompt is not
    printed back; the value is at most MAX_DEPTH deep, see `_beyond_limits`)."""
    if isinstance(value, str) and len(value) > 200:
        value = value[:200]  # json.dumps of all of it would only be cut below
    # JSON tells a typed backslash from a control already: no backslash to double
    return _cut(escaped(json.dumps(value, default=str)[:61]), 60)


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (tables and arrays inside each other)"


def beyond_limits(data: dict[str, Any]) -> tuple[tuple[str | int, ...], str] | None:
    """(key path, message) of the first thing in parsed TOML that is nested too deep,
    or a string or key that is too long; None if there is none.

    Runs before validation on every load, so it is a plain loop over containers: ~3 ms
    for 10,000 images. Past it, nothing downstream (validation, error messages, JSON)
    can recurse without bound or copy a huge string.
    """
    stack: list[tuple[tuple[str | int, ...], dict[str, Any] | list[Any]]] = [((), data)]
    while stack:
        loc, node = stack.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, value in items:
            if type(key) is str and len(key) > MAX_KEY:
                return (*loc, key), f"a key may be at most {MAX_KEY} characters long"
            kind = type(value)
            if kind is dict or kind is list:
                if len(loc) >= MAX_DEPTH - 1:
                    return (*loc, key), _TOO_DEEP
                stack.append(((*loc, key), value))
            elif kind is int and not -_MAX_INTEGER < value < _MAX_INTEGER:
                return (*loc, key), f"an integer may be at most {MAX_DIGITS} digits long"
            elif kind is str and len(value) > MAX_STRING:
                return (*loc, key), (
                    f"a string may be at most {MAX_STRING:,} characters long "
                    f"(this one has {len(value):,})"
                )
    return None


def _too_long_for_toml(manifest: Manifest) -> ManifestError:
    """tomllib read an integer Python refuses to (more than 4,300 digits): say where."""
    text = manifest.text
    found = _LONG_INTEGER.search(text)
    line = column = None
    if found is not None:
        line = text.count("\n", 0, found.start(1)) + 1
        column = found.start(1) - text.rfind("\n", 0, found.start(1))
    key = sourcemap.key_at(text, line) if line is not None else ()
    problem = manifest.problem(key, f"an integer may be at most {MAX_DIGITS} digits long")
    if problem.line is None:
        problem.line, problem.column = line, column
    return ManifestError([problem])


def _named(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """A key path without the array indexes at its end: `images.a.x`, not `…x.0.0.0`."""
    end = len(loc)
    while end > 1 and isinstance(loc[end - 1], int):
        end -= 1
    return loc[:end]


def _too_deep_for_toml(manifest: Manifest) -> ManifestError:
    """tomllib recursed past Python's limit: name the key, as other problems do."""
    found = sourcemap.nesting_beyond(manifest.text, MAX_DEPTH)
    key = sourcemap.key_at(manifest.text, found[0]) if found else ()
    problem = manifest.problem(key, _TOO_DEEP)
    if problem.line is None and found:
        problem.line, problem.column = found
    return ManifestError([problem])


_DECLARED_TWICE = re.compile(r"^Cannot declare \((.*)\) twice$")
_INLINE_EXTENDED = re.compile(r"^Cannot mutate immutable namespace \((.*)\)$")
_DUPLICATE_INLINE_KEY = re.compile(r"^Duplicate inline table key '(.*)'$")
#: what tomllib says at the end of a table's header or a key's value, not at its start
_SAID_AT_END = re.compile(r"^(Cannot declare \(.*\) twice|Cannot overwrite a value)$")


def _toml_problem(
    message: str, text: str, line: int | None, column: int | None = None
) -> tuple[str, str]:
    """(key, message) of a TOML syntax error, in our words where tomllib's name Python
    tuples or no key: a table declared twice, a key set twice."""
    declared = _DECLARED_TWICE.match(message)
    if declared:
        return _dotted(declared[1]), "is declared twice; declare a table once, with all its keys"
    extended = _INLINE_EXTENDED.match(message)
    if extended:
        return _dotted(extended[1]), (
            "is an inline table ({ … }), which takes no keys from outside its braces; "
            "write them inside, or make it a [table]"
        )
    if message == "Unescaped '\\' in a string" and line is not None:
        return ".".join(sourcemap.key_at(text, line)), (
            'a \\ in a "…" string starts an escape in TOML: write paths with / '
            "(static/img/hero.png), as on every system, or in '…' quotes"
        )
    inline = _DUPLICATE_INLINE_KEY.match(message)
    if inline or message == "Cannot overwrite a value":
        at = sourcemap.key_at(text, line) if line is not None else ()
        key = (*at, inline[1]) if inline else at
        return ".".join(key), "is set twice; a key takes one value"
    header = _header_hint(message, text, line, column)
    if header is not None:
        return "", header
    hint = _syntax_hint(message, text, line, column)
    if hint is not None:
        return ".".join(sourcemap.key_at(text, line or text.count("\n") + 1)), hint
    return "", f"invalid TOML: {message}"


#: a value that opens a string it does not close on its line: `prompt = "a lake`
_OPEN_STRING = re.compile(r"""^[^=#"']*=\s*(?P<quote>"(?:[^"\\]|\\.)*|'[^']*)$""")
#: a value in '…' that goes on after its closing quote: `prompt = 'it's a lake'`
_QUOTE_IN_LITERAL = re.compile(r"^[^=#\"']*=\s*'[^']*'\w")
#: what tomllib says of a string left open at the end of the file
_UNCLOSED_AT_END = frozenset({"Unterminated string", 'Expected "\'"'})


def _first_open_string(text: str) -> tuple[int | None, int | None]:
    """(line, column) of the first value that opens a string it does not close on its
    line (`prompt = 'a lake"`), or (None, None)."""
    for number, source in enumerate(text.split("\n"), start=1):
        opened = _OPEN_STRING.match(source)
        if opened is not None:
            return number, opened.start("quote") + 1
    return None, None


_LIST_OPEN = "invalid TOML: the list opened here is not closed: end it with ] after its last value"


def _open_list(text: str) -> tuple[int, int] | None:
    """(line, column) of the `[` of the outermost list left open at the end of `text`
    (brackets in strings, of one line or several, and in comments aside), or None; None
    too past _LIST_TOKENS tokens read (a crafted manifest gets tomllib's words)."""
    quote = ""  # the string or comment the scan is in: a quote (or three), or #
    depth, first = 0, 0
    for count, token in enumerate(_LIST_TOKEN.finditer(text)):
        if count > _LIST_TOKENS:
            return None
        mark, at = token[0], token.start()
        if quote == "#":
            quote = "" if mark == "\n" else quote
        elif quote:
            escaped = quote[0] == '"' and _backslashes_before(text, at) % 2 == 1
            if mark == quote and not escaped:
                quote = ""
            elif mark == "\n" and len(quote) == 1:
                quote = ""  # a one-line string left open: tomllib says so itself
        elif mark in _OPENS_TEXT:
            quote = mark
        elif mark == "[":
            depth += 1
            first = at if depth == 1 else first
        elif mark == "]" and depth:
            depth -= 1
    if not depth:
        return None
    line = text.count("\n", 0, first) + 1
    return line, first - text.rfind("\n", 0, first)


#: what `_open_list` reads: quotes (three first), comments, brackets, line ends
_LIST_TOKEN = re.compile(r"\"\"\"|'''|[\"'#\[\]\n]")
#: what opens a string or a comment, which brackets in it do not count
_OPENS_TEXT = frozenset(('"', "'", '"""', "'''", "#"))
#: the most tokens `_open_list` reads: a manifest of 100,000 images has fewer
_LIST_TOKENS = 2_000_000


def _list_left_open(said: str, text: str, line: int | None) -> bool:
    """Whether tomllib's error may be a list never closed: it says so, or it met the end
    of the file, or the next statement, where a list's next value belonged (an error at
    a value inside a list, `widths = [480, sixforty]`, is the value's)."""
    if said.startswith("Unclosed array") or said == "Invalid value (at end of document)":
        return True
    if said != "Invalid value" or line is None:
        return False
    lines = text.split("\n")
    return line <= len(lines) and _STATEMENT.match(lines[line - 1]) is not None


def _backslashes_before(text: str, at: int) -> int:
    """How many backslashes stand right before `at`."""
    start = at
    while start and text[start - 1] == "\\":
        start -= 1
    return at - start


#: a line that begins a statement: `key =` or a [table] header; an error there, past a
#: list left open above it, is the list's
_STATEMENT = re.compile(r"""^\s*(?:[A-Za-z0-9_.\-"']+\s*=|\[)""")


#: quotes a word processor writes, which TOML does not take for its own
_TYPOGRAPHIC_QUOTES = frozenset("\u201c\u201d\u2018\u2019\u201e\u00ab\u00bb")


def _syntax_hint(message: str, text: str, line: int | None, column: int | None) -> str | None:
    """What to write instead, for the syntax errors a newcomer makes most (a string
    not closed, an apostrophe in '…', a comma after a value, text without quotes),
    where tomllib says only what it expected; None for any other error. Never says
    the value back: it may be a secret written where it does not belong."""
    lines = text.split("\n")  # as tomllib counts them (see `sourcemap._lines`)
    message = message.removesuffix(" (at end of document)")
    if line is None and message in _UNCLOSED_AT_END and lines:
        line, column = len(lines), len(lines[-1]) + 1
    if line is None or column is None or line > len(lines):
        return None
    source = lines[line - 1]
    if message in _UNCLOSED_AT_END or message == "Illegal character '\\n'":
        opened = _OPEN_STRING.match(source)
        if opened is None:
            return None
        quote = opened["quote"][0]
        return (
            f"invalid TOML: the text is not closed on its line: end it with {quote} (text "
            f"over several lines goes between {quote * 3} and {quote * 3})"
        )
    if message == "Expected newline or end of document after a statement":
        if _QUOTE_IN_LITERAL.match(source):
            return (
                "invalid TOML: a ' inside '…' ends the text: write text that holds an "
                'apostrophe in double quotes ("it\'s")'
            )
        if source[column - 1 :].lstrip().startswith(","):
            return (
                "invalid TOML: a comma after the value: remove it (commas go between the "
                "items of a [list] or an { inline table })"
            )
        return (
            "invalid TOML: the line goes on after its value: one key = value a line, text "
            "in double quotes, a comment after #"
        )
    after = source[column - 1 :].strip()
    if message == "Invalid value" and (not after or after.startswith("#")):
        return (
            "invalid TOML: no value after =: write one (a number, true or false, text in "
            'double quotes "…")'
        )
    if message == "Unclosed inline table":
        return (
            "invalid TOML: the inline table { … } is not closed on its line: end it with } "
            "(an inline table is written on one line)"
        )
    if message == "Invalid value" and after[0] in _TYPOGRAPHIC_QUOTES:
        return (
            'invalid TOML: text goes in straight double quotes "…" (these are a word '
            "processor's curly quotes)"
        )
    if message == "Invalid value" and source[column - 1 : column].isalpha():
        word = re.match(r"\w+", source[column - 1 :])
        if word is not None and word[0] in ("True", "False", "TRUE", "FALSE"):
            return "invalid TOML: true and false are written in lower case"
        key = sourcemap.key_at(text, line)
        return f'invalid TOML: text goes in double quotes: {key[-1] if key else "key"} = "…"'
    return None


#: the tables whose own tables are named: [images.NAME], [atlases.NAME]…
_NAMED_TABLES = frozenset({"images", "styles", "atlases", "backends"})
#: a line that opens a [table] header, and what stands in it up to `]` or a comment
_HEADER = re.compile(r"^\s*\[(?P<name>[^\]#]*)(?P<closed>\])?")


def _header_hint(message: str, text: str, line: int | None, column: int | None) -> str | None:
    """What to write instead of a [table] header tomllib could not read: a name with
    a space, a header left open or followed by more, a letter TOML takes only in
    quotes; None for any other error."""
    if line is None or column is None or line > text.count("\n") + 1:
        return None
    source = text.split("\n")[line - 1]
    header = _HEADER.match(source)
    if header is None:
        return None
    if message == "Expected newline or end of document after a statement":
        return (
            "invalid TOML: the line goes on after its [table] header: a comment goes "
            "after #, keys on the lines below"
        )
    if message != "Expected ']' at the end of a table declaration":
        return None
    name = header["name"].strip()
    if header["closed"] and re.search(r"\s", name) and not re.search("[\"']", name):
        hyphenated = re.sub(r"\s+", "-", re.sub(r"\s*\.\s*", ".", name))
        table, _, rest = hyphenated.partition("-")
        if table in _NAMED_TABLES and rest:  # [images hero]: the dot left out
            hyphenated = f"{table}.{rest}"
        return (
            f"invalid TOML: a name in a [table] header has no spaces: write [{shown(hyphenated)}]"
        )
    if not header["closed"] and not source[column - 1 :].split("#")[0].strip():
        return f"invalid TOML: the [table] header is not closed: end it with ] ([{shown(name)}])"
    if not source[column - 1 : column].isascii():
        return (
            "invalid TOML: a name in a [table] header takes ASCII letters, digits, - and _ "
            "(or goes in double quotes)"
        )
    return None


def _dotted(python_tuple: str) -> str:
    """`images.a` from tomllib's `'images', 'a'`."""
    return ".".join(re.findall(r"'((?:[^'\\]|\\.)*)'", python_tuple))


def _unvalidated(path: Path, display_path: str, text: str) -> Manifest:
    """A stand-in for a manifest that did not validate, to locate its problems."""
    return Manifest(path, display_path, text, ManifestModel(version=1))


def _refuse_past_bounds(text: str, display_path: str) -> None:
    """Refuse, before tomllib parses it, a manifest that asks for more than any real one:
    in one line naming the file, and where it is a table, the table and its line."""
    heavy = weight(text)
    if heavy > MAX_MANIFEST_WEIGHT and values_over(text, MAX_MANIFEST_WEIGHT):
        raise ManifestError.single(
            display_path,
            "",
            f"asks for more than {MAX_MANIFEST_WEIGHT:,} TOML values (a table counting 8), "
            "more than a manifest of 100,000 images needs; declare fewer images, or make "
            "them with a matrix or rows",
        )
    if heavy <= MAX_WHOLE_WEIGHT:
        return
    if marks_over(text, _VALUE_MARKS, MAX_MANIFEST_VALUES):
        raise ManifestError.single(
            display_path,
            "",
            f"asks for more than {MAX_MANIFEST_VALUES:,} TOML keys and values (each `=`, `,` "
            "and `{`), more than a manifest of 100,000 images needs; move the keys images "
            "share to [defaults] or a style, declare fewer images, or make them with a "
            "matrix or rows",
        )
    headers = TableHeaders(text)
    _refuse_tables_past_bounds(headers, display_path)
    if headers.count() + dotted_tables(text) > MAX_TABLES:
        raise ManifestError.single(
            display_path,
            "",
            f"makes more than the {MAX_TABLES:,} tables a manifest may have (each [header] "
            "and each dotted key, a.b = 1); write an image's keys under its [images.NAME], "
            "declare fewer images, or make them with a matrix or rows",
        )


def _refuse_tables_past_bounds(headers: TableHeaders, display_path: str) -> None:
    """A heavy manifest's first table under an unknown key, or past MAX_TABLES, refused in
    one line that names it, before any table is parsed."""
    unknown = headers.first_not_under(ManifestModel.model_fields)
    if unknown is not None:
        line, column, header = headers.where(unknown)
        key = unquoted(header.split(".")[0].strip()) if header else ""
        error = {"type": "extra_forbidden", "loc": (key,)}
        message = describe_error(error, _known_keys((key,)))
        raise ManifestError.single(display_path, shown(key, 100), message, line, column)
    if headers.count() > MAX_TABLES:
        line, column, header = headers.where(headers.nth(MAX_TABLES))
        raise ManifestError.single(
            display_path,
            shown(header, 100),
            f"is past the {MAX_TABLES:,} tables a manifest may have ([images.NAME] and the "
            "others); declare fewer images, or make them with a matrix or rows",
            line,
            column,
        )


def _invalid(manifest: Manifest, data: dict[str, Any], exc: ValidationError) -> ManifestError:
    """The problems of a manifest that did not validate. Past MAX_PROBLEMS of them, its
    unknown keys, and tables holding nothing else, past the first MAX_PROBLEMS problems
    they make are taken out and counted, and the rest validated again: pydantic takes
    5 µs an error to list them, so 1,190,000 unknown keys in one table took 30 s."""
    unseen = 0
    if exc.error_count() > MAX_PROBLEMS:
        pruning = _Pruning()
        try:
            ManifestModel.model_validate(pruning.table(ManifestModel, data))
        except ValidationError as pruned:
            exc, unseen = pruned, pruning.removed
    return ManifestError(_described(manifest, exc, unseen))


class _Pruning:
    """Takes out the unknown keys (and the tables holding nothing else) that come after
    the first MAX_PROBLEMS such problems, in the order pydantic finds them: a model's
    fields in their order (a missing required one is a problem there), then its
    unknown keys as written. Each taken out is exactly one problem, counted in
    `removed`; the first MAX_PROBLEMS problems of the validation stay as they were."""

    def __init__(self) -> None:
        self.seen = 0
        self.removed = 0

    def table(self, model: type[BaseModel], table: dict[str, Any]) -> dict[str, Any]:
        """`table` as `model` validates it, without what comes past the bound."""
        fields = model.model_fields
        kept = table
        for name, field in fields.items():
            value = table.get(name, _ABSENT)
            if value is _ABSENT:
                self.seen += field.is_required()
            elif (
                type(value) is dict and (pruned := self.value(field.annotation, value)) is not None
            ):
                kept = dict(kept) if kept is table else kept
                kept[name] = pruned
        unknown = [key for key in table if key not in fields and not _kept_key(model, key)]
        room = max(MAX_PROBLEMS - self.seen, 0)
        self.seen += len(unknown)
        if len(unknown) > room:
            gone = set(unknown[room:])
            self.removed += len(gone)
            kept = {key: value for key, value in kept.items() if key not in gone}
        return kept

    def value(self, annotation: Any, value: dict[str, Any]) -> dict[str, Any] | None:
        """A table field's value pruned, or None where it is as it was (or no model's)."""
        models = _tables(annotation)
        if len(models) == 1:
            pruned = self.table(models[0], value)
        elif (
            get_origin(annotation) is dict and len(models := _tables(get_args(annotation)[1])) == 1
        ):
            pruned = self.entries(models[0], value)
        else:
            return None
        return None if pruned is value else pruned

    def entries(self, model: type[BaseModel], tables: dict[str, Any]) -> dict[str, Any]:
        """`[images.NAME]` and the like: past the bound, a table with no key of `model`
        is taken out whole (its problems are its missing and unknown keys)."""
        kept: dict[str, Any] = {}
        required = sum(field.is_required() for field in model.model_fields.values())
        for name, table in tables.items():
            if type(table) is not dict:
                kept[name] = table
            elif (
                self.seen >= MAX_PROBLEMS
                and _NAME.fullmatch(name)
                and table.keys().isdisjoint(model.model_fields)
            ):
                self.seen += required + len(table)
                self.removed += required + len(table)
            else:
                kept[name] = self.table(model, table)
        changed = len(kept) != len(tables) or any(kept[n] is not tables[n] for n in kept)
        return kept if changed else tables


_ABSENT = object()


def _kept_key(model: type[BaseModel], key: str) -> bool:
    """`rows = { str = {…} }`: a key pydantic names as the branch of `rows` that takes a
    path, whose problem `_one_per_value` leaves out, so it is never counted."""
    return model is RowsDecl and key == "str"


def _described(manifest: Manifest, exc: ValidationError, unseen: int = 0) -> list[Problem]:
    """The problems of a validation, in the order they are written, at most MAX_PROBLEMS
    of them described (and a line counting the rest, with `unseen` more)."""
    found = _said_once(_described_alike(_one_per_value(exc)))
    described = found[:MAX_PROBLEMS]
    problems = manifest.problems([(loc, message, None) for loc, message in described])
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    if len(found) > MAX_PROBLEMS or unseen:
        rest = len(found) - MAX_PROBLEMS + unseen
        problems.append(MoreProblems(manifest.display_path, rest))
    return problems


def _described_alike(errors: list[Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Each error as (key path, message), each kind described once however many images
    have it: its words depend on its key within the image, not on the image (describing
    one takes up to 0.2 ms, its "did you mean", so 50,000 took seconds)."""
    said: dict[tuple[Any, ...], tuple[int, str]] = {}
    found = []
    for error in errors:
        loc = tuple(error["loc"])
        within = loc[2:] if loc[:1] == ("images",) else loc
        shown_input = _shown_value(error["input"]) if "input" in error else None
        kind = (within, error["type"], str(error["msg"]), shown_input)
        if kind not in said:
            key, message = _describe(error)
            said[kind] = (len(loc) - len(key), message)
        cut, message = said[kind]
        found.append((loc[: len(loc) - cut], message))
    return found


def _said_once(
    found: list[tuple[tuple[str | int, ...], str]],
) -> list[tuple[tuple[str | int, ...], str]]:
    """`found` with each problem GROUPED_FROM images or more share as one line, at the
    first of them (see `said_once`)."""
    changed = said_once(found)
    kept = []
    for index, (loc, message) in enumerate(found):
        if index not in changed:
            kept.append((loc, message))
        elif (shared := changed[index]) is not None:
            kept.append((loc, shared))
    return kept


def said_once(found: Sequence[tuple[tuple[str | int, ...], str]]) -> dict[int, str | None]:
    """Problems that GROUPED_FROM images or more have at the same key in the same words,
    each said once, at its first image, naming the others: the index of that first in
    `found` → its message (`is required; the same for 99,999 other images (i1, i2, …)`),
    and the index of each other → None. Fewer stay a line for each image."""
    images: dict[tuple[tuple[str | int, ...], str], dict[str, int]] = {}
    for index, (loc, message) in enumerate(found):
        if len(loc) > 1 and loc[0] == "images":
            # once per problem, 100,000 times: no dict made for a key already seen
            by_name = images.get(key := (loc[2:], message))
            if by_name is None:
                by_name = images[key] = {}
            by_name.setdefault(str(loc[1]), index)
    changed: dict[int, str | None] = {}
    for (_, message), by_name in images.items():
        if len(by_name) < GROUPED_FROM:
            continue
        first, *others = by_name.values()
        names = [shown(name, 60) for name in list(by_name)[1 : _NAMED + 1]]
        more = ", …" if len(others) > _NAMED else ""
        changed[first] = (
            f"{message}; the same for {len(others):,} other images ({', '.join(names)}{more})"
        )
        changed.update(dict.fromkeys(others))
    return changed


@collector_paused()
def parse(text: str, path: Path, display_path: str) -> Manifest:
    """Validate manifest text; every problem becomes one line of a ManifestError.
    `display_path` is the name as problems show it (`shown_path`)."""
    _refuse_past_bounds(text, display_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        line, column = (int(found[1]), int(found[2])) if found else (None, None)
        # outside a string a marker is never valid TOML: the parse stops at the first
        marker = marker_on(text, line) if line is not None else None
        if marker is not None:
            raise ManifestError.single(
                display_path,
                "",
                f"unresolved merge conflict ({marker}); resolve it, then run again",
                line,
            ) from None
        said = _TOML_POSITION.sub("", message).strip()
        if line is not None and _SAID_AT_END.match(said):  # tomllib says where its value ends
            line, column = sourcemap.written_at(text, line)[1]
        if line is None and said.removesuffix(" (at end of document)") in _UNCLOSED_AT_END:
            line, column = _first_open_string(text)  # tomllib looked for its end till the last
        if _list_left_open(said, text, line):
            # tomllib looked for its `]` till where it gave up: a list open above that
            above = text if line is None else "\n".join(text.split("\n")[: line - 1])
            opened = _open_list(above)
            if opened is not None:
                line, column = opened
                key = ".".join(sourcemap.key_at(text, line))
                raise ManifestError.single(display_path, key, _LIST_OPEN, line, column) from None
        key, message = _toml_problem(said, text, line, column)
        raise ManifestError.single(display_path, key, message, line, column) from None
    except RecursionError:
        raise _too_deep_for_toml(_unvalidated(path, display_path, text)) from None
    except ValueError:
        raise _too_long_for_toml(_unvalidated(path, display_path, text)) from None
    # a conflict inside a multi-line string (both branches edited one prompt) is valid
    # TOML, and would be paid for with git's markers in the prompt
    conflict = opened_conflict(text)
    if conflict is not None:
        raise ManifestError.single(
            display_path,
            "",
            f"unresolved merge conflict inside a string ({conflict[1]}); resolve it, then "
            "run again (a prompt that shows git's markers writes `<` as \\u003c)",
            conflict[0],
        )
    beyond = beyond_limits(data)
    if beyond is not None:
        loc, message = beyond
        manifest = _unvalidated(path, display_path, text)
        raise ManifestError([manifest.problem(_named(loc), message)])
    try:
        model = ManifestModel.model_validate(data)
    except ValidationError as exc:
        invalid = _invalid(_unvalidated(path, display_path, text), data, exc)
        rest, cut = _without_bad_keys(path, display_path, text, data, exc)
        raise SchemaError(invalid.problems, rest, cut) from None
    return Manifest(path, display_path, text, model)


_NONE: frozenset[str] = frozenset()


class SchemaError(ManifestError):
    """A manifest that did not validate. Where every problem is a key of an image's
    table (not a key, or a value of the wrong kind), `rest` is the manifest without
    those keys, and `cut` names those images: resolving `rest` finds the other
    images' problems, so one run can say them all (`beside_resolution`)."""

    def __init__(
        self, problems: list[Problem], rest: Manifest | None = None, cut: frozenset[str] = _NONE
    ) -> None:
        super().__init__(problems)
        self.rest = rest
        self.cut = cut

    def beside_resolution(self, later: ManifestError) -> ManifestError:
        """These problems and `later`'s, from resolving `rest` with the images `cut`
        judged apart (`resolve`), in the order they are written."""
        shown = self.problems[0].path
        together = sorted(
            [*self.problems, *(p for p in later.problems if not isinstance(p, MoreProblems))],
            key=lambda p: (p.path != shown, p.path, p.line or 0, p.column or 0),
        )
        more = sum(p.count for p in later.problems if isinstance(p, MoreProblems))
        more += max(len(together) - MAX_PROBLEMS, 0)
        together = together[:MAX_PROBLEMS]
        return ManifestError([*together, MoreProblems(shown, more)] if more else together)


#: an image a problem's message names (`also written by images.a`, `@a`)
_IMAGES_NAMED = re.compile(r"(?:\bimages\.|@)([A-Za-z0-9_-]+)")


def images_named(message: str) -> set[str]:
    """The declarations a problem's message names (`also written by images.a`, `@a`)."""
    return set(_IMAGES_NAMED.findall(message)) if "images." in message or "@" in message else set()


#: an image's keys that decide how many images it makes: without one, the rest of
#: the manifest is not the manifest (`max_images`, the names atlases list)
_MAKES_IMAGES = frozenset({"matrix", "rows", "id", "where", "limit"})


def _without_bad_keys(
    path: Path, display_path: str, text: str, data: dict[str, Any], exc: ValidationError
) -> tuple[Manifest | None, frozenset[str]]:
    """(`data` validated without the keys of images' tables that failed, the images
    cut) where every problem is such a key; else (None, none)."""
    if exc.error_count() > MAX_PROBLEMS:
        return None, _NONE
    cut: dict[str, set[str]] = {}
    for error in exc.errors():
        loc = _without_branches(error["loc"])
        if (
            len(loc) < 3
            or loc[0] != "images"
            or error["type"] == "missing"
            or loc[2] in _MAKES_IMAGES
        ):
            return None, _NONE
        cut.setdefault(str(loc[1]), set()).add(str(loc[2]))
    images = dict(data["images"])
    for name, keys in cut.items():
        table = images.get(name)
        if type(table) is not dict:
            return None, _NONE
        images[name] = {key: value for key, value in table.items() if key not in keys}
    try:
        model = ManifestModel.model_validate({**data, "images": images})
    except ValidationError:
        return None, _NONE
    return Manifest(path, display_path, text, model), _with_takers(model, set(cut))


def _with_takers(model: ManifestModel, cut: set[str]) -> frozenset[str]:
    """`cut` and the images that take one's output (`@name`, written in the image,
    its style or the defaults), at any remove: what is found of those, an upstream
    image changed by the cut may have caused."""
    defaults = model.defaults
    takers: dict[str, list[str]] = {}
    for name, decl in model.images.items():
        style = model.styles.get(decl.style or defaults.style or "")
        for key in ("image", "mask"):
            value = getattr(decl, key) or getattr(style, key, None) or getattr(defaults, key)
            if value and value[0] == "@":
                takers.setdefault(value[1:].split("[", 1)[0], []).append(name)
    pending = list(cut)
    while pending:
        for taker in takers.get(pending.pop(), ()):
            if taker not in cut:
                cut.add(taker)
                pending.append(taker)
    return frozenset(cut)


def shown_path(display_path: str) -> str:
    """The manifest's name as a problem names it: escaped, so that a line break or an
    escape sequence in it (`-f $'a\\nerror: b.toml'`) cannot start a line of its own."""
    return escaped_value(display_path)


def read_bytes(path: Path, display_path: str | None = None) -> bytes:
    """The manifest file's bytes; a missing or unreadable file is a ManifestError."""
    shown = shown_path(display_path or path.name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ManifestError.single(shown, "", "file not found") from None
    except OSError as exc:
        raise ManifestError.single(shown, "", f"cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ManifestError.single(shown, "", "not a regular file")
        if info.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError.single(
                shown, "", f"{info.st_size:,} bytes, more than a manifest may have (64 MiB)"
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            # what the file holds, not the limit: a read allocates what it asks for
            wanted = info.st_size + 1
            raw = handle.read(wanted)
            if len(raw) == wanted:  # it grew since fstat
                raw += handle.read(MAX_MANIFEST_BYTES + 1 - wanted)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError.single(shown, "", "more bytes than a manifest may have (64 MiB)")
        return raw
    except OSError as exc:
        raise ManifestError.single(shown, "", f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def utf8_text(raw: bytes) -> str:
    """The text of manifest bytes, without a byte-order mark (tomllib refuses one; an
    editor shows none, so lines and columns count without it); UnicodeDecodeError
    where they are not UTF-8."""
    return without_utf8_bom(raw).decode("utf-8")


def from_bytes(raw: bytes, path: Path, display_path: str | None = None) -> Manifest:
    """Validate manifest bytes already read from `path`."""
    shown = shown_path(display_path or path.name)
    try:
        text = utf8_text(raw)
    except UnicodeDecodeError as exc:
        raise _not_utf8(raw, exc, shown) from None
    try:
        return parse(text, path, shown)
    except ManifestError:
        # UTF-16 or UTF-32 of ASCII text is UTF-8 too, each letter among NULs
        if (wide := saved_as_wide(raw)) is not None:
            raise ManifestError.single(shown, "", wide) from None
        raise


def _not_utf8(raw: bytes, exc: UnicodeDecodeError, shown: str) -> ManifestError:
    """The bytes that are not UTF-8, at the line and column an editor shows them."""
    if (wide := saved_as_wide(raw)) is not None:
        return ManifestError.single(shown, "", wide)
    line, column, said = not_utf8(without_utf8_bom(raw), exc.start)
    return ManifestError.single(shown, "", said, line, column)


def load(path: Path, display_path: str | None = None) -> Manifest:
    """Read and validate a manifest file."""
    return from_bytes(read_bytes(path, display_path), path, display_path)


def source_text(path: Path) -> str | None:
    """The manifest's text as it is now, only to point at lines (a resolution from the
    spec cache kept none); None where it cannot be read."""
    try:
        raw = read_bytes(path)
    except ManifestError:
        return None
    return without_utf8_bom(raw).decode("utf-8", errors="replace")


def json_schema(backend_settings: Mapping[str, type[BaseModel]]) -> dict[str, Any]:
    """The JSON Schema of images.toml, as committed in schema/images.schema.json.

    `backend_settings` (the built-in backends' settings models) closes their
    `[backends.<name>]` tables, so an editor flags a typo there as `validate` does;
    any other name is a plugin's, whose settings stay an open table."""
    schema = ManifestModel.model_json_schema()
    defs = schema.setdefault("$defs", {})
    closed = {}
    for name, model in sorted(backend_settings.items()):
        settings = model.model_json_schema(ref_template="#/$defs/{model}")
        for def_name, definition in {**settings.pop("$defs", {}), model.__name__: settings}.items():
            if defs.setdefault(def_name, definition) != definition:
                raise ValueError(f"two schema definitions are named {def_name}")
        closed[name] = {"$ref": f"#/$defs/{model.__name__}"}
    schema["properties"]["backends"]["properties"] = closed
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://nebula-build.dev/schema/images.schema.json",
        "title": "nebula-build images.toml",
        **schema,
    }
