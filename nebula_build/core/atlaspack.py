"""Packing an atlas's frames into one sheet, and the largest sheet a GPU takes.

Pure: the sizes in, the positions and the sheet's size out. `outputs.atlas` packs
the members' files with it; the resolver packs the sizes the members' files will
have, where each is known before any is made (none is trimmed), so that an atlas
that cannot fit is refused before its members are paid for.
"""

from __future__ import annotations

from collections.abc import Mapping

#: the largest side of a sheet: the largest texture most GPUs take
MAX_SHEET_SIDE = 16384


def pack(
    sizes: Mapping[str, tuple[int, int]], padding: int
) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
    """Shelf packing, tallest first and else in the order of `sizes` (an atlas's
    members as it lists them: frame 2 after frame 1, a tileset's tiles as declared):
    positions by name and the sheet's size."""
    area = sum((w + padding) * (h + padding) for w, h in sizes.values())
    widest = max(w for w, _ in sizes.values())
    limit = max(widest, int(area**0.5 * 1.15) + 1)
    positions, x, y, shelf, width = {}, 0, 0, 0, 0
    for name in sorted(sizes, key=lambda n: -sizes[n][1]):
        w, h = sizes[name]
        if x and x + w > limit:
            x, y, shelf = 0, y + shelf + padding, 0
        positions[name] = (x, y)
        x += w + padding
        shelf = max(shelf, h)
        width = max(width, x - padding)
    return positions, (width, y + shelf)


def too_large(size: tuple[int, int]) -> str | None:
    """Why a sheet of `size` cannot be made, or None where it can."""
    if max(size) <= MAX_SHEET_SIDE:
        return None
    return (
        f"the sheet would be {size[0]}×{size[1]} pixels, over the {MAX_SHEET_SIDE} a side "
        "a GPU texture takes; split the atlas or make its members smaller (resize, pad, "
        "extrude)"
    )
