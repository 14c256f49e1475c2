"""The resolved-spec cache is used only while it is right."""

from __future__ import annotations

import io
import json

from PIL import Image

FILL = """version = 1
[defaults]
backend = "preview"
[images.cap]
model = "black-forest-labs/FLUX.1-Fill-dev"
prompt = "a red cap"
width = 64
height = 64
image = "in.png"
mask = "m.png"
output = "cap.png"
"""


def png(color: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_edited_input_file_invalidates_the_cached_specs(project, run_cli):
    root = project({"images.toml": FILL, "in.png": png(10), "m.png": png(255)})
    assert run_cli("apply").code == 0
    assert (root / ".nebula-build/specs.json").exists()
    assert run_cli("plan", "--detailed-exitcode").code == 0
    (root / "m.png").write_bytes(png(128))
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 2 and "mask changed" in out


def test_an_edited_manifest_and_a_backend_override_are_new_keys(project, run_cli):
    root = project({"images.toml": FILL, "in.png": png(10), "m.png": png(255)})
    run_cli("apply")
    (root / "images.toml").write_text(FILL.replace("a red cap", "a blue cap"))
    assert "prompt changed" in run_cli("plan").out
    (root / "images.toml").write_text(FILL.replace("a red cap", "a blue cap") + "width = 7\n")
    assert run_cli("plan").code == 1  # a broken manifest is never served from the cache


def test_a_corrupt_or_foreign_cache_is_ignored(project, run_cli):
    root = project({"images.toml": FILL, "in.png": png(10), "m.png": png(255)})
    run_cli("apply")
    cache = root / ".nebula-build/specs.json"
    seal, _, text = cache.read_bytes().partition(b"\n")
    head, rows, end = text.split(b"\n")  # the head, one line of rows, the final newline
    specs = json.loads(rows)
    specs[0][3] = "a prompt someone slipped in"  # same key, different content
    forged = head + b"\n" + json.dumps(specs).encode() + b"\n"
    cache.write_bytes(seal + b"\n" + forged)  # the seal no longer fits
    data = json.loads(head)
    assert run_cli("plan", "--detailed-exitcode").code == 0
    data["key"] = "0" * 64
    cache.write_text(json.dumps(data))
    assert run_cli("plan", "--detailed-exitcode").code == 0
    cache.write_text("{not json")
    assert run_cli("plan", "--detailed-exitcode").code == 0
    cache.write_text('{"key": 1, "inputs": [], "settings": 3, "specs": null}')
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_cache_of_many_lines_of_rows_gives_back_every_spec(project, run_cli, monkeypatch):
    """The rows are written and read a line of them at a time (a 100k-image cache is
    never one string in memory): every spec comes back, in order, without resolving."""
    from nebula_build.engine import prepare, speccache

    images = "".join(
        f'[images.i{n}]\nprompt = "image {n}"\nwidth = 64\nheight = 64\n'
        f'seed = {n}\noutput = "out/i{n}.png"\n'
        for n in range(7)
    )
    head = 'version = 1\n[defaults]\nbackend = "preview"\n'
    defaults = 'model = "black-forest-labs/FLUX.1-schnell"\n'
    project({"images.toml": head + defaults + images})
    monkeypatch.setattr(speccache, "_ROWS_PER_LINE", 3)
    first = run_cli("plan")
    assert first.code == 0

    def not_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("resolved again: the cache was not used")

    monkeypatch.setattr(prepare, "from_bytes", not_again)
    again = run_cli("plan")
    assert again == first
    assert all(f"i{n}" in again.out for n in range(7))
