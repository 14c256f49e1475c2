"""A problem is said at the line an editor, TOML and tomllib count: a prompt holding a
line or paragraph separator (U+2028, U+2029) or a next-line character (U+0085) moved
every problem written below it down one line per character (`str.splitlines` parted
lines there too)."""

from __future__ import annotations

from tests.manifests import PREVIEW


def test_separators_in_a_prompt_do_not_move_the_lines_below(project, run_cli):
    images = (
        '\n[images.a]\nprompt = "one\u2028two\u2029three\x85four"\noutput = "out/a.png"\n'
        '\n[images.b]\nprompt = "b"\noutput = "out/b.png"\nwidth = 65\n'
    )
    text = PREVIEW + images
    project({"images.toml": text})
    code, _, err = run_cli("validate")
    line = text.split("\n").index("width = 65") + 1
    assert code == 1 and err.splitlines() == [
        f"error: images.toml:{line}:1: images.b.width: must be a multiple of 8 within "
        "64-2048 (got 65)"
    ], err


def test_a_manifest_written_with_crlf_keeps_its_line_numbers(project, run_cli):
    images = '\n[images.b]\nprompt = "b"\noutput = "out/b.png"\nwidth = 65\n'
    text = (PREVIEW + images).replace("\n", "\r\n")
    project({"images.toml": text.encode()})
    code, _, err = run_cli("validate")
    assert code == 1 and err.startswith(f"error: images.toml:{PREVIEW.count(chr(10)) + 5}:1: ")
