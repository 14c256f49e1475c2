"""Sizes are said one way in every line: `gc` said a folder of 5,939 bytes "5.9 kB"
beside a total of "0.0 MB", and a cache entry in kB beside totals in MB."""

from __future__ import annotations

import re

from tests.cli.test_trust_paths import A, manifest

OLD = "20200102T030405"


def test_gc_says_a_backup_folder_and_its_total_in_one_unit(project, run_cli):
    root = project({"images.toml": manifest(A)})
    folder = root / ".nebula-build/backup" / OLD / "out"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"x" * 5_939)
    code, out, err = run_cli("gc", "--backups", "--dry-run")
    assert code == 0, err
    assert "would remove 1 backup folder from .nebula-build/backup/ (1 file, 5.8 KiB):\n" in out
    assert f"  {OLD}/  1 file, 5.8 KiB\n" in out
    code, out, err = run_cli("gc")
    assert code == 0, err
    assert "kept 1 backup folder in .nebula-build/backup/ (1 file, 5.8 KiB): " in out


def test_gc_json_gives_sizes_in_bytes_where_its_lines_say_kib(project, run_cli):
    """The units are for people: `--json` keeps the exact count of bytes."""
    import json

    root = project({"images.toml": manifest(A)})
    folder = root / ".nebula-build/backup" / OLD / "out"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"x" * 5_939)
    code, out, err = run_cli("gc", "--json", "--dry-run", "--backups")
    assert code == 0, err
    removed = json.loads(out)["backups_removed"]
    assert removed["bytes"] == 5_939 and removed["entries"][0]["bytes"] == 5_939
    code, out, err = run_cli("gc", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["backups"]["bytes"] == 5_939 and data["bytes"] == 0
    assert data["history"] == {"generations": 0, "bytes": 0}


def test_gc_says_a_cache_entry_and_the_total_it_frees_in_one_unit(project, run_cli):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(A.replace("lighthouse", "harbour")))
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest())
    assert run_cli("apply").code == 0
    (root / "images.lock").unlink()  # no history: both generations are unreferenced
    code, out, err = run_cli("gc", "--dry-run")
    assert code == 0, err
    total = re.search(r"^would remove 2 cache entries \((\S+ \S+)\):$", out, re.M)
    sizes = re.findall(r"^  [0-9a-f]{12} +(\S+ \S+)  ", out, re.M)
    assert total is not None and len(sizes) == 2, out
    units = {size.split()[1] for size in (total[1], *sizes)}
    assert units <= {"bytes", "KiB"} and "MB" not in out and "kB" not in out, out


def _noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    import io
    import random

    from PIL import Image

    pixels = random.Random(7).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def test_an_image_over_the_byte_limit_says_two_sizes_that_differ(
    project, run_cli, fake_site, tmp_path, monkeypatch
):
    """The image was said "1 MiB: over the limit of 1 MiB" (both rounded to whole MiB)."""
    import nebula_fake

    from nebula_build import imaging
    from tests.conftest import fake_manifest

    data = _noise_png(640)  # 1.2 MiB
    monkeypatch.setattr(nebula_fake, "render", lambda request: data)
    images = {"hero": {"prompt": "p", "output": "hero.png", "width": 640, "height": 640}}
    project({"images.toml": fake_manifest(tmp_path / "log", images)})

    monkeypatch.setattr(imaging, "MAX_BYTES", 2**20)
    code, _, err = run_cli("apply")
    assert code == 1
    assert "1.2 MiB: over the limit of 1 MiB" in err, err

    monkeypatch.setattr(imaging, "MAX_BYTES", len(data) - 1)  # the same, said in MiB
    code, _, err = run_cli("apply")
    assert code == 1
    said = f"{len(data):,} bytes: over the limit of {len(data) - 1:,} bytes (1.2 MiB)"
    assert said in err, err
