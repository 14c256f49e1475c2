"""One row per post: a Markdown file's front matter, its `slug`, `path` and `excerpt`.

Front matter is YAML between `---` lines (read with PyYAML's safe loader: plain
values only, never an object of any class) or TOML between `+++` lines, or either
named after its opening `---` (`---yaml`, `---toml`); front matter in another
language (Hugo's JSON, Eleventy's `---json`) is refused. `slug`
is the file's name without its suffix (its folder's name for a page bundle's
`index.md` or `_index.md`) and `excerpt` the first paragraph of the
text, unless the front matter sets them; `path` is always the file's path in the
project. Pure: the bytes come in, a row comes out.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nebula_build.core.table import DataError, Row, Table, Value, decode, normal
from nebula_build.text import printable
from nebula_build.tomlparse import values_over

if TYPE_CHECKING:
    from yaml import MarkedYAMLError

#: characters of an excerpt made from the text (one the front matter sets is kept whole)
MAX_EXCERPT = 500
#: what a post adds to its front matter's fields
DERIVED = ("slug", "path", "excerpt")
#: the file of a page bundle (Hugo's `index.md`) or of a section (`_index.md`): named
#: after its folder
BUNDLE_FILES = frozenset({"index", "_index"})
#: characters of a number in YAML front matter (`_yaml_loader`)
MAX_NUMBER = 4_300
#: values (scalars, lists and tables) in a post's YAML front matter, counted as it is
#: read: each costs hundreds of bytes parsed, and 4 MiB of `[],[],…` took 20 s and 1 GB
MAX_YAML_VALUES = 200_000
#: what TOML front matter may ask tomllib for (`tomlparse.weight`: a value 1, a table
#: 8), counted before it is parsed: 4 MiB of `[t1]`, `[t2]`, … would take gigabytes
MAX_TOML_WEIGHT = 200_000
_FENCES = {"---": "yaml", "+++": "toml"}
#: front matter that names its language after `---`, closed by `---` (gray-matter's,
#: which Eleventy reads: `---yaml`, `--- json`)
_NAMED_FENCE = re.compile(r"---\s*([A-Za-z][\w-]*)")
_NAMED_LANGUAGES = {"yaml": "yaml", "yml": "yaml", "toml": "toml"}
#: the first line of front matter in a language not read: Hugo's JSON (`{` and a
#: key, or `{` alone); a language `_NAMED_FENCE` names but `_NAMED_LANGUAGES` does not
_JSON_FRONT_MATTER = re.compile(r'\{\s*(?:"|\}|$)')
_EMPHASIS = frozenset("*_`")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
#: how tomllib says a key is set twice; where, it says at the end of the value
_TOML_SET_TWICE = "Cannot overwrite a value"
_TOML_KEY_LINE = re.compile(r"\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


@dataclass(frozen=True, slots=True)
class Post:
    """A post's row, and its front matter's lines (to point at a field)."""

    row: Row
    front: tuple[str, ...]
    #: the characters of the post read: its front matter, and up to the end of the
    #: first paragraph of its text where the excerpt is made from it
    read: int = 0
    #: the line (0 the first) of the front matter that sets each plain key, found
    #: when a problem first needs one (`setting_line`)
    settings: dict[str, int] = field(default_factory=dict, compare=False)
    #: the front matter sets `slug` (else the file's path names it, `slug_of`)
    slug_given: bool = False

    def setting_line(self, column: str) -> int | None:
        """The line (0 the first) of the front matter that sets `column`, if it is a
        plain key (no quote, `:` or `=`, no surrounding spaces); None otherwise. One
        walk of the front matter: each declaration that reads the post looked again
        (a thousand, along 400,000 lines, took minutes)."""
        if not column or column != column.strip() or _SPECIAL.search(column):
            return None
        if "" not in self.settings:  # no key is "": it marks the walk made
            self.settings.update(_settings(self.front), **{"": -1})
        return self.settings.get(column)

    def under(self, base: str) -> Post:
        """The post as a pattern starting at folder `base` reads it: the same row, but
        for the slug `slug_of` gives a page bundle's file below another folder."""
        slug = slug_of(self.row.path, base)
        if self.slug_given or self.row.values.get("slug") == slug:
            return self
        row = self.row
        return replace(self, row=Row({**row.values, "slug": slug}, row.at, row.path))


