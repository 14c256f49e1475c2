"""Which images a selection names: --target, --replace and an atlas's `images`.

A name, a declaration's name (all of its images), `base[*]`, or a `*` in place of one
value (`product[*,thumb]`: every row's thumb). A `*` matches the values expansion
recorded for each image, never its name split at commas: a matrix value or a row's
id may contain one. An image only the lock still knows (no longer declared) has no
recorded values; its name is split at commas.

The names are indexed once (a `Selection` serves every atlas of a manifest), so the
cost stays about one pass over them however many patterns and atlases there are (an
untrusted manifest may list thousands). Pure.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Collection, Iterable, Mapping
from functools import cached_property

from nebula_build.core.manifest import shown
from nebula_build.errors import UserError, did_you_mean, suggestion
from nebula_build.text import plural

Parts = tuple[str, ...]

#: known names an error lists (a manifest may declare 100,000)
LISTED = 20
#: "did you mean" compares a mistyped name with each known one: only where there are few
SUGGEST_AMONG = 1000


def select(
    requested: Collection[str], known: Iterable[str], parts: Mapping[str, Parts] | None = None
) -> set[str]:
    """The images `requested` names among `known`; `parts`: each image's values, as
    expansion recorded them. An unknown pattern is an error listing known names."""
    return Selection(known, parts or {})(requested) if requested else set()


def known_names(names: Collection[str]) -> str:
    """'a, b, c', or the first LISTED of many (in the order given) and how many more."""
    first = list(itertools.islice(names, LISTED))
    more = len(names) - len(first)
    return ", ".join(first) + (f", … ({more:,} more)" if more > 0 else "") if first else "none"


def not_one_image(
    name: str, known: Collection[str], parts: Mapping[str, Parts] | None = None
) -> str | None:
    """Why `name` is not the name of one image among `known` (`pick` and `history` take
    one), or None where it is: a declaration or a pattern says which images it stands
    for, an unknown name which names there are."""
    if name in known:
        return None
    matches = _Index(known, parts or {}).matching(name)
    if not matches:  # as Selection says it of a --target
        close = did_you_mean(name, known) if len(known) <= SUGGEST_AMONG else None
        hint = f"; did you mean {close!r}?" if close else ""
        return f"unknown image: {shown(name)} (known: {known_names(known)}){hint}"
    ordered = [known_name for known_name in known if known_name in matches]
    verb = "declares" if "[" not in name else "matches"
    return (
        f"no image named {name!r}: it {verb} {plural(len(ordered), 'image')} "
        f"({known_names(ordered)}); name one, as in {shlex.quote(ordered[0])}"
    )


class Selection:
    """Selects among one set of names, indexed once for every request."""

    def __init__(self, known: Iterable[str], parts: Mapping[str, Parts]) -> None:
        self._known = list(dict.fromkeys(known))  # in the order given, for errors
        self._index = _Index(self._known, parts)

    def __call__(self, requested: Collection[str]) -> set[str]:
        chosen: set[str] = set()
        unknown = []
        for pattern in dict.fromkeys(requested):  # each once, in the order given
            matches = self._index.matching(pattern)
            if not matches:
                unknown.append(pattern)
            chosen |= matches
        if unknown:
            raise UserError(
                f"unknown {'image' if len(unknown) == 1 else 'images'}: "
                f"{', '.join(map(shown, unknown[:LISTED]))}"
                f"{f', … ({len(unknown) - LISTED:,} more)' if len(unknown) > LISTED else ''} "
                f"(known: {known_names(self._known)}){self._suggestion(unknown)}"
            )
        return chosen

    def _suggestion(self, unknown: list[str]) -> str:
        """`; did you mean 'hero'?` for one mistyped name among a few known ones; a
        mistyped declaration keeps what follows it (`icons[*]`: `icon[*]`)."""
        if len(unknown) != 1 or len(self._known) > SUGGEST_AMONG:
            return ""
        base, bracket, rest = unknown[0].partition("[")
        if base not in self._index.by_base:
            declared = [name for name, images in self._index.by_base.items() if name not in images]
            close = did_you_mean(base, declared)
            if close is not None and self._index.matching(meant := close + bracket + rest):
                return f"; did you mean {meant!r}?"
        return suggestion(unknown[0], self._known)


class _Index:
    """The known names by declaration, and by the value at each place of their name."""

    def __init__(self, known: Iterable[str], parts: Mapping[str, Parts]) -> None:
        self.names = set(known)
        self.parts = parts
        self.by_base: dict[str, set[str]] = {}
        for name in self.names:
            self.by_base.setdefault(name.partition("[")[0], set()).add(name)

    def matching(self, pattern: str) -> set[str]:
        """The names `pattern` stands for (empty: none)."""
        if pattern in self.names:
            return {pattern} | self.by_base.get(pattern, set())
        base = pattern.removesuffix("[*]")
        if base in self.by_base:
            return self.by_base[base]
        base, bracket, inside = pattern.partition("[")
        if not bracket or not inside.endswith("]"):
            return set()
        wanted = inside[:-1].split(",")
        if "*" not in wanted:
            return set()
        fixed = [(place, value) for place, value in enumerate(wanted) if value != "*"]
        if not fixed:
            return self._values.get((base, len(wanted)), {}).get((-1, ""), set())
        found = [self._values.get((base, len(wanted)), {}).get(f, set()) for f in fixed]
        found.sort(key=len)
        return found[0].intersection(*found[1:])

    @cached_property
    def _values(self) -> dict[tuple[str, int], dict[tuple[int, str], set[str]]]:
        """(declaration, how many values) → (place, value) → the names with that value
        there; (-1, "") → all of them. Built when a pattern first has a `*`."""
        values: dict[tuple[str, int], dict[tuple[int, str], set[str]]] = {}
        for name in self.names:
            base, bracket, inside = name.partition("[")
            if not bracket:
                continue
            own = self.parts.get(name) or tuple(inside.removesuffix("]").split(","))
            places = values.setdefault((base, len(own)), {})
            places.setdefault((-1, ""), set()).add(name)
            for place, value in enumerate(own):
                places.setdefault((place, value), set()).add(name)
        return values
