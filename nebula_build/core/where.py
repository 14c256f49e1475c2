"""`where = "category == 'tea' and price < 10"`: the filter of a matrix's rows.

A small language parsed here, never by Python's `eval` (a manifest may come from a
pull request): column names, 'text' or "text", numbers, true and false, lists
`['a', 'b']`; `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`; `and`, `or`, `not`
and parentheses. A bare column is true unless it is missing, empty, 0, false or
the text "false". Pure: no I/O.

Comparing with a number compares numbers ("9.5" from a CSV is 9.5); `<` and its
kin on a value that is not a number is an error naming the column. A column a
row lacks equals nothing and orders with nothing: the row is left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: characters in an expression; far beyond any filter a person writes
MAX_WHERE = 1000
#: parentheses and `not`s inside each other
MAX_NESTING = 32
#: comparisons over all the rows of a file (rows × `comparisons`): a few seconds
MAX_WORK = 2_000_000

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>-?\d+(?:\.\d+)?)
    | (?P<string>'[^'\n]*'|"[^"\n]*")
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORDS = {"and", "or", "not", "in", "true", "false"}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class WhereError(ValueError):
    """An expression that does not parse, or a row it cannot be applied to; `column`
    names the column at fault when there is one."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True, slots=True)
class Column:
    name: str


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # and | or
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >= in, "not in"
    left: Node
    right: Node


Node = Column | Literal | Not | Logic | Compare


def columns(node: Node) -> set[str]:
    """The column names an expression reads."""
    if isinstance(node, Column):
        return {node.name}
    if isinstance(node, Literal):
        return set()
    if isinstance(node, Not):
        return columns(node.operand)
    return columns(node.left) | columns(node.right)


def reads_name(name: str) -> bool:
    """Whether `where` reads `name` as a column: `Scene Name` is two, `in` a word."""
    return _NAME.fullmatch(name) is not None and name not in _WORDS


def comparisons(node: Node) -> int:
    """How many comparisons the expression makes per row, at most (`in [...]` is one)."""
    if isinstance(node, Column | Literal):
        return 1
    if isinstance(node, Not):
        return comparisons(node.operand)
    if isinstance(node, Logic):
        return comparisons(node.left) + comparisons(node.right)
    return 1


def parse(text: str) -> Node:
    """The expression's tree; WhereError saying where it stops making sense."""
    if len(text) > MAX_WHERE:
        raise WhereError(f"may be at most {MAX_WHERE} characters long")
    tokens = _tokens(text)
    parser = _Parser(tokens)
    node = parser.expression(0)
    if parser.position < len(tokens):
        raise WhereError(f"unexpected {tokens[parser.position][1]!r}")
    return node


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    text = text.rstrip()
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            shown = text[position:].lstrip()[:20]
            raise WhereError(
                f"cannot read {shown!r} (at character {position + 1}); write columns, "
                "'text', numbers, == != < <= > >= in, and/or/not, ( )"
            )
        kind = match.lastgroup or ""
        value = match[kind]
        if kind == "name" and value in _WORDS:
            kind = value
        found.append((kind, value))
        position = match.end()
    return found


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def take(self, *kinds: str) -> str:
        kind = self.peek()
        if kind not in kinds:
            got = repr(self.tokens[self.position][1]) if kind else "the end"
            raise WhereError(f"expected {' or '.join(kinds)}, found {got}")
        self.position += 1
        return self.tokens[self.position - 1][1]

    def expression(self, depth: int) -> Node:
        if depth > MAX_NESTING:
            raise WhereError(f"nested more than {MAX_NESTING} levels deep")
        node = self.conjunction(depth)
        while self.peek() == "or":
            self.position += 1
            node = Logic("or", node, self.conjunction(depth))
        return node

    def conjunction(self, depth: int) -> Node:
        node = self.negation(depth)
        while self.peek() == "and":
            self.position += 1
            node = Logic("and", node, self.negation(depth))
        return node

    def negation(self, depth: int) -> Node:
        if self.peek() == "not":
            if depth > MAX_NESTING:
                raise WhereError(f"nested more than {MAX_NESTING} levels deep")
            self.position += 1
            return Not(self.negation(depth + 1))
        return self.comparison(depth)

    def comparison(self, depth: int) -> Node:
        left = self.operand(depth)
        kind = self.peek()
        if kind == "op" and self.tokens[self.position][1] in ("==", "!=", *_ORDER):
            op = self.take("op")
            return Compare(op, left, self.operand(depth))
        if kind == "in":
            self.position += 1
            return Compare("in", left, self.operand(depth))
        after = self.position + 1
        following = self.tokens[after][0] if after < len(self.tokens) else ""
        if kind == "not" and following == "in":
            self.position += 2
            return Compare("not in", left, self.operand(depth))
        return left

    def operand(self, depth: int) -> Node:
        kind = self.peek()
        value = self.tokens[self.position][1] if kind else ""
        if kind == "name":
            self.position += 1
            return Column(value)
        if kind in ("string", "number", "true", "false"):
            self.position += 1
            return Literal(_literal(kind, value))
        if kind == "op" and value == "(":
            self.position += 1
            node = self.expression(depth + 1)
            self.take_op(")")
            return node
        if kind == "op" and value == "[":
            self.position += 1
            items: list[Any] = []
            while not (self.peek() == "op" and self.tokens[self.position][1] == "]"):
                if items:
                    self.take_op(",")
                item_kind = self.peek() or ""
                if item_kind not in ("string", "number", "true", "false"):
                    raise WhereError("a list holds only 'text', numbers, true and false")
                items.append(_literal(item_kind, self.take(item_kind)))
            self.position += 1
            return Literal(Members(tuple(items)))
        got = repr(value) if kind else "the end"
        raise WhereError(f"expected a column, 'text', a number or (, found {got}")

    def take_op(self, op: str) -> None:
        if not (self.peek() == "op" and self.tokens[self.position][1] == op):
            got = repr(self.tokens[self.position][1]) if self.peek() else "the end"
            raise WhereError(f"expected {op!r}, found {got}")
        self.position += 1


