"""Provenance in the files themselves: the seed the backend used and its `made_with`
record (weights, dtype, speed options) are embedded beside the spec, and a file made
again from the cache, a rescue or the remote says what the first one said."""

from __future__ import annotations

import errno
import json
import os
import tomllib
from pathlib import Path

from nebula_build.outputs.metadata import PARAMETERS_KEY, SPEC_KEY, read
from nebula_build.state.cache import Store
from tests.conftest import fake_manifest, generation_log

MADE_WITH = {"weights": "files:0123456789abcdef", "dtype": "bfloat16", "compile": "false"}
#: what the lock, the cache and the file record: the fake backend is a plugin, so its
#: distribution and version go with its own record
STAMPED = {**MADE_WITH, "plugin": "nebula-build-fake 0.1"}
FOX = {"prompt": "a red fox", "output": "img/fox.png"}  # no seed: the backend derives one


def manifest(
    log: Path,
    images: dict[str, dict[str, object]] | None = None,
    provenance: dict[str, str] = MADE_WITH,
) -> str:
    text = fake_manifest(log, images or {"fox": FOX})
    record = ", ".join(
        f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in provenance.items()
    )
    return text.replace(
        "concurrency = 4\n", f"concurrency = 4\nderive_seed = true\nprovenance = {{ {record} }}\n"
    )


def locked(root: Path) -> dict:
    return tomllib.loads((root / "images.lock").read_text())["images"]["fox"]


def embedded(path: Path) -> tuple[dict, str]:
    records = read(path.read_bytes())
    return json.loads(records[SPEC_KEY]), records[PARAMETERS_KEY]


def meta_path(root: Path, key: str) -> Path:
    return root / ".nebula-build" / "cache" / key[:2] / f"{key}.json"


def test_a_file_carries_the_seed_its_backend_used_and_its_made_with_record(
    project, run_cli, fake_site, tmp_path
):
    root = project({"images.toml": manifest(tmp_path / "log")})
    code, _, err = run_cli("apply")
    assert code == 0, err
    entry = locked(root)
    record, parameters = embedded(root / "img/fox.png")
    assert record["made_with"] == entry["made_with"] == STAMPED
    assert record["seed"] == entry["seed"] == int(entry["generation_key"][:8], 16)
    assert record["generation"].get("seed") is None  # the spec stays the spec
    assert f"Seed: {entry['seed']}," in parameters  # what A1111's readers show

    code, out, err = run_cli("inspect", "img/fox.png")
    assert code == 0, err
    assert f"seed used: {entry['seed']}" in out
    assert (
        "made with: compile false, dtype bfloat16, plugin nebula-build-fake 0.1, "
        "weights files:0123456789abcdef" in out
    )


