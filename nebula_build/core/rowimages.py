"""`rows = "data/products.csv"`: one image per row of a data file, named by its `id`.

The rows come through the caller's `DataFiles` (the core reads no file itself);
`table.py` and `frontmatter.py` parse them, `where.py` filters them. A row's
image is the declaration with every `{column}` filled in from that row, so only
the columns its templates use can change its key: an edit to any other column,
or to another row, or a new order of the rows, changes nothing. `{index}` is
not offered: a row's place in the file is not its identity.

With a `matrix` too, each row kept makes one image per combination of the
matrix (product[tea-green,hero]): `where` and `limit` choose the rows, the
templates read the row's columns and the matrix's keys alike, and `{index}` is
the combination's place in the matrix, the same for every row. Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nebula_build.core import where as filters
from nebula_build.core.expand import (
    Expanded,
    ExpansionError,
    check_axes,
    check_output_axes,
    combinations,
    count,
    seed_of,
    templates_of,
)
from nebula_build.core.frontmatter import Post, parse_post, posts
from nebula_build.core.manifest import (
    MAX_MATRIX_VALUE,
    MAX_TEXT,
    UNSHOWN,
    ImageDecl,
    RowsDecl,
    has_control_characters,
    shown,
)
from nebula_build.core.rowcolumns import Columns, columns_of, listed, no_column
from nebula_build.core.rowhints import (
    placeholder_name,
    ways_out,
    where_headers,
    where_spelling,
)
from nebula_build.core.spec import (
    check_template,
    fill,
    foreign_template,
    path_value_problem,
    placeholders,
)
from nebula_build.core.table import (
    FORMATS,
    DataError,
    Document,
    Row,
    Table,
    Value,
    json_document,
    parse,
    rows_at,
    suffix_format,
    text_of,
)
from nebula_build.errors import UserError, did_you_mean
from nebula_build.state import globs
from nebula_build.text import escaped_value, plural, quoted, shows_as_it_is

#: bytes in one data file (a 100,000-row catalogue is a few MB)
MAX_DATA_BYTES = 32 << 20
#: bytes in one post: its front matter and first paragraph are all that is read
MAX_POST_BYTES = 4 << 20
#: bytes of data one resolve parses, each once: its data files, and its posts' front
#: matter and first paragraphs (`Post.read`), together two of the largest data files.
#: A table holds up to 32 times its bytes in memory (a CSV of empty fields), YAML
#: front matter costs 1.4 s a MB, an excerpt 0.2 s
MAX_DATA_READ = 64 << 20
#: steps the declarations with rows take in all, each going through its rows (a row,
#: and each comparison of its `where` on a row, is a step): five declarations at
#: `where`'s own limit, some 10 s (20 declarations of 190,000 rows took 31 s)
MAX_ROW_STEPS = 10_000_000
#: problems reported per declaration: the first ones show what to fix
MAX_PROBLEMS = 10
#: different problems of rows kept to be said, the rows with the same one together
#: (rows with another problem past them are counted)
_PROBLEMS_KEPT = 1_000
#: rows with a problem all declarations look at: past them (a declaration that stops
#: there says "at least"), 49 declarations of 200,000 rows with an empty column took
#: 90 s, where each stopping at its tenth problem took 1.5 s
PROBLEM_ROWS = 20_000
#: the lines named of the other rows with a problem said once
_LINES_SHOWN = 5
_TEXT_KEYS = ("prompt", "negative_prompt", "alt")


class DataFiles(Protocol):
    """How the core reads data files: the engine's guarded reader."""

    def read(self, path: str, *, limit: int) -> bytes:
        """The bytes of project file `path`; FileNotFoundError when it is missing,
        UserError or OSError when it cannot be read."""

    def matching(self, folder: str, pattern: str) -> list[str]:
        """The regular files below project folder `folder` ("." for the project's own)
        that `pattern` matches (`state.globs`: wildcards in any part, `**` for any
        number of folders), as project paths, sorted; FileNotFoundError for a
        missing folder."""

    def near(self, path: str, *, folder: bool = False) -> str | None:
        """The file (a `folder`) beside missing project path `path` whose name is
        closest to its name (a typo), if one is close."""


@dataclass
class RowImages:
    """A declaration's images, what reading its rows found wrong, the files read."""

    images: list[Expanded] = field(default_factory=list)
    problems: list[DataError] = field(default_factory=list)
    files: tuple[str, ...] = ()
    #: (folder, the pattern below it, the files it matched) of each pattern of posts
    matched: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: how many images the rows kept make (with a matrix: rows × combinations), counted
    #: before any is made; none is made when they are more than the caller allows
    count: int = 0
    #: the rows kept, when they are fewer than `count` (a matrix multiplies them)
    rows: int = 0
    #: the problems of rows left out of `problems`, past the first ones
    unseen: int = 0
    #: the rows with a problem it looked at (`Sources.problem_rows`)
    problem_rows: int = 0


