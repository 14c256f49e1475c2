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