def test_a_file_made_again_from_the_cache_says_what_the_first_said(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "log"
    root = project({"images.toml": manifest(log)})
    assert run_cli("apply").code == 0
    first = (root / "img/fox.png").read_bytes()

    (root / "img/fox.png").unlink()
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert (root / "img/fox.png").read_bytes() == first  # restored: the same bytes

    fox = {**FOX, "output": "img/fox.webp"}
    (root / "images.toml").write_text(manifest(log, {"fox": fox}))
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(generation_log(log)) == 1  # re-encoded from the cache, never generated again
    record, parameters = embedded(root / "img/fox.webp")
    assert record["made_with"] == STAMPED and record["seed"] == locked(root)["seed"]
    assert f"Seed: {record['seed']}," in parameters


def test_a_cache_entry_without_a_record_takes_the_locks(project, run_cli, fake_site, tmp_path):
    """Entries cached before they kept `made_with`, or with a record that is not one
    (a crafted checkout), restore with the record the lock has for the same key."""
    root = project({"images.toml": manifest(tmp_path / "log")})
    assert run_cli("apply").code == 0
    key = locked(root)["generation_key"]
    for bad in (None, {"Dtype": "x"}, {"dtype": "\x1b[2J"}, ["dtype"], "fp8"):
        meta = json.loads(meta_path(root, key).read_text())
        meta.pop("made_with", None)
        if bad is not None:
            meta["made_with"] = bad
        meta_path(root, key).write_text(json.dumps(meta))
        (root / "img/fox.png").unlink()
        code, _, err = run_cli("apply")
        assert code == 0, err
        assert embedded(root / "img/fox.png")[0]["made_with"] == STAMPED, bad
        assert locked(root)["made_with"] == STAMPED


def test_a_rescued_generation_keeps_its_record(project, run_cli, fake_site, tmp_path, monkeypatch):
    """The project's disk is full: the rescue outside it keeps the record, and the next
    apply, moving the generation back, embeds it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    root = project({"images.toml": manifest(tmp_path / "log")})
    real = os.fsync

    def full(fd: int) -> None:
        if "/proj/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        assert run_cli("apply").code == 1
    rescued = Store(tmp_path / "user-cache" / "nebula-build" / "rescue")
    (key,) = rescued.keys()
    entry = rescued.get(key)
    assert entry is not None and entry.made_with == STAMPED

    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(generation_log(tmp_path / "log")) == 1
    assert embedded(root / "img/fox.png")[0]["made_with"] == STAMPED


def test_inspect_shows_a_crafted_file_safely(project, run_cli, tmp_path):
    """A file from elsewhere is untrusted: a record that is not JSON, or not an object,
    or values with terminal escapes, is one safe line each and never a traceback."""
    import io

    from PIL import Image

    from nebula_build.outputs.metadata import png_with_text

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    crafted = {
        "list.png": {SPEC_KEY: "[1]"},
        "broken.png": {SPEC_KEY: "{not json"},
        "escapes.png": {PARAMETERS_KEY: "fox\x1b]0;pwned\x07\n\x1b[2J", "other": "\x1b[31mred"},
        "fields.png": {SPEC_KEY: json.dumps({"image": "\x1b[2J", "generation": [1]})},
        "made.png": {SPEC_KEY: json.dumps({"image": "x", "made_with": {"a\x1b[2J": "\x9b1m"}})},
    }
    root = project({})
    for name, texts in crafted.items():
        (root / name).write_bytes(png_with_text(buffer.getvalue(), texts))
        code, out, err = run_cli("inspect", name)
        assert code == 0, (name, err)
        assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out, name
        assert "Traceback" not in err
    assert "not a record this tool wrote" in run_cli("inspect", "list.png").out


def test_inspect_json_of_a_crafted_file_is_strict_json_without_raw_controls(project, run_cli):
    """Lone surrogates, NaN and C1 or bidirectional controls: `--json` prints strict
    JSON in ASCII (before: a traceback, bare NaN, raw U+009B)."""
    import io

    from PIL import Image

    from nebula_build.outputs.metadata import png_with_text

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    crafted = {
        "surrogate.png": {SPEC_KEY: '{"image": "\\ud800x"}'},
        "nan.png": {SPEC_KEY: '{"seed": NaN, "generation": {"steps": Infinity}}'},
        "c1.png": {PARAMETERS_KEY: "\x9b2J\u202egnp.exe", SPEC_KEY: '{"image": "\x9b"}'},
    }
    root = project({})
    for name, texts in crafted.items():
        (root / name).write_bytes(png_with_text(buffer.getvalue(), texts))
        code, out, err = run_cli("inspect", "--json", name)
        assert code == 0 and "Traceback" not in err, (name, err)
        assert out.isascii(), name

        json.loads(out, parse_constant=_refuse_constant)
    assert json.loads(run_cli("inspect", "--json", "nan.png").out)["spec"] is None


def _refuse_constant(constant: str) -> None:
    raise AssertionError(f"{constant} in the output")


def test_a_record_too_large_once_escaped_is_refused_where_it_comes_from(
    project, run_cli, fake_site, tmp_path
):
    """16 values of 200 characters outside the BMP pass a count of characters but take
    38 KB as escaped JSON: more than a cache entry's metadata holds, so a restore lost
    the seed and the record. Now the backend's answer is refused, one line."""
    record = {f"k{i}": "\U0001f98a" * 200 for i in range(16)}
    project({"images.toml": manifest(tmp_path / "log", provenance=record)})
    code, _, err = run_cli("apply")
    assert code == 1
    assert "must take at most 4096 bytes as JSON" in err and "Traceback" not in err


def test_files_adopted_in_place_keep_their_seed_and_record_in_the_lock(
    project, run_cli, fake_site, tmp_path
):
    """The lock is lost (or the image renamed): the files are this generation's, and the
    new entry takes the seed and the record from its cache entry (before: none)."""
    log = tmp_path / "log"
    root = project({"images.toml": manifest(log)})
    assert run_cli("apply").code == 0
    before = locked(root)
    (root / "images.lock").unlink()
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(generation_log(log)) == 1
    assert locked(root)["seed"] == before["seed"]
    assert locked(root)["made_with"] == STAMPED


def test_the_remote_cache_carries_the_record_between_checkouts(
    run_cli, fake_site, tmp_path, monkeypatch
):
    """A teammate's checkout restores from the remote and writes the same file, with the
    same record in the file and in the lock; a remote record whose `made_with` is not
    one is refused like any bad remote entry."""
    shared = tmp_path / "shared"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", shared.as_uri())
    log = tmp_path / "log"
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    first.mkdir()
    (first / "images.toml").write_text(manifest(log))
    assert run_cli("apply", cwd=first).code == 0
    key = locked(first)["generation_key"]
    record_path = shared / "v1" / "ac" / key[:2] / f"{key}.json"
    assert json.loads(record_path.read_text())["made_with"] == STAMPED

    for checkout in (second, third):
        checkout.mkdir()
        for name in ("images.toml", "images.lock"):
            (checkout / name).write_bytes((first / name).read_bytes())
    code, _, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert len(generation_log(log)) == 1  # restored from the remote
    assert (second / "img/fox.png").read_bytes() == (first / "img/fox.png").read_bytes()
    assert locked(second)["made_with"] == STAMPED

    record = json.loads(record_path.read_text())
    record["made_with"] = {"dtype": "\x1b[2Jbfloat16"}
    record_path.chmod(0o644)
    record_path.write_text(json.dumps(record))
    code, _, err = run_cli("apply", cwd=third)
    assert code == 0, err
    assert "the remote cache's entry was refused (its record's `made_with`" in err
    assert "\x1b" not in err
    assert len(generation_log(log)) == 2  # generated instead
    assert embedded(third / "img/fox.png")[0]["made_with"] == STAMPED


def test_the_gallery_shows_the_derived_seed_and_the_record(project, run_cli, fake_site, tmp_path):
    from tests.live.pagedata import page_cards

    root = project({"images.toml": manifest(tmp_path / "log")})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    (card,) = page_cards((root / ".nebula-build/gallery/index.html").read_text())
    assert card["details"]["seed"] == f"{locked(root)['seed']} (derived)"
    assert card["details"]["made with"] == (
        "compile false, dtype bfloat16, plugin nebula-build-fake 0.1, "
        "weights files:0123456789abcdef"
    )