@dataclass(frozen=True, slots=True)
class Source:
    """Where a declaration's rows come from: a data file, or one pattern of posts."""

    #: a data file, or the folder of a set of posts
    path: str
    #: the pattern of posts below `path`, from its first wildcard on (None: one data file)
    pattern: str | None = None
    at: str | None = None
    #: where `rows` writes it, below `rows` (("files", 1): the second of a list of
    #: patterns); not part of what it is, so two declarations share what it read
    written_at: tuple[str | int, ...] = field(default=(), compare=False)

    @property
    def shown(self) -> str:
        if self.pattern is None:
            return self.path
        return self.pattern if self.path == "." else f"{self.path}/{self.pattern}"


def sources_of(rows: str | RowsDecl) -> tuple[Source, ...]:
    """The sources a `rows` value names: a data file, or each pattern of posts of
    `files`; ExpansionError when it names none, or a file and posts."""
    if isinstance(rows, str):
        return (Source(rows),)
    if (rows.file is None) == (rows.files is None):
        raise ExpansionError("rows", "takes either `file` (a data file) or `files` (posts)")
    if rows.file is not None:
        if rows.front_matter:
            raise ExpansionError("rows", "front_matter applies to `files`, one row per post")
        return (Source(rows.file, at=rows.at),)
    assert rows.files is not None
    if rows.front_matter is False:
        raise ExpansionError(
            "rows", "`files` makes one row per post from its front matter: leave front_matter true"
        )
    if rows.at is not None:
        raise ExpansionError("rows", "`at` applies to a JSON `file`")
    if isinstance(rows.files, str):
        return (_pattern_source(rows.files, ()),)
    found: dict[Source, int] = {}
    for index, pattern in enumerate(rows.files):
        source = _pattern_source(pattern, ("files", index))
        if source in found:
            raise ExpansionError(
                "rows",
                f"{quoted(pattern)} is files.{found[source]} again: list each pattern once",
                at=source.written_at,
            )
        found[source] = index
    return tuple(found)


def _pattern_source(pattern: str, written_at: tuple[str | int, ...]) -> Source:
    try:
        folder, below = globs.split(pattern)
    except globs.GlobError as exc:
        raise ExpansionError("rows", str(exc), at=written_at) from None
    return Source(folder or ".", below, written_at=written_at)


@dataclass
class Loaded:
    """A source's rows, the files they were read from, and the posts that did not parse."""

    table: Table
    files: tuple[str, ...]
    problems: list[DataError]
    #: a pattern's posts, as it reads them (none for a data file)
    posts: tuple[Post, ...] = ()