def _literal(kind: str, text: str) -> Any:
    if kind == "string":
        return text[1:-1]
    if kind == "number":
        return float(text) if "." in text else int(text)
    return kind == "true"


# --- evaluation -------------------------------------------------------------------


class Members:
    """A list written in the expression (`['a', 1]`), with what `in` looks up made
    once: a row's value is then looked up, not compared with each item in turn."""

    __slots__ = ("_numbers", "_read", "_texts", "_words", "items")

    def __init__(self, items: tuple[Any, ...]) -> None:
        self.items = items
        self._numbers = {i for i in items if _is_number(i)}
        # an item that is text equals a number that it reads as
        self._read = {n for i in items if isinstance(i, str) and (n := _as_number(i)) is not None}
        self._texts = {i for i in items if isinstance(i, str)}
        # a true or false in the list equals the text 'true'/'false' in any case
        self._words = {_text(i) for i in items if isinstance(i, bool)}

    def holds(self, value: Any) -> bool:
        """Whether `value` equals an item (`_equal`)."""
        if isinstance(value, tuple | list | dict):
            return any(_equal(value, item) for item in self.items)
        if _is_number(value):
            return value in self._numbers or value in self._read
        if isinstance(value, bool):
            word = _text(value)
            return word in self._words or word in {t.lower() for t in self._texts}
        if isinstance(value, str):
            if value in self._texts or value.lower() in self._words:
                return True
            number = _as_number(value) if self._numbers else None
            return number is not None and number in self._numbers
        return any(_equal(value, item) for item in self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Members) and other.items == self.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return repr(self.items)


_MISSING = object()


def matches(node: Node, row: Mapping[str, Any]) -> bool:
    """Whether `row` passes the filter; WhereError for an order comparison that needs
    a number and finds text."""
    return _truth(_value(node, row))


def _value(node: Node, row: Mapping[str, Any]) -> Any:
    if isinstance(node, Column):
        return row.get(node.name, _MISSING)
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Not):
        return not _truth(_value(node.operand, row))
    if isinstance(node, Logic):
        left = _truth(_value(node.left, row))
        if node.op == "and":
            return left and _truth(_value(node.right, row))
        return left or _truth(_value(node.right, row))
    left, right = _value(node.left, row), _value(node.right, row)
    if node.op in ("in", "not in"):
        found = _contains(right, left)
        return found if node.op == "in" else not found
    if node.op in ("==", "!="):
        equal = _equal(left, right)
        return equal if node.op == "==" else not equal
    if left is _MISSING or right is _MISSING or left is None or right is None:
        return False
    a, b = _ordered(left, node.left), _ordered(right, node.right)
    if isinstance(a, str) != isinstance(b, str):
        a, b = _number(left, node.left), _number(right, node.right)
    return _ORDER[node.op](a, b)


def _truth(value: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0")
    return bool(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | int | None:
    """A number as it is (an int of any size stays an int: Python compares an int with
    a float exactly), text that reads as one as a float, else None."""
    if _is_number(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(left: Any, right: Any) -> bool:
    if left is _MISSING or right is _MISSING:
        return False
    if _is_number(left) or _is_number(right):
        a, b = _as_number(left), _as_number(right)
        return a is not None and a == b
    if isinstance(left, bool) or isinstance(right, bool):
        return _text(left).lower() == _text(right).lower()
    return _text(left) == _text(right)


def _contains(container: Any, item: Any) -> bool:
    if container is _MISSING or container is None or item is _MISSING:
        return False
    if isinstance(container, Members):
        return container.holds(item)
    if isinstance(container, tuple | list):
        return any(_equal(item, element) for element in container)
    return _text(item) in _text(container)


def _ordered(value: Any, node: Node) -> Any:
    """A number stays a number, text stays text; a list cannot be ordered."""
    if isinstance(value, tuple | list | dict | Members):
        raise WhereError("a list cannot be compared with < > <= >=", _column(node))
    return value if _is_number(value) else _text(value)


def _number(value: Any, node: Node) -> float | int:
    number = _as_number(value)
    if number is None:
        raise WhereError(f"{_text(value)[:40]!r} is not a number", _column(node))
    return number


def _column(node: Node) -> str | None:
    return node.name if isinstance(node, Column) else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
