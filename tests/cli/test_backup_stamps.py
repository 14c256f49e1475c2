"""A backup folder is named after the second its run made it. Runs named it in local
time, so `gc --backups --older-than` read its age off by the zone between two machines
sharing a checkout (and by an hour around a change of summer time). Runs name it in UTC
now, with a trailing `Z` (`20250102T030405Z/`), read the same in every zone; a folder
named before, without the `Z`, is read in local time as it was."""

from __future__ import annotations

import calendar
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_trust_paths import A, manifest
from tests.conftest import REPO

#: nine hours east of Greenwich, ten west (POSIX zones: no tz database needed)
TOKYO, HONOLULU = "JST-9", "HST10"
DAY = 86_400


def nebula_build(root: Path, zone: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, in time zone `zone`."""
    return subprocess.run(
        [sys.executable, "-m", "nebula_build", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO), "TZ": zone},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def utc_stamp(timestamp: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))


def iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def with_folders(project, *names: str) -> Path:
    root = project({"images.toml": manifest(A)})
    for name in names:
        (root / ".nebula-build/backup" / name / "out").mkdir(parents=True)
        (root / ".nebula-build/backup" / name / "out/a.png").write_bytes(name.encode())
    return root


def gc_dry_run(root: Path, zone: str, *args: str) -> dict[str, object]:
    done = nebula_build(root, zone, "gc", "--backups", "--dry-run", "--json", *args)
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def test_apply_names_its_backup_folder_in_utc_whatever_the_zone(project, run_cli):
    """Before: `20250102T120405/` in Tokyo for a copy made at 03:04:05 UTC."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    (root / "out/a.png").write_bytes(b"drawn by hand")
    done = nebula_build(root, TOKYO, "apply", "--force")
    assert done.returncode == 0, done.stderr
    said = re.search(r"backed up in \.nebula-build/backup/(\d{8}T\d{6})Z/", done.stdout)
    assert said is not None, done.stdout
    made = calendar.timegm(time.strptime(said[1], "%Y%m%dT%H%M%S"))
    assert abs(time.time() - made) < 120


@pytest.mark.parametrize("zone", [TOKYO, HONOLULU, "UTC0"])
def test_older_than_reads_a_utc_stamp_the_same_in_every_zone(project, zone):
    """Before: a folder named in UTC was no run's folder (left alone, never listed); and
    one named in local time by a machine in Tokyo was 19 hours older in Honolulu."""
    now = time.time()
    older, newer = utc_stamp(now - 30 * DAY - 3 * 3600), utc_stamp(now - 30 * DAY + 3 * 3600)
    root = with_folders(project, newer, older)
    data = gc_dry_run(root, zone, "--older-than", "30d")
    removed = data["backups_removed"]
    assert isinstance(removed, dict)
    assert [entry["folder"] for entry in removed["entries"]] == [f".nebula-build/backup/{older}/"]
    (entry,) = removed["entries"]
    assert entry["made"] == iso(now - 30 * DAY - 3 * 3600)
    # what --dry-run would leave, as `backups` says what a real run leaves
    assert data["backups"] == {
        "path": ".nebula-build/backup/",
        "folders": 1,
        "files": 1,
        "bytes": len(newer),
    }


@pytest.mark.parametrize(
    ("zone", "made"), [(TOKYO, "2020-01-01T18:04:05Z"), (HONOLULU, "2020-01-02T13:04:05Z")]
)
def test_a_folder_named_before_is_read_in_local_time_as_it_was(project, zone, made):
    root = with_folders(project, "20200102T030405")
    data = gc_dry_run(root, zone)
    removed = data["backups_removed"]
    assert isinstance(removed, dict)
    assert [entry["made"] for entry in removed["entries"]] == [made]


def test_folders_named_in_local_time_and_in_utc_are_listed_oldest_first(project):
    """13:04:05 UTC in Honolulu's local time, then 10:00 UTC: the names sort the other
    way round."""
    root = with_folders(project, "20250102T030405", "20250102T100000Z")
    done = nebula_build(root, HONOLULU, "gc", "--backups", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "  20250102T100000Z/  1 file, 16 bytes\n  20250102T030405/  1 file, 15 bytes\n" in (
        done.stdout
    )