class Sources:
    """What one resolve read: each source's rows, each JSON file and each post, read
    and parsed once however many declarations read them, and so are their problems
    (20 declarations of one 23 MB file, each with `limit = 1`, took 10 s; thousands,
    or as many `at` in it or patterns of the same posts, would have taken hours)."""

    def __init__(self, data: DataFiles) -> None:
        self.data = data
        self._loaded: dict[Source, Loaded | ExpansionError | DataError] = {}
        self._documents: dict[str, Document | DataError] = {}
        #: each post as the first pattern that matched it read it (`Post.under`)
        self._posts: dict[str, Post | DataError] = {}
        #: bytes parsed so far (MAX_DATA_READ)
        self.parsed = 0
        #: steps the declarations so far take going through their rows (MAX_ROW_STEPS)
        self.steps = 0
        #: rows with a problem the declarations may still look at (PROBLEM_ROWS)
        self.problem_rows = PROBLEM_ROWS

    def release(self, source: Source, still_read: Collection[Source]) -> None:
        """Let go of what `source` read that none of the sources `still_read` reads: its
        rows, its JSON document, the posts of the last pattern."""
        self._loaded.pop(source, None)
        if source.pattern is None:
            if not any(other.path == source.path for other in still_read):
                self._documents.pop(source.path, None)
        elif not any(other.pattern is not None for other in still_read):
            self._posts.clear()

    def load(self, source: Source) -> Loaded:
        """The source's rows; ExpansionError when a file cannot be read, DataError when
        a data file does not parse (a post that does not parse is one of `problems`)."""
        found = self._loaded.get(source)
        if found is None:
            try:
                found = self._load(source)
            except (ExpansionError, DataError) as exc:
                found = exc
            self._loaded[source] = found
        if isinstance(found, Loaded):
            return found
        raise found.with_traceback(None)

    def _load(self, source: Source) -> Loaded:
        if source.pattern is None and suffix_format(source.path) is None:
            if any(mark in source.path for mark in "*?["):
                raise ExpansionError(
                    "rows",
                    f"{quoted(source.path)} is a pattern: files that match one (posts with "
                    f'front matter) go in `rows = {{ files = "{escaped_value(source.path)}" }}`',
                )
            raise ExpansionError(
                "rows",
                f"{quoted(source.path)} is not a data file nebula-build reads "
                f"({', '.join(FORMATS)})",
            )
        reading = source.shown
        try:
            if source.pattern is None:
                return Loaded(self._table(source.path, source.at), (source.path,), [])
            try:
                names = self.data.matching(source.path, source.pattern)
            except FileNotFoundError:
                near = self.data.near(source.path, folder=True)
                hint = f"; did you mean {quoted(near)}?" if near else ""
                raise ExpansionError(
                    "rows", f"folder not found: {source.path} (where {reading} starts){hint}"
                ) from None
            parsed, problems = [], []
            for reading in names:
                try:
                    parsed.append(self._post(reading, source.path))
                except DataError as exc:
                    problems.append(exc)
        except FileNotFoundError:
            near = self.data.near(source.path) if source.pattern is None else None
            hint = f" (did you mean {near}?)" if near else ""
            raise ExpansionError("rows", f"file not found: {reading}{hint}") from None
        except (UserError, OSError) as exc:
            raise ExpansionError("rows", f"cannot read {escaped_value(reading)}: {exc}") from None
        return Loaded(posts(source.shown, parsed), tuple(names), problems, tuple(parsed))

    def _table(self, path: str, at: str | None) -> Table:
        if suffix_format(path) != "json":
            return parse(path, self._read(path, MAX_DATA_BYTES), at=at)
        found = self._documents.get(path)
        if found is None:
            try:
                found = json_document(path, self._read(path, MAX_DATA_BYTES))
            except DataError as exc:
                found = exc
            self._documents[path] = found
        if isinstance(found, DataError):
            raise found.with_traceback(None)
        return rows_at(found, at)

    def go_through(self, rows: int, where: str | None) -> None:
        """Count a declaration's steps through `rows` rows with its `where`;
        ExpansionError past MAX_ROW_STEPS in all."""
        each = 1
        if where is not None:
            with contextlib.suppress(filters.WhereError):  # the declaration says what is wrong
                each += filters.comparisons(filters.parse(where))
        self.steps += rows * each
        if self.steps > MAX_ROW_STEPS:
            raise ExpansionError(
                "rows" if where is None else "where",
                f"{rows:,} rows at {plural(each, 'step')} each (a row and each "
                f"comparison) bring the rows of this manifest past {MAX_ROW_STEPS:,} steps "
                "in all: read the rows in fewer declarations",
            )

    def _read(self, path: str, limit: int) -> bytes:
        data = self.data.read(path, limit=limit)
        self.parsed += len(data)
        self._check_parsed(path)
        return data

    def _check_parsed(self, path: str) -> None:
        if self.parsed > MAX_DATA_READ:
            raise ExpansionError(
                "rows",
                f"reading {path}, the rows of this manifest come to more than "
                f"{MAX_DATA_READ >> 20} MiB of data files and posts: more than "
                "nebula-build reads for one manifest",
            )

    def _post(self, path: str, base: str) -> Post:
        found = self._posts.get(path)
        if found is None:
            self._check_parsed(path)
            raw = self.data.read(path, limit=MAX_POST_BYTES)
            try:
                found = parse_post(path, raw, base=base)
                self.parsed += found.read
            except DataError as exc:
                found = exc
                self.parsed += len(raw)  # where its front matter ends may be unknown
            self._posts[path] = found
            self._check_parsed(path)
        if isinstance(found, DataError):
            raise found.with_traceback(None)
        return found.under(base)


def images_from_rows(
    base: str,
    decl: ImageDecl,
    found: Sequence[Source],
    sources: Sources,
    *,
    budget: int | None = None,
) -> RowImages:
    """The images of declaration `base`, one per row of its sources `found` (a data
    file, or each pattern of posts: `sources_of`), and combination of its matrix; none
    where they are more than `budget`. ExpansionError for a problem of the declaration,
    DataError for a data file that does not parse; the problems of single rows and
    posts come back in `RowImages.problems`."""
    each = [_loaded(source, sources) for source in found]
    loaded = each[0] if len(each) == 1 else _together(found, each)
    rows = len(loaded.table.rows)
    if decl.where is None and decl.limit is not None:
        rows = min(rows, decl.limit + MAX_PROBLEMS)  # where `_kept` stops
    sources.go_through(rows, decl.where)
    from_posts = found[0].pattern is not None
    try:
        made = expand_rows(
            base,
            decl,
            loaded.table,
            from_posts=from_posts,
            budget=budget,
            problem_rows=sources.problem_rows,
        )
        sources.problem_rows -= made.problem_rows
    except ExpansionError:
        if not loaded.problems:
            raise
        made = RowImages()  # the posts that do not parse first: their fields are missing
    made.problems[:0] = loaded.problems
    made.files = loaded.files
    if from_posts:
        made.matched = tuple(
            (source.path, source.pattern or "", part.files)
            for source, part in zip(found, each, strict=True)
        )
    return made


