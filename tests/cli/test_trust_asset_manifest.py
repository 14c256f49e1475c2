"""An `[assets] manifest` that names a hand-kept JSON file is not rewritten unseen: a
file that reads as `{"version", "images"}` but is not laid out as nebula-build writes
an asset manifest is copied under .nebula-build/backup/ first, and the plan says why;
one nebula-build wrote is rewritten silently, in a fresh checkout too. Nor does a
lock's `[assets]` record (a pull request's) have such a file removed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.cli.test_trust_paths import A, manifest

ASSETS = '[assets]\nmanifest = "data/images.json"'
WHY = "(data/images.json is not laid out as nebula-build writes an asset manifest)"
BACKED_UP = "the current file is backed up (.nebula-build/backup/), then replaced"
HAND_KEPT = {
    # the site's own list, which only shares the two top-level keys
    "own shape": '{"version": 3, "images": {"hero": {"src": "/img/hero.jpg"}}}\n',
    # an asset manifest's shape, written by another tool (compact, unsorted)
    "another layout": json.dumps(
        {
            "version": 1,
            "images": {
                "z": {"alt": "z", "generation_key": "ab" * 32, "files": []},
                "a": {"alt": "a", "generation_key": "ab" * 32, "files": []},
            },
        }
    ),
}


def copies(root: Path) -> list[bytes]:
    folder = root / ".nebula-build/backup"
    return [path.read_bytes() for path in sorted(folder.rglob("images.json"))]


@pytest.mark.parametrize("kept", HAND_KEPT.values(), ids=HAND_KEPT.keys())
def test_a_hand_kept_json_file_is_copied_before_the_asset_manifest_replaces_it(
    project, run_cli, kept
):
    """Before: "images change", and apply replaced the file with no copy and no word."""
    root = project({"images.toml": manifest(A, ASSETS), "data/images.json": kept})
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert f"images change {WHY}\n      {BACKED_UP}\n" in out, out
    code, out, err = run_cli("plan", "--json")
    (action,) = [f for f in json.loads(out)["files"] if f["kind"] == "asset manifest"]
    assert action["backup"] is True and WHY in action["reason"]
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "1 replaced file backed up in .nebula-build/backup/" in out
    assert copies(root) == [kept.encode()]
    assert "out/a.png" in (root / "data/images.json").read_text()
    assert run_cli("plan").out.startswith("No changes")


def test_an_asset_manifest_nebula_build_wrote_is_rewritten_silently(project, run_cli):
    root = project({"images.toml": manifest(A, ASSETS)})
    assert run_cli("apply").code == 0
    assert run_cli("plan").out.startswith("No changes")
    for prompt in ("a lighthouse at dusk", "a lighthouse at dawn"):
        (root / "images.toml").write_text(manifest(A.replace("a lighthouse", prompt), ASSETS))
        shutil.rmtree(root / ".nebula-build")  # a fresh checkout the second time
        code, out, err = run_cli("plan")
        assert code == 0, err
        assert "asset manifest  build  data/images.json\n      images change\n" in out, out
        assert "backed up" not in out and "conflict" not in out
        code, out, err = run_cli("apply")
        assert code == 0, err
        assert "backed up" not in out + err
        assert prompt in (root / "data/images.json").read_text()
    assert not (root / ".nebula-build/backup").exists()


def test_a_file_that_is_no_asset_manifest_is_still_a_conflict(project, run_cli):
    root = project({"images.toml": manifest(A, ASSETS), "data/images.json": '{"x": 1}\n'})
    code, out, err = run_cli("apply")
    assert code == 1
    assert "a file nebula-build did not write is in the way" in out + err
    assert (root / "data/images.json").read_text() == '{"x": 1}\n'


def test_a_locks_assets_record_naming_a_hand_kept_json_file_does_not_remove_it(project, run_cli):
    """A pull request's lock records the site's own list as the asset manifest it wrote
    last, digest and all. Before: `- asset manifest  delete`, and apply removed it."""
    kept = HAND_KEPT["own shape"]
    root = project({"images.toml": manifest(A), "site/gallery.json": kept})
    assert run_cli("apply").code == 0
    digest = hashlib.sha256(kept.encode()).hexdigest()
    record = f'[assets]\nmanifest = "site/gallery.json"\ndigest = "{digest}"\n\n'
    lock = root / "images.lock"
    lock.write_text(lock.read_text().replace("[images.a]", record + "[images.a]", 1))
    shutil.rmtree(root / ".nebula-build")  # a fresh checkout
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "site/gallery.json stays (changed by hand since nebula-build wrote it" in out, out
    assert "removes site/gallery.json" not in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "site/gallery.json").read_text() == kept
    assert "[assets]" not in lock.read_text()
    assert run_cli("plan").out.startswith("No changes")


def test_an_asset_manifest_dropped_from_the_manifest_is_still_removed(project, run_cli):
    root = project({"images.toml": manifest(A, ASSETS)})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(A))
    shutil.rmtree(root / ".nebula-build")  # a fresh checkout
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "removed asset manifest data/images.json" in out + err
    assert not (root / "data/images.json").exists()


def test_an_asset_manifest_path_that_is_a_folder_says_so(project, run_cli):
    """Before: "could not write data/images.json: [Errno 21] Is a directory: 9"."""
    root = project({"images.toml": manifest(A, ASSETS), "data/images.json/mine.txt": "kept"})
    code, out, err = run_cli("apply", "--force")
    assert code == 1
    said = "asset manifest: data/images.json is a folder: remove it or choose another path"
    assert said in err, err
    assert "Errno" not in out + err
    assert (root / "data/images.json/mine.txt").read_text() == "kept"
