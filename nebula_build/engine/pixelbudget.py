"""How many pixels the outputs being encoded at once may hold between them.

An output's encode holds several copies of its pixels (decoded, resized, padded,
keyed, quantised): 1.8 GB for one 8192² sprite with `pad` and `extrude`. Eight of
them at once (the encodes a run overlaps) took 8 GB, over what a CI runner has, so
an encode takes its share of this budget first: any number of small ones at once,
one of the largest alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from nebula_build.core.spec import AssetSpec
from nebula_build.imaging import MAX_PIXELS, image_size

#: one output of the largest size an image may have, and room beside it for small ones
PIXELS_IN_FLIGHT = MAX_PIXELS * 3 // 2


def pixels_of(spec: AssetSpec, answer: bytes | None = None) -> int:
    """The most pixels one of `spec`'s encodes holds at a time: the generated image (as
    `answer`'s header says, where given: a server may send 8192² for 64²), or the
    delivered one with its padding, whichever is larger."""
    steps = dict(spec.sprite)
    grow = 2 * ((steps.get("pad") or 0) + (steps.get("extrude") or 0))
    width, height = spec.delivered_size
    declared = max(spec.width * spec.height, (width + grow) * (height + grow))
    return declared if answer is None else max(declared, _pixels_said(answer))


def _pixels_said(data: bytes) -> int:
    """The pixels an image's header claims; 0 where it cannot be read (verifying the
    bytes says why)."""
    try:
        width, height = image_size(data)
    except Exception:  # Pillow raises many kinds for bytes that are no image
        return 0
    return width * height


class PixelBudget:
    """A number of pixels that encodes take a share of, and give back."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = PIXELS_IN_FLIGHT if capacity is None else capacity
        self.free = self.capacity
        self._waiting: list[asyncio.Future[None]] = []

    @contextlib.asynccontextmanager
    async def taken(self, pixels: int) -> AsyncIterator[None]:
        """Hold `pixels` of the budget (all of it, at most) while the block runs."""
        share = min(max(pixels, 1), self.capacity)
        while self.free < share:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                self._waiting.remove(waiter)
        self.free -= share
        try:
            yield
        finally:
            self.free += share
            for waiter in self._waiting:  # each looks again: the first that fits goes
                if not waiter.done():
                    waiter.set_result(None)