def _loaded(source: Source, sources: Sources) -> Loaded:
    """`sources.load(source)`, its problems said where `rows` writes the source."""
    try:
        return sources.load(source)
    except ExpansionError as exc:
        if not source.written_at:
            raise
        raise ExpansionError(exc.key, str(exc), at=(*source.written_at, *exc.at)) from None


def _together(found: Sequence[Source], each: Sequence[Loaded]) -> Loaded:
    """The posts of several patterns as one table: each file once, in the order of their
    paths, as the pattern that starts in the deepest folder reads it (a section's
    `_index.md` is `_index` to one starting in its folder, `posts` to one above it), so
    that the order of the list names nothing; ExpansionError for more posts in all than
    one pattern may match."""
    from nebula_build.state import datafiles  # its limit, read when it applies

    read: dict[str, Post] = {}
    problems: dict[str, DataError] = {}
    deepest_first = sorted(zip(found, each, strict=True), key=lambda pair: -_depth(pair[0]))
    for _, part in deepest_first:
        for post in part.posts:
            read.setdefault(post.row.path, post)
        for problem in part.problems:
            problems.setdefault(problem.path, problem)
    shown = " + ".join(source.shown for source in found)
    if len(read) + len(problems) > datafiles.MAX_FOLDER_FILES:
        raise ExpansionError(
            "rows",
            f"{shown} match more than {datafiles.MAX_FOLDER_FILES:,} posts in all",
            at=("files",),
        )
    ordered = [read[path] for path in sorted(read)]
    files = tuple(sorted({path for part in each for path in part.files}))
    return Loaded(
        posts(shown, ordered),
        files,
        [problems[path] for path in sorted(problems)],
        tuple(ordered),
    )


def _depth(source: Source) -> int:
    """How many folders below the project's own a pattern starts in."""
    return 0 if source.path == "." else source.path.count("/") + 1


@dataclass
class _Plan:
    """What a declaration does with each row, checked once before the rows."""

    base: str
    decl: ImageDecl
    table: Table
    columns: Columns
    id: str
    templates: dict[str, str]
    seed: str | None
    used: tuple[str, ...]
    where: filters.Node | None
    #: a row's values under the names the declaration reads, defaults filled in
    view: Callable[[Row], Mapping[str, Value]]
    #: the images each row makes: 1, or the number of combinations of the matrix
    per_row: int = 1
    #: the rows are posts (each its own file, its fields its front matter's)
    from_posts: bool = False
    #: the columns (and the matrix's keys) the output path reads
    in_output: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Kept:
    """A row that passed `where`: its id and the text of each column its image uses."""

    row: Row
    id: str
    values: dict[str, str]


def _checked(base: str, decl: ImageDecl, table: Table, from_posts: bool) -> _Plan:
    assert decl.rows is not None
    columns = columns_of(decl.rows, table)
    known = columns.names
    id_column = decl.id or ("slug" if from_posts else None)
    if id_column is None:
        raise ExpansionError(
            "id",
            f"is required with rows: the column that names each row's image, one of "
            f"{listed(known)} (never the row's place in the file)",
        )
    if id_column not in columns.sources:
        raise ExpansionError("id", no_column(table, id_column, known))
    templates = templates_of(decl)
    matrix = decl.matrix or {}
    if matrix:
        _check_matrix(matrix, table, columns, templates)
    _check_templates(
        templates,
        table,
        columns,
        [*matrix, "index"] if matrix else [],
        decl.where or "",
        no_posts=from_posts and not table.rows,
    )
    if matrix:
        check_output_axes(decl.output, matrix)
    condition = _condition(decl, table, columns, from_posts) if decl.where is not None else None
    used = {id_column}
    for template in templates.values():
        used.update(placeholders(template))
    used -= {*matrix, "index"} if matrix else set()  # the matrix fills those in
    read = used | (filters.columns(condition) if condition is not None else set())
    columns.check_defaults(read, id_column)
    seed = templates.pop("seed", None)
    ordered = tuple(name for name in known if name in used)
    view = columns.reader([name for name in known if name in read])
    return _Plan(
        base,
        decl,
        table,
        columns,
        id_column,
        templates,
        seed,
        ordered,
        condition,
        view,
        per_row=count(decl),
        from_posts=from_posts,
        in_output=tuple(
            name
            for name in dict.fromkeys(placeholders(decl.output))
            if name in used or name in matrix
        ),
    )


