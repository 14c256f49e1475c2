"""`AssetSpec`: one image fully resolved, its canonical form and its keys.

`resolve.py` makes these from a manifest; everything downstream (plan, apply,
the lock) reads them. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from nebula_build.errors import did_you_mean
from nebula_build.params import FILES, PARAMS
from nebula_build.text import UNSHOWN_CHARACTERS, printable, quoted

#: "did you mean" compares a typo with each known name: only where there are few
_SUGGEST_AMONG = 1000

#: Bumped when the canonical form changes, so old keys stop matching.
KEY_SCHEME = 1
DEFAULT_VARIANT_PATTERN = "{stem}-{width}{ext}"
#: why a declaration with `rows` makes no image
NO_ROW_KEPT = "its data has no row, or its `where` keeps none"


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same spec always gives the same bytes."""
    return _CANONICAL.encode(value).encode()


def key_of(value: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


Template = tuple[tuple[str, str | None], ...]


@lru_cache(maxsize=1024)
def parse_template(template: str) -> Template:
    """(literal text, placeholder name or None) pairs of a template such as
    "{stem}-{width}{ext}". Only plain `{name}` placeholders: a format spec or a
    conversion (`{width:>400000000}` asks for a 400 MB string) raises ValueError, as
    does a stray brace."""
    import string  # only templates need it, and each is parsed once

    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (spec or conversion or not field.isidentifier()):
            written = (
                field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            )
            raise ValueError(
                f"{{{written}}}: only plain placeholders like {{name}}, without a format "
                "spec or conversion"
            )
        parts.append((literal, field))
    return tuple(parts)


def placeholders(template: str) -> list[str]:
    """The names a template uses, in order; ValueError as `parse_template`."""
    return [name for _, name in parse_template(template) if name is not None]


def fill(template: str, values: Mapping[str, object]) -> str:
    """The template with each `{name}` replaced by str(values[name]); ValueError for a
    template `parse_template` refuses, KeyError for a name `values` lacks."""
    parse_template(template)  # once a template passes, format_map only substitutes names
    return template.format_map(values)


def path_value_problem(
    template: str, values: Mapping[str, object], names: Collection[str]
) -> tuple[str, str] | None:
    """(the placeholder, what is wrong) where the values of `names` filled into output
    path `template` make the file be written elsewhere than the path reads: an empty or
    `.` folder the same template filled with plain names would not have
    (`out/{folder}/{sku}.png`, sku `/abs`: `out/folder//abs.png`, written as
    `out/folder/abs.png`), a `..` (out of the project) or a character a terminal does
    not show as it is (the row's to say, not the manifest's); None where they do not, as
    for empty ones (an optional folder left out writes one level up, as the template
    allows). The placeholder blamed is the first whose value holds a slash or is only
    dots; the template is checked, its other placeholders are plain names. Costs two
    fills of the template where a value holds a slash or a dot."""
    pathy = [name for name in names if may_change_folders(values.get(name))]
    unshown = next((name for name in names if _unshown(values.get(name))), None)
    if unshown is not None:
        path = template.format_map(_Plain(values))
        value = quoted(str(values[unshown]), 100)
        return unshown, f"{value} would make the output {quoted(path, 200)} {_UNSHOWN_TEXT}"
    if not pathy:
        return None  # as most are: names
    plain = _Plain({key: "x" if str(value) else "" for key, value in values.items()})
    plainly = template.format_map(plain).replace("\\", "/").split("/")
    for name in pathy:
        plain[name] = values[name]
    path = template.format_map(plain)
    parts = path.replace("\\", "/").split("/")
    if parts.count("..") > plainly.count(".."):
        wrong = "use '..' (a value may name folders, not climb out of one)"
    elif _loose(parts) > _loose(plainly):
        wrong = "have an empty or '.' folder (written elsewhere than it reads)"
    else:
        return None
    name = next((n for n in pathy if _FOLDERS.search(str(values[n]))), pathy[0])
    path = template.format_map(_Plain(values))  # as the values fill it in
    value = quoted(str(values[name]), 100)
    return name, f"{value} would make the output {quoted(path, 200)} {wrong}"


def _unshown(value: object) -> bool:
    return type(value) is str and UNSHOWN_CHARACTERS.search(value) is not None


_UNSHOWN_TEXT = (
    "contain a character a terminal does not show as it is (a control, an invisible or a "
    "bidirectional one)"
)


def may_change_folders(value: object) -> bool:
    """Whether `value`, filled into a path, may change its folders (`path_value_problem`
    says whether it does): it holds a slash or a dot."""
    return type(value) is str and _PATHY.search(value) is not None


#: what a value must hold to change the folders of a path it is filled into
_PATHY = re.compile(r"[/\\.]")
#: a value that makes folders, or is only dots
_FOLDERS = re.compile(r"[/\\]|^\.+$")


class _Plain(dict[str, object]):
    """Values for a template, a plain name for each placeholder not among them."""

    def __missing__(self, key: str) -> str:
        return "x"


def _loose(parts: list[str]) -> int:
    """How many of a path's parts are empty or `.`."""
    return sum(part in ("", ".") for part in parts)


def check_template(template: str, known: Collection[str]) -> str | None:
    """Why `template` cannot be filled from `known` names, or None if it can."""
    try:
        names = placeholders(template)
    except ValueError as exc:
        return str(exc)
    unknown = next((name for name in names if name not in known), None)
    if unknown is not None:
        close = did_you_mean(unknown, known) if len(known) <= _SUGGEST_AMONG else None
        hint = f"did you mean {{{close}}}? " if close else ""
        return f"unknown placeholder {{{_cut(unknown)}}} ({hint}known: {_listed(known)})"
    return None


#: the most characters between `{{` and `}}` read as a placeholder of Hugo, Jinja or
#: Liquid (`{{ .Params.scene }}`, `{{ page.title }}`)
_INSIDE_BRACES = 200


def foreign_template(template: str, known: Collection[str]) -> str | None:
    """Why a `{{ … }}` in a template of rows or a matrix is refused, or None: filling
    it in would make it a literal `{ … }`, so a site's `{{ .Params.scene }}` became the
    same text in every post's prompt (one image for all) instead of an error. A
    `{{word}}` that names no field stays the escape of a literal brace, as does any
    `{{` in a `variant_pattern`."""
    found = next((pair for pair in _double_braces(template) if _foreign(pair[1], known)), None)
    if found is None:
        return None
    written = printable(found[0], 80)
    last_word = re.findall(r"\w+", found[1])[-1:]
    name = _known_as(last_word[0], known) if last_word else None
    how = f": write {{{name}}}" if name else f" (known: {_listed(known)})"
    return (
        f"{written} is another template language's (Hugo, Jinja, Liquid): here a "
        f"placeholder is one pair of braces around a name{how}"
    )


def _double_braces(template: str) -> Iterator[tuple[str, str]]:
    """Each `{{…}}` of `template` and what it holds, left to right: from a `{{` to the
    first `}}` after it, on its line and at most _INSIDE_BRACES characters on. Each
    `}}` and line end is looked for once, and a `{{` skipped with every `{{` that would
    be too: a regular expression looked ahead of each one, and a template of 10,000
    `{` took 70 ms (a manifest of 400 of them, 30 s)."""
    start, close, line_end = template.find("{{"), -1, -1
    while start >= 0:
        inside = start + 2
        if close < inside:
            close = template.find("}}", inside)
            if close < 0:
                return
        if line_end < inside:
            found = template.find("\n", inside)
            line_end = len(template) if found < 0 else found
        if line_end < close:  # the next `{{` that may close on its line is on the next
            start = template.find("{{", line_end + 1)
        elif close - inside > _INSIDE_BRACES:  # the next whose `}}` is near enough
            start = template.find("{{", close - _INSIDE_BRACES - 2)
        else:
            yield template[start : close + 2], template[inside:close]
            start = template.find("{{", close + 2)


def _foreign(inside: str, known: Collection[str]) -> bool:
    """Whether `{{inside}}` is another language's placeholder, not the escape of a
    literal `{inside}` (`{{literal}}`): spaced (`{{ x }}`), dotted (`{{ .Title }}`),
    or naming a field the data has (`{{title}}`)."""
    return inside != inside.strip() or "." in inside or inside in known


def _known_as(word: str, known: Collection[str]) -> str | None:
    """The known name `word` stands for (Hugo's `.Title` is the front matter's `title`)."""
    if word in known:
        return word
    return next((name for name in known if name.lower() == word.lower()), None)


#: names an error lists, and characters of each (a data file may have a million columns)
_LISTED, _NAME_CHARS = 30, 40


def _cut(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _listed(names: Collection[str]) -> str:
    shown = [f"{{{_cut(name)}}}" for _, name in zip(range(_LISTED), names, strict=False)]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f", … ({more:,} more)" if more > 0 else "") if shown else "none"


def derived_seed(seed: int, index: int) -> int:
    """The seed of draw `index` of an image whose seed is `seed`."""
    digest = hashlib.sha256(f"nebula-build draw {seed} {index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def as_declared(
    old: Mapping[str, Any], new: Mapping[str, Any], declared: Collection[int] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two generations' parameters as a person compares them: without the draw index,
    and with a draw's derived seed shown as the seed it was derived from where the
    other side declares that one, or `declared` holds it (the manifest's: two draws
    of sets that share it). A pick is not an edit of the seed, nor an upstream renamed
    (`@mob` → `@monster`, its output the same) an edit of the input."""
    old, new = dict(old), dict(new)
    for name in FILES:
        if _renamed_upstream(old.get(name), new.get(name)):
            old[name] = new[name]
    draws = {id(one): one.pop("draw", 0) for one in (old, new)}
    for one, other in ((old, new), (new, old)):
        draw, seed = draws[id(one)], one.get("seed")
        if type(draw) is not int or draw <= 0:
            continue
        for source in (other.get("seed"), *declared):
            if type(source) is int and seed == derived_seed(source, draw):
                one["seed"] = source
                break
    return old, new


def _renamed_upstream(old: object, new: object) -> bool:
    """Whether two inputs are one upstream's output under two names (`@mob:KEY` and
    `@monster:KEY`): the pixels taken are the same."""
    if not (isinstance(old, str) and isinstance(new, str)) or old == new:
        return False
    if not (old.startswith("@") and new.startswith("@")):
        return False
    key = old.partition(":")[2]
    return bool(key) and key == new.partition(":")[2]


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """One image, fully resolved: defaults applied, backend and model checked."""

    name: str
    backend: str
    model: str
    prompt: str
    width: int
    height: int
    output: str
    format: str
    negative_prompt: str | None = None
    num_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    image: str | None = None
    mask: str | None = None
    image_digest: str | None = None
    mask_digest: str | None = None
    seed_reproducible: bool = True
    #: parameters a style or [defaults] set that the model does not take, left out
    #: of the spec, each by where it was set (`styles.pixel.negative_prompt`)
    dropped: tuple[str, ...] = ()
    quality: int | None = None
    lossless: bool | None = None
    resize: tuple[int, int] | None = None
    fit: str = "cover"
    resample: str = "lanczos"
    widths: tuple[int, ...] = ()
    variant_pattern: str = DEFAULT_VARIANT_PATTERN
    alt: str | None = None
    metadata: bool = True
    #: images whose output this one takes as input (`image = "@hero"`)
    depends_on: tuple[str, ...] = ()
    #: how many draws the manifest asks for, and which of them this spec is (`drawn`)
    candidates: int = 1
    draw: int = 0
    #: an earlier generation pinned as the output (`pick NAME @K --pin`): the
    #: generation key of the spec the manifest declares, which the pin holds against
    pin: str | None = None
    #: the key colour a transparent background is generated on (#RRGGBB), if any
    key_color: str | None = None
    #: output steps as sorted (name, value) pairs: keying (key_softness, despill) and
    #: cleanup (pixel_grid, palette, trim, pad, extrude); see `core/sprite.py`
    sprite: tuple[tuple[str, Any], ...] = ()
    #: acceptance checks as sorted (name, value) pairs
    checks: tuple[tuple[str, Any], ...] = ()
    #: the id of the data row the image was made from (`rows`): for the asset manifest,
    #: never part of a key (the row's values that the image uses are)
    row: str | None = None
    #: the values its name's brackets join, as expansion made them (enemy[slime,idle]:
    #: ("slime", "idle")): what a `*` in --target or an atlas matches; never part of a key
    parts: tuple[str, ...] = ()
    #: computed from the fields; passed in only when restoring from the spec cache
    generation_key: str = ""
    output_key: str = ""

    def __post_init__(self) -> None:
        if self.resize is not None and not isinstance(self.resize, tuple):
            object.__setattr__(self, "resize", tuple(self.resize))  # from JSON or TOML lists
        if not isinstance(self.widths, tuple):
            object.__setattr__(self, "widths", tuple(self.widths))
        if not isinstance(self.depends_on, tuple):
            object.__setattr__(self, "depends_on", tuple(self.depends_on))
        if not isinstance(self.dropped, tuple):
            object.__setattr__(self, "dropped", tuple(self.dropped))
        if not isinstance(self.parts, tuple):
            object.__setattr__(self, "parts", tuple(self.parts))
        for name in ("sprite", "checks"):  # pairs come back from JSON as lists
            value = getattr(self, name)
            if value and not isinstance(value[0], tuple):
                object.__setattr__(self, name, tuple(tuple(pair) for pair in value))
        # Keys are computed once: plan, apply and reports read them many times.
        if self.generation_key and self.output_key:
            return
        generation_key = key_of({"scheme": KEY_SCHEME, **self.generation_params()})
        object.__setattr__(self, "generation_key", generation_key)
        output = {"scheme": KEY_SCHEME, "generation": generation_key, **self.output_params()}
        object.__setattr__(self, "output_key", key_of(output))

    def generation_params(self) -> dict[str, Any]:
        """Everything that shapes the pixels, as stored in the lock and hashed.

        Left out on purpose: the output path and format (they do not change the
        pixels; see `output_params`) and input *paths* (their content digests
        stand in, so moving an input file changes nothing). Unset parameters
        are omitted rather than null, so adding a new optional parameter to the
        tool does not re-key every existing image.
        """
        params: dict[str, Any] = {"backend": self.backend, "model": self.model}
        params |= {param.name: getattr(self, param.key_field) for param in PARAMS}
        if self.draw:
            params["draw"] = self.draw
        if self.key_color is not None:
            params["key"] = self.key_color
        return {k: v for k, v in params.items() if v is not None}

    def entry_params(self) -> dict[str, Any]:
        """The generation parameters a lock entry records: `generation_params` less the
        backend and the model (the entry has them as fields). Built at its own size: a
        dict that had those keys deleted keeps their room, and a 100k-image lock holds
        one per entry."""
        return {
            name: value
            for name, value in self.generation_params().items()
            if name not in ("backend", "model")
        }

    def drawn(self, index: int) -> AssetSpec:
        """Draw `index` of this image's candidates, from the spec as declared (draw 0):
        draw i > 0 is keyed by i and, where the model takes a seed and one is set, uses
        a seed derived from it and i (so the set is reproducible)."""
        if index == self.draw:
            return self
        seed = self.seed
        if seed is not None and self.seed_reproducible:
            seed = derived_seed(seed, index)
        return replace(self, draw=index, seed=seed, generation_key="", output_key="")

    def with_generation(self, backend: str, model: str, params: Mapping[str, Any]) -> AssetSpec:
        """This image (its output settings) made with another generation's parameters,
        as the lock records them: an earlier generation brought back."""
        draw = params.get("draw", 0)
        fields: dict[str, Any] = {param.key_field: params.get(param.name) for param in PARAMS}
        key = params.get("key")
        return replace(
            self,
            backend=backend,
            model=model,
            key_color=key if isinstance(key, str) else None,
            draw=draw if type(draw) is int else 0,
            candidates=1,
            generation_key="",
            output_key="",
            **fields,
        )

    def output_params(self) -> dict[str, Any]:
        """Options that change the files but not the generation. Options left at their
        default are omitted, as in `generation_params`."""
        params: dict[str, Any] = {"format": self.format, "size": list(self.delivered_size)}
        if self.quality is not None:
            params["quality"] = self.quality
        if self.lossless is not None:
            params["lossless"] = self.lossless
        if self.resize is not None:
            params |= {"fit": self.fit, "resample": self.resample}
        if self.variants:
            params["variants"] = [[path, w, h] for path, w, h in self.variants]
        if not self.metadata:
            params["metadata"] = False
        if self.sprite:
            params["sprite"] = [list(pair) for pair in self.sprite]
        if self.checks:  # a new check must run: it re-processes from the cache
            params["checks"] = [list(pair) for pair in self.checks]
        return params

    @property
    def steps(self) -> dict[str, Any]:
        """The output steps, by name."""
        return dict(self.sprite)

    @property
    def file_size(self) -> tuple[int, int] | None:
        """The main file's width and height: the delivered size with `pad` and `extrude`
        added on every side; None where `trim` makes it depend on the pixels."""
        steps = dict(self.sprite)
        if steps.get("trim"):
            return None
        grow = 2 * ((steps.get("pad") or 0) + (steps.get("extrude") or 0))
        width, height = self.delivered_size
        return width + grow, height + grow

    @property
    def palette_file(self) -> str | None:
        """The .hex palette file the image is quantised to, if any (an input file)."""
        steps = dict(self.sprite)
        return steps.get("palette") if "palette_digest" in steps else None

    @property
    def delivered_size(self) -> tuple[int, int]:
        """The size of the main output file."""
        return self.resize or (self.width, self.height)

    @property
    def variants(self) -> tuple[tuple[str, int, int], ...]:
        """(path, width, height) of each responsive variant; never wider than the image."""
        width, height = self.delivered_size
        folder, _, name = self.output.rpartition("/")
        stem, dot, ext = name.rpartition(".")
        found = []
        for target in self.widths:
            if target >= width:
                continue
            file = fill(self.variant_pattern, {"stem": stem, "width": target, "ext": dot + ext})
            found.append(
                (
                    f"{folder}/{file}" if folder else file,
                    target,
                    max(1, round(height * target / width)),
                )
            )
        return tuple(found)

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file this image writes: the output, then its variants."""
        return (self.output, *(path for path, _, _ in self.variants))


@dataclass(frozen=True, slots=True)
class AtlasSpec:
    """One resolved atlas."""

    name: str
    members: tuple[str, ...]
    output: str
    frames: str
    padding: int
    format: str
    #: (member, its value of the matrix dimension `tags` names), in member order: the
    #: Aseprite frame tags and the Godot animations
    tags: tuple[tuple[str, str], ...] = ()
    #: the Aseprite JSON (array form) written beside the sheet, if any
    aseprite: str | None = None
    #: the Godot 4 SpriteFrames resource written beside the sheet, if any
    godot: str | None = None
    #: the sheet's path as Godot names it (res://…), with `godot`
    godot_sheet: str | None = None
    #: frames per second of the animations (Aseprite frame durations, Godot speed)
    fps: float = 8.0
    #: the tags whose animation plays once (`loop`); every other one loops
    once: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.members, tuple):  # from the spec cache's JSON
            object.__setattr__(self, "members", tuple(self.members))
        if self.tags and not isinstance(self.tags[0], tuple):
            object.__setattr__(self, "tags", tuple(tuple(pair) for pair in self.tags))
        if not isinstance(self.once, tuple):
            object.__setattr__(self, "once", tuple(self.once))

    @property
    def exports(self) -> tuple[str, ...]:
        """The engine files written beside the sheet and its frame map."""
        return tuple(path for path in (self.aseprite, self.godot) if path is not None)

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file the atlas writes."""
        return (self.output, self.frames, *self.exports)

    def exports_config(self) -> list[Any]:
        """What the exports depend on besides the members (empty without exports, so
        an atlas without them keeps its key)."""
        if not self.exports:
            return []
        config = [[list(pair) for pair in self.tags], *self.exports, self.godot_sheet, self.fps]
        return [*config, list(self.once)] if self.once else config  # as before where all loop
