"""The cleanup steps on pixels where the CLI cannot reach: an answer of another size."""

from __future__ import annotations

from PIL import Image

from nebula_build.outputs.sprites import snap_to_grid


def test_a_grid_on_an_answer_of_another_size_keeps_its_cells_in_place():
    answer = Image.new("RGB", (40, 40), (200, 30, 30))
    answer.paste((10, 10, 200), (32, 32, 40, 40))  # the short corner cell, another colour
    snapped = snap_to_grid(answer, 16)
    assert snapped.size == (40, 40)
    assert snapped.getpixel((39, 39)) == (10, 10, 200)  # a short cell: its own median
    assert snapped.getpixel((31, 31)) == (200, 30, 30)  # not stretched over its neighbour
    assert snapped.getpixel((35, 5)) == (200, 30, 30)


def test_a_grid_larger_than_the_answer_makes_one_cell():
    answer = Image.new("RGBA", (10, 6), (1, 2, 3, 255))
    snapped = snap_to_grid(answer, 16)
    assert snapped.size == (10, 6) and snapped.getcolors() == [(60, (1, 2, 3, 255))]