def _check_matrix(
    matrix: Mapping[str, list[str | int]],
    table: Table,
    columns: Columns,
    templates: Mapping[str, str],
) -> None:
    """ExpansionError for a matrix beside rows that would make a placeholder or a name
    ambiguous: a key that is also a column, `{index}` where a column is named so, a
    value with a comma (it separates the parts of product[<id>,<value>])."""
    check_axes(matrix)
    for key, choices in matrix.items():
        if key in columns.sources:
            raise ExpansionError(
                "matrix",
                f"{key!r} is also {table.path}'s column {columns.described(key)}: {{{key}}} "
                "would read either; give the matrix key another name",
                at=(key,),
            )
        comma = next((c for c in choices if isinstance(c, str) and "," in c), None)
        if comma is not None:
            raise ExpansionError(
                "matrix",
                f"{comma!r} has a comma, which separates the row's id and the matrix's "
                "values in an image's name (product[<id>,<value>]): write it without one",
                at=(key,),
            )
    if "index" in columns.sources:
        for key, template in templates.items():
            if "index" in placeholders(template):
                raise ExpansionError(
                    key,
                    f"{{index}} is the combination's place in the matrix, but {table.path} has "
                    f"a column {columns.described('index')} too: {{index}} would read either",
                )


def _check_templates(
    templates: dict[str, str],
    table: Table,
    columns: Columns,
    matrix: list[str],
    where: str,
    *,
    no_posts: bool = False,
) -> None:
    """ExpansionError for a template that uses a name the declaration does not know
    (`matrix`: the matrix's keys and `index`, beside rows), or for the default whose
    key misspells it. `no_posts`: a pattern of posts that matches none yet, whose
    front matter would have given fields."""
    placeholder_names = [name for name in columns.names if name.isidentifier()]
    placeholder_names += matrix
    reads: dict[str, list[str]] = {}
    for key, template in templates.items():
        with contextlib.suppress(ValueError):  # check_template says what is wrong
            reads[key] = placeholders(template)
    read = {name for names in reads.values() for name in names}
    maybe_read = read | set(re.findall(r"\w+", where))  # before `where` is parsed
    for key, names in reads.items():
        for unknown in names:
            if unknown not in placeholder_names:
                columns.check_misspelt_default(unknown, key, maybe_read)
    for key, template in templates.items():
        unnamed = _unnamed_column(template, columns)
        if unnamed is not None:
            named = next(
                (n for n, c in columns.sources.items() if c == unnamed and n.isidentifier()), None
            )
            how = (
                f"is named {{{named}}} by `columns`: write that"
                if named is not None
                else f"needs a placeholder name: rows = {{ …, columns = "
                f'{{ {placeholder_name(unnamed)} = "{shown(unnamed)}" }} }}'
            )
            raise ExpansionError(
                key, f"{{{shown(unnamed)}}}: {table.path}'s column {shown(unnamed)!r} {how}"
            )
        problem = check_template(template, placeholder_names)
        problem = problem or foreign_template(template, placeholder_names)
        if problem is not None:
            has = f"{table.path} and the matrix have:" if matrix else f"{table.path} has:"
            if no_posts:  # a new site's empty posts folder: the first post gives the fields
                has = f"{table.path} matches no post yet, whose front matter gives fields; known:"
            missing = next((n for n in reads.get(key, ()) if n not in placeholder_names), None)
            hint = _unnamed_hint(missing, table, columns) if missing is not None else ""
            raise ExpansionError(key, problem.replace("known:", has) + hint)


def _unnamed_column(template: str, columns: Columns) -> str | None:
    """A column the template names by a header that is not a placeholder name
    (`{Product Name}`), if it does: `rows.columns` can name it."""
    import string

    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template)]
    except ValueError:
        return None  # check_template says what is wrong with it
    return next(
        (f for f in fields if f and f in columns.data_columns and not f.isidentifier()), None
    )


#: the columns without a placeholder name an unknown placeholder's error names
_UNNAMED_SHOWN = 3
#: "did you mean" compares a placeholder with this many columns at most
_UNNAMED_COMPARED = 1000


def _unnamed_hint(unknown: str, table: Table, columns: Columns) -> str:
    """For a placeholder the data has no column of: the columns whose header is no
    placeholder name and that `columns` does not name, which it may have meant
    (`{name}` beside a header `Product Name`), and how to name one; "" where there is
    none, or where the placeholder is a typo of a name there is (its "did you mean")."""
    named = {column for name, column in columns.sources.items() if name.isidentifier()}
    unnamed = [column for column in table.columns if column not in named]
    if not unnamed:
        return ""
    meant = _meant(unknown, unnamed[:_UNNAMED_COMPARED])
    if meant is None and did_you_mean(unknown, columns.names) is not None:
        return ""
    column = meant or unnamed[0]
    name = unknown if meant is not None else placeholder_name(column)
    how = f'rows = {{ …, columns = {{ {name} = "{shown(column)}" }} }}'
    if meant is not None:
        return (
            f"; {table.path}'s column '{shown(column)}' needs a placeholder name: {how} "
            f"makes it {{{name}}}"
        )
    these = ", ".join(f"'{shown(c)}'" for c in unnamed[:_UNNAMED_SHOWN])
    if len(unnamed) > _UNNAMED_SHOWN:
        these += f" and {len(unnamed) - _UNNAMED_SHOWN} more"
    need = "which needs" if len(unnamed) == 1 else "which need"
    return f"; {table.path} also has {these}, {need} a placeholder name: {how}"


