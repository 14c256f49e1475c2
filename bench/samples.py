"""Samples taken in interleaved rounds, by label, and the min / median / max of each:
what every comparing benchmark gathers and prints."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


class Samples(dict[str, list[float]]):
    """Values by label, the labels in the order each was first given one."""

    def add(self, label: str, value: float) -> None:
        self.setdefault(label, []).append(value)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """The min, the median and the max of `values`."""
    return min(values), statistics.median(values), max(values)