def parse_post(path: str, data: bytes, *, base: str = ".") -> Post:
    """The row of one post; `base` is the folder its pattern starts from (see
    `slug_of`)."""
    text = decode(path, data, markdown=True)
    lines = text.split("\n")
    fence = lines[0].rstrip() if lines else ""
    fields: dict[str, Value] = {}
    front: tuple[str, ...] = ()
    body_start = 0
    language, closing = _opened_by(fence)
    if language is not None:
        closes = (closing, "...") if language == "yaml" else (closing,)
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in closes), None)
        if end is None:
            raise DataError(path, f"the front matter opened by {fence!r} is never closed", 1)
        front = tuple(line.removesuffix("\r") for line in lines[1:end])  # CRLF, as on Windows
        raw = _load(path, language, "\n".join(front))
        fields = {str(key): normal(value) for key, value in raw.items()}
        body_start = end + 1
    elif closing:  # else its fields would be the post's text
        opened_by = fence if fence.startswith("---") else "{"
        raise DataError(
            path,
            f"the front matter opened by {opened_by!r} is not YAML or TOML, the two "
            "nebula-build reads: write it as YAML between '---' lines or as TOML between "
            "'+++' lines",
            1,
        )
    slug_given = "slug" in fields
    fields.setdefault("slug", slug_of(path, base))
    read = sum(len(line) + 1 for line in lines[:body_start])
    if "excerpt" not in fields:
        paragraph, visited = _first_paragraph(lines[body_start:])
        fields["excerpt"] = _excerpt_of(paragraph)
        read += visited
    fields["path"] = path
    return Post(Row(fields, 1, path), front, read=read, slug_given=slug_given)


def _opened_by(fence: str) -> tuple[str | None, str]:
    """The language of the front matter a post's first line opens and the line that
    closes it; (None, what would close it) for front matter in a language not read,
    (None, "") for a post without front matter."""
    if fence in _FENCES:
        return _FENCES[fence], fence
    named = _NAMED_FENCE.fullmatch(fence)
    if named is not None:
        return _NAMED_LANGUAGES.get(named[1].lower()), "---"
    return None, "}" if _JSON_FRONT_MATTER.match(fence) else ""


def slug_of(path: str, base: str = ".") -> str:
    """The file's name without its suffix; for a page bundle's `index.md` or a
    section's `_index.md` in a folder below `base` (where the pattern's wildcards
    start), the name of its folder (`posts/*/index.md` matching
    `posts/hello/index.md`: hello), as Hugo names them. An `index.md` right in
    `base` (`posts/*.md`) keeps its own name, as it always had."""
    folder, _, name = path.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if stem in BUNDLE_FILES and folder and folder != base.strip("/"):
        return folder.rpartition("/")[2]
    return stem