def _meant(unknown: str, unnamed: Sequence[str]) -> str | None:
    """The column of `unnamed` a placeholder likely means: one of whose words it is
    (`name` in `Product Name`), or whose suggested name it is close to."""
    word = unknown.lower()
    for column in unnamed:
        if word in re.findall(r"[^\W_]+", column.lower()) or word == placeholder_name(column):
            return column
    by_name = {placeholder_name(column): column for column in unnamed}
    close = did_you_mean(unknown, by_name)
    return by_name[close] if close is not None else None


def _condition(decl: ImageDecl, table: Table, columns: Columns, from_posts: bool) -> filters.Node:
    """The declaration's `where`, parsed and checked against the names it may read."""
    assert decl.where is not None and decl.rows is not None
    try:
        condition = filters.parse(decl.where)
    except filters.WhereError as exc:
        hint = where_headers(decl.where, columns.sources, decl.rows)
        raise ExpansionError("where", f"{exc}{hint}") from None
    unknown = sorted(filters.columns(condition) - set(columns.sources))
    if unknown and unknown[0] in (decl.matrix or {}):
        raise ExpansionError(
            "where",
            f"{unknown[0]!r} is a key of the matrix: `where` chooses rows, and each row kept "
            "makes every combination of the matrix (declare the values you want)",
        )
    if unknown:
        hint = where_spelling(unknown[0], columns.sources, decl.rows)
        if re.search(rf"[=<>]=?\s*{re.escape(unknown[0])}\b", decl.where):  # `rarity == rare`
            hint = f"to compare with the text, write it in quotes: '{shown(unknown[0])}'; "
        message = no_column(table, unknown[0], columns.names, hint=hint)
        if from_posts:  # `not draft` once the last draft is published
            message += (
                "; for a field only some posts set, give it a default: "
                f"rows = {{ …, defaults = {{ {unknown[0]} = false }} }}"
            )
        raise ExpansionError("where", message)
    work = filters.comparisons(condition) * len(table.rows)
    if work > filters.MAX_WORK:
        raise ExpansionError(
            "where",
            f"{plural(filters.comparisons(condition), 'comparison')} on each of "
            f"{len(table.rows):,} rows is more than nebula-build evaluates "
            f"({filters.MAX_WORK:,} in all); compare fewer times (`in [...]` is one "
            "comparison) or read fewer rows",
        )
    return condition


def expand_rows(
    base: str,
    decl: ImageDecl,
    table: Table,
    *,
    from_posts: bool = False,
    budget: int | None = None,
    problem_rows: int = PROBLEM_ROWS,
) -> RowImages:
    """The images of a declaration with rows: one per row that passes `where` (times
    the combinations of a matrix), at most `limit` rows, in the file's order; none
    where they are more than `budget` (`RowImages.count` says how many). ExpansionError
    for a problem of the declaration; problems of rows come back in
    `RowImages.problems`."""
    plan = _checked(base, decl, table, from_posts)
    problems = _RowProblems(max(problem_rows, MAX_PROBLEMS))
    kept = _kept(plan, problems)
    if len(kept) > 1:
        _check_output_tells_rows_apart(plan)
    made = RowImages(count=len(kept) * plan.per_row, rows=len(kept))
    if budget is not None and made.count > budget:
        return made  # counted, never made: a matrix may multiply the rows a billion times
    for index, (position, item) in enumerate(kept):
        try:
            made.images.extend(_images(plan, item))
        except DataError as exc:
            problems.add(position, exc)
            if problems.full:
                problems.stopped = problems.stopped or index + 1 < len(kept)
                break
    made.problems, made.unseen = problems.said()
    made.problem_rows = problems.count
    return made


@dataclass(slots=True)
class _Alike:
    """A problem of rows: the first row's (and its place), how many others had it, and
    the first of their lines."""

    position: int
    first: DataError
    others: int = 0
    lines: list[int | None] = field(default_factory=list)

    def said(self, *, stopped: bool) -> DataError:
        """The problem, with the other rows that had it (`stopped`: before the last
        row, so at least those)."""
        if not self.others:
            return self.first
        first, lines = self.first, self.lines
        listed = ", ".join(map(str, lines)) + (", …" if self.others > len(lines) else "")
        # rows a line each (not a JSON array on one line): their lines tell them apart
        apart = None not in lines and len({first.line, *lines}) == len(lines) + 1
        where = f" (line{'s' if self.others > 1 else ''} {listed})" if apart else ""
        rows = f"{'at least ' if stopped else ''}{self.others:,} other row"
        rows += "" if self.others == 1 else "s"
        message = f"{first}; the same in {rows}{where}"
        return DataError(first.path, message, first.line, first.column)


