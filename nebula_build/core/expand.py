"""Expand `matrix` declarations into concrete images.

`[images.enemy]` with `matrix = { kind = ["slime", "bat"], pose = ["idle", "attack"] }`
becomes enemy[slime,idle], enemy[slime,attack], enemy[bat,idle], enemy[bat,attack]:
the product, in declaration order. `{kind}`, `{pose}` and `{index}` are replaced in
prompt, negative_prompt, output and alt; `seed` may be an expression of them
("{index} + 100"). Pure: no I/O.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nebula_build.core.manifest import ImageDecl, shown
from nebula_build.core.spec import (
    check_template,
    foreign_template,
    may_change_folders,
    path_value_problem,
    placeholders,
)
from nebula_build.params import MAX_SEED, TEXT

if TYPE_CHECKING:
    import ast

TEMPLATED = (*TEXT, "output", "alt")
_TEMPLATED_OR_SEED = (*TEMPLATED, "seed")
_OPERATORS = {"Add": operator.add, "Sub": operator.sub, "Mult": operator.mul}


class ExpansionError(ValueError):
    """A problem with one key of one declaration (`at`: the keys inside it, if any:
    ("columns", "name") of `rows`)."""

    def __init__(self, key: str, message: str, at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.at = at


@dataclass(frozen=True, slots=True)
class Expanded:
    """One concrete image: its name, the declaration it came from, its fields."""

    name: str
    base: str
    decl: ImageDecl
    #: the id of the data row it was made from (`rows`), None otherwise
    row: str | None = None
    #: the values its name's brackets join (the row's id first, then the matrix's):
    #: what a `*` in a selection stands for, as values may contain commas
    parts: tuple[str, ...] = ()


def count(decl: ImageDecl) -> int:
    """How many images a declaration makes, without making them."""
    return math.prod(len(choices) for choices in decl.matrix.values()) if decl.matrix else 1


def expand(base: str, decl: ImageDecl) -> Iterator[Expanded]:
    """Every concrete image of a declaration (itself, without a matrix). The caller
    checks `count` first: a matrix's product can be far larger than its declaration.
    A declaration with `rows` is expanded by `rowimages`."""
    if not decl.matrix:
        yield Expanded(base, base, single(decl))
        return
    _refuse_row_keys(decl)
    check_axes(decl.matrix)
    templates = templates_of(decl)
    known = [*decl.matrix, "index"]
    # the seed first: without it the declaration is expanded again for its other problems
    for key in sorted(templates, key=lambda key: key != "seed"):
        template = templates[key]
        problem = check_template(template, known) or foreign_template(template, known)
        if problem is not None:
            raise ExpansionError(key, problem)
    if decl.output is not None:
        check_output_axes(decl.output, decl.matrix)
    seed = templates.pop("seed", None)
    # the keys whose values may change the output's folders together (each alone: above)
    used = placeholders(decl.output) if decl.output is not None else []
    pathy = [k for k in decl.matrix if k in used and any(map(may_change_folders, decl.matrix[k]))]
    for parts, values in combinations(decl.matrix):
        if pathy and (found := path_value_problem(decl.output or "", values, pathy)):
            raise ExpansionError("matrix", found[1], at=(found[0],))
        # Checked above: plain {name} placeholders only, each one known.
        update: dict[str, Any] = {
            key: template.format_map(values) for key, template in templates.items()
        }
        if seed is not None:
            update["seed"] = seed_of(seed, values)
        name = f"{base}[{','.join(parts)}]"
        yield Expanded(name, base, decl.model_copy(update=update), parts=parts)


def single(decl: ImageDecl) -> ImageDecl:
    """The one image of a declaration without a matrix or rows: itself, its seed
    expression (if any) worked out. ExpansionError as `expand`."""
    values = decl.__dict__  # runs for every image: no attribute looked up thrice
    if values["id"] is not None or values["where"] is not None or values["limit"] is not None:
        _refuse_row_keys(decl)
    _refuse_placeholders(decl)
    seed = values["seed"]
    if not isinstance(seed, str):
        return decl
    problem = check_template(seed, ())
    if problem is not None:
        raise ExpansionError("seed", problem)
    return decl.model_copy(update={"seed": seed_of(seed, {})})


def _refuse_row_keys(decl: ImageDecl) -> None:
    """`id`, `where` and `limit` say which rows make images: without `rows`, a mistake."""
    for key in ("id", "where", "limit"):
        if getattr(decl, key) is not None:
            raise ExpansionError(key, "applies only with `rows` (one image per row of a data file)")


def check_axes(matrix: Mapping[str, list[str | int]]) -> None:
    """ExpansionError for a dimension without values (the product would be empty), a
    key named `index` ({index} is the combination's place), a value `*` (`m[*]` would
    be both that image's name and the wildcard)."""
    for key, choices in matrix.items():
        if key == "index":
            raise ExpansionError(
                "matrix",
                "'index' is taken: {index} is the combination's place in the matrix; "
                "give the key another name",
                at=(key,),
            )
        if not choices:
            raise ExpansionError("matrix", f"{key!r} has no values")
        if "*" in choices:
            raise ExpansionError(
                "matrix",
                "'*' cannot be a value: in an image's name it means any value "
                "(enemy[*,idle]); write it as a word",
                at=(key,),
            )


def check_output_axes(output: str, matrix: Mapping[str, list[str | int]]) -> None:
    """ExpansionError for an output path that leaves out a key with several values: the
    images that differ only there would all write one file (said once, rather than once
    per image); or for a value it fills in that would write elsewhere than it reads.
    The caller has checked the template."""
    used = placeholders(output)
    for key, choices in matrix.items():
        if key not in used:
            if "index" not in used and len({str(choice) for choice in choices}) > 1:
                raise ExpansionError(
                    "output",
                    f"does not use {{{key}}}: the images that differ only in {key!r} would "
                    f"all write one file; put {{{key}}} in the path",
                )
            continue
        for choice in choices:
            found = path_value_problem(output, {key: choice}, (key,))
            if found is not None:
                raise ExpansionError("matrix", found[1], at=(key,))


def templates_of(decl: ImageDecl) -> dict[str, str]:
    """The keys a declaration fills in (a seed expression among them), by key."""
    templates = {key: getattr(decl, key) for key in TEMPLATED if getattr(decl, key) is not None}
    if isinstance(decl.seed, str):
        templates["seed"] = decl.seed
    return templates


def combinations(
    matrix: Mapping[str, list[str | int]],
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Each combination of a matrix, in declaration order: its values as text, as the
    image's name joins them (("slime", "idle") in enemy[slime,idle]), and as the
    templates read them, `index` (its place in the product) included."""
    axes = list(matrix.items())
    for index, combination in enumerate(itertools.product(*(v for _, v in axes))):
        values: dict[str, Any] = {
            key: value for (key, _), value in zip(axes, combination, strict=True)
        }
        values["index"] = index
        yield tuple(str(v) for v in combination), values


def _refuse_placeholders(decl: ImageDecl) -> None:
    """Without a matrix there is nothing to fill in: a `{kind}` is a typo, not a name.
    A stray brace stays literal text, as it always has."""
    values = decl.__dict__  # runs for every image: no dict of its templates made
    for key in _TEMPLATED_OR_SEED:
        template = values[key]
        if not isinstance(template, str) or "{" not in template:  # no placeholder
            continue
        try:
            names = placeholders(template)
        except ValueError:
            continue
        if names:
            raise ExpansionError(
                key,
                f"placeholder {{{shown(names[0])}}} in an image without a matrix: "
                "declare a `matrix` or `rows` to fill it in, or write the text without braces",
            )


#: a seed expression, its placeholders filled in: 100 times what an integer seed takes
MAX_SEED_TEXT = 1_000


def seed_of(expression: str, values: Mapping[str, Any]) -> int:
    """An integer from '{index} + 100' and the like: integers with + - * only. The
    caller has checked its placeholders (`check_template`)."""
    import ast  # only seed expressions need it

    filled = expression.format_map(values)
    if len(filled) > MAX_SEED_TEXT:  # a row's values could make one cost minutes
        raise ExpansionError(
            "seed",
            f"{expression!r} is over {MAX_SEED_TEXT:,} characters with its values filled in",
        )
    try:
        value = _evaluate(ast.parse(filled, mode="eval").body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # RecursionError, MemoryError: a long chain of terms ("1+1+…"); the manifest
        # caps an expression's length, but the values filled in add to it.
        here = "" if filled == expression else f" is '{shown(filled)}' here, and"
        raise ExpansionError(
            "seed",
            f"{expression!r}{here} is not an integer expression (integers, placeholders, "
            "+ - * only)",
        ) from None
    if not 0 <= value <= MAX_SEED:
        # a row's values may make it too long to print (and str() refuses 4,300 digits)
        gives = str(value) if value.bit_length() < 128 else f"a number of {value.bit_length()} bits"
        raise ExpansionError("seed", f"{expression!r} gives {gives}, outside 0-{MAX_SEED}")
    return value


def _evaluate(node: ast.expr) -> int:
    import ast

    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op).__name__ in _OPERATORS:
        operation = _OPERATORS[type(node.op).__name__]
        return int(operation(_evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)  # "-5": its range is what is wrong with it
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("unsupported")
