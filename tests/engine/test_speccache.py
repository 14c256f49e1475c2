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


def test_new_code_under_the_same_version_is_a_new_key(tmp_path):
    """A checkout, a pull or an edit of nebula-build that keeps its version (an editable
    install, `pip install git+…`) is new code: its spec cache and no-op snapshot are
    not the old code's (both were keyed on the version alone, so new resolve code could
    be served the old code's specs)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import nebula_build

    package = tmp_path / "pkg" / "nebula_build"
    shutil.copytree(
        Path(nebula_build.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    project = tmp_path / "site"
    project.mkdir()
    (project / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\n[images.a]\n'
        'model = "black-forest-labs/FLUX.1-schnell"\nprompt = "a"\nwidth = 64\nheight = 64\n'
        'output = "a.png"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    assert _imported_from(env, project).startswith(str(package))

    def plan() -> tuple[str, bytes]:
        done = subprocess.run(
            [sys.executable, "-m", "nebula_build", "plan"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout, (project / ".nebula-build/specs.json").read_bytes()

    out, first = plan()
    assert plan() == (out, first)
    resolve = package / "core/resolve.py"
    later = resolve.stat().st_mtime_ns + 10**9
    os.utime(resolve, ns=(later, later))
    assert plan()[1] != first


def _imported_from(env, project) -> str:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", "import nebula_build; print(nebula_build.__file__)"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