def _load(path: str, kind: str, text: str) -> Mapping[str, Any]:
    if kind == "toml":
        if values_over(text, MAX_TOML_WEIGHT):
            raise DataError(
                path,
                f"the TOML front matter asks for more than {MAX_TOML_WEIGHT:,} values (a "
                "table counting 8), more than nebula-build reads from a post",
                1,
            )
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            found = _TOML_POSITION.search(message)
            line, column = (int(found[1]) + 1, int(found[2])) if found else (1, None)
            problem = _TOML_POSITION.sub("", message)
            if problem.startswith(_TOML_SET_TWICE) and (twice := _toml_key_set(text, line)):
                key, line = twice
                raise DataError(path, f"the TOML front matter sets {key!r} twice", line) from None
            raise DataError(
                path, f"the TOML front matter does not parse: {problem}", line, column
            ) from None
        except RecursionError:
            raise DataError(path, "the TOML front matter is nested too deep", 1) from None
        except ValueError:  # Python reads no integer of more than 4,300 digits
            raise DataError(
                path, "the TOML front matter does not parse: an integer is too long", 1
            ) from None
        return dict(data)
    import yaml  # only posts with YAML front matter need it

    loader = _yaml_loader()
    try:
        _refuse_aliases(path, yaml.parse(text, Loader=loader))
        data = yaml.load(text, Loader=loader)
    except _set_twice_error() as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 2, mark.column + 1) if mark is not None else (1, None)
        raise DataError(path, f"the YAML front matter {exc.problem}", line, column) from None
    except yaml.MarkedYAMLError as exc:
        mark, problem, opened = exc.problem_mark, str(exc.problem), exc.context_mark
        if opened is not None and (mark is None or mark.index >= len(text.rstrip())):
            # stopped at the end by what never closed: point at where that opened
            mark, problem = opened, f"{problem}, {exc.context} that starts here"
        elif opened is not None:
            problem += f", {exc.context} that starts at {opened.line + 2}:{opened.column + 1}"
        line = mark.line + 2 if mark is not None else 1
        column = mark.column + 1 if mark is not None else None
        raise DataError(
            path, f"the YAML front matter does not parse: {problem}", line, column
        ) from None
    except yaml.reader.ReaderError as exc:
        raise _control_character(path, text, exc) from None
    except (yaml.YAMLError, RecursionError):
        raise DataError(path, "the YAML front matter does not parse", 1) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(path, "the front matter is not a table of fields (key: value)", 2)
    return data


def _control_character(path: str, text: str, refused: Any) -> DataError:
    """PyYAML's refusal of a character (a `ReaderError`), at that character's line and
    column: libyaml counts bytes, PyYAML characters, so the first such character found
    is the one."""
    character = refused.character
    code = character if isinstance(character, int) else ord(character)
    found = text.find(chr(code))
    at = found if found >= 0 else min(refused.position, len(text))
    problem = f"the YAML front matter may not hold the control character U+{code:04X}"
    return DataError(path, problem, text.count("\n", 0, at) + 2, at - text.rfind("\n", 0, at))


def _toml_key_set(text: str, line: int | None = None) -> tuple[str, int] | None:
    """The key set on the post's `line` (its front matter's last where tomllib gives no
    line), or on the nearest line above it that sets one (a value of several lines),
    with that line; None where no line sets a key."""
    lines = text.split("\n")
    last = len(lines) if line is None or line == 1 else min(line - 1, len(lines))
    while last > 0 and not lines[last - 1].strip():
        last -= 1  # tomllib's "end of document"
    for index in range(last - 1, -1, -1):
        found = _TOML_KEY_LINE.match(lines[index])
        if found is not None:
            return printable(found[1], 80), index + 2
    return None