class _RowProblems:
    """The problems of a declaration's rows, the rows with the same problem together."""

    def __init__(self, most: int) -> None:
        self.alike: dict[tuple[str, str], _Alike] = {}  # by file and message
        self.count = 0
        self.unseen = 0  # rows with a problem past _PROBLEMS_KEPT different ones
        self.most = most  # rows with a problem looked at
        #: the rows were not all looked at (`most`, or `limit`)
        self.stopped = False

    @property
    def full(self) -> bool:
        """Whether no more rows are to be looked at."""
        return self.count >= self.most

    def add(self, position: int, problem: DataError) -> None:
        self.count += 1
        alike = self.alike.get((problem.path, str(problem)))
        if alike is not None:
            alike.others += 1
            if len(alike.lines) < _LINES_SHOWN:
                alike.lines.append(problem.line)
        elif len(self.alike) < _PROBLEMS_KEPT:
            self.alike[problem.path, str(problem)] = _Alike(position, problem)
        else:
            self.unseen += 1

    def said(self) -> tuple[list[DataError], int]:
        """The first MAX_PROBLEMS problems in the rows' order, each naming the other
        rows that had it; and how many rows' problems that leaves unsaid."""
        found = sorted(self.alike.values(), key=lambda alike: alike.position)
        rest = sum(1 + alike.others for alike in found[MAX_PROBLEMS:])
        said = [alike.said(stopped=self.stopped) for alike in found[:MAX_PROBLEMS]]
        return said, self.unseen + rest


def _check_output_tells_rows_apart(plan: _Plan) -> None:
    """ExpansionError for an output path without a column (`img/{index}.png` beside a
    matrix): every row's images would write the same files (said once, rather than
    once per image). Without a matrix, `{index}` is a column like any other."""
    matrix = plan.decl.matrix or {}
    if set(placeholders(plan.decl.output)) - {*matrix, *(("index",) if matrix else ())}:
        return
    images, files = ("images", "files") if matrix else ("image", "file")
    column = f" ({{{plan.id}}})" if plan.id.isidentifier() else ""
    raise ExpansionError(
        "output",
        f"uses no column of the rows: every row's {images} would write the same {files}; "
        f"put a column in the path{column}",
    )


def _kept(plan: _Plan, problems: _RowProblems) -> list[tuple[int, _Kept]]:
    """The rows that pass `where`, at most `limit`, each with its place in the table;
    the problems of rows go to `problems`. It stops where `problems` is full, and
    with `limit` at MAX_PROBLEMS problems, as the steps it may take are counted
    (`go_through`)."""
    kept: list[tuple[int, _Kept]] = []
    ids: dict[str, Row] = {}
    limit = plan.decl.limit
    for position, row in enumerate(plan.table.rows):
        if limit is not None and len(kept) >= limit:
            break
        try:
            item = _keep(plan, row, ids)
        except DataError as exc:
            problems.add(position, exc)
            if problems.full or (limit is not None and problems.count >= MAX_PROBLEMS):
                problems.stopped = position + 1 < len(plan.table.rows)
                break
            continue
        if item is not None:
            kept.append((position, item))
    return kept


def _fail(plan: _Plan, row: Row, name: str | None, message: str) -> DataError:
    column = plan.columns.source(name) if name is not None else None
    if column is not None and column not in plan.columns.data_columns:
        column = None  # a column only a default gives: the row itself is at fault
    line, character = plan.table.position(row, column)
    return DataError(row.path, message, line, character)


def _keep(plan: _Plan, row: Row, ids: dict[str, Row]) -> _Kept | None:
    """The row, if it passes `where`; DataError for a value or an id it cannot have."""
    seen = plan.view(row)
    if plan.where is not None:
        try:
            if not filters.matches(plan.where, seen):
                return None
        except filters.WhereError as exc:
            where = f"where: column {exc.column!r}" if exc.column else "where"
            raise _fail(plan, row, exc.column, f"{where}: {exc}") from None
    values = _values(plan, row, seen)
    row_id = values[plan.id]
    problem = _id_problem(row_id, matrix=bool(plan.decl.matrix))
    if problem is not None:
        raise _fail(plan, row, plan.id, f"id column {plan.id!r}: {problem}")
    earlier = ids.setdefault(row_id, row)
    if earlier is not row:
        raise _fail(plan, row, plan.id, _duplicate(plan, row_id, earlier, row))
    return _Kept(row, row_id, values)


def _images(plan: _Plan, kept: _Kept) -> list[Expanded]:
    """The row's image, or with a matrix its image of each combination."""
    if not plan.decl.matrix:
        decl = _filled(plan, kept, kept.values)
        return [Expanded(f"{plan.base}[{kept.id}]", plan.base, decl, kept.id, (kept.id,))]
    made = []
    for values, combination in combinations(plan.decl.matrix):
        decl = _filled(plan, kept, {**kept.values, **combination}, combination)
        parts = (kept.id, *values)
        name = f"{plan.base}[{','.join(parts)}]"
        made.append(Expanded(name, plan.base, decl, kept.id, parts))
    return made


