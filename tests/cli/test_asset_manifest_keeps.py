"""The asset manifest lists an image's files while they are in place as the lock
records them: an image whose new generation failed, or that an apply left out,
keeps the picture a page shows from its last build."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 256
height = 192

[images.hero]
prompt = "a lighthouse at dusk"
widths = [128]
output = "img/hero.webp"

[images.icon]
prompt = "a fox"
output = "img/icon.png"

[assets]
manifest = "img/images.json"
"""


def _listed(root: Path) -> dict[str, dict]:
    return json.loads((root / "img/images.json").read_text())["images"]


def test_an_image_whose_new_generation_failed_keeps_its_files_listed(project, run_cli):
    """It was left out of the asset manifest, with no word said, while its file from the
    last build was still in place: the page lost its picture."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    before = _listed(root)
    failing = SITE.replace(
        'prompt = "a lighthouse at dusk"', 'prompt = "a storm"\nchecks = { max_kb = 0.01 }'
    )
    (root / "images.toml").write_text(failing)
    code, out, err = run_cli("apply")
    assert code == 1 and "hero" in err, out + err
    assert _listed(root) == before  # the files the lock records, as they were listed


def test_an_image_an_apply_left_out_keeps_its_files_listed(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    before = _listed(root)
    edited = SITE.replace("a lighthouse at dusk", "a storm").replace("a fox", "a cat")
    (root / "images.toml").write_text(edited)
    assert run_cli("apply", "--target", "icon").code == 0
    after = _listed(root)
    assert after["hero"] == before["hero"]
    assert after["icon"]["generation_key"] != before["icon"]["generation_key"]
    assert [f["path"] for f in after["hero"]["files"]] == ["img/hero.webp", "img/hero-128.webp"]


def test_a_file_no_longer_as_the_lock_records_it_is_not_listed(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SITE.replace("a fox", "a cat"))
    (root / "img/icon.png").write_bytes(b"edited by hand")
    run_cli("apply")
    assert "icon" not in _listed(root)


def test_only_the_paths_the_manifest_declares_are_listed(project, run_cli):
    """A lock (a pull request's) may record any file it can hash as an image's variant:
    an image not made as declared must not list it."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    photo = root / "img/photo.png"  # drawn by hand, its digest known
    photo.write_bytes((root / "img/icon.png").read_bytes())
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    lock = (root / "images.lock").read_text()
    lock = lock.replace(
        'params = { height = 192, prompt = "a fox", width = 256 }',
        'params = { height = 192, prompt = "a fox", width = 256 }\n'
        f'variants = {{ "img/photo.png" = "{digest}" }}',
    )
    (root / "images.lock").write_text(lock)
    (root / "images.toml").write_text(SITE.replace("a fox", "a cat"))
    assert run_cli("apply", "--target", "hero").code == 0
    assert [f["path"] for f in _listed(root)["icon"]["files"]] == ["img/icon.png"]


def test_a_kept_file_whose_header_claims_too_many_pixels_is_left_out(project, run_cli):
    """A review found: a JPEG whose header claimed 65500² pixels, kept for an image whose
    new generation failed, stopped apply with a traceback."""
    text = SITE.replace('output = "img/hero.webp"', 'output = "img/hero.jpg"').replace(
        "widths = [128]\n", ""
    )
    root = project({"images.toml": text})
    assert run_cli("apply").code == 0
    hero = root / "img/hero.jpg"
    data = bytearray(hero.read_bytes())
    at = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[at + 5 : at + 9] = (65500).to_bytes(2, "big") * 2  # height, width
    old = hashlib.sha256(hero.read_bytes()).hexdigest()
    hero.write_bytes(bytes(data))
    lock = (root / "images.lock").read_text().replace(old, hashlib.sha256(data).hexdigest())
    (root / "images.lock").write_text(lock)
    failing = text.replace(
        'prompt = "a lighthouse at dusk"', 'prompt = "a storm"\nchecks = { max_kb = 0.01 }'
    )
    (root / "images.toml").write_text(failing)
    code, out, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err, err
    assert "hero" not in _listed(root)