#: YAML's scalar types a post's value may take, and how an error names each
_SCALARS = {
    "null": "null",
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "binary": "base64 text",
    "timestamp": "a date (2026-01-31, or 2026-01-31 12:00:00)",
}


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader, with numbers of at most MAX_NUMBER characters: Python
    reads no longer integer, and a sexagesimal one (`1:30:00`, YAML 1.1's minutes
    and seconds) costs time with the square of its length (4 MB of one took minutes)."""
    import yaml
    from yaml.constructor import ConstructorError, SafeConstructor

    loader: Any = type("FrontMatterLoader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
    for kind, noun in _SCALARS.items():
        construct = SafeConstructor.yaml_constructors[f"tag:yaml.org,2002:{kind}"]

        def scalar(self: Any, node: Any, construct: Any = construct, noun: str = noun) -> Any:
            value = node.value
            if noun.endswith("number") and isinstance(value, str) and len(value) > MAX_NUMBER:
                problem = f"a number of {len(value):,} characters, more than {MAX_NUMBER:,}"
                raise ConstructorError(None, None, problem, node.start_mark)
            try:
                return construct(self, node)
            except OverflowError:  # 1:2:…:3.5 beyond a float's range
                raise ConstructorError(None, None, "a number too large", node.start_mark) from None
            except (ValueError, KeyError, IndexError, AttributeError, TypeError):
                # PyYAML checks a value's shape, not its range: `2026-02-30`, `!!bool maybe`
                said = printable(value, 40) if isinstance(value, str) else "this value"
                problem = f"{said!r} is not {noun}"
                raise ConstructorError(None, None, problem, node.start_mark) from None

        loader.add_constructor(f"tag:yaml.org,2002:{kind}", scalar)
    loader.add_constructor("tag:yaml.org,2002:map", _mapping_once)
    return loader


def _mapping_once(constructor: Any, node: Any) -> Any:
    """A YAML mapping whose keys are each set once, each the text written: PyYAML keeps
    the last of a key set twice, so a field edited in one place and left in another (a
    second `title:` further down) would say one thing and make the prompt of another;
    and YAML 1.1 reads `true:` as the boolean True (a field named "True") and `1:` as
    1, which Python takes for the same key (`1:` and `yes:` had been "'True' set
    twice"). A field is named as the post writes it."""
    from yaml.constructor import ConstructorError, SafeConstructor
    from yaml.nodes import MappingNode, ScalarNode

    if not isinstance(node, MappingNode):  # `!!map x`: a tag on a value of another kind
        raise ConstructorError(None, None, "'!!map' on a value that is no table", node.start_mark)
    first: dict[str, Any] = {}
    for index, (key_node, value_node) in enumerate(node.value):
        if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # a key that is no scalar is refused as unhashable by PyYAML
        key, start = key_node.value, key_node.start_mark
        mark = first.setdefault(key, start)
        if mark is not start and mark is not None:
            problem = f"sets {printable(key, 80)!r} twice (first on line {mark.line + 2})"
            raise _set_twice_error()(None, None, problem, start)
        node.value[index] = (_as_text(key_node), value_node)
    return SafeConstructor.construct_yaml_map(constructor, node)


def _as_text(key: Any) -> Any:
    """A scalar key node read as the text written (`1`, `true`, `2026-01-02`)."""
    from yaml.nodes import ScalarNode

    return ScalarNode(_STR, key.value, key.start_mark, key.end_mark, key.style)


_STR = "tag:yaml.org,2002:str"


@functools.cache
def _set_twice_error() -> type[MarkedYAMLError]:
    """The error of a key set twice: a class made once PyYAML is imported."""
    from yaml.constructor import ConstructorError

    return type("SetTwiceError", (ConstructorError,), {})


def _refuse_aliases(path: str, events: Iterable[Any]) -> None:
    """A post's fields have no use for YAML aliases (`*name`), and an alias repeated
    inside what it names makes a small file stand for gigabytes of text; nor for more
    than MAX_YAML_VALUES values."""
    import yaml

    values = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
    count = 0
    for event in events:
        count += isinstance(event, values)
        if count > MAX_YAML_VALUES:
            mark = event.start_mark
            raise DataError(
                path,
                f"the YAML front matter holds more than {MAX_YAML_VALUES:,} values, more "
                "than nebula-build reads from a post",
                mark.line + 2 if mark is not None else 1,
            )
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            raise DataError(
                path,
                f"the YAML front matter uses an alias (*{event.anchor}); "
                "write each value out instead",
                mark.line + 2 if mark is not None else 1,
                mark.column + 1 if mark is not None else None,
            )


def excerpt(lines: Sequence[str]) -> str:
    """The first paragraph of Markdown text, as plain text on one line: headings,
    images alone on their line and markup left out, links as their text."""
    return _excerpt_of(_first_paragraph(lines)[0])


#: lines that are no paragraph's text: Hugo's shortcodes (`{{< figure … >}}`,
#: `{{% notice %}}`), Jekyll's Liquid tags (`{% include … %}`) and HTML comments
#: (Hugo's summary divider `<!--more-->`, which may follow the summary's last line),
#: each with what closes it: the lines up to that one are no text either (a shortcode
#: whose parameters go on over several lines, a comment of several lines)
_OWN_LINES = {"{{<": ">}}", "{{%": "%}}", "{%": "%}", "<!--": "-->"}


def _first_paragraph(lines: Sequence[str]) -> tuple[list[str], int]:
    """The lines of the first paragraph, stripped, and the characters of the lines
    looked at to find it."""
    paragraph: list[str] = []
    visited = 0
    closing = None  # what ends a tag or comment that goes on over the next lines
    for line in lines:
        visited += len(line) + 1
        stripped = line.strip()
        if closing is not None:
            closing = None if closing in stripped else closing
            continue
        if not stripped:
            if paragraph:
                break
            continue
        opener = next((o for o in _OWN_LINES if stripped.startswith(o)), None)
        if opener is not None:  # a template's tag or a comment ends a paragraph
            if paragraph:
                break
            if _OWN_LINES[opener] not in stripped[len(opener) :]:
                closing = _OWN_LINES[opener]
            continue
        if not paragraph and stripped.startswith(("#", "<", "![", "```", "---")):
            continue
        paragraph.append(stripped)
    return paragraph, visited


def _excerpt_of(paragraph: list[str]) -> str:
    text = " ".join(plain(" ".join(paragraph)).split())
    return text if len(text) <= MAX_EXCERPT else text[: MAX_EXCERPT - 1].rstrip() + "…"


def plain(text: str) -> str:
    """`text` without emphasis marks (`*`, `_`, backticks), each link or image
    (`[text](url)`, `![alt](url)`) as its text: from a `[`, the text up to the first
    `]`, which a `(` must follow, and the first `)` after it ends the link.

    One pass: where no `]` or `)` follows, that is found once, not again from each
    `[` before it (a regular expression did, which took hours on a post of `[`)."""
    found: dict[str, int] = {}

    def first(char: str, start: int) -> int:
        at = found.get(char)
        if at is None or start > at >= 0:
            at = found[char] = text.find(char, start)
        return at

    kept: list[str] = []
    position, end = 0, len(text)
    while position < end:
        char = text[position]
        if char in _EMPHASIS:
            position += 1
            continue
        opening = position + 1 if text.startswith("![", position) else position
        if text[opening] == "[":
            closing = first("]", opening + 1)
            if 0 <= closing < end - 1 and text[closing + 1] == "(":
                finish = first(")", closing + 2)
                if finish >= 0:
                    kept.append(text[opening + 1 : closing])
                    position = finish + 1
                    continue
        kept.append(char)
        position += 1
    return "".join(kept)


_SPECIAL = re.compile("[\"':=]")


def _settings(front: Sequence[str]) -> dict[str, int]:
    """The first line that sets each plain key: spaces, a quote maybe, the key, a quote
    maybe, spaces, then `:` or `=` (`title: …`, `"title" = …`)."""
    found: dict[str, int] = {}
    for number, line in enumerate(front):
        rest = line.lstrip()
        rest = rest[1:] if rest[:1] in ("'", '"') else rest
        special = _SPECIAL.search(rest)
        if special is None:
            continue
        key, after = rest[: special.start()], rest[special.start() :]
        if after[0] in ("'", '"'):  # a closing quote follows the key itself
            after = after[1:].lstrip()
        else:
            key = key.rstrip()
        if key and after[:1] in (":", "="):
            found.setdefault(key, number)
    return found


def posts(pattern: str, parsed: Sequence[Post]) -> Table:
    """The table of a folder of posts (`rows = { files = pattern }`)."""
    columns: dict[str, None] = {}
    for post in parsed:
        columns.update(dict.fromkeys(post.row.values))
    columns.update(dict.fromkeys(DERIVED))
    by_path = {post.row.path: post for post in parsed}

    def locate(row: Row, column: str | None) -> tuple[int, int | None]:
        post = by_path.get(row.path)
        found = None if column is None or post is None else post.setting_line(column)
        if column is None:
            return row.at, None
        return (1, None) if found is None else (found + 2, 1)

    return Table(pattern, tuple(columns), [post.row for post in parsed], locate)
