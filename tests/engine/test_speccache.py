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
    data = json.loads(text)
    data["specs"][0][3] = "a prompt someone slipped in"  # same key, different content
    cache.write_bytes(seal + b"\n" + json.dumps(data).encode())  # the seal no longer fits
    assert run_cli("plan", "--detailed-exitcode").code == 0
    data["key"] = "0" * 64
    cache.write_text(json.dumps(data))
    assert run_cli("plan", "--detailed-exitcode").code == 0
    cache.write_text("{not json")
    assert run_cli("plan", "--detailed-exitcode").code == 0
    cache.write_text('{"key": 1, "inputs": [], "settings": 3, "specs": null}')
    assert run_cli("plan", "--detailed-exitcode").code == 0
