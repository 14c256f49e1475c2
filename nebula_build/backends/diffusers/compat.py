"""Which speed options work together: one table, checked when the settings are read
(`validate`, `plan`, `apply`), without importing torch.

The backend sets a pipeline up in the order that lets most options combine
(weights rewritten first, then offload hooks, then compile, see
`runtime.Runtime._set_up`). The pairs below still fail every image, so they are
refused before any work, each with what to use instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Incompatible:
    """Two settings that do not work together, and what works instead."""

    first: str
    first_matches: Callable[[Any], bool]
    second: str
    second_matches: Callable[[Any], bool]
    why: str
    instead: str


def _full_compile(value: Any) -> bool:
    return value is True or value == "max-autotune"


TABLE: tuple[Incompatible, ...] = (
    Incompatible(
        "compile",
        _full_compile,
        "offload",
        lambda value: value == "model",
        "a whole-model graph cannot run through the hooks that move each model to the GPU",
        'use compile = "regional" with offload = "model"',
    ),
    Incompatible(
        "compile",
        bool,
        "offload",
        lambda value: value == "sequential",
        "sequential offload moves every layer on each call, which no compiled graph survives",
        'use offload = "model" with compile = "regional", or no compile',
    ),
    Incompatible(
        "quantize",
        lambda value: value == "fp8",
        "offload",
        bool,
        "float8 weights are made on the GPU and cannot be moved back and forth",
        "use one or the other",
    ),
)


def incompatible_pairs(settings: Any) -> list[tuple[str, str]]:
    """(the key to blame, a message) for each pair of `settings` (an object with the
    settings as attributes) that does not work together."""
    problems = []
    for row in TABLE:
        first, second = getattr(settings, row.first), getattr(settings, row.second)
        if row.first_matches(first) and row.second_matches(second):
            problems.append(
                (
                    row.second,
                    f"{row.first} = {_toml(first)} does not work with {row.second} = "
                    f"{_toml(second)}: {row.why}; {row.instead}",
                )
            )
    return problems


def _toml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f'"{value}"'