def _filled(
    plan: _Plan,
    kept: _Kept,
    values: Mapping[str, object],
    combination: Mapping[str, object] | None = None,
) -> ImageDecl:
    """The declaration with `values` filled in; DataError (at the row) for a prompt that
    comes out empty or too long, or a seed that is no seed."""
    found = path_value_problem(plan.decl.output, values, plan.in_output)
    if found is not None:
        name, problem = found
        if combination is not None and name in combination:
            raise _fail(plan, kept.row, None, f"with the matrix's {name} = {problem}")
        raise _fail(plan, kept.row, name, f"column {plan.columns.described(name)}: {problem}")
    filled = {key: fill(t, values) for key, t in plan.templates.items()}
    if "prompt" in filled and not filled["prompt"].strip():
        whose = _whose(combination)
        raise _fail(plan, kept.row, None, f"prompt is empty with {whose} (and defaults)")
    for key in _TEXT_KEYS:
        text = filled.get(key)
        if text is not None and len(text) > MAX_TEXT:
            raise _fail(
                plan,
                kept.row,
                None,
                f"{key} is {len(text):,} characters with {_whose(combination)}, "
                f"more than {MAX_TEXT:,}",
            )
    update: dict[str, object] = dict(filled)
    if plan.seed is not None:
        try:
            update["seed"] = seed_of(plan.seed, values)
        except ExpansionError as exc:
            raise _fail(plan, kept.row, None, f"seed: {exc}") from None
    return plan.decl.model_copy(update=update)


def _whose(combination: Mapping[str, object] | None) -> str:
    """Whose values a filled-in template has, for a message."""
    if combination is None:
        return "this row's values"
    chosen = ", ".join(f"{k} = {v!r}" for k, v in combination.items() if k != "index")
    return f"this row's values and the matrix's {chosen}"


def _values(plan: _Plan, row: Row, seen: Mapping[str, Value]) -> dict[str, str]:
    """The text of each placeholder the row's image uses; DataError for a value that
    is missing or empty (and has no default), or is not text."""
    values: dict[str, str] = {}
    for name in plan.used:
        try:
            text = text_of(seen.get(name), limit=MAX_TEXT)
        except ValueError as exc:
            raise _fail(plan, row, name, f"column {plan.columns.described(name)} {exc}") from None
        if text is None or (not text.strip() and not plan.columns.optional(name)):
            state = "is empty" if plan.columns.source(name) in row.values else "is missing"
            message = f"column {plan.columns.described(name)} {state} (the image uses it)"
            if plan.from_posts and _is_section_page(row.path):
                message += (
                    "; a section's _index.md is no post: `[!_]*.md` in place of `*.md` "
                    "in the pattern leaves it out"
                )
            else:
                message += _ways_out(plan, name)
            raise _fail(plan, row, name, message)
        values[name] = text
    return values


def _ways_out(plan: _Plan, name: str) -> str:
    """What to do about a row that lacks a value its image uses, or has it empty."""
    assert plan.decl.rows is not None
    return ways_out(
        plan.decl.rows,
        field=plan.columns.source(name),
        name=name,
        where=plan.decl.where,
        posts=plan.from_posts,
        is_id=name == plan.id,
    )


def _is_section_page(path: str) -> bool:
    """Hugo's list page of a section (`content/posts/_index.md`), which `*.md` matches
    beside the posts: the first plan of a Hugo site meets it."""
    return path.rpartition("/")[2].rsplit(".", 1)[0] == "_index"


def _duplicate(plan: _Plan, row_id: str, earlier: Row, row: Row) -> str:
    """Why a row's id is refused: another row has it (two posts named alike in two
    folders, say: `2025/hello.md` and `2026/hello.md`)."""
    if earlier.path == row.path:
        return f"id {row_id!r} is also the id of the row at line {plan.table.position(earlier)[0]}"
    hint = ""
    if plan.id == "slug" and plan.decl.id is None:
        hint = " (set `slug` in one's front matter, or take `id` from another field)"
    return f"id {row_id!r} is also the id of the row at {earlier.path}{hint}"


def _id_problem(value: str, *, matrix: bool) -> str | None:
    if value == "*":
        return "'*' means every image of the declaration (`p[*]`), so it cannot name one"
    if matrix and "," in value:
        return (
            f"{value!r} has a comma, which separates the id from the matrix's values in an "
            "image's name (product[<id>,<value>]): take `id` from a column without commas"
        )
    if len(value) > MAX_MATRIX_VALUE:
        return f"{value[:20]!r}… is longer than {MAX_MATRIX_VALUE} characters (it names an image)"
    if has_control_characters(value):
        return f"{value!r} contains a control character (it names an image)"
    if value != value.strip():
        return f"{value!r} starts or ends with a space"
    if not shows_as_it_is(value):
        return f"{value!r} {UNSHOWN} (it names an image)"
    return None
